"""Box-guided attention (the teacher's objective, notebook 04) and the attention statistics it is judged by."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mlcak_lib import localization
from mlcak_lib.guidance import AttentionGuidance, guidance_loss, lesion_distributions
from mlcak_lib.local_task import LocalObjective
from mlcak_lib.models import attach_local_head, build_vit
from mlcak_lib.splits import InMemorySplit
from mlcak_lib.train import TrainConfig, fit

TINY = dict(grid=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, stem_channels=(8, 16))


def _attention_with_cls_row(rows: torch.Tensor) -> torch.Tensor:
    """Head-averaged maps ``[B, 1 + N, 1 + N]`` whose class-token row puts ``rows`` on the patches."""
    b, n = rows.shape
    a = torch.full((b, n + 1, n + 1), 1.0 / (n + 1))
    a[:, 0, 0] = 0.0
    a[:, 0, 1:] = rows
    return a


def test_lesion_distributions_are_normalised_footprints():
    boxes = [torch.tensor([[0.0, 0.0, 16.0, 16.0]]), torch.zeros((0, 4)), torch.tensor([[32.0, 32.0, 64.0, 64.0]])]
    labels = [torch.tensor([0]), torch.zeros(0, dtype=torch.long), torch.tensor([1])]
    q = lesion_distributions(boxes, labels, num_classes=2, image_size=64, grid=4)
    assert q.shape == (3, 16)
    assert torch.allclose(q[[0, 2]].sum(1), torch.ones(2)) and float(q[1].abs().sum()) == 0.0
    assert q[0, 0] == 1.0                       # the 16-px box is exactly token (0, 0)
    assert torch.allclose(q[2].reshape(4, 4)[2:, 2:], torch.full((2, 2), 0.25))


def test_guidance_loss_is_cross_entropy_and_skips_films_without_lesions():
    n = 4
    target = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]])
    uniform = torch.full((2, n), 1.0 / n)
    on_lesion = torch.tensor([[0.97, 0.01, 0.01, 0.01], [0.25, 0.25, 0.25, 0.25]])
    assert float(guidance_loss([_attention_with_cls_row(uniform)], target)) == pytest.approx(math.log(n))
    assert float(guidance_loss([_attention_with_cls_row(on_lesion)], target)) == pytest.approx(-math.log(0.97))
    assert float(guidance_loss([_attention_with_cls_row(uniform)], torch.zeros(2, n))) == 0.0


def _split(n: int = 24, size: int = 32, seed: int = 0) -> InMemorySplit:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=g) * 0.2
    boxes, labels, mm, mlct = [], [], [], torch.zeros(n, 2)
    for i in range(n):
        if i % 2:  # a bright square on every other film, in a random quadrant
            r, c = (int(v) for v in torch.randint(0, 2, (2,), generator=g))
            x[i, 0, r * 16:(r + 1) * 16, c * 16:(c + 1) * 16] += 0.7
            boxes.append(torch.tensor([[c * 16.0, r * 16.0, c * 16.0 + 16, r * 16.0 + 16]]))
            labels.append(torch.tensor([0])); mm.append(torch.tensor([16.0])); mlct[i, 0] = 1
        else:
            boxes.append(torch.zeros((0, 4))); labels.append(torch.zeros(0, dtype=torch.long)); mm.append(torch.zeros(0))
    return InMemorySplit({size: x}, mlct, (mlct.sum(1) > 0).long(), ["a", "b"], boxes, labels, mm, "train")


def test_attention_guidance_trains_the_class_token_to_look_at_the_lesion():
    split = _split()
    arch = dict(TINY, grid=2)
    model = attach_local_head(build_vit(32, 2, seed=0, **arch))
    objective = AttentionGuidance(LocalObjective(None, lambda_local=1.0, image_size=32), weight=1.0, blocks=(-1,),
                                  image_size=32)
    history = fit(model, split, None, objective, TrainConfig(epochs=25, batch_size=8, lr=3e-3, warmup_epochs=0.0,
                                                            patience=None), progress=False)
    assert "train_guide" in history[0] and history[-1]["train_guide"] < 0.5 * history[0]["train_guide"]
    assert objective.config()["guidance"] == {"weight": 1.0, "blocks": [-1], "image_size": 32, "eps": 1e-6}
    maps = localization.attention_maps(model, split.images[32], "last")
    lesion = [i for i in range(len(split)) if len(split.boxes[i])]
    rep = localization.localization_report(maps[lesion], [split.boxes[i] for i in lesion],
                                           [split.box_labels[i] for i in lesion], [split.box_mm[i] for i in lesion], 32)
    assert rep[(rep.metric == "pointing") & (rep.stratum == "all")]["value"].iloc[0] > 0.9


def test_guidance_needs_boxes():
    split = _split()
    split.boxes = []
    with pytest.raises(ValueError, match="lesion boxes"):
        AttentionGuidance().setup(build_vit(32, 2, seed=0, **dict(TINY, grid=2)), split)


def test_attention_variability_and_constant_map():
    rng = np.random.default_rng(0)
    maps = rng.random((10, 3, 3))
    const = np.broadcast_to(localization.constant_map(maps), maps.shape)
    assert localization.constant_map(maps).sum() == pytest.approx(1.0)
    assert localization.attention_variability(const) == pytest.approx(0.0, abs=1e-12)
    onehot = np.zeros((9, 3, 3)); onehot.reshape(9, 9)[np.arange(9), np.arange(9)] = 1.0
    assert localization.attention_variability(onehot) == pytest.approx(8 / 9)  # disjoint maps: 1 - 1/9
    assert 0 < localization.attention_variability(maps) < 1


def test_block_attention_maps_and_attention_summary():
    split = _split()
    model = build_vit(32, 2, seed=0, **dict(TINY, grid=2))
    by_block = localization.block_attention_maps(model, split.images[32], [0, -1])
    assert sorted(by_block) == [0, 1] and by_block[1].shape == (len(split), 2, 2)
    assert np.allclose(by_block[1], localization.attention_maps(model, split.images[32], "last"), atol=1e-6)
    assert np.allclose(by_block[0].sum(axis=(1, 2)), 1.0, atol=1e-5)
    const = np.broadcast_to(localization.constant_map(by_block[1]), by_block[1].shape)
    summary = localization.attention_summary(const, split, image_size=32)
    assert set(summary) == {"token_auroc", "pointing", "const_token_auroc", "const_pointing", "variability"}
    assert summary["token_auroc"] == pytest.approx(summary["const_token_auroc"]) and summary["variability"] < 1e-12
