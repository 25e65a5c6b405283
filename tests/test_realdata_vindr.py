"""VinDr-CXR adapter on tiny self-written PhysioNet and Kaggle layouts."""

import math
import warnings

import numpy as np
import pytest
import torch

from fixtures_realdata import (  # noqa: F401  (pytest fixtures)
    IMAGES, TEST_IMAGES, box_contrast, cache_tmp, check_item, kaggle_root, make_kaggle, physionet_root,
)
from mlcak_lib.realdata import VINBIGDATA_CLASSES, VinDrCXRDataset
from mlcak_lib.realdata.preprocess import main as preprocess_main, preprocess
from mlcak_lib.realdata.vindr import cluster_boxes, fuse_image

NODULE, CARDIO, EFFUSION, AORTIC, PTX = (VINBIGDATA_CLASSES.index(n) for n in (
    "Nodule/Mass", "Cardiomegaly", "Pleural effusion", "Aortic enlargement", "Pneumothorax"))


def by_key(ds):
    return {rec.key: ds[i] for i, rec in enumerate(ds.records)}


def test_physionet_splits_contract_and_box_scaling(physionet_root):
    splits = {s: VinDrCXRDataset(s, (28, 56), physionet_root) for s in ("train", "val", "test")}
    keys = {s: {r.key for r in ds.records} for s, ds in splits.items()}
    assert keys["train"] | keys["val"] == set(IMAGES) and not keys["train"] & keys["val"]
    assert keys["test"] == set(TEST_IMAGES) and len(keys["val"]) == 1
    again = VinDrCXRDataset("val", (28,), physionet_root)
    assert [r.key for r in again.records] == [r.key for r in splits["val"].records]  # deterministic
    n_boxes = 0
    for s, ds in splits.items():
        assert ds.layout == "physionet" and ds.class_names == VINBIGDATA_CLASSES and ds.skipped == []
        for i in range(len(ds)):
            item = ds[i]
            check_item(item, (28, 56), 14, index=i)
            for j in range(len(item["boxes"])):  # every fused box lies on the bright square
                inside, around = box_contrast(item, j)
                assert inside > 0.95 and around < 0.05
                n_boxes += 1
    assert n_boxes == 4


def test_physionet_fusion_rule(physionet_root):
    items = {}
    for s in ("train", "val"):
        items.update(by_key(VinDrCXRDataset(s, (28,), physionet_root)))
    a = items["img_a"]
    assert a["mlct"][NODULE] == 1 and a["mlct"][AORTIC] == 0 and int(a["mcct"]) == 1  # aortic: 1 reader only
    assert a["boxes"].shape == (1, 4) and a["box_labels"].tolist() == [NODULE]  # R3's far nodule box: alone
    # 20 x 20 px square, spacing (0.5 row, 0.4 col) mm -> longer side 10 mm
    assert a["box_mm"].tolist() == pytest.approx([10.0], abs=1e-3)
    assert int(items["img_c"]["mcct"]) == 0 and items["img_c"]["mlct"].sum() == 0
    assert int(items["img_d"]["mcct"]) == 0 and items["img_d"]["mlct"].sum() == 0  # 1 of 3 readers
    assert items["img_e"]["mlct"].nonzero().flatten().tolist() == [CARDIO]  # Rib fracture not in the 14
    assert int(items["img_f"]["mcct"]) == 1 and items["img_f"]["mlct"].sum() == 0  # global label, 2 readers
    b = items["img_b"]
    assert b["box_labels"].tolist() == [EFFUSION]
    # mean of the 3 readers' boxes (b, b-1, b+2) -> b + 1/3, scaled 224/96 (square image, no padding)
    expected = (np.array(IMAGES["img_b"][3], float) + 1 / 3) * 224 / 96
    assert b["boxes"][0].numpy() == pytest.approx(expected, abs=1e-3)
    test = by_key(VinDrCXRDataset("test", (28,), physionet_root))
    assert int(test["tst_a"]["mcct"]) == 1 and test["tst_a"]["box_labels"].tolist() == [NODULE]  # consensus
    assert int(test["tst_b"]["mcct"]) == 0


def test_min_readers_and_box_fusion_options(physionet_root):
    strict = {}
    loose = {}
    for s in ("train", "val"):
        strict.update(by_key(VinDrCXRDataset(s, (28,), physionet_root, min_readers=3)))
        loose.update(by_key(VinDrCXRDataset(s, (28,), physionet_root, min_readers=1, box_fusion="all")))
    assert strict["img_a"]["mlct"][NODULE] == 1 and len(strict["img_a"]["boxes"]) == 0  # only 2 boxes agree
    assert strict["img_e"]["mlct"].sum() == 0 and int(strict["img_e"]["mcct"]) == 0
    assert loose["img_d"]["mlct"][PTX] == 1 and int(loose["img_d"]["mcct"]) == 1
    assert loose["img_a"]["mlct"][AORTIC] == 1 and len(loose["img_a"]["boxes"]) == 4


def test_class_subset_and_mapping(physionet_root):
    ds = VinDrCXRDataset("train", (28,), physionet_root,
                         classes={"Nodule/Mass": "Nodule", "Cardiomegaly": "Heart", "Rib fracture": "Fracture"})
    assert ds.class_names == ("Nodule", "Heart", "Fracture")
    e = by_key(ds)["img_e"]
    check_item(e, (28,), 3)
    assert e["mlct"].tolist() == [0, 1, 1] and sorted(e["box_labels"].tolist()) == [1, 2]
    sub = VinDrCXRDataset("train", (28,), physionet_root, classes=["Cardiomegaly"])
    assert sub.class_names == ("Cardiomegaly",) and by_key(sub)["img_a"]["mlct"].tolist() == [0.0]


def test_fuse_image_and_cluster_units():
    t = {"nodule/mass": 0, "cardiomegaly": 1}
    box = np.array([10.0, 10, 30, 30])
    rows = [("R1", "nodule/mass", box), ("R2", "nodule/mass", box + 2), ("R3", "no finding", None),
            ("R1", "cardiomegaly", box), ("R2", "nodule/mass", box + 100)]
    mlct, mcct, boxes, labels = fuse_image(rows, [], t, 2)
    assert mlct.tolist() == [1, 0] and mcct == 1 and labels.tolist() == [0]
    assert boxes[0] == pytest.approx(box + 1)
    # one reader never counts twice, and reader ids never leave the function
    assert cluster_boxes([("R1", box), ("R1", box)], 2) == []
    assert len(cluster_boxes([("R1", box), ("R2", box + 1), ("R3", box + 50)], 2)) == 1
    assert fuse_image([], [], t, 2)[1] == 0


def test_kaggle_dicom_layout(kaggle_root):
    keys = set()
    for s in ("train", "val", "test"):
        ds = VinDrCXRDataset(s, (28,), kaggle_root)
        assert ds.layout == "kaggle" and len(ds) >= 1
        keys |= {r.key for r in ds.records}
        for i in range(len(ds)):
            item = ds[i]
            check_item(item, (28,), 14)
            for j in range(len(item["boxes"])):
                assert box_contrast(item, j)[0] > 0.95
    assert keys == set(IMAGES)
    items = {}
    for s in ("train", "val", "test"):
        items.update(by_key(VinDrCXRDataset(s, (28,), kaggle_root)))
    assert int(items["img_f"]["mcct"]) == 0  # no image_labels table in the Kaggle layout


def test_kaggle_png_with_size_table(tmp_path):
    root = make_kaggle(tmp_path / "png", png_size=48)
    items = {}
    for s in ("train", "val", "test"):
        items.update(by_key(VinDrCXRDataset(s, (28,), root)))
    a = items["img_a"]
    check_item(a, (28,), 14)
    inside, around = box_contrast(a, 0, margin=5)
    assert inside > 0.8 and around < 0.3
    assert torch.isnan(a["box_mm"]).all()  # PNG: no pixel spacing


@pytest.mark.parametrize("square", ["crop", "stretch"])
def test_square_modes(physionet_root, square):
    ds = VinDrCXRDataset("train", (28,), physionet_root, square=square)
    a = by_key(ds)["img_a"]
    check_item(a, (28,), 14)
    assert box_contrast(a, 0)[0] > 0.95


def test_preprocess_resume_and_cache(physionet_root, cache_tmp, capsys):
    first = preprocess("vindr", physionet_root, sizes=(224,), progress=False)
    assert first.converted == len(IMAGES) + len(TEST_IMAGES) and first.failed == []
    second = preprocess("vindr", physionet_root, sizes=(224,), progress=False)
    assert second.converted == 0 and second.already_done == first.converted
    assert not list(cache_tmp.rglob("*.tmp")) and len(list(cache_tmp.rglob("*.npz"))) == first.converted
    cached = VinDrCXRDataset("train", (28,), physionet_root)
    direct = VinDrCXRDataset("train", (28,), physionet_root, use_cache=False)
    for i in range(len(cached)):
        x, y = cached[i], direct[i]
        assert torch.allclose(x["image"], y["image"], atol=1e-4) and torch.equal(x["boxes"], y["boxes"])
        assert torch.equal(x["box_mm"], y["box_mm"]) or (torch.isnan(x["box_mm"]).all() and torch.isnan(y["box_mm"]).all())
    assert preprocess_main(["--dataset", "vindr", "--root", str(physionet_root), "--no-progress"]) == 0
    assert "converted 0" in capsys.readouterr().out


def test_no_reader_identity_in_items(physionet_root):
    item = VinDrCXRDataset("train", (28,), physionet_root)[0]
    assert not any("rad" in k for k in item)
    assert math.isfinite(float(item["image"].mean()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VinDrCXRDataset("train", (28,), physionet_root)  # a clean dataset warns about nothing


def test_synth_classes_and_token_map(physionet_root):
    synth_config = pytest.importorskip("mlcak_lib.synth.config")
    ds = VinDrCXRDataset("train", (28,), physionet_root, classes="synth", token_grid=14)
    assert ds.class_names == tuple(synth_config.SynthConfig().classes)
    for i in range(len(ds)):
        item = ds[i]
        tmap = item.pop("token_map")
        check_item(item, (28,), len(ds.class_names))
        assert tmap.shape == (len(ds.class_names), 14, 14)
        for label in item["box_labels"].tolist():
            assert tmap[label].sum() >= 1
