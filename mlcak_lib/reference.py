"""Real chest X-ray annotation statistics shipped with the course (introduced in notebook 01).

Small tables derived from the public VinDr-CXR (VinBigData challenge) training annotations by
``scripts/derive_reference_tables.py`` and listed, with checksums, in ``data_manifest.csv``:
class frequencies, box sizes at the original resolution and after resizing to 224 and 28
pixels, boxes per image, totals. They contain figures, not images. The simulator calibrates
against them; notebooks 01-02 plot them.

Cite: Nguyen HQ et al., VinDr-CXR: An open dataset of chest X-rays with radiologist's
annotations, Scientific Data 9, 429 (2022).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

DATA_DIR = Path(__file__).resolve().parent / "data"

# The label sets of the PhysioNet release (image_labels_{train,test}.csv column names).
VINDR_LOCAL_LABELS: tuple[str, ...] = (
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture",
    "Consolidation", "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung Opacity",
    "Lung cavity", "Lung cyst", "Mediastinal shift", "Nodule/Mass", "Pleural effusion",
    "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis", "Rib fracture", "Other lesion",
)
"""The 22 local findings (each marked with boxes) of VinDr-CXR."""
VINDR_GLOBAL_LABELS: tuple[str, ...] = ("COPD", "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases", "No finding")
"""The 6 global labels (impressions, no boxes) of VinDr-CXR."""

FILES = {
    "class_stats": "vindr_cxr_class_stats_derived.csv",
    "summary": "vindr_cxr_summary_derived.csv",
    "box_size_quantiles": "vindr_cxr_box_size_quantiles_derived.csv",
    "boxes_per_image": "vindr_cxr_boxes_per_image_derived.csv",
    "size_sensitivity": "vindr_cxr_size_sensitivity_derived.csv",
}


@lru_cache(maxsize=None)
def _read(key: str) -> pd.DataFrame:
    path = DATA_DIR / FILES[key]
    if not path.is_file():
        raise FileNotFoundError(
            f"{path.name} is missing from mlcak_lib/data; reinstall the course or rebuild it with "
            "`python scripts/derive_reference_tables.py`."
        )
    return pd.read_csv(path)


def vindr_class_stats(include_no_finding: bool = True) -> pd.DataFrame:
    """Per class (14 box classes of the VinBigData release, + "No finding"): frequency and box sizes.

    Columns include ``class_name``, ``label_type`` (local/global), ``n_boxes``,
    ``pct_images_any_reader``, ``pct_images_ge2_readers``, ``pct_images_3_readers``,
    ``median_box_side_px`` (original resolution), ``median_box_side_at224_px``,
    ``median_box_side_at28_px`` (assuming a 2500 px image side), ``pct_boxes_lt1px_at28``,
    ``median_box_side_rel`` (fraction of the image side), ``median_center_x_rel`` / ``_y_rel``.
    """
    frame = _read("class_stats").copy()
    if not include_no_finding:
        frame = frame[frame["class_name"] != "No finding"].reset_index(drop=True)
    return frame


def vindr_summary() -> dict[str, float | int]:
    """Totals: ``images``, ``readers_per_image``, ``pct_images_no_finding`` (70.71), ``boxes_per_abnormal_image_mean``, ..."""
    frame = _read("summary")
    out: dict[str, float | int] = {}
    for key, value in zip(frame["key"], frame["value"]):
        number = float(value)
        out[str(key)] = int(number) if number.is_integer() else number
    return out


def vindr_box_size_quantiles() -> pd.DataFrame:
    """Quantiles (0.01 ... 0.99) of box width, height and side in px, and the side at 224 and 28."""
    return _read("box_size_quantiles").copy()


def vindr_boxes_per_image() -> pd.DataFrame:
    """Distribution of boxes per image (all three readers together): ``boxes_per_image, n_images, pct``."""
    return _read("boxes_per_image").copy()


def vindr_size_sensitivity() -> pd.DataFrame:
    """How the median size and the "under 1 px at 28" share move with the assumed image side (2000/2500/3000 px)."""
    return _read("size_sensitivity").copy()
