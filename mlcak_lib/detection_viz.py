"""Figures of notebook 07 (omni-supervised detection after OXnet, issue 16).

Pure helpers (tested) compute what a figure shows: :func:`focal_terms` (cross-entropy and focal loss of one
anchor), :func:`ema_trace` (a mean teacher following a changing weight), :func:`regime_matrix` (which training
films get which supervision at several box fractions), :func:`upsample_map` (a coarse map on the film's pixel grid)
and :func:`seed_points` (the seeds of a committed grid as dots per variant and box fraction). The ``show_*`` and
``plot_*`` functions draw on given axes, with the course's class colours (:func:`mlcak_lib.viz.class_color`):
ground-truth boxes solid, predicted boxes dashed.

This module lives outside :mod:`mlcak_lib.detection` on purpose: every file of that package enters the
detectors' cache key, and a figure must never change a detector. Nothing happens at import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .detection_runner import percent as pct  # one way to write a box fraction, for tables and figures
from .viz import class_color, draw_boxes

#: Colours of the three kinds of supervision (boxes, image labels only, none), in the sampler's code order.
SUPERVISION_COLORS: tuple[str, str, str] = ("#0072b2", "#e69f00", "#bbbbbb")
#: Colours of the variants in the grid figure (the reference grey).
VARIANT_COLORS: dict[str, str] = {"box-only": "#7f7f7f", "dual-attention": "#56b4e9", "prototypes": "#009e73",
                                  "oxnet": "#d55e00"}


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def focal_terms(p: np.ndarray | Sequence[float], gamma: float = 2.0, alpha: float = 0.25,
                positive: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Cross-entropy and focal loss (Lin et al. 2017) of anchors whose predicted probability of the class is ``p``.

    For a foreground anchor (``positive``) ``p_t = p`` and the weight ``alpha``; for a background anchor
    ``p_t = 1 - p`` and ``1 - alpha``. Focal loss is ``alpha_t (1 - p_t)^gamma CE`` with ``CE = -log p_t``:
    near zero for confident correct anchors, close to ``alpha_t CE`` for badly wrong ones.
    """
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    p_t = p if positive else 1.0 - p
    a_t = alpha if positive else 1.0 - alpha
    ce = -np.log(p_t)
    return ce, a_t * (1.0 - p_t) ** gamma * ce


def ema_trace(values: Sequence[float] | np.ndarray, decay: float = 0.99, warmup: bool = True) -> np.ndarray:
    """The mean teacher's value after each step for a student whose value at step ``t`` is ``values[t]``.

    With ``warmup`` (the official code, :func:`mlcak_lib.detection.ema.ema_rate`) the rate at step ``t`` is
    ``min(1 - 1/(t + 1), decay)``: the teacher starts as the running average and becomes an EMA with ``decay``.
    The teacher starts at ``values[0]``.
    """
    values = np.asarray(values, dtype=float)
    out = np.empty_like(values)
    teacher = values[0] if len(values) else 0.0
    for t, v in enumerate(values):
        rate = min(1.0 - 1.0 / (t + 1), decay) if warmup else decay
        teacher = rate * teacher + (1.0 - rate) * v
        out[t] = teacher
    return out


def regime_matrix(regimes: Mapping[float, np.ndarray], n: int | None = None) -> np.ndarray:
    """``[len(regimes), n]`` supervision codes of the first ``n`` films (default all), one row per box fraction,
    in the order of ``regimes`` (``{fraction: codes}`` from :func:`mlcak_lib.detection.sampling.supervision_regime`)."""
    rows = [np.asarray(codes)[:n] for codes in regimes.values()]
    if len({len(r) for r in rows}) > 1:
        raise ValueError("every regime must cover the same films")
    return np.stack(rows) if rows else np.zeros((0, 0), np.int8)


def upsample_map(heat: np.ndarray, size: int) -> np.ndarray:
    """A coarse ``[h, w]`` map repeated to ``[size, size]`` pixels (nearest neighbour, ``size`` a multiple of
    ``h`` and ``w``): each feature cell covers the film pixels it sees, no interpolation invented."""
    heat = _np(heat).astype(float)
    h, w = heat.shape
    if size % h or size % w:
        raise ValueError(f"{size} px is not a multiple of the map's {h} x {w} cells")
    return np.kron(heat, np.ones((size // h, size // w)))


def seed_points(grid, metric: str, variants: Sequence[str], fractions: Sequence[float], resolution: int,
                spread: float = 0.12) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Dots of a committed detection grid (``detection_runner`` CSV as a DataFrame): for each variant, the x
    positions (box fraction ``k`` at ``k + offset``, seeds jittered by seed order within ``spread``) and the
    values of ``metric`` of its runs at ``resolution``, and the variant."""
    out = []
    width = 0.8 / max(1, len(variants))
    for j, v in enumerate(variants):
        xs, ys = [], []
        for k, f in enumerate(fractions):
            runs = grid[(grid["variant"] == v) & np.isclose(grid["box_fraction"], f) & (grid["resolution"] == resolution)]
            runs = runs.sort_values("seed")
            centre = k - 0.4 + width * (j + 0.5)
            jitter = np.linspace(-spread, spread, len(runs)) * width if len(runs) > 1 else np.zeros(len(runs))
            xs += list(centre + jitter)
            ys += list(runs[metric].astype(float))
        out.append((np.asarray(xs), np.asarray(ys), v))
    return out


def show_detections(ax, image, gt_boxes, gt_labels, detections: Mapping[str, Any] | None, class_names: Sequence[str],
                    score_thresh: float = 0.3, max_boxes: int = 5, title: str | None = None) -> dict[str, int]:
    """A film with its ground-truth boxes (solid, class colour, named) and the detector's boxes scoring at least
    ``score_thresh`` (dashed, at most ``max_boxes``, with their scores). Returns how many of each were drawn."""
    from matplotlib.patches import Rectangle

    img = _np(image).squeeze()
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="antialiased")
    gt = draw_boxes(ax, _np(gt_boxes).reshape(-1, 4), [int(v) for v in _np(gt_labels).ravel()], class_names,
                    linewidth=1.4, show_labels=True, fontsize=5.5)
    n_pred = 0
    if detections is not None and len(detections["scores"]):
        scores = _np(detections["scores"])
        keep = np.flatnonzero(scores >= score_thresh)[:max_boxes]
        for i in keep:
            x0, y0, x1, y1 = _np(detections["boxes"][i]).tolist()
            color = class_color(int(_np(detections["labels"][i])))
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=1.0, linestyle="--"))
            ax.text(x1, y1, f"{scores[i]:.2f}", color=color, fontsize=5.5, ha="right", va="top")
        n_pred = len(keep)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7.5)
    return {"ground_truth": len(gt), "predicted": n_pred}


def show_attention(axes, image, level_map, cam, product, titles: Sequence[str] | None = None,
                   box=None, label: int | None = None) -> None:
    """Four panels of dual attention alignment for one film and one class: the film (with the lesion's ``box``),
    the detection subnet's level map, the global head's CAM and their product (the map whose sum is the image
    logit). Maps are drawn over the film (nearest-neighbour upsampling, :func:`upsample_map`)."""
    img = _np(image).squeeze()
    size = img.shape[-1]
    names = titles or ("film", "detection level map", "global head CAM", "map × CAM")
    axes[0].imshow(img, cmap="gray", vmin=0, vmax=1)
    for ax, heat, name in zip(axes[1:], (level_map, cam, product), names[1:]):
        ax.imshow(img, cmap="gray", vmin=0, vmax=1)
        ax.imshow(upsample_map(heat, size), cmap="magma", alpha=0.6)
    for ax, name in zip(axes, names):
        if box is not None:
            draw_boxes(ax, _np(box).reshape(-1, 4), None if label is None else [label], None, show_labels=False)
        ax.set_title(name, fontsize=7.5)
        ax.set_xticks([])
        ax.set_yticks([])


def plot_regimes(ax, regimes: Mapping[float, np.ndarray], n: int | None = 60) -> np.ndarray:
    """Which of the first ``n`` training films get boxes, image labels or nothing, one row per box fraction
    (nested: a film with boxes at 10 % has boxes at 30 %). Returns the matrix drawn (:func:`regime_matrix`)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    m = regime_matrix(regimes, n)
    ax.imshow(m, cmap=ListedColormap(SUPERVISION_COLORS), vmin=-0.5, vmax=2.5, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(regimes)), [f"{pct(f)} boxes" for f in regimes])
    ax.set_xlabel("training film (first %d)" % m.shape[1])
    ax.legend(handles=[Patch(color=c, label=k) for c, k in zip(SUPERVISION_COLORS, ("boxes", "image labels", "none"))],
              loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3, fontsize=7)
    return m


def plot_batches(ax, batches: Sequence[Sequence[int]], codes: np.ndarray) -> np.ndarray:
    """The supervision of every slot of a few two-stream batches (rows: batches, columns: positions)."""
    from matplotlib.colors import ListedColormap

    m = np.stack([np.asarray(codes)[list(b)] for b in batches])
    ax.imshow(m, cmap=ListedColormap(SUPERVISION_COLORS), vmin=-0.5, vmax=2.5, aspect="auto", interpolation="nearest")
    ax.set(xlabel="position in the batch", ylabel="batch")
    ax.set_yticks(range(len(batches)))
    return m


def plot_grid(ax, grid, metric: str, variants: Sequence[str], fractions: Sequence[float], resolution: int,
              upper: float | None = None, ylabel: str | None = None) -> int:
    """``metric`` per variant (colour) and box fraction (group): bars at the mean, seeds as dots; a dotted line at
    the fully box-supervised ``upper`` bound. Returns the number of dots drawn."""
    drawn = 0
    width = 0.8 / max(1, len(variants))
    for j, (xs, ys, v) in enumerate(seed_points(grid, metric, variants, fractions, resolution)):
        color = VARIANT_COLORS.get(v, class_color(j))
        centres = [k - 0.4 + width * (j + 0.5) for k in range(len(fractions))]
        means = [grid[(grid["variant"] == v) & np.isclose(grid["box_fraction"], f) & (grid["resolution"] == resolution)][metric].mean()
                 for f in fractions]
        ax.bar(centres, means, width * 0.9, color=color, alpha=0.45, label=v)
        ax.scatter(xs, ys, s=10, color="k", zorder=3)
        drawn += len(xs)
    if upper is not None and np.isfinite(upper):
        ax.axhline(upper, color="k", ls=":", lw=0.9, label="upper bound (100 % boxes)")
    ax.set_xticks(range(len(fractions)), [f"{pct(f)} boxes" for f in fractions])
    ax.set(ylabel=ylabel or metric, title=f"{ylabel or metric} at {resolution} px (dots: seeds)")
    ax.legend(fontsize=6.5, ncol=2)
    return drawn


def plot_paired(ax, paired, metric: str, reference: str = "box-only", xlabel: str | None = None) -> int:
    """Seed-paired differences against ``reference`` with their 95 % t intervals
    (:func:`mlcak_lib.results.paired_table` rows of ``metric``, one per variant and box fraction). Returns the rows drawn."""
    rows = paired[paired["metric"] == metric].reset_index(drop=True)
    ok = rows["diff"].notna().to_numpy()
    y = np.arange(len(rows))
    if ok.any():
        ax.errorbar(rows["diff"][ok], y[ok], xerr=[(rows["diff"] - rows["ci_low"])[ok], (rows["ci_high"] - rows["diff"])[ok]],
                    fmt="o", color="#d55e00", capsize=3)
    ax.axvline(0, color="k", lw=0.8)
    labels = [f"{v} @ {pct(f)} ({int(n) if np.isfinite(n) else 0} seeds)"
              for v, f, n in zip(rows["variant"], rows["box_fraction"], rows["n"])]
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel=xlabel or f"Δ {metric} vs {reference} (95 % CI)", title="Seed-paired differences")
    return int(ok.sum())


def plot_focal(ax, gamma: float = 2.0, alpha: float = 0.25) -> None:
    """Cross-entropy and focal loss of a foreground anchor against its predicted probability."""
    p = np.linspace(0.01, 0.99, 99)
    ce, fl = focal_terms(p, gamma, alpha)
    ax.plot(p, ce, label="cross-entropy")
    ax.plot(p, alpha * ce, label=f"α-weighted CE (α = {alpha})")
    ax.plot(p, fl, label=f"focal (γ = {gamma:g})")
    ax.set(xlabel="predicted probability of the true class, $p_t$", ylabel="loss per anchor", yscale="log",
           title="Focal loss down-weights easy anchors")
    ax.legend(fontsize=7)


def plot_ema(ax, values: Sequence[float], decays: Sequence[float] = (0.9, 0.99)) -> dict[float, np.ndarray]:
    """A student weight that jumps, and the mean teacher following it with each decay (:func:`ema_trace`)."""
    values = np.asarray(values, dtype=float)
    ax.plot(values, color="k", lw=1.0, label="student")
    traces = {}
    for d in decays:
        traces[d] = ema_trace(values, d)
        ax.plot(traces[d], label=f"teacher, decay {d}")
    ax.set(xlabel="optimiser step", ylabel="weight", title="The mean teacher is an EMA of the student")
    ax.legend(fontsize=7)
    return traces
