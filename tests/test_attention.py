"""Attention capture with and without gradients, head averages, CLS maps and rollout."""

import pytest
import torch

from mlcak_lib import attention as A
from mlcak_lib.models import build_vit


@pytest.fixture(scope="module")
def small_models():
    return {r: build_vit(r, 3, seed=0, depth=2, embed_dim=48, num_heads=3) for r in (224, 112, 56, 28)}


@pytest.mark.parametrize("resolution", [224, 112, 56, 28])
def test_shapes_and_rows_sum_to_one(small_models, resolution):
    m = small_models[resolution].eval()
    with A.capture_attention(m) as maps:
        with torch.no_grad():
            m(torch.rand(2, 1, resolution, resolution))
    assert maps.blocks == [0, 1] and len(maps) == 2
    for a in maps:
        assert a.shape == (2, 3, 50, 50)
        assert torch.allclose(a.sum(-1), torch.ones(2, 3, 50))
    assert maps.stack().shape == (2, 2, 3, 50, 50)
    assert A.head_average(maps[1]).shape == (2, 50, 50)
    assert A.cls_attention(maps[1]).shape == (2, 3, 7, 7)
    assert A.cls_attention(A.head_average(maps[1])).shape == (2, 7, 7)
    cls = A.cls_attention(maps[1], normalize=True)
    assert torch.allclose(cls.sum((-1, -2)), torch.ones(2, 3))


def test_fused_flag_restored_and_hooks_removed(small_models):
    m = small_models[28]
    before = [blk.attn.fused_attn for blk in m.vit.blocks]
    with A.capture_attention(m, blocks=[-1]) as maps:
        m(torch.rand(1, 1, 28, 28))
    assert maps.blocks == [1]
    assert [blk.attn.fused_attn for blk in m.vit.blocks] == before
    assert all(not blk.attn.attn_drop._forward_hooks for blk in m.vit.blocks)
    with pytest.raises(IndexError):
        with A.capture_attention(m, blocks=[5]):
            pass


def test_gradients_flow_from_attention_loss_to_patch_embedding(small_models):
    m = small_models[28].train()
    m.zero_grad()
    with A.capture_attention(m, keep_grad=True) as maps:
        m(torch.rand(2, 1, 28, 28))
    target = torch.full((2, 50, 50), 1 / 50)
    loss = sum(((A.head_average(a) - target) ** 2).mean() for a in maps)
    loss.backward()
    grad = m.vit.patch_embed.proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_with_and_without_grad_give_equal_values(small_models):
    m = small_models[56].eval()
    x = torch.rand(2, 1, 56, 56)
    _, plain = A.get_attention(m, x, keep_grad=False)
    _, graded = A.get_attention(m, x, keep_grad=True)
    assert not plain[0].requires_grad and graded[0].requires_grad
    for a, b in zip(plain, graded):
        assert torch.allclose(a, b.detach(), atol=1e-6)
    # the fused path (default) gives the same outputs as the unfused one used for capture
    with torch.no_grad():
        fused = m(x)["mlct"]
    out, _ = A.get_attention(m, x)
    assert torch.allclose(fused, out["mlct"], atol=1e-5)


def test_rollout_identity_and_rows():
    eye = torch.eye(5).expand(1, 2, 5, 5)
    assert torch.allclose(A.attention_rollout([eye, eye]), torch.eye(5)[None])
    uniform = torch.full((1, 2, 5, 5), 0.2)
    r = A.attention_rollout([uniform, uniform, uniform])
    assert torch.allclose(r.sum(-1), torch.ones(1, 5))
    assert A.cls_attention(torch.rand(1, 50, 50)).shape == (1, 7, 7)
    assert A.upsample_map(torch.rand(2, 7, 7), 224).shape == (2, 224, 224)


def test_evenly_spaced_blocks():
    assert A.evenly_spaced_blocks(12, 3) == [3, 7, 11]
    assert A.evenly_spaced_blocks(4, 2) == [1, 3]
    assert A.evenly_spaced_blocks(4, 1) == [3]
