"""Committed checkpoints (issue 13): the teacher in the package loads, reproduces its recorded check,
is refused when its key is stale (with a message naming what changed), and stays within the budget."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from mlcak_lib import checkpoints, metrics, recipes
from mlcak_lib.cache import CacheMiss, code_parts, config_hash, load_or_train
from mlcak_lib.dataswitch import get_splits

TEACHER = checkpoints.committed_path("teacher-synth-default")


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.bn = nn.BatchNorm1d(2)

    def forward(self, x):
        return self.bn(self.lin(x))


def _commit(tmp_path, config: dict, code: str = "c1"):
    model = Tiny()
    with torch.no_grad():
        model.lin.weight.fill_(0.125)
    path = tmp_path / "tiny.pt"
    checkpoints.save_committed(path, model, name="tiny", hash=config_hash("tiny", config, code), config_dict=config,
                               code_parts={"models": "aaa"}, history=[{"epoch": 1}], train_seconds=1.5)
    return path


def test_matching_key_loads_committed_weights_without_training(tmp_path):
    config = {"train": {"lr": 0.001}, "model": {"width": 3}}
    path = _commit(tmp_path, config)
    trained = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, history, info = load_or_train("tiny", config, Tiny, lambda m: trained.append(1) or [], tmp_path / "c",
                                             code="c1", committed=path)
    assert not trained and info["committed"] and info["path"] == "package:tiny.pt" and history == [{"epoch": 1}]
    assert torch.all(model.lin.weight == 0.125) and model.lin.weight.dtype == torch.float32 and not model.training
    # weights are stored as float16, BatchNorm's integer counter stays an integer
    saved = checkpoints.load_committed(path)["state_dict"]
    assert saved["lin.weight"].dtype == torch.float16 and saved["bn.num_batches_tracked"].dtype == torch.int64


def test_stale_key_is_refused_with_a_message_naming_the_change(tmp_path):
    path = _commit(tmp_path, {"train": {"lr": 0.001}, "model": {"width": 3}})
    trained = []
    with pytest.warns(checkpoints.StaleCheckpointWarning) as record:
        model, _, info = load_or_train("tiny", {"train": {"lr": 0.002}, "model": {"width": 3}}, Tiny,
                                       lambda m: trained.append(1) or [{"epoch": 1}], tmp_path / "c", code="c1",
                                       committed=path, code_names=("models",))
    message = str(record[0].message)
    assert "\n" not in message and "tiny.pt is stale" in message
    assert "train.lr 0.001 -> 0.002" in message and checkpoints.REBUILD_COMMAND in message
    assert trained and not info.get("committed") and not torch.all(model.lin.weight == 0.125)  # never loaded


def test_stale_reason_names_changed_code_modules():
    ckpt = {"config": '{"a": 1}', "code_parts": {"models": "x", "synth": "y"}}
    assert checkpoints.stale_reason(ckpt, {"a": 1}, {"models": "x", "synth": "z"}) == "code of synth"
    assert checkpoints.stale_reason(ckpt, {"a": 1}, {"models": "x", "synth": "y"}) == "the library version"


def test_committed_checkpoints_fit_the_budget():
    assert TEACHER.exists(), "the teacher checkpoint must be committed (python scripts/train_teacher.py)"
    assert checkpoints.total_size_mb() <= checkpoints.MAX_TOTAL_MB


def test_committed_teacher_loads_and_reproduces_its_validation_check(tmp_path):
    teacher, history, info = recipes.get_teacher("default", dataset="synth", cache_dir=tmp_path, load_only=True)
    assert info["committed"] and info["path"] == "package:teacher-synth-default.pt"
    assert any(h.get("best") for h in history)
    check = checkpoints.load_committed(TEACHER)["val_check"]
    val = get_splits((224,), profile="default", seed=0, splits=("val",), sizes={"val": check["n"]},
                     dataset="synth")["val"]
    preds = metrics.predict(teacher, val.images[224])
    assert metrics.mcct_auroc(val.mcct, preds["mcct_logits"]) == pytest.approx(check["mcct_auroc"], abs=1e-6)
    margin = float(preds["mcct_logits"][:, 1].mean() - preds["mcct_logits"][:, 0].mean())
    assert math.isclose(margin, check["mcct_logit_mean"], abs_tol=1e-3)


def test_committed_teacher_is_refused_when_a_setting_changes(tmp_path, monkeypatch):
    changed = recipes.TEACHER_TRAINING["default"].replace(lr=recipes.TEACHER_TRAINING["default"].lr * 2)
    monkeypatch.setitem(recipes.TEACHER_TRAINING, "default", changed)
    with pytest.warns(checkpoints.StaleCheckpointWarning, match=r"changed: train\.lr"):
        with pytest.raises(CacheMiss):  # refused, and load_only keeps it from training instead
            recipes.get_teacher("default", dataset="synth", cache_dir=tmp_path, load_only=True)


def test_the_committed_teacher_records_its_code():
    assert set(checkpoints.load_committed(TEACHER)["code_parts"]) == set(code_parts())
