"""Detection metrics from the field's own tools, stratified by lesion size (notebook 07).

* **AP** -- COCO-style average precision (pycocotools' ``COCOeval``, built in memory): AP at IoU 0.5 and
  AP over IoU 0.5:0.95, the mean of COCO's 101-point interpolated precision over classes with lesions (as
  ``COCOeval.summarize`` computes it), at most ``max_dets`` detections per image.
* **FROC** -- sensitivity at 0.5, 1, 2 and 4 false positives per image (MONAI's
  ``compute_froc_curve_data`` / ``compute_froc_score``, linear interpolation of the curve). A detection is a
  true positive when COCOeval matches it to a lesion of its class at IoU >= 0.5 (greedy by score), else a
  false positive. MONAI's curve (from the CAMELYON16 code) starts at the second-lowest score; a sentinel
  false positive at ``-inf`` makes it start at the lowest, so every detection counts.
* **Image-level AUROC** (:mod:`mlcak_lib.metrics`, scikit-learn) per class from the global head's logits and
  from the detections (an image's score for a class: its highest detection score of that class, 0 if none).

**Lesion-size strata** use :data:`mlcak_lib.metrics.SIZE_BINS` on the split's ``box_mm``. COCO's own
machinery does it: a lesion's COCO ``area`` is its size in mm squared (unknown sizes: -1, counted only under
"all"), a detection's is its box's geometric-mean side times the split's millimetres per pixel
(:func:`mm_per_pixel`), squared. In a size stratum, lesions of other sizes are ignored, and so are
unmatched detections of other sizes (COCO's rule for its small / medium / large AP). FROC per stratum
counts the stratum's lesions and hits, and *all* false positives.
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any, Sequence

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..metrics import SIZE_BINS, auroc_per_class, macro_auroc, size_stratified_auroc

FROC_RATES: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
ALL = "all"


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def mm_per_pixel(boxes: Sequence, box_mm: Sequence) -> float:
    """Median of ``box_mm / sqrt(w * h)`` over the boxes of known size (NaN when none): the scale that turns a
    detection's box into an estimated lesion size."""
    ratios = []
    for b, mm in zip(boxes, box_mm):
        b, mm = _np(b).reshape(-1, 4).astype(float), _np(mm).astype(float).ravel()
        side = np.sqrt(np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None))
        ok = ~np.isnan(mm) & (side > 0)
        ratios += list(mm[ok] / side[ok])
    return float(np.median(ratios)) if ratios else float("nan")


def size_ranges(bins: Sequence[tuple[str, float, float]] = SIZE_BINS) -> tuple[list[str], list[list[float]]]:
    """COCO ``areaRngLbl`` and ``areaRng`` (mm squared): "all" first, then each bin (high bound exclusive)."""
    big = 1e10
    labels, ranges = [ALL], [[-1.0, big]]
    for label, lo, hi in bins:
        labels.append(label)
        ranges.append([lo * lo, big if math.isinf(hi) else hi * hi * (1 - 1e-9)])
    return labels, ranges


def coco_dicts(gt_boxes: Sequence, gt_labels: Sequence, detections: Sequence[dict], num_classes: int,
               gt_mm: Sequence | None = None, scale_mm: float = float("nan")) -> tuple[dict, dict]:
    """COCO ground-truth and detection datasets (dicts) of ``n`` images: boxes ``x0, y0, x1, y1`` px,
    labels ``0..C-1`` (COCO category ``label + 1``); ``detections[i]`` has ``boxes``, ``scores``, ``labels``."""
    images = [{"id": i + 1, "width": 0, "height": 0} for i in range(len(gt_boxes))]
    cats = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    gts, dts = [], []
    for i, (boxes, labels) in enumerate(zip(gt_boxes, gt_labels)):
        b, lab = _np(boxes).reshape(-1, 4).astype(float), _np(labels).astype(int).ravel()
        mm = np.full(len(b), np.nan) if gt_mm is None else _np(gt_mm[i]).astype(float).ravel()
        for k in range(len(b)):
            area = -1.0 if np.isnan(mm[k]) else float(mm[k] ** 2)
            gts.append({"id": len(gts) + 1, "image_id": i + 1, "category_id": int(lab[k]) + 1, "iscrowd": 0,
                        "bbox": [b[k, 0], b[k, 1], b[k, 2] - b[k, 0], b[k, 3] - b[k, 1]], "area": area})
    for i, det in enumerate(detections):
        b = _np(det["boxes"]).reshape(-1, 4).astype(float)
        s, lab = _np(det["scores"]).astype(float).ravel(), _np(det["labels"]).astype(int).ravel()
        for k in range(len(b)):
            w, h = b[k, 2] - b[k, 0], b[k, 3] - b[k, 1]
            size = math.sqrt(max(w, 0) * max(h, 0)) * scale_mm
            dts.append({"id": len(dts) + 1, "image_id": i + 1, "category_id": int(lab[k]) + 1, "score": float(s[k]),
                        "bbox": [b[k, 0], b[k, 1], w, h], "area": -1.0 if math.isnan(size) else size * size,
                        "iscrowd": 0})
    base = {"images": images, "categories": cats}
    return {**base, "annotations": gts}, {**base, "annotations": dts}


def _coco(dataset: dict):
    obj = COCO()
    obj.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        obj.createIndex()
    return obj


def coco_evaluation(gt: dict, dt: dict, max_dets: int = 100, bins: Sequence[tuple[str, float, float]] = SIZE_BINS):
    """A ``COCOeval`` (bbox) after ``evaluate`` and ``accumulate``, with the size strata as its area ranges."""
    ev = COCOeval(_coco(gt), _coco(dt), "bbox")
    ev.params.areaRngLbl, ev.params.areaRng = size_ranges(bins)
    ev.params.maxDets = [1, 10, int(max_dets)]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
    return ev


def _mean_valid(p: np.ndarray) -> float:
    p = p[p > -1]
    return float(p.mean()) if p.size else float("nan")


def average_precision(ev, stratum: str = ALL, iou: float | None = 0.5, category: int | None = None) -> float:
    """AP from an accumulated ``COCOeval``: at IoU ``iou`` (``None``: mean over 0.5:0.95), in a size stratum,
    over all classes or one (``category``: class index). NaN when no lesion counts."""
    prec = ev.eval["precision"]  # [T, R, K, A, M]
    a = list(ev.params.areaRngLbl).index(stratum)
    t = slice(None) if iou is None else [int(np.argmin(np.abs(ev.params.iouThrs - iou)))]
    k = slice(None) if category is None else [list(ev.params.catIds).index(category + 1)]
    return _mean_valid(prec[t][:, :, k][:, :, :, a, -1])


def froc_points(ev, stratum: str = ALL, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``(tp_scores, fp_scores, n_lesions, n_images)`` from ``COCOeval``'s matches at ``iou``: hits and
    lesions of ``stratum``, false positives of all sizes."""
    t = int(np.argmin(np.abs(ev.params.iouThrs - iou)))
    rng = {ALL: ev.params.areaRng[0], stratum: ev.params.areaRng[list(ev.params.areaRngLbl).index(stratum)]}
    tp, fp, n_lesions = [], [], 0
    for e in ev.evalImgs:
        if e is None:
            continue
        matched, ignored = np.asarray(e["dtMatches"])[t] > 0, np.asarray(e["dtIgnore"])[t].astype(bool)
        scores = np.asarray(e["dtScores"])
        if e["aRng"] == rng[stratum]:
            tp += list(scores[matched & ~ignored])
            n_lesions += int((np.asarray(e["gtIgnore"]) == 0).sum())
        if e["aRng"] == rng[ALL]:
            fp += list(scores[~matched & ~ignored])
    return np.asarray(tp, float), np.asarray(fp, float), n_lesions, len(ev.params.imgIds)


def froc(tp_scores: np.ndarray, fp_scores: np.ndarray, n_lesions: int, n_images: int,
         rates: Sequence[float] = FROC_RATES) -> dict[float, float]:
    """Sensitivity at each false-positive rate per image (MONAI's FROC functions; see module docstring)."""
    from monai.metrics import compute_froc_curve_data, compute_froc_score  # heavy import (several seconds)

    if n_lesions == 0:
        return {float(r): float("nan") for r in rates}
    fp = np.concatenate([np.asarray(fp_scores, float), [-np.inf]])  # sentinel: the curve starts at the lowest score
    fps, sens = compute_froc_curve_data(fp, np.asarray(tp_scores, float), n_lesions, n_images)
    return {float(r): float(compute_froc_score(fps, sens, (r,))) for r in rates}


def detection_scores(detections: Sequence[dict], num_classes: int) -> np.ndarray:
    """``[n, C]``: each image's highest detection score per class (0 without a detection of that class)."""
    out = np.zeros((len(detections), num_classes))
    for i, det in enumerate(detections):
        for s, c in zip(_np(det["scores"]).ravel(), _np(det["labels"]).astype(int).ravel()):
            out[i, c] = max(out[i, c], float(s))
    return out


def detection_report(gt_boxes: Sequence, gt_labels: Sequence, detections: Sequence[dict], class_names: Sequence[str],
                     gt_mm: Sequence | None = None, mlct: Any = None, global_scores: Any = None,
                     scale_mm: float | None = None, max_dets: int = 100,
                     bins: Sequence[tuple[str, float, float]] = SIZE_BINS) -> dict[str, Any]:
    """Every metric of notebook 07 for one split: ``{"strata": [rows], "auroc": {...}}``.

    A row per stratum ("all", then each size bin): ``stratum``, ``n_lesions``, ``ap50``, ``ap50_95`` and
    ``froc@<rate>``. ``auroc`` (when ``mlct`` is given): macro and per-class image-level AUROC from the
    detections and (when ``global_scores`` ``[n, C]`` is given) from the global head, with ``by_size``
    (:func:`mlcak_lib.metrics.size_stratified_auroc` rows) when ``gt_mm`` is given. ``scale_mm``: mm per
    pixel of the boxes (default :func:`mm_per_pixel` of the ground truth).
    """
    num_classes = len(class_names)
    lengths = {len(gt_boxes), len(gt_labels), len(detections)} | ({len(gt_mm)} if gt_mm is not None else set())
    if len(lengths) != 1:
        raise ValueError(f"boxes, labels, sizes and detections need one entry per image (lengths {sorted(lengths)})")
    if scale_mm is None:
        scale_mm = mm_per_pixel(gt_boxes, gt_mm) if gt_mm is not None else float("nan")
    gt, dt = coco_dicts(gt_boxes, gt_labels, detections, num_classes, gt_mm, scale_mm)
    ev = coco_evaluation(gt, dt, max_dets, bins)
    rows = []
    for stratum in ev.params.areaRngLbl:
        tp, fp, n_lesions, n_images = froc_points(ev, stratum)
        row = {"stratum": stratum, "n_lesions": n_lesions, "ap50": average_precision(ev, stratum, 0.5),
               "ap50_95": average_precision(ev, stratum, None)}
        row.update({f"froc@{r:g}": v for r, v in froc(tp, fp, n_lesions, n_images).items()})
        rows.append(row)
    report: dict[str, Any] = {"strata": rows, "mm_per_px": scale_mm}
    if mlct is not None:
        sources = {"detection": detection_scores(detections, num_classes)}
        if global_scores is not None:
            sources["global"] = _np(global_scores)
        report["auroc"] = {}
        for name, scores in sources.items():
            per_class = auroc_per_class(mlct, scores, class_names)
            entry = {"macro": macro_auroc(per_class), "per_class": per_class}
            if gt_mm is not None:
                entry["by_size"] = size_stratified_auroc(mlct, scores, gt_labels, gt_mm, class_names, bins).to_dict("records")
            report["auroc"][name] = entry
    return report
