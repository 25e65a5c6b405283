"""The local task of notebook 06: token targets from boxes, local head and loss, localization metrics."""

import math

import numpy as np
import pytest
import torch

from mlcak_lib import localization as loc
from mlcak_lib import tokens

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
    tgt = loc.local_targets(boxes, labels, IMAGE, grid, num_classes=4)
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


def test_no_boxes_gives_zero_maps_and_batch_shape():
    empty = loc.local_targets(np.zeros((0, 4)), np.zeros(0, dtype=np.int64), IMAGE, 7, num_classes=5)
    assert empty.shape == (6, 7, 7) and float(empty.abs().sum()) == 0.0
    batch = {
        "image": torch.zeros(2, 1, IMAGE, IMAGE),
        "boxes": [torch.zeros(0, 4), torch.tensor([[0.0, 0.0, 40.0, 40.0]])],
        "box_labels": [torch.zeros(0, dtype=torch.int64), torch.tensor([2])],
    }
    t = loc.batch_local_targets(batch, grid=7, num_classes=5)
    assert t.shape == (2, 6, 7, 7)
    assert float(t[0].sum()) == 0.0 and float(t[1, 2].sum()) == 4.0 and float(t[1, 5].sum()) == 4.0


def test_dataset_without_boxes_is_flagged():
    class NoBoxes:
        name = "chestmnist"

        def __len__(self):
            return 1

        def __getitem__(self, i):
            return {"image": torch.zeros(1, 28, 28), "mlct": torch.zeros(3), "mcct": torch.tensor(0)}

    assert not loc.has_boxes(NoBoxes())
    with pytest.raises(loc.LocalTaskUnavailable, match="no boxes: local task unavailable"):
        loc.require_boxes(NoBoxes())
    with pytest.raises(loc.LocalTaskUnavailable):
        loc.batch_local_targets({"image": torch.zeros(1, 1, 28, 28)}, grid=7, num_classes=3)


# ---------------------------------------------------------------------------------------------
# Local head and loss
# ---------------------------------------------------------------------------------------------

def test_local_head_shapes_and_loss():
    head = loc.LocalHead(dim=16, n_out=4, hidden=8)
    tokens = torch.randn(2, 49, 16)
    out = head(tokens)
    assert out.shape == (2, 49, 4)
    maps = loc.local_maps(out)
    assert maps.shape == (2, 4, 7, 7)
    # token order is row-major: token n sits at (n // g, n % g)
    assert torch.equal(maps[1, 2, 3, 5], out[1, 3 * 7 + 5, 2])
    targets = torch.zeros(2, 4, 7, 7)
    targets[:, :, 1, 1] = 1
    pw = loc.local_pos_weight(targets)
    assert torch.allclose(pw, torch.full((4,), 48.0))
    loss = loc.local_loss(out, targets, pw)
    loss.backward()
    assert loss.ndim == 0 and math.isfinite(float(loss.detach()))
    assert all(p.grad is not None for p in head.parameters())
    # perfect, confident logits give a loss near zero
    assert float(loc.local_loss((targets * 2 - 1) * 20, targets, pw)) < 1e-6


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
    targets = np.stack([loc.local_targets(b, l, IMAGE, 7, 2).numpy() for b, l in zip(boxes, labels)])
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


def test_local_objective_trains_a_tiny_student_with_train_fit():
    from mlcak_lib.models import build_student
    from mlcak_lib.train import InMemorySplit, SupervisedObjective, TrainConfig, fit

    n, c = 16, 3
    g = torch.Generator().manual_seed(0)
    boxes = [torch.tensor([[32.0 * (i % 5), 32.0, 32.0 * (i % 5) + 40.0, 80.0]]) if i % 2 else torch.zeros(0, 4) for i in range(n)]
    labels = [torch.tensor([i % c]) if i % 2 else torch.zeros(0, dtype=torch.long) for i in range(n)]
    mm = [torch.tensor([12.0]) if i % 2 else torch.zeros(0) for i in range(n)]
    mlct = torch.zeros(n, c)
    for i, l in enumerate(labels):
        mlct[i, l] = 1.0
    split = InMemorySplit({28: torch.rand(n, 1, 28, 28, generator=g)}, mlct, (mlct.sum(1) > 0).long(),
                          ["a", "b", "c"], boxes, labels, mm, "train")
    model = loc.attach_local_head(build_student(28, c, seed=0, embed_dim=24, depth=1, num_heads=2))
    objective = loc.LocalObjective(SupervisedObjective(), lambda_local=0.5)
    history = fit(model, split, None, objective, TrainConfig(epochs=1, batch_size=8, patience=None), progress=False)
    assert "train_local" in history[0] and math.isfinite(history[0]["train_local"])
    assert objective.targets.shape == (n, c + 1, 7, 7)
    assert objective.config()["local"]["lambda_local"] == 0.5
    maps = loc.predict_local_maps(model, split.images[28])
    assert maps.shape == (n, c + 1, 7, 7) and (maps >= 0).all() and (maps <= 1).all()
    att = loc.attention_maps(model, split.images[28], kind="rollout")
    assert att.shape == (n, 7, 7) and np.allclose(att.sum(axis=(1, 2)), 1.0, atol=1e-5)
    report = loc.localization_report(maps, boxes, labels, mm, 224, ["a", "b", "c"])
    assert set(report.metric) == {"token_auroc", "pointing", "iou", "mass_in_box"}
    # a model without a local head is refused by the objective
    with pytest.raises(ValueError, match="local head"):
        loc.LocalObjective().setup(build_student(28, c, seed=0, embed_dim=24, depth=1, num_heads=2), split)


def test_multitask_variants_train_through_distill_train_student(tmp_path):
    """``multitask`` / ``mlcak-mt`` are ordinary variants: a local head, the local loss, their own cache key."""
    from dataclasses import replace

    from mlcak_lib import distill
    from mlcak_lib.models import build_teacher
    from mlcak_lib.train import InMemorySplit, TrainConfig

    n, c = 12, 3
    g = torch.Generator().manual_seed(1)
    boxes = [torch.tensor([[40.0, 40.0, 120.0, 120.0]]) if i % 2 else torch.zeros(0, 4) for i in range(n)]
    labels = [torch.tensor([i % c]) if i % 2 else torch.zeros(0, dtype=torch.long) for i in range(n)]
    mm = [torch.tensor([25.0]) if i % 2 else torch.zeros(0) for i in range(n)]
    mlct = torch.zeros(n, c)
    for i, lab in enumerate(labels):
        mlct[i, lab] = 1.0
    hr = torch.rand(n, 1, 224, 224, generator=g)
    split = InMemorySplit({224: hr, 28: torch.nn.functional.avg_pool2d(hr, 8)}, mlct, (mlct.sum(1) > 0).long(),
                          ["a", "b", "c"], boxes, labels, mm, "train")
    arch = {"embed_dim": 24, "depth": 2, "num_heads": 2}
    teacher = build_teacher(c, seed=0, **arch).eval()
    cfg = TrainConfig(epochs=1, batch_size=6, patience=None)
    kw = dict(profile="default", config=cfg, data_desc={"test": "tiny"}, progress=False, cache_dir=tmp_path,
              arch_overrides=arch)
    splits = {"train": split, "val": split}
    mt, history, info = distill.train_student("multitask", 28, splits, **kw)
    assert mt.local_head is not None and "train_local" in history[0]
    full, history_full, info_full = distill.train_student("mlcak-mt", 28, splits, teacher, {"hash": "t"}, **kw)
    assert full.local_head is not None and "train_attn_kd" in history_full[0] and "train_local" in history_full[0]
    plain, _, info_plain = distill.train_student("baseline", 28, splits, **kw)
    assert plain.local_head is None
    assert len({info["hash"], info_full["hash"], info_plain["hash"]}) == 3
    _, _, again = distill.train_student("multitask", 28, splits, **kw)
    assert again["cache_hit"] and again["hash"] == info["hash"]
    no_boxes = {k: replace(v, boxes=[], box_labels=[], box_mm=[]) for k, v in splits.items()}
    with pytest.raises(loc.LocalTaskUnavailable, match="local task unavailable"):
        distill.train_student("multitask", 28, no_boxes, **kw)
