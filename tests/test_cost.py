"""Analytic FLOP count of mlcak_lib.cost (notebook 03): hand-checkable cases, independent of the torch version."""

import pytest
import torch
from torch import nn

from mlcak_lib import models
from mlcak_lib.cost import architecture_flops, cost_table, count_flops, flop_breakdown


class _Wrap(nn.Module):
    """Feeds the image to one layer (flattened for a linear layer)."""

    def __init__(self, layer: nn.Module, flatten: bool = False) -> None:
        super().__init__()
        self.layer, self.flatten = layer, flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.flatten(1) if self.flatten else x)


def test_single_linear():
    # one 4x4 image flattened to 16 features -> 5 outputs: 16 * 5 multiply-adds
    model = _Wrap(nn.Linear(16, 5), flatten=True)
    assert architecture_flops(model, 4) == 2 * 16 * 5


def test_single_linear_on_tokens_counts_every_row():
    # [1, 3, 7, 7] seen as 3 * 7 = 21 rows of 7 features -> 4 outputs each
    model = _Wrap(nn.Linear(7, 4))
    assert architecture_flops(model, 7, in_chans=3) == 2 * 21 * 7 * 4


def test_single_conv():
    # 3 -> 8 channels, 3x3, stride 2, padding 1 on 16x16: 8x8 output positions
    model = _Wrap(nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1))
    assert architecture_flops(model, 16, in_chans=3) == 2 * 3 * 3 * 3 * 8 * 8 * 8
    grouped = _Wrap(nn.Conv2d(4, 8, kernel_size=3, padding=1, groups=2))
    assert architecture_flops(grouped, 5, in_chans=4) == 2 * (4 // 2) * 3 * 3 * 8 * 5 * 5


def _blocks_and_heads(arch: dict, num_classes: int) -> int:
    """Transformer blocks + MLCT/MCCT heads of a course ViT, from its dimensions."""
    n = arch["grid"] ** 2 + 1  # tokens incl. the class token
    d, h = arch["embed_dim"], int(arch["embed_dim"] * arch["mlp_ratio"])
    linear = 2 * n * (d * 3 * d + d * d + d * h + h * d)  # qkv, proj, fc1, fc2
    attention = 2 * 2 * n * n * d  # Q K^T and A V over all heads: heads * head_dim = d
    heads = 2 * d * (num_classes + 2)  # on the class token only
    return arch["depth"] * (linear + attention) + heads


@pytest.mark.parametrize("resolution", [224, 28])
def test_course_vit_matches_formula(resolution):
    arch = models.architecture("default")
    assert arch["stem_channels"] == (16, 32, 64) and arch["embed_dim"] == 96 and arch["grid"] == 7
    model = models.build_vit(resolution, 9, profile="default", seed=0)
    if resolution == 224:  # patch 32: 4x4 patchify to 8 channels, three 3x3 stride-2 convs, 1x1 to 96
        stem = (2 * 1 * 4 * 4 * 8 * 56 * 56 + 2 * 8 * 9 * 16 * 28 * 28 + 2 * 16 * 9 * 32 * 14 * 14
                + 2 * 32 * 9 * 64 * 7 * 7 + 2 * 64 * 96 * 7 * 7)
    else:  # patch 4: two 3x3 stride-2 convs (32, 64 channels), 1x1 to 96
        stem = 2 * 1 * 9 * 32 * 14 * 14 + 2 * 32 * 9 * 64 * 7 * 7 + 2 * 64 * 96 * 7 * 7
    parts = flop_breakdown(model, resolution)
    assert parts["conv"] == stem
    assert parts["attention"] == arch["depth"] * 2 * 2 * 50 * 50 * 96
    assert architecture_flops(model, resolution) == stem + _blocks_and_heads(arch, 9)


def test_patch_stem_and_local_head():
    model = models.build_vit(56, 3, profile="default", stem="patch", depth=1, seed=0)
    arch = model.arch
    patch = 2 * 1 * 8 * 8 * arch["embed_dim"] * 49  # one 8x8 linear patch embedding per token
    base = patch + _blocks_and_heads(arch, 3)
    assert architecture_flops(model, 56) == base
    models.attach_local_head(model)  # LayerNorm + Linear(96, C + 1) on the 49 patch tokens
    assert architecture_flops(model, 56) == base + 2 * 49 * arch["embed_dim"] * (3 + 1)


def test_count_leaves_the_model_as_it_was():
    model = models.build_vit(28, 3, profile="default", depth=1, seed=0)
    model.train()
    before = [p.clone() for p in model.parameters()]
    architecture_flops(model, 28)
    assert model.training
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))
    assert not model.vit.blocks[0].attn._forward_hooks and not model.mlct_head._forward_hooks


@pytest.mark.parametrize("resolution", [224, 28])
def test_profiler_agrees_up_to_attention_products(resolution):
    # FlopCounterMode counts the same linear and convolution work, but whether it attributes FLOPs
    # to the fused scaled_dot_product_attention kernel depends on the torch version (torch 2.14.1
    # on CPU: not counted, 36.3 MFLOPs at 224; 2.15.0: counted, 40.2). A fixed "within 15 %" would
    # pass on both today, but the attention share grows with the token count, so instead the test
    # requires the profiler's count to lie between the analytic count without and with the
    # attention products (2 % slack for anything a future counter adds or drops).
    model = models.build_vit(resolution, 9, profile="default", seed=0)
    parts = flop_breakdown(model, resolution)
    analytic = sum(parts.values())
    profiled = count_flops(model, resolution)
    assert 0.98 * (analytic - parts["attention"]) <= profiled <= 1.02 * analytic
    assert abs(profiled - analytic) <= 0.15 * analytic


def test_cost_table_reports_the_analytic_count():
    build = lambda r: models.build_vit(r, 9, profile="default", seed=0)  # noqa: E731
    table = cost_table(build, resolutions=(224, 112, 56, 28), latency=False)
    assert "gflops_profiler" not in table
    mflops = {int(r): round(g * 1000, 1) for r, g in zip(table["resolution"], table["gflops"])}
    assert mflops == {224: 40.2, 112: 39.6, 56: 37.8, 28: 35.9}  # what notebook 03's check cell prints
    assert table["latency_ms"].isna().all()
    with_profiler = cost_table(build, resolutions=(28,), latency=False, profiler=True)
    assert with_profiler.loc[0, "gflops_profiler"] > 0
    assert list(with_profiler.columns) == ["resolution", "patch", "tokens", "params", "gflops", "gflops_profiler", "latency_ms"]
