"""The recipes (mlcak_lib.recipes): which model is trained on which data under which cache key.

Regression: a dataset named in the call wins over the ``MLCAK_DATASET`` switch everywhere (the teacher's
classes, its data, its cache key and its file name), and cached files carry the dataset in their names.
"""

import json

import pytest
import torch

from fixtures_realdata import make_physionet
from mlcak_lib import dataswitch, recipes
from mlcak_lib.cache import CacheMiss
from mlcak_lib.realdata.vindr import VINBIGDATA_CLASSES
from mlcak_lib.synth import SynthConfig
from mlcak_lib.train import TrainConfig

SIZES = {"train": 32, "val": 24, "test": 24}
ONE_EPOCH = TrainConfig(epochs=1, batch_size=16, patience=None)
SIM_CLASSES = list(SynthConfig().classes)


@pytest.fixture
def vindr_switch(tmp_path, monkeypatch):
    """``MLCAK_DATASET=vindr`` on fixture VinDr-CXR data, and an empty model cache; returns the cache folder."""
    root = make_physionet(tmp_path / "vindr")
    cache = tmp_path / "cache"
    monkeypatch.setenv("MLCAK_DATASET", "vindr")
    monkeypatch.setenv("MLCAK_DATA_ROOT", str(root))
    monkeypatch.setenv("MLCAK_CACHE_DIR", str(cache))
    dataswitch._SPLIT_MEMO.clear()
    yield cache
    dataswitch._SPLIT_MEMO.clear()


def _checkpoint(cache, info):
    return torch.load(cache / info["path"], map_location="cpu", weights_only=True)


def test_switch_really_selects_vindr(vindr_switch):
    """The fixture's switch is live: without a name, every helper sees VinDr-CXR."""
    assert dataswitch.resolve_dataset() == "vindr"
    assert dataswitch.dataset_class_names() == list(VINBIGDATA_CLASSES)
    assert dataswitch.data_description()["dataset"] == "vindr"


def test_named_dataset_wins_over_the_switch(vindr_switch):
    cache = vindr_switch
    assert SIM_CLASSES != list(VINBIGDATA_CLASSES)[: len(SIM_CLASSES)]  # the two class lists tell the data apart
    desc = dataswitch.data_description("synth", "default", 0, SIZES)
    assert desc["dataset"] == "synth" and "synth_hash" in desc and "root" not in desc
    assert dataswitch.dataset_class_names("synth") == SIM_CLASSES
    assert dataswitch.dataset_has_boxes("synth")
    splits = dataswitch.get_splits((28,), "default", 0, ("val",), SIZES, dataset="synth")
    assert splits["val"].class_names == SIM_CLASSES and len(splits["val"]) == SIZES["val"]

    teacher, history, info = recipes.get_teacher("default", config=ONE_EPOCH, sizes=SIZES, progress=False,
                                                 dataset="synth")
    assert not info["cache_hit"] and len(history) == 1
    assert info["path"] == f"models/teacher-synth-default-{info['hash']}.pt"
    assert teacher.num_classes == len(SIM_CLASSES) and teacher.mlct_head.out_features == len(SIM_CLASSES)
    ckpt = _checkpoint(cache, info)
    key = json.loads(ckpt["config"])
    assert key["data"]["dataset"] == "synth" and key["model"]["num_classes"] == len(SIM_CLASSES)
    assert key["data"] == json.loads(json.dumps(desc))  # the one data description of dataswitch
    assert ckpt["name"] == "teacher-synth-default"
    assert [p.name for p in (cache / "models").iterdir()] == [f"teacher-synth-default-{info['hash']}.pt"]

    # the same request loads it; the switch's own dataset (VinDr) is another teacher, not cached yet
    _, _, again = recipes.get_teacher("default", config=ONE_EPOCH, sizes=SIZES, dataset="synth", load_only=True)
    assert again["cache_hit"] and again["hash"] == info["hash"]
    with pytest.raises(CacheMiss, match="teacher-vindr-default-"):
        recipes.get_teacher("default", config=ONE_EPOCH, sizes=SIZES, load_only=True)


def test_cached_file_names_carry_the_dataset(tmp_path):
    """Teacher and students of a dataset: ``teacher-<dataset>-<profile>-<hash>.pt``,
    ``student-<dataset>-<profile>-<variant>-r<px>-<hash>.pt``, the student keyed by its teacher."""
    cache = tmp_path / "cache"
    kw = dict(profile="default", progress=False, cache_dir=cache)
    teacher, _, t_info = recipes.get_teacher(config=ONE_EPOCH, sizes=SIZES, dataset="synth", **kw)
    splits = dataswitch.get_splits((224, 28), "default", 0, ("train", "val"), SIZES, dataset="synth")
    desc = dataswitch.data_description("synth", "default", 0, SIZES)
    names = {t_info["path"]: "teacher-synth-default"}
    infos = {}
    for variant in ("baseline", "mlcak"):
        _, _, info = recipes.train_student(variant, 28, splits, teacher, t_info, config=ONE_EPOCH, data_desc=desc, **kw)
        infos[variant] = info
        names[info["path"]] = f"student-synth-default-{variant}-r28"
    for path, stem in names.items():
        assert path.startswith(f"models/{stem}-") and path.endswith(".pt") and (cache / path).is_file(), path
    assert sorted(p.name for p in (cache / "models").iterdir()) == sorted(p.split("/")[1] for p in names)
    # the student's key holds the teacher's hash (a new teacher means new distilled students) and the data
    key = json.loads(_checkpoint(cache, infos["mlcak"])["config"])
    assert key["objective"]["teacher"] == t_info["hash"] and key["data"]["dataset"] == "synth"
    assert json.loads(_checkpoint(cache, infos["baseline"])["config"])["objective"].get("teacher") is None
    # same request again: loaded, not retrained
    _, _, again = recipes.train_student("mlcak", 28, splits, teacher, t_info, config=ONE_EPOCH, data_desc=desc, **kw)
    assert again["cache_hit"] and again["hash"] == infos["mlcak"]["hash"]
    _, _, other = recipes.train_student("mlcak", 28, splits, teacher, {"hash": "another"}, config=ONE_EPOCH,
                                        data_desc=desc, **kw)
    assert not other["cache_hit"] and other["hash"] != infos["mlcak"]["hash"]


def test_training_settings_per_profile():
    assert set(recipes.TEACHER_TRAINING) == set(recipes.STUDENT_TRAINING) == {"default", "full"}
    assert recipes.student_training("default") is recipes.STUDENT_TRAINING["default"]
    student = recipes.STUDENT_TRAINING["default"]
    assert student.patience and student.epochs >= 3 * student.patience  # to convergence, with a generous maximum
    with pytest.raises(ValueError, match="needs a teacher"):
        recipes.train_student("mlcak", 28, {"train": None, "val": None})
