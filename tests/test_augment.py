"""The teacher's augmentation (mlcak_lib.augment): films and boxes move together, targets are restored, draws are
seeded, and the settings enter the teacher's key."""

import numpy as np
import pytest
import torch

from mlcak_lib import recipes
from mlcak_lib.augment import AugmentSpec, Augmented, jitter_intensity, move_boxes, random_affine, warp
from mlcak_lib.guidance import AttentionGuidance
from mlcak_lib.local_task import LocalObjective, local_targets
from mlcak_lib.models import attach_local_head, build_vit
from mlcak_lib.splits import InMemorySplit
from mlcak_lib.train import SupervisedObjective

SIZE = 224


def _squares(n: int = 6, seed: int = 0) -> InMemorySplit:
    """Films that are black but for one bright square, whose box is the film's only lesion."""
    rng = np.random.default_rng(seed)
    images = torch.zeros(n, 1, SIZE, SIZE)
    boxes, labels = [], []
    for i in range(n):
        x0, y0 = rng.integers(40, 140, 2)
        w, h = rng.integers(20, 50, 2)
        images[i, 0, y0:y0 + h, x0:x0 + w] = 1.0
        boxes.append(torch.tensor([[x0, y0, x0 + w, y0 + h]], dtype=torch.float32))
        labels.append(torch.tensor([i % 3]))
    names = ["a", "b", "c"]
    mlct = torch.zeros(n, 3)
    mlct[torch.arange(n), torch.arange(n) % 3] = 1
    return InMemorySplit({SIZE: images}, mlct, torch.ones(n, dtype=torch.long), names, boxes, labels,
                         [torch.tensor([20.0])] * n, "train")


def test_identity_map_leaves_films_and_boxes():
    spec = AugmentSpec(mode="geometric", scale=(1.0, 1.0), aspect=0.0, rotate_deg=0.0, shift=0.0)
    A, t = random_affine(4, spec, torch.Generator().manual_seed(0))
    x = torch.rand(4, 1, 32, 32)
    assert torch.allclose(warp(x, A, t), x, atol=1e-5)
    box = np.array([[10.0, 20.0, 50.0, 60.0]])
    assert np.allclose(move_boxes(box, A[0], t[0], SIZE), box, atol=1e-4)


def test_moved_box_holds_the_moved_square():
    split = _squares()
    spec = AugmentSpec(mode="geometric")
    A, t = random_affine(len(split), spec, torch.Generator().manual_seed(3))
    moved_films = warp(split.images[SIZE], A, t)
    for i in range(len(split)):
        film = moved_films[i, 0]
        box = move_boxes(split.boxes[i], A[i], t[i], SIZE)[0]
        x0, y0, x1, y1 = np.floor(box[:2]).astype(int).tolist() + np.ceil(box[2:]).astype(int).tolist()
        inside = film[y0:y1, x0:x1].sum()
        assert inside >= 0.97 * film.sum() > 0  # the square moved into its moved box
        area = (box[2] - box[0]) * (box[3] - box[1])
        assert area <= 1.6 * float((film > 0.5).sum()) + 200  # the box stays tight (rotation adds corners)
    assert not torch.allclose(moved_films, split.images[SIZE])


def test_augmented_swaps_targets_for_the_step_then_restores_them():
    split = _squares()
    model = attach_local_head(build_vit(SIZE, 3, profile="default", seed=0))
    local = LocalObjective(SupervisedObjective(), lambda_local=1.0)
    guided = AttentionGuidance(local, blocks=(1, 3))
    obj = Augmented(guided, AugmentSpec(mode="geometric"), seed=0)
    obj.setup(model, split)
    before_local, before_guide = local.targets.clone(), guided.targets.clone()

    seen = {}
    inner_forward = guided.forward

    def spy(m, batch):
        seen["x"], seen["local"] = batch["x"], local.targets.clone()
        return inner_forward(m, batch)

    guided.forward = spy
    batch = split.batch(torch.arange(len(split)), SIZE)
    outputs = obj.forward(model, batch)
    # during the step: each film's local targets are those of its moved box, on the moved film
    for i in range(len(split)):
        film = seen["x"][i, 0]
        pooled = torch.nn.functional.avg_pool2d((film > 0.5).float()[None, None], SIZE // model.grid)[0, 0]
        target = seen["local"][i, -1]
        assert bool(((target > 0) <= (pooled > 0)).all())  # no target token without the lesion in it
        assert bool(target.sum() > 0)
    assert not torch.equal(seen["local"], before_local)
    loss, parts = obj(batch, outputs, model)
    assert torch.isfinite(loss) and {"bce", "ce", "local", "guide"} <= set(parts)
    assert torch.equal(local.targets, before_local) and torch.equal(guided.targets, before_guide)  # restored
    loss.backward()


def test_draws_are_seeded():
    split = _squares()
    model = build_vit(SIZE, 3, profile="default", seed=0)

    def first_batch(seed: int) -> torch.Tensor:
        obj = Augmented(SupervisedObjective(), AugmentSpec(), seed=seed)  # labels only: no targets to move
        obj.setup(model, split)
        seen = {}
        base_forward = obj.base.forward
        obj.base.forward = lambda m, b: (seen.setdefault("x", b["x"]), base_forward(m, b))[1]
        obj.forward(model, split.batch(torch.arange(4), SIZE))
        return seen["x"]

    assert torch.equal(first_batch(0), first_batch(0))
    assert not torch.equal(first_batch(0), first_batch(1))


def test_intensity_stays_in_range_and_keeps_order():
    x = torch.rand(8, 1, 16, 16)
    y = jitter_intensity(x, AugmentSpec(mode="intensity"), torch.Generator().manual_seed(0))
    assert y.min() >= 0 and y.max() <= 1 and not torch.allclose(x, y)
    # a monotone map per film: brighter stays brighter wherever nothing was clipped
    a, b = x[0].flatten(), y[0].flatten()
    keep = (b > 0) & (b < 1)
    order = torch.argsort(a[keep])
    assert bool((torch.diff(b[keep][order]) >= -1e-6).all())


@pytest.mark.parametrize("bad", [dict(mode="flip"), dict(scale=(1.2, 1.0)), dict(aspect=1.0), dict(contrast=-0.1)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        AugmentSpec(**bad)


def test_teacher_key_names_the_augmentation():
    spec = recipes.TEACHER_OBJECTIVE["default"]["augment"]
    config = recipes.teacher_objective("default").config()
    assert config["augment"]["mode"] == spec
    assert recipes.teacher_objective("default", boxes=False).config()["augment"]["mode"] == spec
    assert "local" in config and "guidance" in config
    assert "augment" not in recipes.teacher_objective("full").config()
