"""The local task and localization metrics (introduced in notebook 06).

**The local task.** Besides MLCT (which findings are present) and MCCT (normal or abnormal),
the student predicts *where* the lesions are: for every token of its ``g x g`` grid, one
sigmoid output per class plus one for "any lesion". The targets come from the boxes of the
sample contract through :func:`mlcak_lib.tokens.boxes_to_token_map` (the one source of token
targets in the course); a sample with ``K = 0`` boxes has all-zero maps, and a dataset that has
no boxes at all (MedMNIST+) cannot train or evaluate the local task
(:class:`LocalTaskUnavailable`).

Channel layout of every local map in this module: ``C`` class channels in
``dataset.class_names`` order, then the *any-lesion* channel (index ``C``), so ``C + 1``
channels in all.

**Model side.** :class:`LocalHead` maps each final patch token ``[B, N, D]`` to ``[B, N, C+1]``
logits (a linear layer, or a small MLP, shared by all tokens); :func:`attach_local_head` puts it
into the ``local_head`` slot of :class:`mlcak_lib.models.MLCAKViT`, whose forward then returns
``out["local"]``. :func:`local_maps` reshapes it to ``[B, C+1, g, g]``.

**Loss.** ``L_local = BCE_with_logits(local, targets, pos_weight)`` averaged over batch,
channels and tokens. Lesion tokens are rare (a few percent of the grid), so each channel's
positive tokens are up-weighted by ``pos_weight_c = n_neg_c / n_pos_c`` counted on the training
split (:func:`local_pos_weight`), clipped to ``[1, 50]`` so that a class with almost no boxes
cannot dominate. The joint objective of the course (:class:`LocalObjective`) is::

    L = BCE(MLCT) + CE(MCCT) + lambda_local * L_local  [+ L_KD of the distillation variant]

where ``L_KD`` comes from :mod:`mlcak_lib.distill` unchanged (composition, not a copy), and
``lambda_local`` is chosen on the validation split by ``scripts/tune_local.py``
(``results/tuning_local_val.csv``) and stored with the other tuned weights
(:func:`mlcak_lib.distill.default_weights`). The multi-task variants ``multitask`` (labels +
local task) and ``mlcak-mt`` (MLCAK + local task) are ordinary variants of
:mod:`mlcak_lib.distill`, trained by :func:`mlcak_lib.distill.train_student` and run by the
experiment runner like every other variant.

**Localization metrics** (NumPy, pure functions; a *map* is a non-negative ``[g, g]`` array on
the token grid: predicted lesion probabilities or a CLS-to-patch attention map):

* :func:`token_auroc` -- every token is a sample, positive when :func:`local_targets` marks it;
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

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .resize import area_resize
from .train import Objective

__all__ = [
    "LocalTaskUnavailable",
    "has_boxes",
    "require_boxes",
    "local_targets",
    "batch_local_targets",
    "LocalHead",
    "attach_local_head",
    "local_maps",
    "local_pos_weight",
    "local_loss",
    "box_coverage",
    "box_footprint",
    "token_auroc",
    "pointing_game",
    "thresholded_iou",
    "threshold_map",
    "mass_in_boxes",
    "localization_report",
    "LocalObjective",
    "predict_local_maps",
    "attention_maps",
    "model_localization",
]


# --------------------------------------------------------------------------------------------
# Geometry on the token grid (NumPy)
# --------------------------------------------------------------------------------------------

def _as_boxes(boxes: Any) -> np.ndarray:
    arr = np.asarray(boxes.detach().cpu() if isinstance(boxes, Tensor) else boxes, dtype=np.float64)
    return arr.reshape(-1, 4)


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
    boxes = _as_boxes(boxes)
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
    from .tokens import boxes_to_any_lesion_map

    return boxes_to_any_lesion_map(_as_boxes(boxes), image_size, grid) > 0.5


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
    from sklearn.metrics import roc_auc_score

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
# Local targets from boxes (through tokens.py, the one source of token targets)
# --------------------------------------------------------------------------------------------

class LocalTaskUnavailable(RuntimeError):
    """Raised when the local task is asked of data without boxes (e.g. MedMNIST+)."""


def has_boxes(dataset: Any) -> bool:
    """Whether ``dataset`` carries lesion boxes (the local task needs them).

    A dataset may say so itself with a boolean attribute ``has_boxes``; otherwise its first item
    is inspected (a ``boxes`` entry is required; ``K = 0`` boxes in that item is fine).
    """
    flag = getattr(dataset, "has_boxes", None)
    if isinstance(flag, bool):
        return flag
    if callable(flag):
        return bool(flag())
    boxes = getattr(dataset, "boxes", None)
    if isinstance(boxes, (list, tuple)):  # an InMemorySplit: one entry per image when the source had boxes
        return len(boxes) > 0 and len(boxes) == len(dataset)
    try:
        item = dataset[0]
    except (IndexError, KeyError, TypeError):
        return False
    return isinstance(item, Mapping) and item.get("boxes") is not None


def require_boxes(dataset: Any) -> None:
    """Raise :class:`LocalTaskUnavailable` with a clear message when ``dataset`` has no boxes."""
    if not has_boxes(dataset):
        name = getattr(dataset, "name", type(dataset).__name__)
        raise LocalTaskUnavailable(
            f"no boxes: local task unavailable for dataset {name!r}. The local task (notebook 06) "
            "needs lesion boxes (the simulator, VinDr-CXR, or a CSV with box columns); "
            "image-level datasets such as MedMNIST+ support only MLCT and MCCT."
        )


def local_targets(boxes: Any, labels: Any, image_size: int, grid: int, num_classes: int) -> Tensor:
    """Token targets ``[C + 1, grid, grid]`` (float32, 0/1): one channel per class, then any-lesion.

    Built by :func:`mlcak_lib.tokens.boxes_to_token_map` (class channels) and its any-lesion
    helper; ``K = 0`` boxes gives all zeros.
    """
    from . import tokens

    b = _as_boxes(boxes)
    lab = np.asarray(labels.detach().cpu() if isinstance(labels, Tensor) else labels, dtype=np.int64).reshape(-1)
    per_class = np.asarray(tokens.boxes_to_token_map(b, lab, int(image_size), int(grid), int(num_classes)), dtype=np.float32)
    anymap = np.asarray(tokens.any_lesion_map(per_class), dtype=np.float32).reshape(1, grid, grid)
    return torch.from_numpy(np.concatenate([per_class, anymap], axis=0))


def batch_local_targets(batch: Mapping[str, Any], grid: int, num_classes: int, image_size: int | None = None) -> Tensor:
    """``[B, C + 1, grid, grid]`` targets for a batch from :func:`mlcak_lib.datasets.collate_with_boxes`.

    ``image_size`` defaults to the side of ``batch["image"]`` (boxes are in its pixels).
    """
    if "boxes" not in batch or batch["boxes"] is None:
        raise LocalTaskUnavailable("no boxes: local task unavailable (this batch has no 'boxes' entry)")
    if image_size is None:
        image_size = int(batch["image"].shape[-1])
    maps = [local_targets(b, l, image_size, grid, num_classes) for b, l in zip(batch["boxes"], batch["box_labels"])]
    return torch.stack(maps, dim=0)


# --------------------------------------------------------------------------------------------
# The local head and the local loss (torch)
# --------------------------------------------------------------------------------------------

class LocalHead(nn.Module):
    """Per-token classifier ``[B, N, D] -> [B, N, K]`` shared by all tokens.

    ``hidden=None``: LayerNorm + Linear (a linear probe on each token); ``hidden=h``: LayerNorm +
    Linear(D, h) + GELU + Linear(h, K). The output bias starts at ``prior_logit`` (default
    ``log(0.05 / 0.95)``: lesion tokens are rare) so the first steps do not waste effort
    learning the base rate.
    """

    def __init__(self, dim: int, n_out: int, hidden: int | None = None, prior: float = 0.05) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.LayerNorm(dim)]
        if hidden:
            layers += [nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, n_out)]
        else:
            layers += [nn.Linear(dim, n_out)]
        self.net = nn.Sequential(*layers)
        self.n_out = n_out
        last = layers[-1]
        nn.init.trunc_normal_(last.weight, std=0.02)
        nn.init.constant_(last.bias, math.log(prior / (1 - prior)))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.net(tokens)


def attach_local_head(model: nn.Module, num_classes: int | None = None, hidden: int | None = None) -> nn.Module:
    """Put a :class:`LocalHead` with ``C + 1`` outputs into ``model.local_head`` (in place); return ``model``.

    ``model`` is a :class:`mlcak_lib.models.MLCAKViT` (its forward then returns ``out["local"]``
    ``[B, N, C+1]``). ``num_classes`` defaults to ``model.num_classes``.
    """
    if not hasattr(model, "local_head"):
        raise TypeError("attach_local_head needs a model with a `local_head` slot (mlcak_lib.models.MLCAKViT)")
    c = int(num_classes if num_classes is not None else model.num_classes)
    dim = int(getattr(getattr(model, "vit", model), "embed_dim"))
    model.local_head = LocalHead(dim, c + 1, hidden)
    return model


def local_maps(local: Tensor, grid: int | None = None) -> Tensor:
    """Reshape per-token outputs ``[B, N, K]`` to maps ``[B, K, g, g]`` (row-major tokens, as timm)."""
    b, n, k = local.shape
    g = grid or math.isqrt(n)
    if g * g != n:
        raise ValueError(f"{n} tokens do not form a {g} x {g} grid")
    return local.transpose(1, 2).reshape(b, k, g, g)


#: Clip range of the per-channel positive weight of the local BCE.
POS_WEIGHT_RANGE: tuple[float, float] = (1.0, 50.0)


def local_pos_weight(targets: Tensor, clip: tuple[float, float] = POS_WEIGHT_RANGE) -> Tensor:
    """Per-channel ``pos_weight = n_neg / n_pos`` of targets ``[B, K, g, g]``, clipped to ``clip``.

    Count it on the *training* split. A channel without positives gets the upper clip value.
    """
    t = (targets > 0.5).float()
    pos = t.sum(dim=(0, 2, 3))
    neg = t.shape[0] * t.shape[2] * t.shape[3] - pos
    w = torch.where(pos > 0, neg / pos.clamp_min(1.0), torch.full_like(pos, clip[1]))
    return w.clamp(*clip)


def local_loss(logits: Tensor, targets: Tensor, pos_weight: Tensor | None = None) -> Tensor:
    """BCE-with-logits between local logits and token targets, mean over batch, channels and tokens.

    ``logits`` is ``[B, N, K]`` (as the model returns it) or ``[B, K, g, g]``; ``targets`` is
    ``[B, K, g, g]``; ``pos_weight`` is ``[K]`` (:func:`local_pos_weight`) or None.
    """
    if logits.dim() == 3:
        logits = local_maps(logits, targets.shape[-1])
    if logits.shape != targets.shape:
        raise ValueError(f"local logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
    pw = None if pos_weight is None else pos_weight.to(logits).reshape(-1, 1, 1)
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits), pos_weight=pw)


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
    import pandas as pd

    from .metrics import SIZE_BINS

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
            b = _as_boxes(boxes[i])
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
# The joint objective (plugs into train.fit; composes with distill's objectives)
# --------------------------------------------------------------------------------------------

class LocalObjective(Objective):
    """``base + lambda_local * L_local``: adds the local task to any :class:`mlcak_lib.train.Objective`.

    ``base`` is the objective without the local task: ``None`` -> :class:`mlcak_lib.train.SupervisedObjective`
    (the *multitask* student: ``BCE(MLCT) + CE(MCCT) + lambda * L_local``), or a distillation
    objective of :mod:`mlcak_lib.distill` (the full system: ``L_cls + L_KD + lambda * L_local``).
    The base keeps its own ``forward`` (e.g. attention capture) and loss; this class only adds
    the local term. The model needs a local head (:func:`attach_local_head`).

    ``setup`` builds the token targets of the whole training split once (through
    :func:`local_targets`, ``[n, C+1, g, g]``) and the per-channel ``pos_weight``
    (:func:`local_pos_weight`); each step then indexes them with ``batch["index"]``.
    History parts: the base's parts plus ``local`` (the unweighted local BCE).
    """

    def __init__(self, base: Any = None, lambda_local: float | None = None, image_size: int = 224,
                 profile: str | None = None) -> None:
        from .config import get_profile
        from .train import FunctionObjective, SupervisedObjective

        if base is None:
            base = SupervisedObjective()
        elif not isinstance(base, Objective):
            base = FunctionObjective(base)
        self.base = base
        if lambda_local is None:
            from .distill import default_weights

            lambda_local = default_weights(get_profile(profile))["lambda_local"]
        self.lambda_local = float(lambda_local)
        self.image_size = int(image_size)
        self.targets: Tensor | None = None
        self.pos_weight: Tensor | None = None

    def setup(self, model: nn.Module, train: Any) -> None:
        self.base.setup(model, train)
        if getattr(model, "local_head", None) is None:
            raise ValueError("LocalObjective needs a model with a local head: call attach_local_head(model) first")
        if not getattr(train, "boxes", None) or len(train.boxes) != len(train):
            raise LocalTaskUnavailable("no boxes: local task unavailable (the training split carries no boxes)")
        self.targets = torch.stack([
            local_targets(b, l, self.image_size, model.grid, len(train.class_names))
            for b, l in zip(train.boxes, train.box_labels)
        ])
        self.pos_weight = local_pos_weight(self.targets)

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> Mapping[str, Tensor]:
        return self.base.forward(model, batch)

    def __call__(self, batch: Mapping[str, Any], outputs: Mapping[str, Tensor], model: nn.Module):
        if self.targets is None:
            raise RuntimeError("LocalObjective.setup(model, train) must run before the first step")
        loss, parts = self.base(batch, outputs, model)
        idx = batch["index"].to(self.targets.device)
        target = self.targets[idx].to(outputs["local"].device)
        term = local_loss(outputs["local"], target, self.pos_weight)
        parts = dict(parts)
        parts["local"] = float(term.detach())
        return loss + self.lambda_local * term, parts

    def config(self) -> dict[str, Any]:
        return {**self.base.config(), "local": {"lambda_local": self.lambda_local, "image_size": self.image_size,
                                                "pos_weight_clip": list(POS_WEIGHT_RANGE)}}


# --------------------------------------------------------------------------------------------
# Maps of a trained model on a split (for the metrics)
# --------------------------------------------------------------------------------------------

def predict_local_maps(model: nn.Module, images: Tensor, batch_size: int = 256) -> np.ndarray:
    """Predicted lesion probabilities ``[n, C+1, g, g]`` (sigmoid of the local head) in eval mode."""
    from .metrics import eval_batches

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
    from .attention import attention_rollout, cls_attention, get_attention, head_average
    from .metrics import eval_batches

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
    import pandas as pd

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
