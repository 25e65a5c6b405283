"""Build the small VinDr-CXR statistics tables shipped in ``mlcak_lib/data/`` (used from notebook 01).

Inputs: the reference tables computed from the public VinDr-CXR / VinBigData training
annotations (``train.csv``; no images), found in ``../shared/reference`` next to the repository
checkout, or in the folder given with ``--source``. Outputs (small CSVs, committed):

* ``vindr_cxr_class_stats_derived.csv``     per class: frequency, box sizes (px, at 224, at 28)
* ``vindr_cxr_summary_derived.csv``         totals (``key,value``)
* ``vindr_cxr_box_size_quantiles_derived.csv`` box side quantiles in px, at 224 and at 28
* ``vindr_cxr_boxes_per_image_derived.csv`` distribution of boxes per image
* ``vindr_cxr_size_sensitivity_derived.csv`` "under 1 px at 28" vs the assumed image side

and the matching rows (sha256, bytes) of ``data_manifest.csv``. Deterministic: running it twice
gives identical bytes. Usage::

    python scripts/derive_reference_tables.py [--source ../shared/reference] [--no-manifest]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "reference"
OUT_DIR = REPO / "mlcak_lib" / "data"
NOMINAL_SIDE_PX = 2500  # VinDr-CXR images are about 2000-3000 px; the source tables assume 2500

CITATION_VINDR = (
    "Nguyen HQ et al. VinDr-CXR: An open dataset of chest X-rays with radiologist's annotations. "
    "Scientific Data 9, 429 (2022). doi:10.1038/s41597-022-01498-w"
)
LICENSE_NOTE = (
    "aggregate figures only (no images, no per-image records), course MIT; source annotations: "
    "VinDr-CXR, PhysioNet Credentialed Health Data License 1.5.0 - cite VinDr-CXR"
)
SOURCE_NOTE = (
    "scripts/derive_reference_tables.py from statistics of the public VinDr-CXR (VinBigData "
    "challenge) training annotations train.csv (no images)"
)


def _write(frame: pd.DataFrame, name: str) -> Path:
    path = OUT_DIR / name
    frame.to_csv(path, index=False, lineterminator="\n")
    return path


def class_stats(source: Path) -> pd.DataFrame:
    raw = pd.read_csv(source / "vindr_cxr_class_stats.csv")
    n_images = int(pd.read_csv(source / "vindr_cxr_summary.csv", index_col=0)["value"]["images"])
    out = pd.DataFrame(
        {
            "class_id": raw["class_id"].astype(int),
            "class_name": raw["class_name"],
            "label_type": ["global" if name == "No finding" else "local" for name in raw["class_name"]],
            "n_boxes": raw["n_boxes"].astype(int),
            "n_images_any_reader": raw["n_images_any_rad"].astype(int),
            "pct_images_any_reader": raw["pct_images_any_rad"].round(2),
            "pct_images_ge2_readers": raw["pct_images_ge2_rads"].round(2),
            "pct_images_3_readers": (100 * raw["n_images_3_rads"] / n_images).round(2),
            "median_box_w_px": raw["median_w_px"],
            "median_box_h_px": raw["median_h_px"],
            "p10_box_side_px": raw["p10_side_px"],
            "median_box_side_px": raw["median_side_px"],
            "p90_box_side_px": raw["p90_side_px"],
            "median_box_side_rel": raw["median_rel_side_nominal2500"],
            "median_box_side_at224_px": raw["median_side_at224_px"],
            "median_box_side_at28_px": raw["median_side_at28_px"],
            "pct_boxes_lt1px_at28": raw["pct_boxes_side_lt1px_at28"],
            "pct_boxes_lt2px_at28": raw["pct_boxes_side_lt2px_at28"],
            "median_aspect_w_over_h": raw["median_aspect_w_over_h"],
            "median_center_x_rel": (raw["median_cx_px"] / NOMINAL_SIDE_PX).round(3),
            "median_center_y_rel": (raw["median_cy_px"] / NOMINAL_SIDE_PX).round(3),
            "boxes_per_reader_mean": raw["boxes_per_rad_when_present_mean"],
        }
    )
    return out


def summary(source: Path) -> pd.DataFrame:
    raw = pd.read_csv(source / "vindr_cxr_summary.csv", index_col=0)["value"]
    rows = [
        ("images", raw["images"]),
        ("readers_per_image", raw["rads_per_image"]),
        ("radiologists", raw["radiologists"]),
        ("annotation_rows", raw["rows"]),
        ("box_rows", raw["box_rows"]),
        ("images_no_finding", raw["images_all3_nofinding"]),
        ("pct_images_no_finding", raw["pct_images_nofinding"]),
        ("images_abnormal", raw["images_abnormal"]),
        ("pct_images_abnormal", raw["pct_images_abnormal"]),
        ("boxes_per_abnormal_image_mean", raw["boxes_per_abnormal_image_mean"]),
        ("boxes_per_abnormal_image_median", raw["boxes_per_abnormal_image_median"]),
        ("box_classes_in_release", 14),
        ("local_labels_physionet", 22),
        ("global_labels_physionet", 6),
        ("nominal_image_side_px", NOMINAL_SIDE_PX),
    ]
    return pd.DataFrame(rows, columns=["key", "value"])


def box_size_quantiles(source: Path) -> pd.DataFrame:
    raw = pd.read_csv(source / "vindr_cxr_box_size_quantiles_px.csv")
    return pd.DataFrame(
        {
            "quantile": raw["quantile"],
            "box_w_px": raw["w"],
            "box_h_px": raw["h"],
            "box_side_px": raw["side"],
            "box_side_at224_px": (raw["side"] * 224 / NOMINAL_SIDE_PX).round(2),
            "box_side_at28_px": (raw["side"] * 28 / NOMINAL_SIDE_PX).round(2),
        }
    )


def boxes_per_image(source: Path) -> pd.DataFrame:
    raw = pd.read_csv(source / "vindr_cxr_boxes_per_image.csv")
    return raw.rename(columns={"boxes_per_image_all_3_rads": "boxes_per_image"})


def size_sensitivity(source: Path) -> pd.DataFrame:
    return pd.read_csv(source / "vindr_cxr_size_sensitivity.csv")


TABLES = {
    # id: (builder, file name, description)
    "vindr_class_stats_derived": (class_stats, "vindr_cxr_class_stats_derived.csv",
                                  "VinDr-CXR per-class frequency and box-size statistics (14 box classes + No finding)"),
    "vindr_summary_derived": (summary, "vindr_cxr_summary_derived.csv",
                              "VinDr-CXR totals: images, readers, % No finding, boxes per abnormal image"),
    "vindr_box_size_quantiles_derived": (box_size_quantiles, "vindr_cxr_box_size_quantiles_derived.csv",
                                         "VinDr-CXR box size quantiles in px, at 224 and at 28 (2500 px nominal side)"),
    "vindr_boxes_per_image_derived": (boxes_per_image, "vindr_cxr_boxes_per_image_derived.csv",
                                      "VinDr-CXR distribution of boxes per image (all readers)"),
    "vindr_size_sensitivity_derived": (size_sensitivity, "vindr_cxr_size_sensitivity_derived.csv",
                                       "VinDr-CXR share of boxes under 1 px at 28 for assumed image sides 2000/2500/3000 px"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder with the reference CSVs")
    parser.add_argument("--no-manifest", action="store_true", help="do not update data_manifest.csv")
    args = parser.parse_args(argv)
    if not (args.source / "vindr_cxr_class_stats.csv").is_file():
        parser.error(f"reference tables not found in {args.source}; pass --source")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    from mlcak_lib.manifest import entry_for_file, upsert_entries

    entries = []
    for asset_id, (builder, name, description) in TABLES.items():
        path = _write(builder(args.source), name)
        entries.append(
            entry_for_file(
                path, REPO, id=asset_id, kind="table", description=description, source=SOURCE_NOTE,
                license=LICENSE_NOTE,
                access="derived", used_in="01_cxr_basics; 02_resolution_loss; simulator calibration",
                citation=CITATION_VINDR,
            )
        )
        print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size} bytes)")
    if not args.no_manifest:
        upsert_entries(entries, REPO / "data_manifest.csv")
        print("updated data_manifest.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
