"""make_dataset: one switch for the simulator and the real datasets, and its not-found messages."""

import pytest

from fixtures_realdata import check_item, folder_root, medmnist_root, physionet_root  # noqa: F401
from mlcak_lib.dataswitch import DATASET_NAMES, DatasetNotFoundError, make_dataset
from mlcak_lib.realdata import FolderDataset, MedMNISTDataset, VinDrCXRDataset


def test_switch_by_environment_and_argument(monkeypatch, medmnist_root, physionet_root):
    monkeypatch.setenv("MLCAK_DATASET", "chestmnist")
    monkeypatch.setenv("MLCAK_DATA_ROOT", str(medmnist_root))
    ds = make_dataset("val", (28,))
    assert isinstance(ds, MedMNISTDataset) and ds.dataset_name == "chestmnist"
    check_item(ds[0], (28,), 14, image_size=64)
    pn = make_dataset("val", (28,), name="PneumoniaMNIST")  # argument wins, case-insensitive
    assert isinstance(pn, MedMNISTDataset) and pn.class_names == ("Pneumonia",)
    vd = make_dataset("test", (28, 56), name="vindr", root=physionet_root, min_readers=2)
    assert isinstance(vd, VinDrCXRDataset)
    check_item(vd[0], (28, 56), 14)
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*synth, vindr"):
        make_dataset("train", name="mnist")


def test_switch_folder(monkeypatch, folder_root):
    monkeypatch.setenv("MLCAK_DATASET", "folder")
    ds = make_dataset("test", (28,), root=folder_root)
    assert isinstance(ds, FolderDataset) and len(ds) == 1


def test_switch_synth_delegates():
    datasets = pytest.importorskip("mlcak_lib.datasets")
    ds = make_dataset("val", (28,), name="synth", size=2)
    assert isinstance(ds, datasets.SynthCXRDataset)
    assert set(ds[0]) >= {"image", "lowres", "mlct", "mcct", "boxes", "box_labels", "box_mm", "index"}


@pytest.mark.parametrize("name, needles", [
    ("vindr", ["VinDr-CXR not found under", "annotations/annotations_train.csv", "train.csv",
               "https://physionet.org/content/vindr-cxr/", "kaggle.com/competitions/vinbigdata", "MLCAK_DATA_ROOT"]),
    ("chestmnist", ["MedMNIST+ chestmnist not found under", "chestmnist.npz", "chestmnist_224.npz",
                    "https://zenodo.org/records/10519652", "python -m medmnist download"]),
    ("pneumoniamnist", ["pneumoniamnist_64.npz", "pip install medmnist"]),
    ("folder", ["no labels CSV at", "labels.csv", "path", "boxes.csv", "docs/own_data.md"]),
])
def test_not_found_messages(tmp_path, monkeypatch, name, needles):
    monkeypatch.setenv("MLCAK_DATA_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetNotFoundError) as info:
        make_dataset("train", (28,), name=name)
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message
    for needle in needles:
        assert needle in message, needle
    assert "Errno" not in message and info.value.__cause__ is None and info.value.__suppress_context__ is False
    assert isinstance(info.value, FileNotFoundError)


def test_vindr_missing_image_folder(physionet_root):
    import shutil

    shutil.rmtree(physionet_root / "test")
    with pytest.raises(DatasetNotFoundError, match="image folder .*test is missing"):
        make_dataset("test", name="vindr", root=physionet_root)


def test_names_listed():
    assert DATASET_NAMES == ("synth", "vindr", "chestmnist", "pneumoniamnist", "folder")
