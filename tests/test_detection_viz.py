"""Notebook 07's figures (mlcak_lib.detection_viz): the pure helpers' numbers and what the drawing functions draw."""

import matplotlib.pyplot as plt  # the Agg backend: tests/conftest.py
import numpy as np
import pandas as pd
import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from mlcak_lib import detection_viz as dviz
from mlcak_lib.detection import ema
from mlcak_lib.detection.sampling import BOXES, LABELS, NONE, supervision_regime


def test_focal_terms_match_torchvision_and_vanish_on_confident_correct_anchors():
    p = np.array([0.01, 0.3, 0.5, 0.9, 0.99])
    for positive in (True, False):
        ce, fl = dviz.focal_terms(p, gamma=2.0, alpha=0.25, positive=positive)
        target = torch.full((len(p),), 1.0 if positive else 0.0)
        ref = sigmoid_focal_loss(torch.logit(torch.tensor(p)), target, alpha=0.25, gamma=2.0, reduction="none")
        assert np.allclose(fl, ref.numpy(), rtol=1e-5, atol=1e-9)
        assert np.all(fl <= ce)
    ce, fl = dviz.focal_terms([0.99], positive=True)
    assert fl[0] < 1e-5 < ce[0]
    ce0, fl0 = dviz.focal_terms(p, gamma=0.0, alpha=0.25)
    assert np.allclose(fl0, 0.25 * ce0)  # gamma 0: alpha-weighted cross-entropy


def test_ema_trace_is_the_library_update():
    values = np.r_[np.zeros(20), np.ones(80)]
    trace = dviz.ema_trace(values, decay=0.99)
    student = torch.nn.Linear(1, 1, bias=False)
    teacher = ema.make_teacher(student)
    lib = []
    for t, v in enumerate(values):
        with torch.no_grad():
            student.weight.fill_(float(v))
        ema.ema_update(teacher, student, 0.99, step=t)
        lib.append(float(teacher.weight))
    assert np.allclose(trace, lib, atol=1e-6)
    assert trace[19] == 0.0 and 0.0 < trace[50] < trace[-1] < 1.0
    assert np.isclose(dviz.ema_trace(values, 0.99, warmup=False)[-1], 1 - 0.99 ** 80)


def test_regime_matrix_rows_are_the_regimes_and_must_match():
    regimes = {f: supervision_regime(50, f, seed=3) for f in (0.1, 0.3)}
    m = dviz.regime_matrix(regimes, n=20)
    assert m.shape == (2, 20)
    assert np.array_equal(m[1], regimes[0.3][:20])
    assert set(np.unique(m)) <= {BOXES, LABELS, NONE}
    with pytest.raises(ValueError):
        dviz.regime_matrix({0.1: np.zeros(5), 0.3: np.zeros(6)})


def test_pct_writes_small_fractions_exactly():
    assert [dviz.pct(f) for f in (0.005, 0.02, 0.1, 1.0)] == ["0.5 %", "2 %", "10 %", "100 %"]


def test_upsample_map_repeats_cells_without_interpolation():
    heat = np.array([[0.0, 1.0], [2.0, 3.0]])
    up = dviz.upsample_map(heat, 8)
    assert up.shape == (8, 8)
    assert up[0, 0] == 0.0 and up[3, 4] == 1.0 and up[4, 3] == 2.0 and up[7, 7] == 3.0
    assert np.isclose(up.sum(), heat.sum() * 16)
    with pytest.raises(ValueError):
        dviz.upsample_map(np.zeros((3, 3)), 8)


def toy_grid() -> pd.DataFrame:
    rows = []
    for v, base in (("box-only", 0.1), ("oxnet", 0.2)):
        for f in (0.1, 0.3):
            for s in (0, 1, 2):
                rows.append({"variant": v, "box_fraction": f, "resolution": 112, "seed": s, "ap50": base + f + 0.01 * s})
    rows.append({"variant": "box-only", "box_fraction": 1.0, "resolution": 112, "seed": 0, "ap50": 0.9})
    return pd.DataFrame(rows)


def test_seed_points_place_each_variant_in_its_group():
    pts = dviz.seed_points(toy_grid(), "ap50", ["box-only", "oxnet"], [0.1, 0.3], 112)
    assert [v for _, _, v in pts] == ["box-only", "oxnet"]
    xs, ys, _ = pts[1]
    assert len(xs) == 6 and np.allclose(sorted(ys), sorted([0.3, 0.31, 0.32, 0.5, 0.51, 0.52]))
    assert np.all(xs[:3] < 0.5) and np.all(xs[3:] > 0.5)  # box fraction 0.1 left of 0.3
    assert np.all(pts[0][0][:3] < xs[:3])  # box-only left of oxnet within a group


def test_plot_grid_and_paired_draw_every_seed_and_interval():
    grid = toy_grid()
    fig, (a1, a2) = plt.subplots(1, 2)
    assert dviz.plot_grid(a1, grid, "ap50", ["box-only", "oxnet"], [0.1, 0.3], 112, upper=0.9) == 12
    paired = pd.DataFrame({"variant": ["oxnet", "oxnet"], "box_fraction": [0.1, 0.3], "metric": ["ap50", "ap50"],
                           "n": [3, np.nan], "diff": [0.1, np.nan], "ci_low": [0.05, np.nan], "ci_high": [0.15, np.nan]})
    assert dviz.plot_paired(a2, paired, "ap50") == 1
    assert [t.get_text() for t in a2.get_yticklabels()] == ["oxnet @ 10 % (3 seeds)", "oxnet @ 30 % (0 seeds)"]
    plt.close(fig)


def test_show_detections_draws_ground_truth_and_thresholded_predictions():
    fig, ax = plt.subplots()
    dets = {"boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0], [2.0, 2.0, 6.0, 6.0], [0.0, 0.0, 3.0, 3.0]]),
            "scores": torch.tensor([0.9, 0.5, 0.1]), "labels": torch.tensor([0, 1, 0])}
    n = dviz.show_detections(ax, torch.zeros(1, 16, 16), torch.tensor([[2.0, 2.0, 8.0, 8.0]]), torch.tensor([1]), dets,
                             ["a", "b"], score_thresh=0.3)
    assert n == {"ground_truth": 1, "predicted": 2}
    dashed = [p for p in ax.patches if p.get_linestyle() == "--"]
    assert len(ax.patches) == 3 and len(dashed) == 2
    assert dviz.show_detections(ax, np.zeros((16, 16)), np.zeros((0, 4)), np.zeros(0), None, ["a"])["predicted"] == 0
    plt.close(fig)


def test_show_attention_and_regime_figures():
    fig, axes = plt.subplots(1, 4)
    dviz.show_attention(axes, np.zeros((8, 8)), np.ones((4, 4)), np.ones((4, 4)), np.ones((4, 4)),
                        box=[[1, 1, 4, 4]], label=0)
    assert [a.get_title() for a in axes] == ["film", "detection level map", "global head CAM", "map × CAM"]
    assert all(len(a.images) == (1 if k == 0 else 2) for k, a in enumerate(axes))
    plt.close(fig)
    fig, (a1, a2) = plt.subplots(1, 2)
    codes = supervision_regime(40, 0.25, seed=0)
    assert dviz.plot_regimes(a1, {0.25: codes, 1.0: supervision_regime(40, 1.0, seed=0)}, n=10).shape == (2, 10)
    m = dviz.plot_batches(a2, [[0, 1, 2], [3, 4, 5]], codes)
    assert np.array_equal(m, np.stack([codes[[0, 1, 2]], codes[[3, 4, 5]]]))
    plt.close(fig)


def test_plot_focal_and_ema_draw_their_lines():
    fig, (a1, a2) = plt.subplots(1, 2)
    dviz.plot_focal(a1)
    assert len(a1.lines) == 3
    traces = dviz.plot_ema(a2, np.r_[np.zeros(5), np.ones(5)], decays=(0.5, 0.99))
    assert set(traces) == {0.5, 0.99} and len(a2.lines) == 3
    assert traces[0.5][-1] > traces[0.99][-1]  # the faster teacher is closer to the student
    plt.close(fig)
