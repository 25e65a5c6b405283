"""Findings of a simulated radiograph, for the X-ray pool's reports in notebook 08 (issue 17).

The X-ray pool that CT studies retrieve from is the course's simulator (``synth.SynthCXR``): each film's
boxes, classes and sizes become :class:`~.reports.Findings`, rendered by :func:`.reports.render`. The
simulator does not record a lesion's side or zone, so they are read off the film's geometry. Documented
choices:

* **Side** (patient's side; the film shows the patient's right on the viewer's left): the side of the
  lung midline holding more of the box's lung-mask pixels (the box centre when the box holds no lung).
  The midline is the column with the least lung between the two lung fields (the mediastinum).
* **Zone**: the box centre's row in thirds of the lung field's height (upper, middle, lower). For lung
  opacity the third stands in for the lobe: an approximation (lobes are oblique, zones horizontal).
* **Bilateral**: boxes of one class on both sides become one ``bilateral`` finding where the class allows
  it (effusion, fibrosis; pleural thickening when both are in one zone); repeated boxes of a class with
  no size and the same side and zone are one finding.
* **Size**: ``box_mm`` rounded to whole millimetres and clipped to the class's range in ``reports.SPECS``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .reports import SPECS, ZONES, Finding, Findings, with_standard_negatives


def lung_geometry(lung_mask: np.ndarray) -> tuple[int, int, int]:
    """``(midline column, top row, bottom row)`` of a film's lung mask ``[H, W]``."""
    mask = np.asarray(lung_mask, dtype=bool)
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    if cols.size == 0:
        raise ValueError("the lung mask is empty")
    c0, c1 = int(cols[0]), int(cols[-1])
    lo, hi = c0 + (c1 - c0) // 4, c0 + 3 * (c1 - c0) // 4 + 1  # the mediastinum lies in the middle half
    profile = mask[:, lo:hi].sum(axis=0)
    gap = np.flatnonzero(profile == profile.min())
    return lo + int(gap[len(gap) // 2]), int(rows[0]), int(rows[-1])


def _side(box: np.ndarray, mask: np.ndarray, midline: int) -> str:
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    window = mask[max(y0, 0):max(y1, y0 + 1), max(x0, 0):max(x1, x0 + 1)]
    split = min(max(midline - max(x0, 0), 0), window.shape[1])
    viewer_left, viewer_right = int(window[:, :split].sum()), int(window[:, split:].sum())
    if viewer_left == viewer_right:
        return "right" if 0.5 * (box[0] + box[2]) < midline else "left"
    return "right" if viewer_left > viewer_right else "left"  # viewer's left = patient's right


def _zone(box: np.ndarray, top: int, bottom: int) -> str:
    centre = 0.5 * (float(box[1]) + float(box[3]))
    third = int(np.clip((centre - top) / max(bottom - top + 1, 1) * 3, 0, 2))
    return ZONES[third]


def findings_from_film(boxes: np.ndarray, box_labels: Sequence[int], box_mm: Sequence[float],
                       class_names: Sequence[str], lung_mask: np.ndarray) -> Findings:
    """The findings of one simulated film (a ``SynthCXR.generate`` sample's ``boxes``, ``box_labels``,
    ``box_mm`` and ``lung_mask``; ``class_names`` of its configuration), with the standard negatives."""
    mask = np.asarray(lung_mask, dtype=bool)
    midline, top, bottom = lung_geometry(mask)
    per_class: dict[str, list[Finding]] = {}
    for box, label, mm in zip(np.asarray(boxes, dtype=float).reshape(-1, 4), box_labels, box_mm):
        name = class_names[int(label)]
        spec = SPECS[name]
        side = _side(box, mask, midline) if spec.sides else None
        zone = _zone(box, top, bottom) if spec.region else None
        size = int(np.clip(round(float(mm)), *spec.size_mm)) if spec.size_mm else None
        per_class.setdefault(name, []).append(Finding(name, side, zone, size))
    found: list[Finding] = []
    for name, items in per_class.items():
        if SPECS[name].size_mm is None:
            items = sorted(set(items), key=Finding.sort_key)
            if "bilateral" in SPECS[name].sides:
                items = _merge_bilateral(items)
        found.extend(items)
    return with_standard_negatives(found)


def _merge_bilateral(items: list[Finding]) -> list[Finding]:
    """A right and a left finding of one class (same zone, or no zone) become one ``bilateral`` finding."""
    out: list[Finding] = []
    for zone in dict.fromkeys(f.zone for f in items):
        sides = {f.side for f in items if f.zone == zone}
        if {"right", "left"} <= sides:
            out.append(Finding(items[0].label, "bilateral", zone))
        else:
            out.extend(f for f in items if f.zone == zone)
    return out


def findings_from_sample(sample: dict, class_names: Sequence[str]) -> Findings:
    """:func:`findings_from_film` of a ``SynthCXR.generate`` sample (generated with ``keep_masks=True``)."""
    return findings_from_film(sample["boxes"], sample["box_labels"], sample["box_mm"], class_names, sample["lung_mask"])
