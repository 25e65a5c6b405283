"""Configuration of the chest X-ray simulator: lesion classes, prevalences, presets, validation."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import lru_cache

from ..reference import vindr_class_stats
from .asset import ASSET_SHA256
from .patients import PATIENTS, asset_sha256

LESION_CLASSES: tuple[str, ...] = (
    "Nodule/Mass",
    "Calcification",
    "Lung Opacity",
    "Pleural effusion",
    "Cardiomegaly",
    "Pneumothorax",
    "Aortic enlargement",
    "Pleural thickening",
    "Pulmonary fibrosis",
)
"""Every class the simulator can draw, named as in VinDr-CXR."""

SMALL_CLASSES = ("Nodule/Mass", "Calcification")
"""Findings that are small (millimetres): where resolution loss hurts."""

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
"""Split name -> id mixed into every image's seed: splits are disjoint by construction."""

PATIENT_SPLITS: dict[str, dict[str, tuple[str, ...]]] = {
    # Every patient can give normal films now (the real tumours are masked out of the CTs). Test keeps
    # LIDC-IDRI-0001: its organ masks come from a real label map (the other four are segmented by the
    # builder's classical rules), so the test split's heart/lung masks and localisation targets are the
    # most accurate. Caveat: the DEFAULT single-patient asset is the same patient, so only a model trained
    # on ``by_patient`` (not on the default) has never seen the test patient. Validation gets a CIP
    # volume, training the other three (both TCIA cancer patients and the other CIP volume).
    "by_patient": {"train": ("lungdx_a0001", "lungdx_a0002", "cip_ct64"), "val": ("cip_testinput",),
                   "test": ("lidc0001",)},
}
"""Named patient splits for ``SynthConfig(patients=...)`` (notebook 01): 3 train / 1 validation / 1 test patients.

The test patient is never seen in training: a model's test AUROC on ``by_patient`` is an
**unseen-patient** score. Report it next to the **in-patient** score on new films of the training
patients, :func:`seen_patients` (``SynthConfig(patients=seen_patients("by_patient"))``, test split).
"""


def seen_patients(preset: str | dict = "by_patient") -> dict[str, tuple[str, ...]]:
    """The same patient split, but with the TRAINING patients under "test" (and "val"): scoring a model on
    its "test" split then gives the in-patient score, on new films of patients it was trained on.

    The films are new because a split's id enters every image's seed (``SPLITS``): test image ``i`` is never
    train image ``i``. Train a model on ``SynthConfig(patients=preset)``, then score it on the test split of
    both ``SynthConfig(patients=preset)`` (unseen patients) and ``SynthConfig(patients=seen_patients(preset))``
    (seen patients), with the same other settings, and report the two AUROCs side by side. Only the
    evaluation data comes from the second configuration: its hash differs (the patient mapping enters it),
    so train under ``preset`` and evaluate that one model on both test splits."""
    mapping = dict(_normalise_patients(preset))
    return {"train": mapping["train"], "val": mapping["train"], "test": mapping["train"]}


def leave_one_out(k: int) -> dict[str, tuple[str, ...]]:
    """Fold ``k`` of a leave-one-patient-out rotation: test = ``PATIENTS[k % 5]``, validation = the next
    patient, train = the other three (each patient is the test patient of exactly one fold of five)."""
    n = len(PATIENTS)
    test, val = PATIENTS[k % n], PATIENTS[(k + 1) % n]
    return {"train": tuple(p for p in PATIENTS if p not in (test, val)), "val": (val,), "test": (test,)}


def _normalise_patients(value) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
    """``None``, a preset name or a mapping split -> patient ids, as a hashable tuple in split order."""
    if value is None:
        return None
    if isinstance(value, str):
        if value not in PATIENT_SPLITS:
            raise ValueError(f"unknown patient split {value!r}; presets: {', '.join(PATIENT_SPLITS)}")
        value = PATIENT_SPLITS[value]
    mapping = {s: tuple(ids) if not isinstance(ids, str) else (ids,) for s, ids in dict(value).items()}
    bad = [s for s in mapping if s not in SPLITS]
    if bad or not mapping:
        raise ValueError(f"patients maps split names ({', '.join(SPLITS)}) to patient ids, got splits {list(mapping)}")
    for s, ids in mapping.items():
        unknown = [p for p in ids if p not in PATIENTS]
        if unknown or not ids or len(set(ids)) != len(ids):
            raise ValueError(f"split {s!r}: patient ids must be distinct and among {', '.join(PATIENTS)}, got {list(ids)}")
    return tuple((s, mapping[s]) for s in SPLITS if s in mapping)


# Learnable default: half the images abnormal, every class common enough to learn.
DEFAULT_PREVALENCE: dict[str, float] = {
    "Nodule/Mass": 0.14,
    "Calcification": 0.09,
    "Lung Opacity": 0.10,
    "Pleural effusion": 0.09,
    "Cardiomegaly": 0.10,
    "Pneumothorax": 0.06,
    "Aortic enlargement": 0.08,
    "Pleural thickening": 0.07,
    "Pulmonary fibrosis": 0.07,
}

# VinDr-CXR: 70.71 % "No finding"; class shares = images marked by at least one reader.
VINDR_ABNORMAL_FRACTION = 0.2929


@lru_cache(maxsize=1)
def vindr_prevalence() -> dict[str, float]:
    """Per-class share of VinDr-CXR training images marked by at least one reader (shipped table)."""
    stats = vindr_class_stats(include_no_finding=False).set_index("class_name")
    return {c: round(float(stats.loc[c, "pct_images_any_reader"]) / 100.0, 4) for c in LESION_CLASSES}


@lru_cache(maxsize=1)
def vindr_relative_sizes() -> dict[str, tuple[float, float, float]]:
    """Per class (p10, median, p90) of the box side as a fraction of the image side (2500 px nominal)."""
    stats = vindr_class_stats(include_no_finding=False).set_index("class_name")
    cols = ("p10_box_side_px", "median_box_side_px", "p90_box_side_px")
    return {c: tuple(float(stats.loc[c, k]) / 2500.0 for k in cols) for c in LESION_CLASSES}


@dataclass(frozen=True)
class SynthConfig:
    """Everything that defines a simulated dataset (with the seed and split, image i is a pure function of it).

    * ``classes``: which lesion classes exist (order = ``class_names`` of the datasets).
    * ``abnormal_fraction``: share of abnormal images (default 0.5 for learnability; VinDr-CXR: 0.293).
    * ``prevalence``: per class, the share of *all* images that contain it (default:
      ``DEFAULT_PREVALENCE``, given for ``abnormal_fraction=0.5``, scaled with it). An abnormal image
      includes class c with probability ``prevalence[c] / abnormal_fraction`` (so each must be
      ``<= abnormal_fraction``); if it drew none, one class is picked in proportion to them.
      Their sum must be at least ``abnormal_fraction`` (every abnormal image has a finding).
    * ``image_size``: output side in pixels (224 in the course).
    * ``anatomy`` / ``acquisition``: strength of the random variation (0 = the bare CT view).
    * ``patients``: a preset name of :data:`PATIENT_SPLITS` (default ``"by_patient"``: five real patients,
      3 train / 1 validation / 1 test) or a mapping split -> patient ids (:mod:`.patients`): image i of a
      split is drawn from one of that split's patients (:mod:`.cohort`); ``None`` = the single legacy CT
      asset ``ct_cxr_asset.npz`` (LIDC-IDRI-0001 without bone channel; kept for comparisons).
    """

    classes: tuple[str, ...] = LESION_CLASSES
    abnormal_fraction: float = 0.5
    prevalence: tuple[tuple[str, float], ...] | dict | None = None
    image_size: int = 224
    anatomy: float = 1.0
    acquisition: float = 1.0
    max_nodules: int = 3
    size_scale: float = 1.0  # multiply every drawn lesion size (notebook 02 uses it to sweep sizes)
    patients: tuple[tuple[str, tuple[str, ...]], ...] | dict | str | None = "by_patient"

    def __post_init__(self):
        classes = tuple(self.classes)
        unknown = [c for c in classes if c not in LESION_CLASSES]
        if unknown:
            raise ValueError(f"unknown lesion class(es) {unknown}; valid classes are: {', '.join(LESION_CLASSES)}")
        if len(set(classes)) != len(classes) or not classes:
            raise ValueError(f"classes must be a non-empty list without repeats, got {list(classes)}")
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "patients", _normalise_patients(self.patients))
        a = float(self.abnormal_fraction)
        if self.prevalence is None:  # the defaults are for abnormal_fraction 0.5: scale them with it
            prev = {c: round(DEFAULT_PREVALENCE[c] * min(a, 1.0) / 0.5, 6) for c in classes}
            total = sum(prev.values())
            if 0 < total < a:  # a subset of classes: make sure abnormal images can all have a finding
                prev = {c: min(v * a / total, a) for c, v in prev.items()}
            prev = {c: min(v, a) for c, v in prev.items()}
        else:
            prev = dict(self.prevalence)
        unknown = [c for c in prev if c not in LESION_CLASSES]
        if unknown:
            raise ValueError(f"unknown lesion class(es) in prevalence {unknown}; valid classes are: {', '.join(LESION_CLASSES)}")
        extra = [c for c in prev if c not in classes]
        if extra:
            raise ValueError(f"prevalence names classes not in `classes`: {extra}")
        prev = {c: float(prev.get(c, 0.0)) for c in classes}
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"abnormal_fraction must be in [0, 1], got {a}")
        for c, p in prev.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"prevalence of {c!r} must be in [0, 1], got {p}")
            if p > a + 1e-9:
                raise ValueError(
                    f"prevalence of {c!r} ({p}) exceeds abnormal_fraction ({a}): a class cannot be "
                    "more common than abnormal images"
                )
        if a > 0 and sum(prev.values()) < a - 1e-9:
            raise ValueError(
                f"the class prevalences sum to {sum(prev.values()):.3f}, below abnormal_fraction {a}: "
                "every abnormal image needs at least one finding"
            )
        object.__setattr__(self, "prevalence", tuple(prev.items()))
        if not isinstance(self.image_size, int) or self.image_size < 32:
            raise ValueError(f"image_size must be an int >= 32, got {self.image_size!r}")
        for name in ("anatomy", "acquisition", "size_scale"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def prevalence_dict(self) -> dict[str, float]:
        return dict(self.prevalence)

    def split_patients(self, split: str) -> tuple[str, ...]:
        """The patient ids that ``split`` draws from (only with ``patients`` set)."""
        mapping = dict(self.patients or ())
        if split not in mapping:
            raise ValueError(f"the configuration's patients name no patient for split {split!r} (it has {', '.join(mapping)})")
        return mapping[split]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["classes"] = list(self.classes)
        d["prevalence"] = dict(self.prevalence)
        if self.patients is None:  # absent, so the default's dict and hash are those of before patients existed
            d.pop("patients")
        else:
            d["patients"] = {s: list(ids) for s, ids in self.patients}
        return d

    def config_hash(self) -> str:
        """Short stable hash (cache keys); with ``patients``, the patients' asset checksums enter it too."""
        payload = {"config": self.to_dict(), "asset": ASSET_SHA256}
        if self.patients is not None:
            payload["patient_assets"] = {p: asset_sha256(p) for _, ids in self.patients for p in ids}
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def vindr_calibrated(cls, **overrides) -> "SynthConfig":
        """Preset with VinDr-CXR's 70.7 % "No finding" and its per-class frequencies (any reader)."""
        kw = dict(abnormal_fraction=VINDR_ABNORMAL_FRACTION, prevalence=vindr_prevalence())
        kw.update(overrides)
        if "classes" in overrides and "prevalence" not in overrides:
            kw["prevalence"] = {c: vindr_prevalence()[c] for c in overrides["classes"]}
        return cls(**kw)

