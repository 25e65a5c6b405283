"""AUROC for the two tasks, ROC curves and lesion-size strata (introduced in notebook 04).

Conventions used in every table of the course:

* **MCCT AUROC** -- the score of an image is P(abnormal) = softmax(logits)[:, 1].
* **MLCT per-class AUROC** -- the score is sigmoid(logit of the class). A class with a single
  label value in the split (no positives, or no negatives) has no AUROC: it is reported as NaN
  and **excluded from the macro average** (the macro AUROC is the mean over the other classes).
* **Lesion-size strata** -- bins ``< 10 mm``, ``10-20 mm``, ``>= 20 mm`` (``SIZE_BINS``). For class
  ``c`` and bin ``b``, the AUROC compares the positives of ``c`` whose *largest* lesion of class
  ``c`` falls in ``b`` against **all** negatives of ``c``. Positives whose lesion size is
  unknown (``box_mm`` NaN: diffuse findings) belong to no bin.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch

#: Lesion-size bins in millimetres: (label, low, high), low inclusive, high exclusive.
SIZE_BINS: tuple[tuple[str, float, float], ...] = (
    ("< 10 mm", 0.0, 10.0),
    ("10-20 mm", 10.0, 20.0),
    (">= 20 mm", 20.0, math.inf),
)


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def auroc(y_true, score) -> float:
    """Area under the ROC curve of one binary problem; NaN when ``y_true`` has a single value."""
    from sklearn.metrics import roc_auc_score

    y, s = _np(y_true).astype(int).ravel(), _np(score).astype(float).ravel()
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, s))


def auroc_per_class(y_true, scores, class_names: Sequence[str] | None = None) -> dict[str, float]:
    """Per-class AUROC of multi-label scores ``[n, C]`` against multi-hot labels ``[n, C]`` (NaN: one label value)."""
    y, s = _np(y_true), _np(scores)
    names = list(class_names) if class_names is not None else [str(c) for c in range(y.shape[1])]
    return {name: auroc(y[:, c], s[:, c]) for c, name in enumerate(names)}


def auroc_ci(y_true, score, level: float = 0.95, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Stratified bootstrap confidence interval of one AUROC (positives and negatives resampled separately,
    percentile interval); ``(nan, nan)`` when ``y_true`` has a single value. Used where a claim is "above
    chance" (notebook 04, ``scripts/learnability.py``): the lower bound must clear 0.5."""
    from scipy.stats import rankdata

    y, s = _np(y_true).astype(int).ravel(), _np(score).astype(float).ravel()
    pos, neg = s[y == 1], s[y == 0]
    if not len(pos) or not len(neg):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for b in range(n_boot):
        p, n = rng.choice(pos, len(pos)), rng.choice(neg, len(neg))
        ranks = rankdata(np.concatenate([p, n]))
        values[b] = (ranks[: len(p)].sum() - len(p) * (len(p) + 1) / 2) / (len(p) * len(n))
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def macro_auroc(per_class: dict[str, float] | Sequence[float]) -> float:
    """Mean of the per-class AUROCs that are not NaN (NaN if none is defined)."""
    values = np.array(list(per_class.values()) if isinstance(per_class, dict) else list(per_class), dtype=float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")


def abnormal_probability(mcct_logits) -> np.ndarray:
    """P(abnormal) from MCCT logits ``[n, 2]`` (a 1-D input is taken as the score itself)."""
    x = _np(mcct_logits).astype(float)
    if x.ndim == 1:
        return x
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e[:, 1] / e.sum(axis=1)


def mcct_auroc(y_true, mcct_logits) -> float:
    """AUROC of normal (0) vs abnormal (1) with score P(abnormal)."""
    return auroc(y_true, abnormal_probability(mcct_logits))


def roc_points(y_true, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` of the ROC curve (sklearn ``roc_curve``)."""
    from sklearn.metrics import roc_curve

    return roc_curve(_np(y_true).astype(int).ravel(), _np(score).astype(float).ravel())


def largest_lesion_mm(box_labels: Sequence, box_mm: Sequence, num_classes: int) -> np.ndarray:
    """``[n, C]`` size in mm of each image's largest lesion of each class (NaN: none or unknown size)."""
    out = np.full((len(box_labels), num_classes), np.nan)
    for i, (labels, mm) in enumerate(zip(box_labels, box_mm)):
        for c, size in zip(_np(labels).astype(int).ravel(), _np(mm).astype(float).ravel()):
            if not np.isnan(size) and (np.isnan(out[i, c]) or size > out[i, c]):
                out[i, c] = size
    return out


def size_stratified_auroc(
    y_true,
    scores,
    box_labels: Sequence,
    box_mm: Sequence,
    class_names: Sequence[str],
    bins: Sequence[tuple[str, float, float]] = SIZE_BINS,
):
    """AUROC per class and lesion-size bin (see module docstring) as a tidy DataFrame.

    Columns: ``class``, ``size_bin``, ``n_pos`` (positives in the bin), ``n_neg``, ``auroc``.
    Only classes with at least one sized lesion appear; a bin without positives has AUROC NaN.
    """
    import pandas as pd

    y, s = _np(y_true), _np(scores)
    sizes = largest_lesion_mm(box_labels, box_mm, y.shape[1])
    rows = []
    for c, name in enumerate(class_names):
        if np.all(np.isnan(sizes[:, c])):
            continue
        neg = y[:, c] == 0
        for label, lo, hi in bins:
            pos = (y[:, c] == 1) & (sizes[:, c] >= lo) & (sizes[:, c] < hi)
            keep = pos | neg
            value = auroc(pos[keep], s[keep, c]) if pos.any() else float("nan")
            rows.append({"class": name, "size_bin": label, "n_pos": int(pos.sum()), "n_neg": int(neg.sum()), "auroc": value})
    return pd.DataFrame(rows, columns=["class", "size_bin", "n_pos", "n_neg", "auroc"])


@torch.no_grad()
def eval_batches(model: torch.nn.Module, images: torch.Tensor, fn: Callable[[torch.Tensor], Any],
                 batch_size: int = 256) -> list:
    """``fn(x)`` for each batch ``x`` of ``images`` (moved to the model's device), in eval mode without
    gradients; the model's training mode is restored afterwards. The one inference loop of the course
    (predictions here, teacher caches in notebook 05, lesion and attention maps in notebook 06)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        return [fn(images[start : start + batch_size].to(device)) for start in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)


def predict(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Model outputs on ``images [n, 1, r, r]`` in eval mode: ``mlct_logits``, ``mlct_prob``, ``mcct_logits``, ``mcct_prob``."""

    def heads(x):
        out = model(x)
        return out["mlct"].float().cpu(), out["mcct"].float().cpu()

    mlct, mcct = zip(*eval_batches(model, images, heads, batch_size))
    mlct_logits, mcct_logits = torch.cat(mlct).numpy(), torch.cat(mcct).numpy()
    return {
        "mlct_logits": mlct_logits,
        "mlct_prob": 1.0 / (1.0 + np.exp(-mlct_logits)),
        "mcct_logits": mcct_logits,
        "mcct_prob": abnormal_probability(mcct_logits),
    }


def summarize(mlct_true, mcct_true, preds: dict[str, np.ndarray], class_names: Sequence[str]) -> dict[str, Any]:
    """The headline numbers from :func:`predict` outputs: MCCT AUROC, MLCT per-class and macro AUROC."""
    per_class = auroc_per_class(mlct_true, preds["mlct_prob"], class_names)
    mc = auroc(mcct_true, preds["mcct_prob"])
    ml = macro_auroc(per_class)
    return {"mcct_auroc": mc, "mlct_macro_auroc": ml, "mlct_auroc": per_class, "score": macro_auroc([mc, ml])}  # NaN-safe, no warning


def evaluate(model: torch.nn.Module, data, resolution: int | None = None, by_size: bool = True) -> dict[str, Any]:
    """Evaluate ``model`` on an in-memory split (``splits.InMemorySplit``) at ``resolution`` (default: the model's).

    Returns ``mcct_auroc``, ``mlct_macro_auroc``, ``mlct_auroc`` (dict class -> AUROC), ``score``
    (mean of the two headline AUROCs), ``n``, ``predictions`` (:func:`predict` output) and, when
    ``by_size`` and the split has boxes, ``by_size`` (:func:`size_stratified_auroc` DataFrame).
    """
    resolution = resolution or getattr(model, "resolution", None)
    images = data.images[resolution]
    preds = predict(model, images)
    result = summarize(data.mlct, data.mcct, preds, data.class_names)
    result["n"] = len(images)
    result["predictions"] = preds
    if by_size and getattr(data, "box_mm", None) is not None:
        result["by_size"] = size_stratified_auroc(data.mlct, preds["mlct_prob"], data.box_labels, data.box_mm, data.class_names)
    return result
