"""The course's chest X-ray simulator, built from one real chest CT (introduced in notebook 01, used everywhere).

Quick use::

    from mlcak_lib.synth import SynthCXR, SynthConfig
    sim = SynthCXR(SynthConfig())              # default: ~50 % abnormal (learnable), 9 VinDr classes
    sample = sim.generate(0, split="train", seed=0)

``SynthConfig.vindr_calibrated()`` gives the VinDr-CXR frequencies instead (70.7 % "No finding").
It is a simulator, not a clinical dataset.
"""

from .asset import AssetError, load_asset, verify_asset
from .config import DEFAULT_PREVALENCE, LESION_CLASSES, SMALL_CLASSES, SPLITS, SynthConfig
from .generator import SynthCXR
from .gallery import gallery, label_frequency_table

__all__ = [
    "AssetError", "DEFAULT_PREVALENCE", "LESION_CLASSES", "SMALL_CLASSES", "SPLITS", "SynthCXR",
    "SynthConfig", "gallery", "label_frequency_table", "load_asset", "verify_asset",
]
