"""Parameters, FLOPs and measured latency of teacher and students (introduced in notebook 03).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass of one
image (matrix multiplications and convolutions; 1 multiply-add = 2 FLOPs; softmax, norms and
activations are not counted). Latency is the median wall time of a forward pass in eval mode
without gradients, divided by the batch size: it depends on the machine and the thread count,
FLOPs and parameters do not.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence

import torch
from torch import nn


def count_flops(model: nn.Module, resolution: int, in_chans: int = 1) -> int:
    """Forward FLOPs for one ``[1, in_chans, r, r]`` image (FlopCounterMode, no gradients)."""
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
):
    """One row per resolution: ``resolution``, ``patch``, ``tokens``, ``params``, ``gflops``, ``latency_ms``.

    ``build_fn(resolution)`` returns a model for that resolution, e.g.
    ``lambda r: models.build_vit(r, num_classes=6, seed=0)``. ``latency=False`` skips the timing
    (the column is then NaN).
    """
    import pandas as pd

    rows = []
    for r in resolutions:
        model = build_fn(r)
        params = sum(p.numel() for p in model.parameters())
        flops = count_flops(model, r)
        ms = measure_latency(model, r, batch_size, repeats) * 1e3 if latency else float("nan")
        grid = getattr(model, "grid", None)
        rows.append({
            "resolution": r,
            "patch": getattr(model, "patch_size", None),
            "tokens": grid * grid if grid else None,
            "params": params,
            "gflops": flops / 1e9,
            "latency_ms": ms,
        })
    return pd.DataFrame(rows)
