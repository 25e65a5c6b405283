"""The course's chest X-ray simulator, built from one real chest CT (introduced in notebook 01, used everywhere).

Quick use::

    from mlcak_lib.synth import SynthCXR, SynthConfig
    sim = SynthCXR(SynthConfig())              # default: ~50 % abnormal (learnable), 9 VinDr classes
    sample = sim.generate(0, split="train", seed=0)

``SynthConfig.vindr_calibrated()`` gives the VinDr-CXR frequencies instead (70.7 % "No finding").
``SynthConfig(patients="by_patient")`` draws the films from five patients, split by patient
(``PATIENT_SPLITS``, ``leave_one_out(k)``, ``seen_patients`` for in-patient scores; :mod:`.cohort`),
with per-film anatomical variation from one documented table (:mod:`.anatomy`).
It is a simulator, not a clinical dataset.
"""

from .asset import AssetError, load_asset, verify_asset
from .config import (
    DEFAULT_PREVALENCE, LESION_CLASSES, PATIENT_SPLITS, SMALL_CLASSES, SPLITS, SynthConfig, leave_one_out,
    seen_patients,
)
from .generator import SynthCXR
from .gallery import gallery, label_frequency_table, patient_roles, patients_figure

__all__ = [
    "AssetError", "DEFAULT_PREVALENCE", "LESION_CLASSES", "PATIENT_SPLITS", "SMALL_CLASSES", "SPLITS", "SynthCXR",
    "SynthConfig", "gallery", "label_frequency_table", "leave_one_out", "load_asset", "patient_roles",
    "patients_figure", "seen_patients", "verify_asset",
]
