"""Localization metrics: does a map point at the lesions? (introduced in notebook 06).

A *map* is a non-negative ``[g, g]`` array on the token grid: predicted lesion probabilities of
the local head (:mod:`mlcak_lib.local_task`) or a CLS-to-patch attention map. The ground truth
is the token footprint of the boxes (the rule of :mod:`mlcak_lib.tokens`, through
:func:`mlcak_lib.local_task.local_targets`).

**Localization metrics** (NumPy, pure functions; a *map* is a non-negative ``[g, g]`` array on
the token grid: predicted lesion probabilities or a CLS-to-patch attention map):

* :func:`token_auroc` -- every token is a sample, positive when :func:`~mlcak_lib.local_task.local_targets` marks it;
  AUROC of the map values pooled over all tokens of all images (an inverted map scores 0).
* :func:`pointing_game` -- a hit when the map's maximum lies on a target token of the class
  (:func:`box_footprint`), **with a tolerance of one token** (Chebyshev distance <= 1 on the grid): at 7 x 7
  a token is 32 px of the 224-px image, and a lesion on a token border may light up its
  neighbour. Ties at the maximum count as the fraction of tied tokens that hit (the expected
  score of random tie-breaking), so a uniform map scores the share of grid tokens near a box.
* :func:`thresholded_iou` -- the map is min-max normalised per image and thresholded at 0.5
  (``method="relative"``; a constant map selects every token), or its ``k`` largest tokens
  are kept with ``k`` = number of target tokens (``method="topk"``); IoU with the any-lesion
  token target of the boxes (:func:`box_footprint`, the rule of :mod:`mlcak_lib.tokens`).
* :func:`mass_in_boxes` -- share of the map's mass that falls inside the box union. The boxes
  are taken *down* to the token grid, not the map up to pixels: each token's mass is spread
  uniformly over its pixels and multiplied by the exact fraction of its area the box union
  covers (:func:`box_coverage`, made with :func:`mlcak_lib.resize.area_resize`). A uniform map
  thus scores the box union's area fraction of the image; a map that puts all its mass on
  tokens inside token-aligned boxes scores 1. A box smaller than a token caps the score at
  the box's share of that token -- a resolution limit the metric shows on purpose.

:func:`localization_report` computes all four for the any-lesion channel (and each class when
the maps have ``C + 1`` channels), overall and stratified by lesion size
(< 10 mm, 10-20 mm, > 20 mm; an image enters the stratum of its **largest** lesion of the
channel, so the "< 10 mm" row contains only images whose lesions are all small).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor, nn

from .attention import attention_rollout, cls_attention, get_attention, head_average
from .local_task import as_box_array, local_targets
from .metrics import SIZE_BINS, eval_batches
from .models import local_maps
from .resize import area_resize
from .tokens import boxes_to_any_lesion_map

__all__ = [
    "box_coverage",
    "box_footprint",
    "token_auroc",
    "pointing_game",
    "thresholded_iou",
    "threshold_map",
    "mass_in_boxes",
    "localization_report",
    "predict_local_maps",
    "attention_maps",
    "model_localization",
    "attention_variability",
    "constant_map",
    "block_attention_maps",
    "attention_summary",
]


# --------------------------------------------------------------------------------------------
# Geometry on the token grid (NumPy)
# --------------------------------------------------------------------------------------------

def _pixel_coverage_1d(lo: float, hi: float, n: int) -> np.ndarray:
    """Overlap of the interval ``[lo, hi]`` with each pixel ``[j, j+1]``, ``j < n`` (values in [0, 1])."""
    left = np.arange(n, dtype=np.float64)
    return np.clip(np.minimum(hi, left + 1) - np.maximum(lo, left), 0.0, 1.0)


def box_coverage(boxes: Any, image_size: int, grid: int) -> np.ndarray:
    """Fraction ``[grid, grid]`` of each token's area covered by the union of ``boxes`` (pixels of the image).

    The union is rasterised at pixel resolution with exact fractional coverage at box edges
    (overlapping boxes that share a partly covered pixel take the larger share), then averaged
    down to the grid with :func:`mlcak_lib.resize.area_resize`. No boxes -> zeros.
    """
    boxes = as_box_array(boxes)
    mask = np.zeros((image_size, image_size), dtype=np.float64)
    for x0, y0, x1, y1 in boxes:
        cy = _pixel_coverage_1d(y0, y1, image_size)
        cx = _pixel_coverage_1d(x0, x1, image_size)
        np.maximum(mask, np.outer(cy, cx), out=mask)
    return np.asarray(area_resize(mask, grid), dtype=np.float64)


def box_footprint(boxes: Any, image_size: int, grid: int) -> np.ndarray:
    """Boolean ``[grid, grid]``: the any-lesion token target of ``boxes`` (the rule of :mod:`mlcak_lib.tokens`).

    The ground truth the pointing game and the IoU compare against; the same tokens as the
    any-lesion channel of :func:`local_targets`, usable on the boxes of one class or one stratum.
    """
    return boxes_to_any_lesion_map(as_box_array(boxes), image_size, grid) > 0.5


def _check_map(m: Any) -> np.ndarray:
    arr = np.asarray(m.detach().cpu() if isinstance(m, Tensor) else m, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"a map is a square [g, g] array, got shape {arr.shape}")
    return arr


# --------------------------------------------------------------------------------------------
# Localization metrics (pure functions, NumPy)
# --------------------------------------------------------------------------------------------

def token_auroc(maps: Any, targets: Any) -> float:
    """AUROC of map values as a detector of target tokens, pooled over all tokens of all maps.

    ``maps`` and ``targets`` have the same shape (``[g, g]`` or ``[B, g, g]``); targets are
    binarised at 0.5. NaN when the targets hold only one class (AUROC undefined).
    """
    scores = np.asarray(maps.detach().cpu() if isinstance(maps, Tensor) else maps, dtype=np.float64).ravel()
    labels = np.asarray(targets.detach().cpu() if isinstance(targets, Tensor) else targets).ravel() > 0.5
    if scores.shape != labels.shape:
        raise ValueError(f"maps and targets differ in size: {scores.shape} vs {labels.shape}")
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, scores))


def pointing_game(m: Any, footprint: Any, tolerance: int = 1) -> float:
    """Pointing-game score of one map: 1 if its maximum is within ``tolerance`` tokens of the footprint.

    ``footprint`` is the boolean ``[g, g]`` token set of the ground-truth boxes
    (:func:`box_footprint`). Distance is Chebyshev on the grid (``tolerance=1``: the token or one
    of its 8 neighbours). Ties at the maximum return the fraction of tied tokens that hit.
    NaN for an empty footprint (nothing to point at).
    """
    m = _check_map(m)
    fp = np.asarray(footprint, dtype=bool)
    if fp.shape != m.shape:
        raise ValueError(f"map {m.shape} and footprint {fp.shape} differ")
    if not fp.any():
        return float("nan")
    near = fp.copy()
    g = m.shape[0]
    for dy in range(-tolerance, tolerance + 1):  # dilate by `tolerance` tokens (Chebyshev ball)
        for dx in range(-tolerance, tolerance + 1):
            shifted = np.zeros_like(fp)
            ys, yd = slice(max(dy, 0), g + min(dy, 0)), slice(max(-dy, 0), g + min(-dy, 0))
            xs, xd = slice(max(dx, 0), g + min(dx, 0)), slice(max(-dx, 0), g + min(-dx, 0))
            shifted[yd, xd] = fp[ys, xs]
            near |= shifted
    top = m >= m.max() - 1e-12 * max(1.0, abs(m.max()))
    return float(near[top].mean())


def threshold_map(m: Any, method: str = "relative", threshold: float = 0.5, k: int | None = None) -> np.ndarray:
    """Binary ``[g, g]`` mask of a map: ``"relative"`` (min-max normalise, keep >= threshold; a
    constant map keeps everything) or ``"topk"`` (the ``k`` largest tokens, ties broken by order)."""
    m = _check_map(m)
    if method == "relative":
        lo, hi = m.min(), m.max()
        if hi - lo <= 1e-12 * max(1.0, abs(hi)):
            return np.ones_like(m, dtype=bool)
        return (m - lo) / (hi - lo) >= threshold
    if method == "topk":
        if k is None or k < 0:
            raise ValueError("method='topk' needs k >= 0")
        mask = np.zeros(m.size, dtype=bool)
        mask[np.argsort(-m.ravel(), kind="stable")[:k]] = True
        return mask.reshape(m.shape)
    raise ValueError(f"method must be 'relative' or 'topk', got {method!r}")


def thresholded_iou(m: Any, footprint: Any, method: str = "relative", threshold: float = 0.5) -> float:
    """IoU between :func:`threshold_map` of ``m`` and the boolean token ``footprint`` of the boxes.

    With ``method="topk"``, ``k`` is the footprint's size. NaN for an empty footprint.
    """
    fp = np.asarray(footprint, dtype=bool)
    if not fp.any():
        return float("nan")
    mask = threshold_map(m, method, threshold, k=int(fp.sum()))
    return float((mask & fp).sum() / (mask | fp).sum())


def mass_in_boxes(m: Any, coverage: Any) -> float:
    """Share of a non-negative map's mass inside the boxes: ``sum(m * coverage) / sum(m)``.

    ``coverage`` is :func:`box_coverage` (fraction of each token's area inside the box union).
    NaN for an all-zero map; raises on negative values (use probabilities or attention, not logits).
    """
    m = _check_map(m)
    cov = np.asarray(coverage, dtype=np.float64)
    if cov.shape != m.shape:
        raise ValueError(f"map {m.shape} and coverage {cov.shape} differ")
    if (m < -1e-12).any():
        raise ValueError("mass_in_boxes needs a non-negative map (probabilities or attention, not logits)")
    total = m.sum()
    return float((m * cov).sum() / total) if total > 0 else float("nan")


# --------------------------------------------------------------------------------------------
# One table for a model: every metric, every channel, every lesion-size stratum
# --------------------------------------------------------------------------------------------

def _channel_boxes(boxes: np.ndarray, labels: np.ndarray, mm: np.ndarray, channel: int | None):
    keep = np.ones(len(labels), dtype=bool) if channel is None else labels == channel
    return boxes[keep], mm[keep]


def localization_report(
    maps: Any,
    boxes: Sequence[Any],
    box_labels: Sequence[Any],
    box_mm: Sequence[Any],
    image_size: int,
    class_names: Sequence[str] | None = None,
    tolerance: int = 1,
    iou_method: str = "relative",
    iou_threshold: float = 0.5,
):
    """All localization metrics of one model on one split, as a tidy DataFrame.

    ``maps`` is ``[B, g, g]`` (a class-agnostic map: attention, or the any-lesion channel) or
    ``[B, C+1, g, g]`` (per-class channels then any-lesion; pass ``class_names``). Maps must be
    non-negative (probabilities, attention). ``boxes`` / ``box_labels`` / ``box_mm`` are the
    per-image lists of the sample contract.

    Columns: ``channel`` ("any" or a class name), ``stratum`` ("all" or a
    :data:`mlcak_lib.metrics.SIZE_BINS` label), ``metric`` (``token_auroc``, ``pointing``,
    ``iou``, ``mass_in_box``), ``value``, ``n`` (images with a lesion of the channel in the stratum).

    * An image belongs to the stratum of its **largest** sized lesion of the channel (as in
      :func:`mlcak_lib.metrics.size_stratified_auroc`); lesions of unknown size (NaN mm) only
      count in "all".
    * ``token_auroc`` of a stratum: target tokens of the stratum's images against the negative
      tokens of **all** images (lesion-free images included).
    * ``pointing``, ``iou``, ``mass_in_box``: mean over images with at least one box of the channel.
    """
    arr = np.asarray(maps.detach().cpu() if isinstance(maps, Tensor) else maps, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[:, None]
        channels: list[tuple[str, int | None]] = [("any", None)]
    elif arr.ndim == 4:
        if class_names is None or arr.shape[1] != len(class_names) + 1:
            raise ValueError("per-class maps [B, C+1, g, g] need class_names of length C")
        channels = [(name, c) for c, name in enumerate(class_names)] + [("any", None)]
    else:
        raise ValueError(f"maps must be [B, g, g] or [B, C+1, g, g], got shape {arr.shape}")
    n_img, _, g, _ = arr.shape
    if not (len(boxes) == len(box_labels) == len(box_mm) == n_img):
        raise ValueError("maps, boxes, box_labels and box_mm must describe the same images")
    num_classes = len(class_names) if class_names is not None else int(
        max([int(np.max(np.asarray(l))) + 1 for l in box_labels if len(np.asarray(l))] or [1])
    )
    # Targets of every image through tokens.py (one source of truth); last channel = any lesion.
    targets = np.stack([local_targets(b, l, image_size, g, num_classes).numpy() for b, l in zip(boxes, box_labels)])

    strata = ["all"] + [label for label, _, _ in SIZE_BINS]
    rows = []
    for ci, (name, cls) in enumerate(channels):
        m = arr[:, ci]
        tgt = targets[:, cls if cls is not None else num_classes]
        per_image: dict[str, list[float]] = {"pointing": [], "iou": [], "mass_in_box": []}
        stratum_of: list[str | None] = []
        for i in range(n_img):
            b = as_box_array(boxes[i])
            lab = np.asarray(box_labels[i].detach().cpu() if isinstance(box_labels[i], Tensor) else box_labels[i]).reshape(-1)
            mm = np.asarray(box_mm[i].detach().cpu() if isinstance(box_mm[i], Tensor) else box_mm[i], dtype=np.float64).reshape(-1)
            cb, cmm = _channel_boxes(b, lab, mm, cls)
            if len(cb) == 0:
                stratum_of.append(None)
                for key in per_image:
                    per_image[key].append(float("nan"))
                continue
            fp = tgt[i] > 0.5
            sized = cmm[np.isfinite(cmm)]
            big = sized.max() if len(sized) else float("nan")
            stratum_of.append(next((label for label, lo, hi in SIZE_BINS if lo <= big < hi), "unknown"))
            per_image["pointing"].append(pointing_game(m[i], fp, tolerance))
            per_image["iou"].append(thresholded_iou(m[i], fp, iou_method, iou_threshold))
            per_image["mass_in_box"].append(mass_in_boxes(m[i], box_coverage(cb, image_size, g)))
        lesion = np.array([s is not None for s in stratum_of])
        negatives = m[tgt <= 0.5]
        for stratum in strata:
            chosen = lesion if stratum == "all" else np.array([s == stratum for s in stratum_of])
            n = int(chosen.sum())
            pos_scores = m[chosen][tgt[chosen] > 0.5]
            if n and len(pos_scores) and len(negatives):
                auc = token_auroc(np.concatenate([pos_scores, negatives]),
                                  np.concatenate([np.ones(len(pos_scores)), np.zeros(len(negatives))]))
            else:
                auc = float("nan")
            rows.append({"channel": name, "stratum": stratum, "metric": "token_auroc", "value": auc, "n": n})
            for key, values in per_image.items():
                v = np.asarray(values)[chosen]
                v = v[np.isfinite(v)]
                rows.append({"channel": name, "stratum": stratum, "metric": key,
                             "value": float(v.mean()) if len(v) else float("nan"), "n": n})
    return pd.DataFrame(rows, columns=["channel", "stratum", "metric", "value", "n"])


# --------------------------------------------------------------------------------------------
# Maps of a trained model on a split (for the metrics)
# --------------------------------------------------------------------------------------------

def predict_local_maps(model: nn.Module, images: Tensor, batch_size: int = 256) -> np.ndarray:
    """Predicted lesion probabilities ``[n, C+1, g, g]`` (sigmoid of the local head) in eval mode."""
    if getattr(model, "local_head", None) is None:
        raise ValueError("this model has no local head")

    def lesion_maps(x):
        return torch.sigmoid(local_maps(model(x)["local"].float(), model.grid)).cpu()

    return torch.cat(eval_batches(model, images, lesion_maps, batch_size)).numpy()


def attention_maps(model: nn.Module, images: Tensor, kind: str = "rollout", batch_size: int = 256) -> np.ndarray:
    """Class-token attention on the token grid ``[n, g, g]`` (each map sums to one), in eval mode.

    ``kind="last"``: head-averaged CLS-to-patch attention of the last block; ``"rollout"``:
    attention rollout over all blocks (:func:`mlcak_lib.attention.attention_rollout`).
    """
    if kind not in ("last", "rollout"):
        raise ValueError(f"kind must be 'last' or 'rollout', got {kind!r}")

    def cls_maps(x):
        if kind == "last":
            _, maps = get_attention(model, x, blocks=[-1])
            a = head_average(maps[0])
        else:
            _, maps = get_attention(model, x)
            a = attention_rollout(maps)
        return cls_attention(a.float(), normalize=True).cpu()

    return torch.cat(eval_batches(model, images, cls_maps, batch_size)).numpy()


def model_localization(
    model: nn.Module,
    split: Any,
    resolution: int | None = None,
    image_size: int = 224,
    attention: Sequence[str] = ("rollout", "last"),
    **report_kwargs: Any,
):
    """:func:`localization_report` of every map a model offers on a split, stacked in one DataFrame.

    Maps: ``attention:<kind>`` (class-token attention, :func:`attention_maps`, any-lesion channel
    only) for each kind in ``attention``, and ``local-head`` (per class + any, :func:`predict_local_maps`)
    when the model has a local head. Adds a ``map`` column.
    """
    resolution = resolution or model.resolution
    images = split.images[resolution]
    frames = []
    for kind in attention:
        df = localization_report(attention_maps(model, images, kind), split.boxes, split.box_labels, split.box_mm,
                                 image_size, **report_kwargs)
        frames.append(df.assign(map=f"attention:{kind}"))
    if getattr(model, "local_head", None) is not None:
        df = localization_report(predict_local_maps(model, images), split.boxes, split.box_labels, split.box_mm,
                                 image_size, class_names=split.class_names, **report_kwargs)
        frames.append(df.assign(map="local-head"))
    out = pd.concat(frames, ignore_index=True)
    return out[["map", "channel", "stratum", "metric", "value", "n"]]


# --------------------------------------------------------------------------------------------
# Does the attention depend on the image? (notebook 04)
# --------------------------------------------------------------------------------------------

def constant_map(maps: Any) -> np.ndarray:
    """The dataset-mean map ``[g, g]`` of maps ``[B, g, g]``, each renormalised to sum one: the
    *constant-map* control that every localization metric is compared with (broadcast it to ``[B, g, g]``)."""
    arr = np.asarray(maps.detach().cpu() if isinstance(maps, Tensor) else maps, dtype=np.float64)
    if arr.ndim != 3:
        raise ValueError(f"maps must be [B, g, g], got shape {arr.shape}")
    arr = arr / np.clip(arr.sum(axis=(1, 2), keepdims=True), 1e-12, None)
    return arr.mean(axis=0)


def attention_variability(maps: Any) -> float:
    """How much attention maps differ between images: mean total-variation distance to the dataset-mean map.

    ``0.5 * sum_j |a_ij - mean_j|`` per image (each map renormalised to sum one), averaged over the
    images: the share of attention mass that sits elsewhere than in the average film's map. 0 for a
    constant map (the same map on every image), 1 at most (disjoint maps).
    """
    arr = np.asarray(maps.detach().cpu() if isinstance(maps, Tensor) else maps, dtype=np.float64)
    mean = constant_map(arr)
    arr = arr / np.clip(arr.sum(axis=(1, 2), keepdims=True), 1e-12, None)
    return float(0.5 * np.abs(arr - mean[None]).sum(axis=(1, 2)).mean())


def block_attention_maps(model: nn.Module, images: Tensor, blocks: Sequence[int], batch_size: int = 256) -> dict[int, np.ndarray]:
    """Class-token attention of each block in ``blocks``, head-averaged and renormalised over the patches:
    ``{block: [n, g, g]}`` -- the maps a multilevel distillation reads (notebook 04 measures them)."""
    depth = len(model.blocks)
    chosen = [int(b) % depth for b in blocks]

    def maps(x):
        _, captured = get_attention(model, x, blocks=chosen)
        return [cls_attention(head_average(m).float(), normalize=True).cpu() for m in captured]

    parts = eval_batches(model, images, maps, batch_size)
    return {b: torch.cat([p[k] for p in parts]).numpy() for k, b in enumerate(chosen)}


def attention_summary(maps: Any, split: Any, image_size: int = 224) -> dict[str, float]:
    """The checks a teacher's attention must pass before it is distilled (notebook 04), on one split:
    token AUROC and pointing of ``maps`` ``[n, g, g]`` against the lesion tokens, the same two for the
    constant-map control (:func:`constant_map`), and :func:`attention_variability`."""
    arr = np.asarray(maps.detach().cpu() if isinstance(maps, Tensor) else maps, dtype=np.float64)
    const = np.broadcast_to(constant_map(arr), arr.shape)
    row: dict[str, float] = {}
    for tag, m in (("", arr), ("const_", const)):
        rep = localization_report(m, split.boxes, split.box_labels, split.box_mm, image_size)
        sel = rep[(rep.channel == "any") & (rep.stratum == "all")].set_index("metric")["value"]
        row[f"{tag}token_auroc"], row[f"{tag}pointing"] = float(sel["token_auroc"]), float(sel["pointing"])
    row["variability"] = attention_variability(arr)
    return row
