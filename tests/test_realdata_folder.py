"""Folder-of-images adapter on self-written PNG / JPEG / DICOM files and CSVs."""

import numpy as np
import pandas as pd
import pytest
import torch

from fixtures_realdata import box_contrast, check_item, folder_root  # noqa: F401
from mlcak_lib.realdata import CorruptImageError, FolderDataset
from mlcak_lib.realdata.errors import DataQualityWarning


def test_folder_items_and_boxes(folder_root):
    sizes = {}
    for split in ("train", "val", "test"):
        ds = FolderDataset(split, (28, 112), folder_root)
        assert ds.class_names == ("Nodule", "Effusion") and ds.has_boxes and ds.skipped == []
        sizes[split] = len(ds)
        for i, rec in enumerate(ds.records):
            item = ds[i]
            check_item(item, (28, 112), 2, index=i)
            for j in range(len(item["boxes"])):
                inside, around = box_contrast(item, j, margin=4)
                assert inside > 0.8 and around < 0.2, rec.key
            if rec.key.endswith(".dcm"):
                assert torch.isfinite(item["box_mm"]).all()  # DICOM spacing -> mm
            else:
                assert torch.isnan(item["box_mm"]).all()
    assert sizes == {"train": 4, "val": 1, "test": 1}
    train = {r.key: FolderDataset("train", (28,), folder_root)[i]
             for i, r in enumerate(FolderDataset("train", (28,), folder_root).records)}
    assert int(train["imgs/normal1.png"]["mcct"]) == 0 and train["imgs/normal1.png"]["mlct"].sum() == 0
    # an RGB file storing gray gives the same image as the gray PNG
    assert torch.allclose(train["imgs/gray.png"]["image"], train["imgs/rgbgray.png"]["image"])


def test_seeded_split_without_split_column(folder_root):
    df = pd.read_csv(folder_root / "labels.csv").drop(columns="split")
    df.to_csv(folder_root / "nosplit.csv", index=False)
    keys = [{r.key for r in FolderDataset(s, (28,), folder_root, csv="nosplit.csv", fractions=(0.5, 0.25, 0.25)).records}
            for s in ("train", "val", "test")]
    assert sum(map(len, keys)) == 6 and not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    again = {r.key for r in FolderDataset("val", (28,), folder_root, csv="nosplit.csv", fractions=(0.5, 0.25, 0.25)).records}
    assert again == keys[1]


def test_labels_column_and_global_only(folder_root):
    (folder_root / "boxes.csv").rename(folder_root / "boxes_off.csv")
    pd.DataFrame({"path": ["imgs/gray.png", "imgs/normal1.png"], "split": ["train", "train"],
                  "labels": ["Nodule|Effusion", "No Finding"]}).to_csv(folder_root / "nih.csv", index=False)
    ds = FolderDataset("train", (28,), folder_root, csv="nih.csv")
    assert ds.class_names == ("Effusion", "Nodule") and not ds.has_boxes
    assert ds[0]["mlct"].tolist() == [1.0, 1.0] and int(ds[0]["mcct"]) == 1
    assert ds[1]["mlct"].tolist() == [0.0, 0.0] and int(ds[1]["mcct"]) == 0
    pd.DataFrame({"path": ["imgs/gray.png", "imgs/normal1.png"], "split": ["test", "test"],
                  "normal": [0, 1]}).to_csv(folder_root / "global.csv", index=False)
    g = FolderDataset("test", (28,), folder_root, csv="global.csv")
    assert g.class_names == ("Abnormal",) and not g.has_boxes
    assert [int(g[i]["mcct"]) for i in range(2)] == [1, 0] and g[0]["mlct"].tolist() == [1.0]
    check_item(g[1], (28,), 1)


def test_colour_image_is_an_error_or_a_reported_skip(folder_root):
    from PIL import Image

    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb, mode="RGB").save(folder_root / "imgs" / "gray.png")  # now genuinely colour
    ds = FolderDataset("train", (28,), folder_root)
    i = [r.key for r in ds.records].index("imgs/gray.png")
    with pytest.raises(CorruptImageError, match="gray.png: a colour image"):
        ds[i]
    with pytest.warns(DataQualityWarning, match=r"1 image\(s\) skipped"):
        scanned = FolderDataset("train", (28,), folder_root, scan=True)
    assert len(scanned) == 3 and scanned.skipped[0][0] == "imgs/gray.png" and "colour" in scanned.skipped[0][1]
