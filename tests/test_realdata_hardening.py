"""Bad inputs: each gives a clear error or a counted, reported skip (policy in realdata.errors)."""

import warnings

import numpy as np
import pandas as pd
import pytest

from fixtures_realdata import cache_tmp, check_item, folder_root, physionet_root  # noqa: F401
from mlcak_lib.realdata import CorruptImageError, DataFormatError, EmptySplitError, FolderDataset, VinDrCXRDataset
from mlcak_lib.realdata.errors import DataQualityWarning
from mlcak_lib.realdata.preprocess import preprocess


def _train_and_val(root, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        return [VinDrCXRDataset(s, (28,), root, **kw) for s in ("train", "val")]


def _split_of(root, image_id):
    for ds in _train_and_val(root):
        if image_id in [r.key for r in ds.records]:
            return ds.split


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_dicom(physionet_root, cache_tmp, damage):
    path = physionet_root / "train" / "img_c.dicom"
    split = _split_of(physionet_root, "img_c")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 3000] if damage == "truncate" else b"\x00" * 50 + b"not a dicom")
    ds = VinDrCXRDataset(split, (28,), physionet_root)
    i = [r.key for r in ds.records].index("img_c")
    with pytest.raises(CorruptImageError, match="img_c.dicom"):
        ds[i]
    with pytest.warns(DataQualityWarning, match=r"1 image\(s\) skipped \(e\.g\. img_c: img_c\.dicom"):
        scanned = VinDrCXRDataset(split, (28,), physionet_root, scan=True)
    assert "img_c" not in [r.key for r in scanned.records] and scanned.skipped[0][0] == "img_c"
    # preprocess marks it; a later dataset skips it with the reason, and a rerun converts nothing
    rep = preprocess("vindr", physionet_root, progress=False)
    assert [k for k, _ in rep.failed] == ["img_c"]
    with pytest.warns(DataQualityWarning, match="img_c"):
        later = VinDrCXRDataset(split, (28,), physionet_root)
    assert later.skipped[0][0] == "img_c" and ("truncated" in later.skipped[0][1] or "not a DICOM" in later.skipped[0][1])
    again = preprocess("vindr", physionet_root, progress=False)
    assert again.converted == 0 and again.previously_failed == 1


def test_missing_image_file_is_skipped_and_counted(physionet_root):
    split = _split_of(physionet_root, "img_d")
    (physionet_root / "train" / "img_d.dicom").unlink()
    with pytest.warns(DataQualityWarning, match=r"1 image\(s\) skipped \(e\.g\. img_d: image file missing"):
        ds = VinDrCXRDataset(split, (28,), physionet_root)
    assert ds.report.skipped == [("img_d", "image file missing (img_d.dicom)")]


def test_csv_missing_columns_and_unknown_classes(physionet_root, folder_root):
    ann = physionet_root / "annotations" / "annotations_train.csv"
    df = pd.read_csv(ann)
    df.drop(columns=["x_max"]).to_csv(ann, index=False)
    with pytest.raises(DataFormatError, match="annotations_train.csv: missing column\\(s\\) x_max"):
        VinDrCXRDataset("train", (28,), physionet_root)
    df.loc[0, "class_name"] = "Dragon"
    df.to_csv(ann, index=False)
    with pytest.raises(DataFormatError, match="unknown class name\\(s\\) Dragon"):
        VinDrCXRDataset("train", (28,), physionet_root)
    with pytest.raises(DataFormatError, match="unknown class name.*Unicorn"):
        VinDrCXRDataset("test", (28,), physionet_root, classes=["Unicorn"])
    boxes = pd.read_csv(folder_root / "boxes.csv")
    boxes.loc[0, "class_name"] = "Fracture"
    boxes.to_csv(folder_root / "boxes.csv", index=False)
    with pytest.raises(DataFormatError, match="boxes CSV boxes.csv: unknown class name\\(s\\) Fracture; findings are Nodule, Effusion"):
        FolderDataset("train", (28,), folder_root)
    pd.read_csv(folder_root / "labels.csv").rename(columns={"path": "file"}).to_csv(folder_root / "labels.csv", index=False)
    with pytest.raises(DataFormatError, match="missing column\\(s\\) path; found file"):
        FolderDataset("train", (28,), folder_root)


def test_bad_label_and_split_values(folder_root):
    df = pd.read_csv(folder_root / "labels.csv")
    bad = df.copy()
    bad.loc[0, "Nodule"] = -1
    bad.to_csv(folder_root / "labels.csv", index=False)
    with pytest.raises(DataFormatError, match="column 'Nodule' must hold 0 or 1.*-1"):
        FolderDataset("train", (28,), folder_root)
    bad = df.copy()
    bad.loc[0, "split"] = "holdin"
    bad.to_csv(folder_root / "labels.csv", index=False)
    with pytest.raises(DataFormatError, match="unknown split 'holdin'"):
        FolderDataset("train", (28,), folder_root)


def test_boxes_clipped_dropped_or_raised(folder_root):
    boxes = pd.read_csv(folder_root / "boxes.csv")
    boxes.loc[0, ["x_min", "x_max"]] = [-20, 60]      # partly outside: clipped (gray.png, 90 x 70)
    boxes.loc[1, ["x_min", "x_max"]] = [500, 600]     # entirely outside: dropped
    boxes.loc[3, ["x_min", "x_max"]] = [40, 10]       # x_max < x_min: dropped
    boxes.to_csv(folder_root / "boxes.csv", index=False)
    with pytest.warns(DataQualityWarning, match=r"x_max <= x_min"):
        ds = FolderDataset("train", (28,), folder_root)
    assert ds.report.boxes_dropped == [("imgs/deep.png", "x_max <= x_min or y_max <= y_min (40, 30, 10, 60)")]
    items = {r.key: ds[i] for i, r in enumerate(ds.records)}
    for i, r in enumerate(ds.records):
        check_item(items[r.key], (28,), 2)
        ds[i]  # loading twice counts once
    assert ds.report.boxes_clipped == 1 and len(ds.report.boxes_dropped) == 2
    assert "entirely outside the 90x70 image" in ds.report.boxes_dropped[1][1]
    gray = items["imgs/gray.png"]
    assert gray["boxes"][0, 0] == 0 and gray["mlct"][0] == 1        # clipped at the left edge
    assert len(items["imgs/rgbgray.png"]["boxes"]) == 0 and items["imgs/rgbgray.png"]["mlct"][0] == 1
    assert "1 box(es) clipped" in ds.report.summary() and "2 box(es) dropped" in ds.report.summary()
    with pytest.raises(DataFormatError, match="imgs/deep.png: x_max <= x_min"):
        FolderDataset("train", (28,), folder_root, on_invalid_box="raise")
    boxes.loc[3, ["x_min", "x_max"]] = [10, 40]
    boxes.to_csv(folder_root / "boxes.csv", index=False)
    strict = FolderDataset("train", (28,), folder_root, on_invalid_box="raise")
    keys = [r.key for r in strict.records]
    strict[keys.index("imgs/gray.png")]  # clipping is not an error
    with pytest.raises(DataFormatError, match="imgs/rgbgray.png: box .* lies entirely outside the 90x70 image"):
        strict[keys.index("imgs/rgbgray.png")]


def test_nan_pixels(folder_root):
    from PIL import Image

    img = np.full((40, 40), 0.5, np.float32)
    img[5, 5] = np.nan
    Image.fromarray(img, mode="F").save(folder_root / "imgs" / "nan.tif")
    df = pd.read_csv(folder_root / "labels.csv")
    df.loc[len(df)] = {"path": "imgs/nan.tif", "split": "val", "abnormal": 0, "Nodule": 0, "Effusion": 0}
    df.to_csv(folder_root / "labels.csv", index=False)
    ds = FolderDataset("val", (28,), folder_root)
    with pytest.raises(CorruptImageError, match="nan.tif: 1 pixel\\(s\\) are NaN"):
        ds[[r.key for r in ds.records].index("imgs/nan.tif")]
    with pytest.warns(DataQualityWarning, match="NaN"):
        scanned = FolderDataset("val", (28,), folder_root, scan=True)
    assert len(scanned) == 1 and scanned.skipped == [("imgs/nan.tif", "nan.tif: 1 pixel(s) are NaN or infinite")]


def test_empty_split(folder_root, physionet_root):
    df = pd.read_csv(folder_root / "labels.csv")
    df["split"] = "train"
    df.to_csv(folder_root / "labels.csv", index=False)
    with pytest.raises(EmptySplitError, match="folder: the 'test' split has no usable images"):
        FolderDataset("test", (28,), folder_root)
    for p in (physionet_root / "test").iterdir():
        p.unlink()
    with pytest.raises(EmptySplitError, match=r"'test' split has no usable images \(2 skipped: image file missing"):
        VinDrCXRDataset("test", (28,), physionet_root)
