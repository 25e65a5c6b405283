"""Parameters, FLOPs and measured latency of teacher and students (introduced in notebook 03).

FLOPs are counted **from the architecture** (:func:`architecture_flops`): one forward pass of one
image with hooks that read the shapes each layer sees, and a closed formula per layer -- the
matrix multiplications of every ``nn.Linear``, the convolutions of the patch-embedding stem and
attention's ``Q K^T`` and ``A V`` products; 1 multiply-add = 2 FLOPs; softmax, norms,
activations, additions and biases are not counted. The count depends only on the model's
shapes, never on the torch version. (``torch.utils.flop_counter.FlopCounterMode``, kept as
:func:`count_flops`, counts the same kind of work but what it attributes to fused kernels such
as ``scaled_dot_product_attention`` changes between torch releases, by about 10 % for these
models; notebooks print only the analytic count.) Latency is the median wall time of a forward
pass in eval mode without gradients, divided by the batch size: it depends on the machine and
the thread count, FLOPs and parameters do not.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable, Sequence

import torch
from torch import nn


def _is_attention(module: nn.Module) -> bool:
    """A multi-head self-attention module that computes its own ``Q K^T`` and ``A V`` (timm's ``Attention``)."""
    return isinstance(getattr(module, "num_heads", None), int) and isinstance(getattr(module, "head_dim", None), int)


@torch.no_grad()
def flop_breakdown(model: nn.Module, resolution: int, in_chans: int = 1) -> dict[str, int]:
    """Analytic forward FLOPs of one ``[1, in_chans, r, r]`` image, split into ``linear``, ``conv``, ``attention``.

    See :func:`architecture_flops` (their sum) for what is counted. One forward pass in eval mode
    with hooks records the input shapes; every number is a formula of those shapes:

    * ``nn.Linear``: ``2 * in_features * out_features`` per input row (token, or pooled vector);
    * ``nn.ConvNd``: ``2 * (C_in / groups) * prod(kernel) * C_out`` per output position;
    * attention (a module with integer ``num_heads`` and ``head_dim``, e.g. timm's ``Attention``,
      whose input is ``[B, N, C]``): ``2 * 2 * heads * N**2 * head_dim`` for ``Q K^T`` and ``A V``.
    """
    if any(isinstance(m, nn.MultiheadAttention) for m in model.modules()):
        raise TypeError("nn.MultiheadAttention calls its projections functionally; its FLOPs are not counted here")
    counts = {"linear": 0, "conv": 0, "attention": 0}
    attention_modules = [m for m in model.modules() if _is_attention(m)]
    # only the innermost attention modules compute the products (no double counting of wrappers)
    attention_modules = [m for m in attention_modules if not any(_is_attention(c) for c in m.modules() if c is not m)]

    def linear_hook(module: nn.Linear, args, output) -> None:
        rows = args[0].numel() // module.in_features
        counts["linear"] += 2 * module.in_features * module.out_features * rows

    def conv_hook(module: nn.modules.conv._ConvNd, args, output) -> None:
        kernel = math.prod(module.kernel_size)
        if module.transposed:  # every input element scatters to C_out / groups * kernel outputs
            counts["conv"] += 2 * args[0].numel() * (module.out_channels // module.groups) * kernel
        else:  # every output element gathers C_in / groups * kernel inputs
            counts["conv"] += 2 * output.numel() * (module.in_channels // module.groups) * kernel

    def attention_hook(module: nn.Module, args, kwargs, output) -> None:
        x = args[0] if args else kwargs["x"]
        batch, tokens = x.shape[0], x.shape[1]
        counts["attention"] += 2 * 2 * batch * module.num_heads * tokens**2 * module.head_dim

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, nn.modules.conv._ConvNd):
            handles.append(m.register_forward_hook(conv_hook))
    for m in attention_modules:
        handles.append(m.register_forward_hook(attention_hook, with_kwargs=True))
    param = next(model.parameters())
    x = torch.zeros(1, in_chans, resolution, resolution, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return counts


def architecture_flops(model: nn.Module, resolution: int, in_chans: int = 1) -> int:
    """Forward FLOPs of one ``[1, in_chans, r, r]`` image counted from the architecture (notebook 03).

    1 multiply-add = 2 FLOPs. Counted: the matrix multiplications of every linear layer (QKV,
    projections, MLPs, heads, an attached ``local_head``), the convolutions of the patch-embedding
    stem and attention's ``Q K^T`` and ``A V`` products (``N`` tokens including the class token).
    Not counted: softmax, norms, activations, additions (residuals, biases, position embeddings)
    and the input normalisation. Depends only on the model's shapes, not on the torch version;
    :func:`flop_breakdown` gives the parts.
    """
    return sum(flop_breakdown(model, resolution, in_chans).values())


def count_flops(model: nn.Module, resolution: int, in_chans: int = 1) -> int:
    """Forward FLOPs for one ``[1, in_chans, r, r]`` image by ``FlopCounterMode`` (no gradients).

    What the profiler attributes to fused kernels changes between torch versions (about 10 % for
    the course's ViTs); print :func:`architecture_flops` where a number must be reproducible.
    """
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    x = torch.rand(1, in_chans, resolution, resolution, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


@torch.no_grad()
def measure_latency(model: nn.Module, resolution: int, batch_size: int = 32, repeats: int = 5, warmup: int = 2, in_chans: int = 1) -> float:
    """Median seconds per image of an eval-mode forward pass over ``repeats`` timed batches."""
    device = next(model.parameters()).device
    x = torch.rand(batch_size, in_chans, resolution, resolution, device=device)
    was_training = model.training
    model.eval()
    try:
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return statistics.median(times) / batch_size


def cost_table(
    build_fn: Callable[[int], nn.Module],
    resolutions: Sequence[int] = (224, 112, 56, 28),
    latency: bool = True,
    batch_size: int = 32,
    repeats: int = 5,
    profiler: bool = False,
):
    """One row per resolution: ``resolution``, ``patch``, ``tokens``, ``params``, ``gflops``, ``latency_ms``.

    ``build_fn(resolution)`` returns a model for that resolution, e.g.
    ``lambda r: models.build_vit(r, num_classes=6, seed=0)``. ``gflops`` is the analytic count
    (:func:`architecture_flops`, independent of the torch version). ``latency=False`` skips the
    timing (the column is then NaN). ``profiler=True`` adds ``gflops_profiler``, the
    ``FlopCounterMode`` count (:func:`count_flops`), which varies with the torch version.
    """
    import pandas as pd

    rows = []
    for r in resolutions:
        model = build_fn(r)
        params = sum(p.numel() for p in model.parameters())
        flops = architecture_flops(model, r)
        ms = measure_latency(model, r, batch_size, repeats) * 1e3 if latency else float("nan")
        grid = getattr(model, "grid", None)
        rows.append({
            "resolution": r,
            "patch": getattr(model, "patch_size", None),
            "tokens": grid * grid if grid else None,
            "params": params,
            "gflops": flops / 1e9,
        })
        if profiler:
            rows[-1]["gflops_profiler"] = count_flops(model, r) / 1e9
        rows[-1]["latency_ms"] = ms
    return pd.DataFrame(rows)
