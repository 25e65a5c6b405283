"""Notebook 07's detector reads every dataset through the one switch: the simulator and VinDr-CXR (a tiny
PhysioNet layout the tests write) give boxes, regimes, a training step and a metrics report with the same code."""

import numpy as np
import pytest
import torch

from mlcak_lib.dataswitch import get_splits
from mlcak_lib.detection import ema
from mlcak_lib.detection.data import omni_batch
from mlcak_lib.detection.evaluate import detection_report
from mlcak_lib.detection.model import build_detector
from mlcak_lib.detection.objective import OXnetObjective
from mlcak_lib.detection.sampling import supervision_regime
from fixtures_realdata import cache_tmp, physionet_root  # noqa: F401  (pytest fixtures)


def _split(name, request, monkeypatch):
    if name == "vindr":
        monkeypatch.setenv("MLCAK_DATA_ROOT", str(request.getfixturevalue("physionet_root")))
        request.getfixturevalue("cache_tmp")
        return get_splits((224, 112), splits=("train",), dataset="vindr")["train"]
    return get_splits((224, 112), splits=("train",), sizes={"train": 8}, dataset="synth")["train"]


@pytest.mark.parametrize("name", ["synth", "vindr"])
def test_one_oxnet_step_and_a_report_through_the_switch(name, request, monkeypatch):
    split = _split(name, request, monkeypatch)
    n, num_classes = len(split), len(split.class_names)
    assert n >= 2 and any(len(b) for b in split.boxes)
    codes = supervision_regime(n, 0.5, 0.25, seed=0, strata=split.mcct)
    student = build_detector(num_classes, 112, seed=0, widths=(8, 8, 16, 16, 24), fpn_channels=16, head_convs=1)
    teacher = ema.make_teacher(student)
    terms = OXnetObjective(num_classes, 24)(student, teacher, omni_batch(split, list(range(n)), 112, codes))
    assert all(torch.isfinite(v).all() for v in terms.values())
    terms["loss"].backward()
    ema.ema_update(teacher, student, step=0)
    student.eval()
    with torch.no_grad():
        out = student(split.images[112])
        dets = student.detect(out)
    scale = 112 / 224
    report = detection_report([b * scale for b in split.boxes], split.box_labels, dets, split.class_names,
                              gt_mm=split.box_mm, mlct=split.mlct, global_scores=torch.sigmoid(terms["image_logits"]))
    rows = {r["stratum"]: r for r in report["strata"]}
    assert rows["all"]["n_lesions"] == sum(len(b) for b in split.boxes)
    assert set(rows) == {"all", "< 10 mm", "10-20 mm", ">= 20 mm"} and "froc@4" in rows["all"]
    assert set(report["auroc"]) == {"detection", "global"}
    assert np.isnan(report["mm_per_px"]) or report["mm_per_px"] > 0
