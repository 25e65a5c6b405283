"""make_dataset: one switch for the simulator and the real datasets, its not-found messages, the root trap
and the data description of the cache keys."""

import pytest

from fixtures_realdata import check_item, make_kaggle, make_medmnist  # noqa: F401
from fixtures_realdata import folder_root, medmnist_root, physionet_root  # noqa: F401  (pytest fixtures)
from mlcak_lib.cache import source_hash
from mlcak_lib.datasets import SPLIT_SIZES
from mlcak_lib.dataswitch import (
    DATASET_NAMES,
    DatasetNotFoundError,
    data_description,
    get_splits,
    infer_dataset,
    make_dataset,
    synth_config,
)
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


# --------------------------------------------------------------------------------------------
# The root trap: a data folder given without a dataset name is never silently ignored
# --------------------------------------------------------------------------------------------

@pytest.fixture
def no_switch(monkeypatch):
    monkeypatch.delenv("MLCAK_DATASET", raising=False)
    monkeypatch.delenv("MLCAK_DATA_ROOT", raising=False)


def test_root_without_name_infers_the_layout(no_switch, tmp_path, folder_root, physionet_root):
    own = make_dataset("test", (28,), root=folder_root)
    assert isinstance(own, FolderDataset) and len(own) == 1
    vindr = make_dataset("test", (28,), root=physionet_root)
    assert isinstance(vindr, VinDrCXRDataset) and len(vindr) == 2
    kaggle = make_dataset("train", (28,), root=make_kaggle(tmp_path / "kaggle"))
    assert isinstance(kaggle, VinDrCXRDataset)
    mm = make_dataset("val", (28,), root=make_medmnist(tmp_path / "pm", "pneumoniamnist"))
    assert isinstance(mm, MedMNISTDataset) and mm.dataset_name == "pneumoniamnist"
    assert infer_dataset(folder_root) == "folder" and infer_dataset(physionet_root) == "vindr"


def _one_line_error(call):
    with pytest.raises(DatasetNotFoundError) as info:
        call()
    message = str(info.value)
    assert len(message.splitlines()) == 1 and "MLCAK_DATASET" in message and "name=" in message
    return message


def test_root_without_a_known_layout_is_a_one_line_error(no_switch, tmp_path, medmnist_root):
    empty = tmp_path / "empty"
    empty.mkdir()
    message = _one_line_error(lambda: make_dataset("test", (28,), root=empty))
    assert str(empty) in message and "no known layout" in message
    message = _one_line_error(lambda: make_dataset("test", (28,), root=tmp_path / "missing"))
    assert "no known layout" in message
    # two MedMNIST+ files in one folder: ambiguous, so the user must name one
    message = _one_line_error(lambda: make_dataset("test", (28,), root=medmnist_root))
    assert "several layouts" in message and "chestmnist" in message and "pneumoniamnist" in message


def test_the_simulator_takes_no_root(no_switch, monkeypatch, folder_root):
    with pytest.raises(ValueError, match="the simulator \\('synth'\\) reads no data folder"):
        make_dataset("test", (28,), name="synth", root=folder_root)
    monkeypatch.setenv("MLCAK_DATASET", "synth")  # a switch set to the simulator is not overruled by a root
    with pytest.raises(ValueError, match="reads no data folder"):
        make_dataset("test", (28,), root=folder_root)


def test_a_set_switch_wins_over_the_layout(monkeypatch, folder_root):
    monkeypatch.setenv("MLCAK_DATASET", "vindr")
    with pytest.raises(DatasetNotFoundError, match="VinDr-CXR not found under"):
        make_dataset("test", (28,), root=folder_root)  # the folder holds labels.csv, but vindr was asked


def test_data_description_per_dataset(monkeypatch, physionet_root):
    monkeypatch.setenv("MLCAK_DATASET", "vindr")
    monkeypatch.setenv("MLCAK_DATA_ROOT", str(physionet_root))
    real = data_description()
    assert real["dataset"] == "vindr" and real["root"] == str(physionet_root) and real["sizes"] == "all"
    assert real["adapter_code"] == source_hash("realdata", "dicom", "dataswitch")
    assert data_description(sizes={"train": 4})["sizes"] == {"train": 4}
    sim = data_description("synth", "default", sizes={"train": 4})
    assert sim["dataset"] == "synth" and sim["sizes"]["train"] == 4 and sim["sizes"]["val"] == SPLIT_SIZES["default"]["val"]
    assert sim["synth_hash"] == synth_config("default").config_hash() and "root" not in sim
    full = data_description("synth", "full")
    assert full["synth_hash"] == sim["synth_hash"]  # since issue 12 both profiles simulate the same five patients ...
    assert full["sizes"] != data_description("synth", "default")["sizes"]  # ... in different amounts
    assert data_description("synth", seed=1) != data_description("synth", seed=0)


def test_get_splits_memo_is_keyed_by_the_description():
    first = get_splits((28,), "default", 0, ("val",), {"val": 4}, dataset="synth")["val"]
    again = get_splits((56, 28), "default", 0, ("val",), {"val": 4}, dataset="synth")["val"]
    assert len(first) == 4 and again.resolutions == [28, 56]
    assert again.images[28] is first.images[28]  # one read per split and process
    other = get_splits((28,), "default", 0, ("val",), {"val": 5}, dataset="synth")["val"]
    assert len(other) == 5 and other.images[28] is not first.images[28]
    with pytest.raises(ValueError, match="holds 224-px images, but 448 px were asked"):
        get_splits((448,), "default", 0, ("val",), {"val": 4}, dataset="synth")
