"""Where a real image's pixels and boxes go on the course's square (notebook 03; used by every adapter).

Geometry (the same for every adapter, ``square=`` argument):

* ``"pad"`` (default): pad the shorter side with black (0) to a centred square, then resize.
  Nothing is cut off and nothing is distorted, so every box survives and the
  cardiothoracic ratio is kept (a stretched heart would fake or hide cardiomegaly).
* ``"crop"``: keep the central square (``resize.center_crop_square``); boxes are clipped to it
  and a box entirely outside it is dropped (counted).
* ``"stretch"``: resize height and width independently (distorts anatomy; for comparison).

Downsampling always uses :func:`mlcak_lib.resize.area_resize`; an image smaller than the target
(e.g. a 64 px MedMNIST file asked for 224) is upsampled bilinearly, which adds no detail.
Boxes follow the same affine map, ``x' = (x + offset_x) * scale_x``, computed from each
image's own size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..resize import area_resize, center_crop_square

SQUARE_MODES: tuple[str, ...] = ("pad", "crop", "stretch")


@dataclass(frozen=True)
class Geometry:
    """Affine map from an ``in_hw`` image to the ``size`` square: ``x' = (x + ox) * sx``, ``y' = (y + oy) * sy``."""

    in_hw: tuple[int, int]
    size: int
    mode: str
    ox: float
    oy: float
    sx: float
    sy: float


def square_geometry(height: int, width: int, size: int, mode: str = "pad") -> Geometry:
    """The :class:`Geometry` that ``apply_geometry`` uses for an image of ``height x width``."""
    if mode not in SQUARE_MODES:
        raise ValueError(f"square must be one of {', '.join(SQUARE_MODES)}, got {mode!r}")
    h, w = int(height), int(width)
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {h}x{w}")
    if mode == "stretch":
        return Geometry((h, w), size, mode, 0.0, 0.0, size / w, size / h)
    side = max(h, w) if mode == "pad" else min(h, w)
    ox, oy = (side - w) // 2, (side - h) // 2  # pad: >= 0 ; crop: <= 0 (as -left, -top)
    if mode == "crop":
        ox, oy = -((w - side) // 2), -((h - side) // 2)
    return Geometry((h, w), size, mode, float(ox), float(oy), size / side, size / side)


def _resize_to(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] >= size and image.shape[1] >= size:
        return area_resize(image, size).astype(np.float32)
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


def apply_geometry(pixels: np.ndarray, geom: Geometry) -> np.ndarray:
    """Make the float32 ``[size, size]`` image: pad / crop / stretch, then ``area_resize``."""
    h, w = pixels.shape
    if (h, w) != geom.in_hw:
        raise ValueError(f"geometry made for {geom.in_hw}, image is {(h, w)}")
    if geom.mode == "pad":
        side = max(h, w)
        canvas = np.zeros((side, side), dtype=np.float32)
        canvas[int(geom.oy) : int(geom.oy) + h, int(geom.ox) : int(geom.ox) + w] = pixels
        pixels = canvas
    elif geom.mode == "crop":
        pixels = center_crop_square(pixels)
    return np.clip(_resize_to(pixels, geom.size), 0.0, 1.0).astype(np.float32)


def scale_boxes(boxes: np.ndarray, geom: Geometry) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
    """Map boxes ``[N, 4]`` (``x0, y0, x1, y1`` in pixels of the ``in_hw`` image) to the square.

    Returns ``(out, valid, reasons, clipped)``: ``out`` ``[N, 4]`` float32 in pixels of the
    ``size`` image (NaN rows where invalid), ``valid`` bool ``[N]``, ``reasons`` (None or why a
    box is invalid) and ``clipped`` bool ``[N]`` (a valid box that had to be clipped). A box is
    invalid when a coordinate is not finite, when ``x1 <= x0`` or ``y1 <= y0``, or when nothing
    of it lies inside the image (or inside the central crop).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(b)
    h, w = geom.in_hw
    out = np.full((n, 4), np.nan, dtype=np.float32)
    valid = np.zeros(n, dtype=bool)
    clipped = np.zeros(n, dtype=bool)
    reasons: list = [None] * n
    for i, (x0, y0, x1, y1) in enumerate(b):
        if not np.isfinite([x0, y0, x1, y1]).all():
            reasons[i] = "a box coordinate is missing or not a number"
            continue
        if x1 <= x0 or y1 <= y0:
            reasons[i] = f"x_max <= x_min or y_max <= y_min ({x0:g}, {y0:g}, {x1:g}, {y1:g})"
            continue
        c = np.array([max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))])
        if c[2] <= c[0] or c[3] <= c[1]:
            reasons[i] = f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies entirely outside the {w}x{h} image"
            continue
        was_clipped = not np.allclose(c, [x0, y0, x1, y1])
        t = np.array([(c[0] + geom.ox) * geom.sx, (c[1] + geom.oy) * geom.sy,
                      (c[2] + geom.ox) * geom.sx, (c[3] + geom.oy) * geom.sy])
        s = float(geom.size)
        if t[2] <= 0 or t[0] >= s or t[3] <= 0 or t[1] >= s:  # bounds, not extents: rounding can't drop a box
            reasons[i] = "box lies entirely outside the central square crop"
            continue
        tc = np.clip(t, 0.0, s)
        was_clipped = was_clipped or not np.allclose(tc, t)
        out[i], valid[i], clipped[i] = tc, True, was_clipped
        for lo, hi in ((0, 2), (1, 3)):  # a tiny extent can round to zero when scaled: keep it positive
            if out[i, hi] <= out[i, lo]:
                if out[i, lo] < s:
                    out[i, hi] = np.nextafter(out[i, lo], np.float32(s))
                else:
                    out[i, lo] = np.nextafter(out[i, hi], np.float32(0))
    return out, valid, reasons, clipped


def box_size_mm(boxes_out: np.ndarray, geom: Geometry, spacing_mm: tuple[float, float] | None) -> np.ndarray:
    """Longer side of each (scaled) box in millimetres, from the original ``(row, column)`` spacing; NaN if unknown."""
    boxes_out = np.asarray(boxes_out, dtype=np.float64).reshape(-1, 4)
    if spacing_mm is None or len(boxes_out) == 0:
        return np.full(len(boxes_out), np.nan, dtype=np.float32)
    w_mm = (boxes_out[:, 2] - boxes_out[:, 0]) / geom.sx * float(spacing_mm[1])
    h_mm = (boxes_out[:, 3] - boxes_out[:, 1]) / geom.sy * float(spacing_mm[0])
    return np.maximum(w_mm, h_mm).astype(np.float32)
