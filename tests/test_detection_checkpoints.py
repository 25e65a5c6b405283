"""Notebook 07's committed checkpoints (issue 16): the pretrained backbone and the two detectors its pictures use load
by key from the package, reproduce the check recorded when they were committed, and are refused, with the detector
rebuild command, when a setting changes."""

from __future__ import annotations

import pytest
import torch

from mlcak_lib import checkpoints, detection_runner
from mlcak_lib.cache import CacheMiss
from mlcak_lib.dataswitch import get_splits
from mlcak_lib.detection import recipe
from mlcak_lib.detection.keys import DETECTION_CODE

PROFILE, RES = "default", 112
#: What scripts/commit_detectors.py commits (variant, box fraction, seed): notebook 07's pictures.
COMMITTED = [("box-only", 1.0, 0), ("oxnet", min(detection_runner.DEFAULT_FRACTIONS), 0)]


@pytest.fixture(scope="module")
def loaded():
    """The backbone and the committed detectors, loaded as notebook 07 loads them (load_only: nothing trains)."""
    cfg = recipe.detector_training(PROFILE)
    backbone = detection_runner.pretrained_backbone(RES, cfg, PROFILE, "synth", load_only=True)
    splits = get_splits((RES,), PROFILE, splits=("train", "val"), dataset="synth")
    desc = detection_runner.detection_data_description("synth", PROFILE)
    detectors = {run: recipe.get_detector(run[0], run[1], RES, run[2], splits, desc, PROFILE, cfg, load_only=True,
                                          backbone=backbone) for run in COMMITTED}
    check_val = get_splits((RES,), PROFILE, splits=("val",), sizes={"val": detection_runner.CHECK_FILMS},
                           dataset="synth")["val"]
    return backbone, detectors, splits, desc, check_val


def _name(variant, fraction, seed):
    return recipe.detector_name(variant, fraction, RES, "synth", PROFILE, seed)


def test_the_committed_files_exist_and_record_their_code():
    names = [f"detector-backbone-synth-{PROFILE}-r{RES}"] + [_name(*run) for run in COMMITTED]
    for name in names:
        path = checkpoints.committed_path(name)
        assert path.exists(), f"{path.name} must be committed (python scripts/commit_detectors.py)"
        assert set(checkpoints.load_committed(path)["code_parts"]) == set(DETECTION_CODE)
    assert checkpoints.total_size_mb() <= checkpoints.MAX_TOTAL_MB


def test_committed_detectors_load_by_key_and_reproduce_their_check(loaded):
    (backbone, _), detectors, _, _, check_val = loaded
    bb_check = checkpoints.load_committed(checkpoints.committed_path(f"detector-backbone-synth-{PROFILE}-r{RES}"))["val_check"]
    assert detection_runner.committed_check(backbone, check_val, RES)["auroc"] == pytest.approx(bb_check["auroc"], abs=1e-6)
    for run, (model, history, info) in detectors.items():
        assert info["committed"] and info["path"] == f"package:{_name(*run)}.pt", run
        assert any(h.get("best") for h in history)
        recorded = checkpoints.load_committed(checkpoints.committed_path(_name(*run)))["val_check"]
        got = detection_runner.committed_check(model, check_val, RES)
        assert got["n"] == recorded["n"] == detection_runner.CHECK_FILMS
        assert got["score_sum"] == pytest.approx(recorded["score_sum"], rel=1e-3, abs=1e-3), run
        assert got["global_mean"] == pytest.approx(recorded["global_mean"], abs=1e-5), run


def test_a_committed_detector_is_refused_when_a_setting_changes(loaded, tmp_path):
    backbone, _, splits, desc, _ = loaded
    cfg = recipe.detector_training(PROFILE)
    variant, fraction, seed = COMMITTED[0]
    with pytest.warns(checkpoints.StaleCheckpointWarning, match=r"changed: train\.steps .*commit_detectors\.py"):
        with pytest.raises(CacheMiss):  # refused, and load_only keeps it from training instead
            recipe.get_detector(variant, fraction, RES, seed, splits, desc, PROFILE, cfg.replace(steps=cfg.steps + 1),
                                cache_dir=tmp_path, load_only=True, backbone=backbone)


def test_the_committed_detectors_differ_from_an_untrained_one(loaded):
    _, detectors, _, _, check_val = loaded
    fresh = recipe.build_detector(len(check_val.class_names), RES, seed=0, **recipe.detector_training(PROFILE).architecture)
    fresh_sum = detection_runner.committed_check(fresh, check_val, RES)["score_sum"]
    for model, _, _ in detectors.values():
        assert detection_runner.committed_check(model, check_val, RES)["score_sum"] != pytest.approx(fresh_sum, rel=1e-2)
    assert not torch.equal(detectors[COMMITTED[0]][0].net.head.classification_head.cls_logits.weight,
                           fresh.net.head.classification_head.cls_logits.weight)
