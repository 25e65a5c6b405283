"""Reading attention out of timm ViTs, with or without gradients (introduced in notebook 03).

timm's ``Attention`` normally calls the fused ``scaled_dot_product_attention`` kernel, which never
materialises the attention matrix. :func:`capture_attention` switches the fused path off for the
duration of a ``with`` block and hooks ``attn.attn_drop``, whose input is the post-softmax matrix
``softmax(q k^T / sqrt(d))`` of shape ``[B, heads, T, T]`` (``T = 1 + N``: class token first).

* ``keep_grad=False`` (plots): maps are detached copies.
* ``keep_grad=True`` (distillation, notebook 05): maps stay in the autograd graph, so a loss on
  them trains the model (the MLCAK attention term).

Helpers turn the raw maps into what the course plots and distils: :func:`head_average` (MLCAK's
``(1/N) sum_i H_i``), :func:`cls_attention` (class-token-to-patch attention on the token grid),
:func:`attention_rollout` (Abnar & Zuidema, 2020) and :func:`evenly_spaced_blocks` (the
course's rule for pairing teacher and student blocks).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention modules of a timm ViT (or a model wrapping one), in block order.

    Recognised by duck typing (``qkv``, ``attn_drop`` and ``fused_attn`` attributes), which
    covers ``timm.layers.Attention`` and the attention of older timm releases.
    """
    found = [m for m in model.modules() if hasattr(m, "qkv") and hasattr(m, "attn_drop") and hasattr(m, "fused_attn")]
    if not found:
        raise ValueError("no timm attention modules found in this model")
    return found


class AttentionMaps:
    """What :func:`capture_attention` fills in: the latest map of each captured block.

    ``maps[b]`` (or ``maps.by_block[b]``) is the ``[B, heads, T, T]`` map of block ``b``;
    ``maps.blocks`` the captured block indices; ``list(maps)`` the maps in block order;
    ``maps.stack()`` a ``[L, B, heads, T, T]`` tensor. A second forward pass inside the same
    ``with`` block replaces the maps of the first.
    """

    def __init__(self, blocks: Sequence[int], keep_grad: bool) -> None:
        self.blocks = list(blocks)
        self.keep_grad = keep_grad
        self.by_block: dict[int, torch.Tensor] = {}

    def __getitem__(self, block: int) -> torch.Tensor:
        return self.by_block[block]

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.by_block[b] for b in self.blocks if b in self.by_block)

    def __len__(self) -> int:
        return len(self.by_block)

    def stack(self) -> torch.Tensor:
        if len(self.by_block) != len(self.blocks):
            raise RuntimeError("run a forward pass inside the `with capture_attention(...)` block first")
        return torch.stack(list(self), dim=0)

    def __repr__(self) -> str:
        shapes = {b: tuple(m.shape) for b, m in self.by_block.items()}
        return f"AttentionMaps(keep_grad={self.keep_grad}, maps={shapes})"


@contextmanager
def capture_attention(
    model: nn.Module, blocks: Sequence[int] | None = None, keep_grad: bool = False
) -> Iterator[AttentionMaps]:
    """Capture post-softmax attention ``[B, heads, 1+N, 1+N]`` of the chosen blocks during forward passes.

    >>> with capture_attention(model, blocks=[0, 3], keep_grad=True) as maps:
    ...     out = model(x)
    >>> loss = ((maps[3] - target) ** 2).mean()   # gradients reach the model

    ``blocks``: block indices (negative allowed; default all). ``keep_grad``: keep the maps in the
    autograd graph (distillation) or detach them (plots). The fused-attention flag of every
    hooked block is restored on exit. The maps stay readable after the ``with`` block.
    """
    modules = attention_modules(model)
    depth = len(modules)
    chosen = list(range(depth)) if blocks is None else [b % depth for b in blocks]
    if blocks is not None and any(not -depth <= b < depth for b in blocks):
        raise IndexError(f"block indices {list(blocks)} out of range for a depth-{depth} model")
    maps = AttentionMaps(chosen, keep_grad)
    handles, saved = [], []
    for b in chosen:
        attn = modules[b]
        saved.append((attn, attn.fused_attn))
        attn.fused_attn = False

        def hook(_module, inputs, _output, b=b):
            a = inputs[0]
            maps.by_block[b] = a if keep_grad else a.detach()

        handles.append(attn.attn_drop.register_forward_hook(hook))
    try:
        yield maps
    finally:
        for h in handles:
            h.remove()
        for attn, fused in saved:
            attn.fused_attn = fused


def get_attention(
    model: nn.Module, x: torch.Tensor, blocks: Sequence[int] | None = None, keep_grad: bool = False
) -> tuple[object, list[torch.Tensor]]:
    """Run ``model(x)`` and return ``(outputs, [map of each block])``; no grad at all when ``keep_grad`` is False."""
    with capture_attention(model, blocks, keep_grad) as maps:
        if keep_grad:
            out = model(x)
        else:
            with torch.no_grad():
                out = model(x)
    return out, list(maps)


def head_average(attn: torch.Tensor) -> torch.Tensor:
    """Mean over heads: ``[B, heads, T, T] -> [B, T, T]`` (MLCAK's map of one level)."""
    return attn.mean(dim=1)


def cls_attention(attn: torch.Tensor, num_prefix_tokens: int = 1, normalize: bool = False) -> torch.Tensor:
    """Class-token-to-patch attention on the token grid: ``[B, (heads,) T, T] -> [B, (heads,) g, g]``.

    Takes row 0 (the class token as query) and the patch columns. ``normalize=True`` rescales the
    patch weights to sum to one (the class token's attention to itself is dropped).
    """
    row = attn[..., 0, num_prefix_tokens:]
    n = row.shape[-1]
    g = math.isqrt(n)
    if g * g != n:
        raise ValueError(f"{n} patch tokens do not form a square grid")
    if normalize:
        row = row / row.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return row.reshape(*row.shape[:-1], g, g)


def attention_rollout(maps: Sequence[torch.Tensor], residual: bool = True) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, ACL 2020): ``[B, T, T]`` flow from inputs to the last block.

    Each block's head-averaged map ``A`` (4-D maps are averaged over heads) is mixed with the
    residual connection, ``0.5 A + 0.5 I`` (``residual=True``), renormalised over keys, and the
    blocks are multiplied in order: ``R = A_L ... A_2 A_1``. ``cls_attention(R)`` gives the rollout
    map of the class token.
    """
    result = None
    for a in maps:
        a = head_average(a) if a.dim() == 4 else a
        if residual:
            eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
            a = 0.5 * a + 0.5 * eye
            a = a / a.sum(dim=-1, keepdim=True)
        result = a if result is None else a @ result
    if result is None:
        raise ValueError("attention_rollout needs at least one map")
    return result


def upsample_map(grid_map: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """Resize ``[B, g, g]`` (or ``[g, g]``) maps to ``size x size`` pixels for overlays on the image."""
    squeeze = grid_map.dim() == 2
    m = grid_map[None] if squeeze else grid_map
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    out = torch.nn.functional.interpolate(m[:, None].float(), size=(size, size), mode=mode, **kwargs)[:, 0]
    return out[0] if squeeze else out


def evenly_spaced_blocks(depth: int, levels: int) -> list[int]:
    """``levels`` block indices spread evenly over ``depth`` blocks, always ending with the last.

    The course's rule for pairing teacher and student blocks of different depths
    (e.g. ``evenly_spaced_blocks(12, 3) == [3, 7, 11]``, ``evenly_spaced_blocks(4, 2) == [1, 3]``).
    """
    if not 1 <= levels <= depth:
        raise ValueError(f"levels must be in 1..{depth}")
    return [round((i + 1) * depth / levels) - 1 for i in range(levels)]
