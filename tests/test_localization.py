"""Localization metrics of notebook 06 (mlcak_lib.localization) and their ground truth, the token targets of
mlcak_lib.local_task. The local task itself (head, loss, objective, multi-task students): tests/test_local_task.py."""

import math

import numpy as np
import pytest
import torch

from mlcak_lib import localization as loc
from mlcak_lib import tokens
from mlcak_lib.local_task import local_targets

IMAGE = 224


# ---------------------------------------------------------------------------------------------
# Token targets: end to end through tokens.py, for several grids
# ---------------------------------------------------------------------------------------------

def _tokens(grid, cells):
    out = np.zeros((grid, grid), dtype=bool)
    for r, c in cells:
        out[r, c] = True
    return out


@pytest.mark.parametrize("grid", [7, 14, 28])
def test_targets_match_boxes_on_several_grids(grid):
    t = IMAGE / grid  # token side in pixels: 32, 16, 8
    boxes = np.array([
        [2 * t, 3 * t, 4 * t, 5 * t],              # exactly on token borders: 2 x 2 tokens, no spill
        [t + 1, t + 1, t + 3, t + 3],              # smaller than a token, inside one token
        [5 * t - 1, 6 * t - 1, 5 * t + 1, 6 * t + 1],  # tiny box straddling a token corner: 4 tokens
        [0.0, 0.0, 2 * t + 0.1 * t, t],            # a sliver (10 % of a token) into column 2: ignored
        [t * 0.5, 6 * t, t * 1.5, 6 * t + 2],      # thin horizontal line across a border: both tokens
    ], dtype=np.float32)
    labels = np.array([0, 1, 1, 2, 2])
    tgt = local_targets(boxes, labels, IMAGE, grid, num_classes=4)
    assert tgt.shape == (5, grid, grid) and tgt.dtype == torch.float32
    assert set(np.unique(tgt.numpy())) <= {0.0, 1.0}
    exp0 = _tokens(grid, [(3, 2), (3, 3), (4, 2), (4, 3)])
    exp1 = _tokens(grid, [(1, 1), (5, 4), (5, 5), (6, 4), (6, 5)])
    exp2 = _tokens(grid, [(0, 0), (0, 1), (6, 0), (6, 1)])
    np.testing.assert_array_equal(tgt[0].numpy() > 0.5, exp0)
    np.testing.assert_array_equal(tgt[1].numpy() > 0.5, exp1)
    np.testing.assert_array_equal(tgt[2].numpy() > 0.5, exp2)
    assert float(tgt[3].sum()) == 0.0                              # a class without boxes
    np.testing.assert_array_equal(tgt[4].numpy() > 0.5, exp0 | exp1 | exp2)  # any-lesion = union
    # the metrics' ground truth is the same rule, and agrees with tokens.py called directly
    np.testing.assert_array_equal(loc.box_footprint(boxes, IMAGE, grid), exp0 | exp1 | exp2)
    np.testing.assert_array_equal(tokens.boxes_to_token_map(boxes, labels, IMAGE, grid, 4), tgt[:4].numpy())


def test_box_coverage_is_exact_area_fraction():
    for grid in (7, 14, 28):
        t = IMAGE / grid
        cov = loc.box_coverage([[t + 1, t + 1, t + 3, t + 3]], IMAGE, grid)
        assert cov[1, 1] == pytest.approx(4 / t**2) and cov.sum() == pytest.approx(4 / t**2)
        # two overlapping boxes: the union is counted once
        cov = loc.box_coverage([[0, 0, 2 * t, t], [t, 0, 3 * t, t]], IMAGE, grid)
        np.testing.assert_allclose(cov[0, :4], [1, 1, 1, 0])


# ---------------------------------------------------------------------------------------------
# Metrics on hand-made maps
# ---------------------------------------------------------------------------------------------

ALIGNED = np.array([[32.0, 64.0, 96.0, 128.0]])  # token-aligned at 224 / 7 = 32 px: 2 x 2 tokens


def test_perfect_map_scores_one():
    fp = loc.box_footprint(ALIGNED, IMAGE, 7)
    cov = loc.box_coverage(ALIGNED, IMAGE, 7)
    perfect = fp.astype(float)
    assert loc.pointing_game(perfect, fp) == 1.0
    assert loc.thresholded_iou(perfect, fp) == 1.0
    assert loc.thresholded_iou(perfect, fp, method="topk") == 1.0
    assert loc.mass_in_boxes(perfect, cov) == pytest.approx(1.0)
    assert loc.token_auroc(perfect, fp) == 1.0


def test_uniform_and_inverted_maps():
    fp = loc.box_footprint(ALIGNED, IMAGE, 7)
    cov = loc.box_coverage(ALIGNED, IMAGE, 7)
    uniform = np.full((7, 7), 0.3)
    assert loc.mass_in_boxes(uniform, cov) == pytest.approx(64 * 64 / IMAGE**2)  # box area fraction
    assert loc.token_auroc(uniform, fp) == 0.5
    assert loc.thresholded_iou(uniform, fp) == pytest.approx(4 / 49)  # a constant map selects every token
    assert loc.pointing_game(uniform, fp, tolerance=0) == pytest.approx(4 / 49)
    assert loc.pointing_game(uniform, fp, tolerance=1) == pytest.approx(16 / 49)  # tokens within one of the box
    inverted = 1.0 - fp.astype(float)
    assert loc.token_auroc(inverted, fp) == 0.0
    assert loc.mass_in_boxes(inverted, cov) == 0.0
    assert loc.thresholded_iou(inverted, fp) == 0.0


def test_pointing_tolerance_and_mass_of_unaligned_boxes():
    fp = loc.box_footprint(ALIGNED, IMAGE, 7)  # rows 2-3, cols 1-2
    m = np.zeros((7, 7))
    m[4, 3] = 1.0  # diagonal neighbour of the footprint
    assert loc.pointing_game(m, fp, tolerance=0) == 0.0
    assert loc.pointing_game(m, fp, tolerance=1) == 1.0
    m[:] = 0
    m[5, 5] = 1.0
    assert loc.pointing_game(m, fp, tolerance=1) == 0.0
    # a box of 16 x 16 px inside one 32-px token: at most a quarter of that token's mass is inside
    small = np.array([[40.0, 40.0, 56.0, 56.0]])
    one_hot = loc.box_footprint(small, IMAGE, 7).astype(float)
    assert one_hot.sum() == 1
    assert loc.mass_in_boxes(one_hot, loc.box_coverage(small, IMAGE, 7)) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        loc.mass_in_boxes(-one_hot, loc.box_coverage(small, IMAGE, 7))
    assert math.isnan(loc.pointing_game(m, np.zeros((7, 7), bool)))


def test_report_on_hand_made_maps():
    class_names = ["Nodule/Mass", "Effusion"]
    boxes = [ALIGNED, np.zeros((0, 4)), np.array([[0.0, 0.0, 16.0, 16.0]])]
    labels = [np.array([1]), np.zeros(0, dtype=int), np.array([0])]
    mm = [np.array([30.0]), np.zeros(0), np.array([5.0])]
    targets = np.stack([local_targets(b, l, IMAGE, 7, 2).numpy() for b, l in zip(boxes, labels)])
    df = loc.localization_report(targets, boxes, labels, mm, IMAGE, class_names)
    anyrows = df[(df.channel == "any") & (df.stratum == "all")].set_index("metric")["value"]
    assert anyrows["token_auroc"] == 1.0 and anyrows["pointing"] == 1.0 and anyrows["iou"] == 1.0
    # mass: 1 for the aligned box, 0.25 for the 16-px box inside one 32-px token
    assert anyrows["mass_in_box"] == pytest.approx((1.0 + 0.25) / 2)
    strata = df[(df.channel == "any") & (df.metric == "pointing")].set_index("stratum")["n"]
    assert strata["all"] == 2 and strata["< 10 mm"] == 1 and strata["10-20 mm"] == 0 and strata[">= 20 mm"] == 1
    assert set(df.channel) == {"Nodule/Mass", "Effusion", "any"}
    # class-agnostic maps (attention) evaluate the any-lesion channel only
    df_any = loc.localization_report(targets[:, -1], boxes, labels, mm, IMAGE)
    assert set(df_any.channel) == {"any"}
    assert df_any.set_index(["stratum", "metric"]).loc[("all", "iou"), "value"] == 1.0
