"""The local task of notebook 06 (mlcak_lib.local_task, models.LocalHead): targets, loss, objective, students.

The localization *metrics* are tested in tests/test_localization.py.
"""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from mlcak_lib import localization as loc
from mlcak_lib import local_task as lt
from mlcak_lib import recipes
from mlcak_lib.models import LocalHead, attach_local_head, build_student, build_teacher, local_maps
from mlcak_lib.splits import InMemorySplit
from mlcak_lib.train import SupervisedObjective, TrainConfig, fit

IMAGE = 224


def _boxed_split(n, c=3, seed=0, resolutions=(28,), box=None):
    """A split whose odd items carry one box of class ``i % c`` (``box``: fixed, else moving along a row)."""
    g = torch.Generator().manual_seed(seed)
    boxes = [torch.tensor([box or [32.0 * (i % 5), 32.0, 32.0 * (i % 5) + 40.0, 80.0]]) if i % 2 else torch.zeros(0, 4)
             for i in range(n)]
    labels = [torch.tensor([i % c]) if i % 2 else torch.zeros(0, dtype=torch.long) for i in range(n)]
    mm = [torch.tensor([12.0]) if i % 2 else torch.zeros(0) for i in range(n)]
    mlct = torch.zeros(n, c)
    for i, lab in enumerate(labels):
        mlct[i, lab] = 1.0
    hr = torch.rand(n, 1, IMAGE, IMAGE, generator=g)
    images = {r: (hr if r == IMAGE else torch.nn.functional.avg_pool2d(hr, IMAGE // r)) for r in resolutions}
    return InMemorySplit(images, mlct, (mlct.sum(1) > 0).long(), ["a", "b", "c"][:c], boxes, labels, mm, "train")


# ---------------------------------------------------------------------------------------------
# Targets and the no-boxes refusal
# ---------------------------------------------------------------------------------------------

def test_no_boxes_gives_zero_maps_and_batch_shape():
    empty = lt.local_targets(np.zeros((0, 4)), np.zeros(0, dtype=np.int64), IMAGE, 7, num_classes=5)
    assert empty.shape == (6, 7, 7) and float(empty.abs().sum()) == 0.0
    batch = {
        "image": torch.zeros(2, 1, IMAGE, IMAGE),
        "boxes": [torch.zeros(0, 4), torch.tensor([[0.0, 0.0, 40.0, 40.0]])],
        "box_labels": [torch.zeros(0, dtype=torch.int64), torch.tensor([2])],
    }
    t = lt.batch_local_targets(batch, grid=7, num_classes=5)
    assert t.shape == (2, 6, 7, 7)
    assert float(t[0].sum()) == 0.0 and float(t[1, 2].sum()) == 4.0 and float(t[1, 5].sum()) == 4.0


def test_as_box_array():
    for boxes in ([[1, 2, 3, 4]], np.array([1.0, 2, 3, 4]), torch.tensor([[1.0, 2, 3, 4]])):
        arr = lt.as_box_array(boxes)
        assert arr.dtype == np.float64 and arr.shape == (1, 4) and arr.tolist() == [[1, 2, 3, 4]]
    assert lt.as_box_array([]).shape == (0, 4) and lt.as_box_array(torch.zeros(0, 4)).shape == (0, 4)


def test_dataset_without_boxes_is_flagged():
    class NoBoxes:
        name = "chestmnist"

        def __len__(self):
            return 1

        def __getitem__(self, i):
            return {"image": torch.zeros(1, 28, 28), "mlct": torch.zeros(3), "mcct": torch.tensor(0)}

    assert not lt.has_boxes(NoBoxes())
    with pytest.raises(lt.LocalTaskUnavailable, match="no boxes: local task unavailable for dataset 'chestmnist'"):
        lt.require_boxes(NoBoxes())
    with pytest.raises(lt.LocalTaskUnavailable):
        lt.batch_local_targets({"image": torch.zeros(1, 1, 28, 28)}, grid=7, num_classes=3)


def test_has_boxes_of_splits_and_flags():
    split = _boxed_split(4)
    assert lt.has_boxes(split)
    assert not lt.has_boxes(replace(split, boxes=[], box_labels=[], box_mm=[]))
    assert not lt.has_boxes(split.subset([]))  # an empty split offers nothing to train on

    class Flagged:
        has_boxes = False

    assert not lt.has_boxes(Flagged())
    Flagged.has_boxes = True
    assert lt.has_boxes(Flagged())


# ---------------------------------------------------------------------------------------------
# Local head (models) and loss
# ---------------------------------------------------------------------------------------------

def test_local_head_shapes_and_loss():
    head = LocalHead(dim=16, n_out=4, hidden=8)
    tokens = torch.randn(2, 49, 16)
    out = head(tokens)
    assert out.shape == (2, 49, 4)
    maps = local_maps(out)
    assert maps.shape == (2, 4, 7, 7)
    # token order is row-major: token n sits at (n // g, n % g)
    assert torch.equal(maps[1, 2, 3, 5], out[1, 3 * 7 + 5, 2])
    targets = torch.zeros(2, 4, 7, 7)
    targets[:, :, 1, 1] = 1
    pw = lt.local_pos_weight(targets)
    assert torch.allclose(pw, torch.full((4,), 48.0))
    loss = lt.local_loss(out, targets, pw)
    loss.backward()
    assert loss.ndim == 0 and math.isfinite(float(loss.detach()))
    assert all(p.grad is not None for p in head.parameters())
    # perfect, confident logits give a loss near zero
    assert float(lt.local_loss((targets * 2 - 1) * 20, targets, pw)) < 1e-6
    with pytest.raises(ValueError, match="differ"):
        lt.local_loss(out, torch.zeros(2, 3, 7, 7))
    with pytest.raises(ValueError, match="do not form"):
        local_maps(torch.zeros(1, 48, 2))


def test_local_head_starts_at_the_prior_and_pos_weight_is_clipped():
    head = LocalHead(dim=8, n_out=3)
    assert torch.allclose(head.net[-1].bias, torch.full((3,), math.log(0.05 / 0.95)))
    targets = torch.zeros(1, 2, 7, 7)
    targets[0, 0, 0, 0] = 1  # 48 negatives per positive -> 48; no positives -> the upper clip
    assert lt.local_pos_weight(targets).tolist() == [48.0, lt.POS_WEIGHT_RANGE[1]]
    assert lt.local_pos_weight(torch.ones(1, 1, 7, 7)).tolist() == [lt.POS_WEIGHT_RANGE[0]]


def test_attach_local_head():
    model = build_student(28, 3, seed=0, embed_dim=24, depth=1, num_heads=2)
    assert model.local_head is None and "local" not in model(torch.rand(2, 1, 28, 28))
    assert attach_local_head(model) is model and model.local_head.n_out == 4
    assert model(torch.rand(2, 1, 28, 28))["local"].shape == (2, 49, 4)
    with pytest.raises(TypeError, match="local_head"):
        attach_local_head(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------------------------------------
# The objective and the multi-task students
# ---------------------------------------------------------------------------------------------

def test_local_objective_trains_a_tiny_student_with_train_fit():
    n, c = 16, 3
    split = _boxed_split(n, c)
    model = attach_local_head(build_student(28, c, seed=0, embed_dim=24, depth=1, num_heads=2))
    objective = lt.LocalObjective(SupervisedObjective(), lambda_local=0.5)
    history = fit(model, split, None, objective, TrainConfig(epochs=1, batch_size=8, patience=None), progress=False)
    assert "train_local" in history[0] and math.isfinite(history[0]["train_local"])
    assert objective.targets.shape == (n, c + 1, 7, 7)
    assert objective.config()["local"]["lambda_local"] == 0.5
    assert objective.config()["objective"] == "supervised"  # the base's config, plus the local part
    maps = loc.predict_local_maps(model, split.images[28])
    assert maps.shape == (n, c + 1, 7, 7) and (maps >= 0).all() and (maps <= 1).all()
    att = loc.attention_maps(model, split.images[28], kind="rollout")
    assert att.shape == (n, 7, 7) and np.allclose(att.sum(axis=(1, 2)), 1.0, atol=1e-5)
    report = loc.localization_report(maps, split.boxes, split.box_labels, split.box_mm, IMAGE, ["a", "b", "c"])
    assert set(report.metric) == {"token_auroc", "pointing", "iou", "mass_in_box"}
    table = loc.model_localization(model, split)
    assert set(table["map"]) == {"attention:rollout", "attention:last", "local-head"}
    # a model without a local head is refused by the objective, and so is a split without boxes
    with pytest.raises(ValueError, match="local head"):
        lt.LocalObjective().setup(build_student(28, c, seed=0, embed_dim=24, depth=1, num_heads=2), split)
    with pytest.raises(lt.LocalTaskUnavailable, match="local task unavailable"):
        lt.LocalObjective().setup(model, replace(split, boxes=[], box_labels=[], box_mm=[]))
    with pytest.raises(RuntimeError, match="setup"):
        batch = split.batch(torch.arange(2), 28)
        lt.LocalObjective()(batch, model(batch["x"]), model)


def test_local_objective_takes_the_tuned_weight_by_default():
    from mlcak_lib.variants import default_weights

    assert lt.LocalObjective().lambda_local == default_weights()["lambda_local"]
    assert lt.LocalObjective(lambda_local=0.0).lambda_local == 0.0


def test_multitask_variants_train_through_recipes_train_student(tmp_path):
    """``multitask`` / ``mlcak-mt`` are ordinary variants: a local head, the local loss, their own cache key."""
    n, c = 12, 3
    split = _boxed_split(n, c, seed=1, resolutions=(IMAGE, 28), box=[40.0, 40.0, 120.0, 120.0])
    arch = {"embed_dim": 24, "depth": 2, "num_heads": 2}
    teacher = build_teacher(c, seed=0, **arch).eval()
    cfg = TrainConfig(epochs=1, batch_size=6, patience=None)
    kw = dict(profile="default", config=cfg, data_desc={"dataset": "toy"}, progress=False, cache_dir=tmp_path,
              arch_overrides=arch)
    splits = {"train": split, "val": split}
    mt, history, info = recipes.train_student("multitask", 28, splits, **kw)
    assert mt.local_head is not None and "train_local" in history[0]
    assert info["path"] == f"models/student-toy-default-multitask-r28-{info['hash']}.pt"
    full, history_full, info_full = recipes.train_student("mlcak-mt", 28, splits, teacher, {"hash": "t"}, **kw)
    assert full.local_head is not None and "train_attn_kd" in history_full[0] and "train_local" in history_full[0]
    plain, _, info_plain = recipes.train_student("baseline", 28, splits, **kw)
    assert plain.local_head is None
    assert len({info["hash"], info_full["hash"], info_plain["hash"]}) == 3
    _, _, again = recipes.train_student("multitask", 28, splits, **kw)
    assert again["cache_hit"] and again["hash"] == info["hash"]
    _, _, hidden = recipes.train_student("multitask", 28, splits, local_hidden=8, **kw)
    assert not hidden["cache_hit"] and hidden["hash"] != info["hash"]  # the head's shape is in the key
    no_boxes = {k: replace(v, boxes=[], box_labels=[], box_mm=[]) for k, v in splits.items()}
    with pytest.raises(lt.LocalTaskUnavailable, match="local task unavailable"):
        recipes.train_student("multitask", 28, no_boxes, **kw)
    with pytest.raises(ValueError, match="needs a teacher"):
        recipes.train_student("mlcak-mt", 28, splits, **kw)
