"""Simulated 3-D chest CT studies for notebook 08 (issue 17): real patient volumes with 3-D lesions inserted.

**Volumes** (``mlcak_lib/data/ct_volumes/<patient_id>.npz``, ``scripts/build_ct_volumes.py``): the radiograph
simulator's five patients, prepared by their 2-D assets' pipeline (real tumours masked out), on one grid of
64^3 voxels of 5.3125 mm in LAS order (axis 0 towards the patient's left, 1 anterior, 2 superior): int16 HU
blurred to one 4 mm resolution and a uint8 bit field (:data:`LABEL_BITS`). :func:`load_volume` checks each
file against ``data_manifest.csv``.

**One lesion model.** :func:`simulate_study` draws a study's classes with ``SynthCXR.sample_findings`` (the
simulator's prevalences over :data:`CT_CLASSES`) and each lesion's count, size, kind, density and place with
the radiograph models' own samplers and constants (``sample_size`` over VinDr-CXR's box sizes,
``NODULE_KIND_P``, ``LOBE_P``, ``CTR_CARDIOMEGALY``, ``DMU_SOFT``, ``DMU_CALCIUM``). A 2-D model adds the
projection of a 3-D shape; here the shape is written into the volume: a nodule adds ``1000 dmu / MU_WATER``
HU inside its sphere, so its AP line integral is the 2-D model's ``2 sqrt(r^2 - d^2) dmu``. Course's choices:

* Places are drawn in 3-D (in the lungs, a lobe, the base). Lesions get partial volume (sub-sampled voxels)
  and one [1, 2, 1] / 4 pass per axis (the volume's 4 mm). Masks: added HU >= 15 % of the peak (as
  ``lung_opacity``), fluid or air filling half a voxel, the enlarged heart. Densities are the 2-D models'
  (nodules 1.4-2x soft tissue, +400..+900 HU); consolidation fills 60-100 % of the airspaces; spicules
  (sub-millimetre) are below the grid. Effusion: the erect fluid level with its meniscus; cardiomegaly: the
  heart scaled about its base to the drawn cardiothoracic ratio (on the AP projection), replacing lung;
  pneumothorax: an apical-lateral rim of air. Normal studies keep the CT's own heart (CTR 0.50-0.57 here).
* Aortic enlargement, pleural thickening and fibrosis are not inserted (their 2-D models warp or texture a film).
* ``zone``: the centre's third of the lungs' height (as :mod:`.films` reads a film), a lobe for lung opacity.

The lesion models live in :mod:`.lesions3d`. Coordinates are voxel edges (voxel k spans [k, k+1]), millimetres
from the grid's corner. :func:`project_box` gives a lesion's box on :func:`ap_projection`, in the radiograph
simulator's convention (row 0 superior, column 0 the patient's right). Split studies by patient
(``synth.config.PATIENT_SPLITS``) to evaluate on unseen patients.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..manifest import ManifestError, read_manifest, verify_file
from ..synth.asset import AssetError
from ..synth.config import SynthConfig
from ..synth.generator import SynthCXR
from ..synth.lesions.canvas import MU_WATER
from ..synth.patients import PATIENTS
from .films import _merge_bilateral
from .lesions3d import (
    BODY_BIT,
    CT_CLASSES,
    HEART_BIT,
    INSERT_ORDER,
    LABEL_BITS,
    MODELS,
    CTLesion,
    Work,
)
from .reports import SPECS, Finding, Findings, with_standard_negatives

__all__ = ["BODY_BIT", "CT_CLASSES", "HEART_BIT", "LABEL_BITS", "CTLesion", "CTStudy", "PatientVolume", "ap_projection",
           "load_volume", "normalise", "project_box", "simulate_from_volume", "simulate_study", "verify_volume",
           "volume_sha256s"]

VOLUME_DIR = Path(__file__).resolve().parent.parent / "data" / "ct_volumes"
REBUILD_HINT = ("rebuild it with `python scripts/build_ct_volumes.py CT_FOLDER` (the CT sources are listed in "
                "data_manifest.csv), or restore it with `git checkout -- mlcak_lib/data/ct_volumes/`")
STUDY_STREAM = 1_770_017  # extra entropy word: CT studies have a stream of their own


@dataclass(frozen=True)
class PatientVolume:
    """One patient's CT on the common grid: ``hu`` float32 (x, y, z) LAS, ``labels`` uint8 bit field
    (bit k = :data:`LABEL_BITS` [k]), ``voxel_mm``, ``meta`` (source, licence, blur, grid, masked tumours)."""

    patient_id: str
    hu: np.ndarray
    labels: np.ndarray
    voxel_mm: float
    meta: dict = field(default_factory=dict)

    def mask(self, *names: str) -> np.ndarray:
        """Union of the named label bits (bool)."""
        bits = sum(1 << LABEL_BITS.index(n) for n in names)
        return (self.labels & bits) > 0

    @property
    def lungs(self) -> np.ndarray:
        return (self.labels & 0b11111) > 0

    @property
    def heart(self) -> np.ndarray:
        return ((self.labels >> HEART_BIT) & 1) > 0


def volume_path(patient_id: str) -> Path:
    if patient_id not in PATIENTS:
        raise KeyError(f"unknown patient {patient_id!r}; known: {', '.join(PATIENTS)}")
    return VOLUME_DIR / f"{patient_id}.npz"


def verify_volume(patient_id: str) -> Path:
    """Check the volume's size and sha256 against its ``ct_volume_<id>`` manifest row; ``AssetError`` says how to fix it."""
    path, asset_id = volume_path(patient_id), f"ct_volume_{patient_id}"
    entry = next((e for e in read_manifest() if e.id == asset_id), None)
    if entry is None:
        raise AssetError(f"asset {asset_id!r} has no row in data_manifest.csv; {REBUILD_HINT}")
    try:
        return verify_file(path, entry.sha256, entry.bytes, asset_id, fix=REBUILD_HINT)
    except ManifestError as err:
        raise AssetError(str(err)) from None


def volume_sha256s() -> dict[str, str]:
    """Each patient volume's sha256 from ``data_manifest.csv`` (for a cache key of models trained on the studies)."""
    rows = {e.id: e.sha256 for e in read_manifest()}
    return {pid: rows.get(f"ct_volume_{pid}", "") for pid in PATIENTS}


@lru_cache(maxsize=8)
def _load(path: Path, patient_id: str, verify: bool) -> PatientVolume:
    if verify:
        verify_volume(patient_id)
    with np.load(path, allow_pickle=False) as z:
        hu, labels = z["hu"].astype(np.float32), z["labels"]
        meta, mm = json.loads(str(z["meta_json"].reshape(-1)[0])), float(z["voxel_mm"].reshape(-1)[0])
    hu.setflags(write=False)
    labels.setflags(write=False)
    return PatientVolume(patient_id, hu, labels, mm, meta)


def load_volume(patient_id: str, verify: bool = True) -> PatientVolume:
    """One patient's volume (cached, arrays read-only), checked against ``data_manifest.csv`` unless ``verify=False``."""
    return _load(volume_path(patient_id), patient_id, verify)


@dataclass(frozen=True)
class CTStudy:
    """A simulated CT study: ``volume`` float32 HU (x, y, z) LAS, ``labels`` (the patient's bit field after the
    lesions: an enlarged heart, lung displaced by fluid or air), ``lesions``, ``patient_id``, ``seed``."""

    patient_id: str
    seed: int
    volume: np.ndarray
    labels: np.ndarray
    voxel_mm: float
    lesions: tuple[CTLesion, ...]

    @property
    def findings(self) -> Findings:
        """The report content: one finding per lesion (bilateral effusions merged), the standard negatives."""
        per: dict[str, list[Finding]] = {}
        for lesion in self.lesions:
            per.setdefault(lesion.label, []).append(lesion.finding())
        out: list[Finding] = []
        for label, items in per.items():
            if SPECS[label].size_mm is None:
                items = sorted(set(items), key=Finding.sort_key)
                items = _merge_bilateral(items) if "bilateral" in SPECS[label].sides else items
            out.extend(items)
        return with_standard_negatives(out)


def normalise(volume: np.ndarray, lo: float = -1000.0, hi: float = 400.0) -> np.ndarray:
    """HU to [0, 1] through a fixed window (a network's input)."""
    return np.clip((np.asarray(volume, np.float32) - lo) / (hi - lo), 0.0, 1.0)


def ap_projection(volume: np.ndarray, voxel_mm: float) -> np.ndarray:
    """Parallel-beam AP line integral (mu = 0.02 (1 + HU/1000) /mm) in the radiograph simulator's orientation:
    ``[z, x]`` image, row 0 superior, column 0 the patient's right."""
    mu = MU_WATER * (1.0 + np.clip(volume, -1000.0, 3000.0) / 1000.0)
    return (mu.sum(axis=1) * voxel_mm).T[::-1].astype(np.float32)


def project_box(lesion: CTLesion, mm: bool = False) -> np.ndarray:
    """The lesion's box ``(x0, y0, x1, y1)`` on :func:`ap_projection` (pixel edges, one pixel per voxel; in mm
    from the image's corner with ``mm=True``): columns from its left-right extent, rows from its superior end."""
    x0, _, z0, x1, _, z1 = lesion.box
    nz = lesion.grid[2]
    box = np.array([x0, nz - z1, x1, nz - z0], np.float32)
    return box * lesion.voxel_mm if mm else box


def study_rng(patient_id: str, seed: int) -> np.random.Generator:
    """The random stream of one study: a pure function of (patient, seed)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(patient_id.encode()), STUDY_STREAM]))


def simulate_from_volume(pv: PatientVolume, seed: int, findings: list[str] | None = None,
                         abnormal_fraction: float = 0.5, size_scale: float = 1.0, max_nodules: int = 3) -> CTStudy:
    """A study of ``pv``: classes drawn as the radiograph simulator draws them (``SynthCXR.sample_findings``
    over :data:`CT_CLASSES`) unless ``findings`` forces them, then each class's 3-D lesion model."""
    rng = study_rng(pv.patient_id, seed)
    cfg = SynthConfig(classes=CT_CLASSES, abnormal_fraction=abnormal_fraction, size_scale=size_scale)
    drawn = _sampler(cfg).sample_findings(rng)  # always consume the same random numbers
    if findings is not None:
        unknown = [f for f in findings if f not in CT_CLASSES]
        if unknown:
            raise ValueError(f"class(es) {unknown} are not inserted in CT studies; choose from {', '.join(CT_CLASSES)}")
        drawn = list(findings)
    w = Work(pv.hu, pv.labels, pv.voxel_mm, size_scale, max_nodules)
    lesions = [les for name in INSERT_ORDER if name in drawn for les in MODELS[name](w, rng)]
    lesions.sort(key=lambda les: CT_CLASSES.index(les.label))
    return CTStudy(pv.patient_id, int(seed), w.hu, w.labels, pv.voxel_mm, tuple(lesions))


@lru_cache(maxsize=8)
def _sampler(cfg: SynthConfig) -> SynthCXR:
    return SynthCXR(cfg)


def simulate_study(patient_id: str, seed: int, findings: list[str] | None = None, **kwargs) -> CTStudy:
    """Study ``seed`` of patient ``patient_id`` (a pure function of both and ``kwargs``; see
    :func:`simulate_from_volume` for them)."""
    return simulate_from_volume(load_volume(patient_id), seed, findings, **kwargs)
