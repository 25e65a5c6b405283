"""MedMNIST+ adapter on tiny self-written npz files."""

import hashlib
import warnings

import numpy as np
import pytest

from fixtures_realdata import check_item, make_medmnist, medmnist_root  # noqa: F401
from mlcak_lib.realdata import CHESTMNIST_CLASSES, DataFormatError, DatasetNotFoundError, EmptySplitError, MedMNISTDataset
from mlcak_lib.realdata.errors import DataQualityWarning
from mlcak_lib.resize import area_resize


def test_chestmnist_items_follow_the_contract(medmnist_root):
    ds = MedMNISTDataset("train", (28, 32), medmnist_root, name="chestmnist")
    assert ds.image_size == 64 and ds.class_names == CHESTMNIST_CLASSES and not ds.has_boxes
    with np.load(medmnist_root / "chestmnist_64.npz") as z:
        labels = z["train_labels"]
    assert len(ds) == len(labels) == 6
    for i in range(len(ds)):
        item = ds[i]
        check_item(item, (28, 32), 14, image_size=64, index=i)
        assert item["boxes"].shape == (0, 4)
        assert item["mlct"].numpy().tolist() == labels[i].astype(np.float32).tolist()
        assert int(item["mcct"]) == int(labels[i].any())
        # low resolutions come from the largest file with area_resize
        assert np.allclose(item["lowres"][28][0].numpy(), area_resize(item["image"][0].numpy(), 28), atol=1e-6)
    assert int(ds[0]["mcct"]) == 0
    assert len(MedMNISTDataset("val", (28,), medmnist_root)) == 3
    assert len(MedMNISTDataset("test", (28,), medmnist_root, size=2)) == 2


def test_pneumoniamnist_binary(medmnist_root):
    ds = MedMNISTDataset("test", (28,), medmnist_root, name="pneumoniamnist", image_size=28)
    assert ds.class_names == ("Pneumonia",) and ds.image_size == 28
    for i in range(len(ds)):
        item = ds[i]
        check_item(item, (28,), 1, image_size=28)
        assert int(item["mcct"]) == int(item["mlct"][0])


def test_missing_size_and_bad_resolution(medmnist_root):
    with pytest.raises(DatasetNotFoundError, match=r"chestmnist_224\.npz.*zenodo"):
        MedMNISTDataset("train", (28,), medmnist_root, image_size=224)
    with pytest.raises(ValueError, match="resolutions must lie in 1..64"):
        MedMNISTDataset("train", (128,), medmnist_root)


def test_bad_npz_files(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    np.savez(root / "chestmnist.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataFormatError, match="missing array.*train_labels"):
        MedMNISTDataset("train", (28,), root)
    (root / "chestmnist.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataFormatError, match="truncated or corrupt"):
        MedMNISTDataset("train", (28,), root)
    np.savez(root / "chestmnist.npz", train_images=np.zeros((2, 28, 28), np.uint8),
             train_labels=np.full((2, 14), 2, np.uint8))
    with pytest.raises(DataFormatError, match="0 or 1"):
        MedMNISTDataset("train", (28,), root)
    np.savez(root / "chestmnist.npz", test_images=np.zeros((0, 28, 28), np.uint8), test_labels=np.zeros((0, 14)))
    with pytest.raises(EmptySplitError, match="'test' split"):
        MedMNISTDataset("test", (28,), root)


def test_nan_images_are_skipped_and_reported(tmp_path):
    root = tmp_path / "nan"
    root.mkdir()
    img = np.full((3, 28, 28), 0.5, np.float32)
    img[1, 3, 3] = np.nan
    np.savez(root / "pneumoniamnist.npz", train_images=img, train_labels=np.array([[0], [1], [1]]))
    with pytest.warns(DataQualityWarning, match=r"1 image\(s\) skipped.*NaN"):
        ds = MedMNISTDataset("train", (28,), root, name="pneumoniamnist")
    assert len(ds) == 2 and ds.skipped == [("train[1]", "NaN or infinite pixels")]
    check_item(ds[1], (28,), 1, image_size=28)


def test_manifest_checksum(medmnist_root):
    from mlcak_lib.manifest import ManifestError

    path = medmnist_root / "chestmnist_64.npz"
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MedMNISTDataset("val", (28,), medmnist_root, expected={path.name: (good, path.stat().st_size)})
    with pytest.raises(ManifestError, match="expected sha256 0+.*download chestmnist_64.npz again"):
        MedMNISTDataset("val", (28,), medmnist_root, expected={path.name: ("0" * 64, path.stat().st_size)})
