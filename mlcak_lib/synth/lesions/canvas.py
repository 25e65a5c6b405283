"""The lesion models' working state and shared helpers (notebook 01): the Canvas, sizes, boxes, masks.

Line integrals are linear, so a 3-D lesion is added in 2-D as the projection of its shape times
its attenuation difference with what it replaces (mostly aerated lung, mu ~ 0.003 mm^-1).
A sphere of radius r adds ``2 * sqrt(r^2 - d^2) * delta_mu`` at distance d from its centre.
Every model returns instances ``(box_xyxy_px, size_mm, mask)``; lesions are added *before* the
log/display step, so they interact with noise, scatter and windowing like real ones.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..film import blur3

MU_WATER = 0.02  # mm^-1 (the asset's calibration)
DMU_SOFT = 0.0178  # soft tissue / fluid replacing aerated lung
DMU_LUNG = 0.003  # aerated lung tissue itself
AERATED_MM = 50.0  # minimum lung depth (mm) of the radiographic lung field (Canvas.aerated)


class Canvas:
    """Per-image working state at the output size: warped CT channels and the lesion sum."""

    def __init__(self, S, mm, p, aux, gather_extra, fov_mm, p_field):
        self.S, self.mm, self.fov_mm, self.p_field = S, mm, fov_mm, p_field
        self.p = p
        self._aux = aux  # (S, S, 4) uint8: lung_mm, heart_mm, body_mm / 2, aorta_mm | lung_r << 5 | lung_l << 6
        self._lung_mm = None
        self.heart_mm = aux[..., 1].astype(np.float32)
        b3 = aux[..., 3]
        self.lung_r = (b3 & 32) > 0
        self.lung_l = (b3 & 64) > 0
        self.lung = b3 >= 32
        self.add = np.zeros((S, S), np.float32)
        self._gather_extra = gather_extra
        self._extra = None
        self._field = None
        self._aerated = None
        self.heart_override = None  # the heart's projected thickness (mm) once resized (heart.heart_size)
        self.heart_window = (0, 0, 0, 0)  # (r0, r1, c0, c1) where it was changed
        self.heart_change = None  # (r0, r1, c0, c1, window of cv.add) that a sideways heart warp added
        self._boxes: dict = {}
        self.rows = np.arange(S, dtype=np.float32)[:, None]
        self.cols = np.arange(S, dtype=np.float32)[None, :]

    @property
    def lung_mm(self) -> np.ndarray:
        """Lung path length (mm) along the beam (float32, computed on first use)."""
        if self._lung_mm is None:
            self._lung_mm = self._aux[..., 0].astype(np.float32)
        return self._lung_mm

    @property
    def body_mm(self) -> np.ndarray:
        return self._aux[..., 2].astype(np.float32) * 2.0

    @property
    def aorta_mm(self) -> np.ndarray:
        return (self._aux[..., 3] & 31).astype(np.float32)

    @property
    def field(self) -> np.ndarray:
        """Open lung field: lung not hidden behind the heart, great vessels, spine or diaphragm."""
        if self._field is None:
            heart = self._aux[..., 1] < 3 if self.heart_override is None else self.heart_override < 3
            self._field = self.lung & heart & ((self._aux[..., 3] & 31) == 0) & (self.p < self.p_field)
        return self._field

    @property
    def aerated(self) -> np.ndarray:
        """Radiographic lung field: lung at least ``AERATED_MM`` and 60 % of its column's maximum deep.

        Its lower border follows the diaphragm domes (where the lung's depth along the beam starts to
        fall): it excludes the thin posterior recesses and paravertebral gutters that the projection
        still contains below the domes, over the liver and stomach.
        """
        if self._aerated is None:
            deep = np.maximum(AERATED_MM, 0.6 * self.lung_mm.max(axis=0, keepdims=True))
            self._aerated = self.lung & (self.lung_mm >= deep)
        return self._aerated

    @property
    def extra(self):
        if self._extra is None:
            self._extra = self._gather_extra()
        return self._extra

    def side(self, right: bool) -> np.ndarray:
        return self.lung_r if right else self.lung_l

    def side_box(self, right: bool):
        """``(r0, r1, c0, c1)`` of one lung's mask (end exclusive; cached), ``None`` when under 10 rows."""
        if right not in self._boxes:
            m = self.side(right)
            rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
            ok = len(rows) >= 10 and len(cols) >= 5
            self._boxes[right] = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1) if ok else None
        return self._boxes[right]

    def thorax_px(self) -> int:
        """Widest single-row span of the lung mask (the thoracic diameter of the CTR, as in ``realism``)."""
        if "thorax" not in self._boxes:
            hit = self.lung.any(axis=1)
            first = np.argmax(self.lung, axis=1)
            last = self.S - 1 - np.argmax(self.lung[:, ::-1], axis=1)
            self._boxes["thorax"] = int(((last - first + 1) * hit).max())
        return self._boxes["thorax"]

    def wall_distance(self, right: bool, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Distance (px, >= 0 inside the lung) of window pixels from that lung's *lateral* border on their row.

        The lateral border is the chest wall (inner rib margin): the outermost lung column of each row
        (the right lung is on the viewer's left). Rows without lung get a large distance.
        """
        m = self.side(right)[r0:r1]
        hit = m.any(axis=1)
        if right:
            border = np.argmax(m, axis=1).astype(np.float32)
            d = self.cols[:, c0:c1] - border[:, None]
        else:
            border = (self.S - 1 - np.argmax(m[:, ::-1], axis=1)).astype(np.float32)
            d = border[:, None] - self.cols[:, c0:c1]
        d = d + 0.5
        d[~hit] = 1e4
        return d


# ---------------------------------------------------------------- helpers
def sample_size(rng, rel_sizes, cls: str, fov_mm: float, lo: float, hi: float, scale: float = 1.0) -> float:
    """Lesion size (mm): log-normal through VinDr-CXR's p10/median/p90 box side, relative to the image side."""
    p10, med, p90 = rel_sizes[cls]
    sigma = max((math.log(p90) - math.log(p10)) / 2.5631, 1e-3)
    for _ in range(8):
        s = math.exp(math.log(med) + sigma * rng.standard_normal()) * fov_mm * scale
        if lo <= s <= hi:
            return s
    return float(np.clip(s, lo, hi))


def _box_of(mask: np.ndarray):
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return None
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def _pick(rng, cond: np.ndarray):
    idx = np.flatnonzero(cond)
    if len(idx) == 0:
        return None
    k = int(idx[rng.integers(len(idx))])
    return k // cond.shape[1] + rng.random(), k % cond.shape[1] + rng.random()  # (row, col), continuous


MIN_BOX_PX = 2.0  # boxes narrower than this (a 2 mm calcification, a thin pleural band) are padded to it


_EIGHT = np.ones((3, 3), bool)


def _drop_fragments(mask: np.ndarray, min_pixels: int, keep_frac: float = 0.05):
    """``(mask, box, n_pixels)`` without connected components below ``max(min_pixels, keep_frac * largest)``.

    Region lesions are thresholded fields; at the lung edge and in the warped corners a threshold
    can leave 1-10 pixel islands away from the lesion, which would stretch its box (or make a box
    of their own). Labelling (8-connectivity) runs on the mask's bounding crop only.
    """
    box = _box_of(mask)
    if box is None:
        return mask, None, 0
    x0, y0, x1, y1 = (int(v) for v in box)
    lab, n = ndimage.label(mask[y0:y1, x0:x1], structure=_EIGHT)
    sizes = np.bincount(lab.ravel())
    if n <= 1:
        return mask, box, int(sizes[1:].sum())
    sizes[0] = 0
    keep = sizes >= max(min_pixels, keep_frac * sizes.max())
    keep[0] = False
    sub = keep[lab]
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = sub
    b = _box_of(sub)
    if b is None:
        return out, None, 0
    return out, b + np.array([x0, y0, x0, y0], np.float32), int(sizes[keep].sum())


def _pad_box(box, S: int) -> np.ndarray:
    """At least ``MIN_BOX_PX`` per side (centred, kept inside the image)."""
    box = np.asarray(box, np.float32).copy()
    for a in (0, 1):
        if box[a + 2] - box[a] < MIN_BOX_PX:
            lo = min(max(0.5 * (box[a] + box[a + 2]) - 0.5 * MIN_BOX_PX, 0.0), S - MIN_BOX_PX)
            box[a], box[a + 2] = lo, lo + MIN_BOX_PX
    return box


def _instance(cv: Canvas, mask: np.ndarray, box=None, size_mm=None, min_pixels: int = 1, clean: bool = True):
    """``(box, size_mm, mask)``; a box computed here comes from the mask, after dropping stray
    fragments unless ``clean=False`` (smooth single-blob fields such as the scaled heart)."""
    if box is not None:
        if np.count_nonzero(mask) < min_pixels:
            return None
    elif clean:
        mask, box, count = _drop_fragments(mask, min_pixels)
        if box is None or count < min_pixels:
            return None
    else:
        box = _box_of(mask)
        if box is None or np.count_nonzero(mask) < min_pixels:
            return None
    if size_mm is None:
        size_mm = float(max(box[2] - box[0], box[3] - box[1]) * cv.mm)
    return (_pad_box(box, cv.S), float(size_mm), mask)


def _bilinear(img: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Sample ``img`` at continuous (row, col) pixel-centre coordinates (edge clamped)."""
    h, w = img.shape
    r = np.clip(r, 0, h - 1.001)
    c = np.clip(c, 0, w - 1.001)
    r0 = r.astype(np.int32)
    c0 = c.astype(np.int32)
    fr, fc = r - r0, c - c0
    flat = img.ravel()
    i = r0 * w + c0
    return ((flat[i] * (1 - fc) + flat[i + 1] * fc) * (1 - fr) + (flat[i + w] * (1 - fc) + flat[i + w + 1] * fc) * fr)


def _scaled_window(field: np.ndarray, centre, sy: float, sx: float, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """``field`` magnified by ``(sy, sx)`` about ``centre`` (row, col; continuous), sampled on a window.

    The map is separable (rows and columns apart), so it is two 1-D linear interpolations (edges clamped).
    """
    cy, cx = centre
    h, w = field.shape
    r = np.clip(cy + (np.arange(r0, r1, dtype=np.float32) + 0.5 - cy) / sy - 0.5, 0, h - 1.001)
    c = np.clip(cx + (np.arange(c0, c1, dtype=np.float32) + 0.5 - cx) / sx - 0.5, 0, w - 1.001)
    ri, ci = r.astype(np.int32), c.astype(np.int32)
    fr, fc = (r - ri)[:, None], (c - ci)[None, :]
    rows = field[r0:r1] if sy == 1.0 and r1 <= h else field[ri] * (1 - fr) + field[ri + 1] * fr
    return rows[:, ci] * (1 - fc) + rows[:, ci + 1] * fc


def _blur3(img: np.ndarray, passes: int = 1) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur (:func:`mlcak_lib.synth.film.blur3`), ``passes`` times, edges replicated
    (a small window's smoothing); float32."""
    out = np.asarray(img, dtype=np.float32)
    for _ in range(passes):
        out = blur3(out, 0.25)
    return out if passes else out.copy()


def _smooth_noise(rng, h: int, w: int, cells: int = 4) -> np.ndarray:
    g = rng.standard_normal((cells, cells)).astype(np.float32)
    r = np.linspace(0, cells - 1, h, dtype=np.float32)
    c = np.linspace(0, cells - 1, w, dtype=np.float32)
    return _bilinear(g, r[:, None] + 0 * c[None, :], 0 * r[:, None] + c[None, :])


def _ellipsoid(cv: Canvas, rng, cy, cx, a_mm, b_mm, depth_mm, angle, dmu):
    """Add a projected ellipsoid (supersampled), return its instance (box = analytic extent)."""
    mm, S = cv.mm, cv.S
    ex = math.sqrt((a_mm * math.cos(angle)) ** 2 + (b_mm * math.sin(angle)) ** 2) / mm
    ey = math.sqrt((a_mm * math.sin(angle)) ** 2 + (b_mm * math.cos(angle)) ** 2) / mm
    r0, r1 = max(math.floor(cy - ey), 0), min(math.ceil(cy + ey), S)
    c0, c1 = max(math.floor(cx - ex), 0), min(math.ceil(cx + ex), S)
    if r1 <= r0 or c1 <= c0:
        return None
    s = 4 if max(ex, ey) < 12 else 2
    rr = (np.arange(r0 * s, r1 * s, dtype=np.float32) + 0.5) / s - cy
    cc = (np.arange(c0 * s, c1 * s, dtype=np.float32) + 0.5) / s - cx
    ca, sa = math.cos(angle), math.sin(angle)
    u = (cc[None, :] * ca + rr[:, None] * sa) * mm / a_mm
    v = (-cc[None, :] * sa + rr[:, None] * ca) * mm / b_mm
    t = 2.0 * depth_mm * np.sqrt(np.clip(1.0 - u * u - v * v, 0.0, None))
    t = t.reshape(r1 - r0, s, c1 - c0, s).mean(axis=(1, 3))
    t = np.minimum(t, cv.lung_mm[r0:r1, c0:c1] + 2.0 * depth_mm * 0.15)
    cv.add[r0:r1, c0:c1] += t * dmu
    mask = np.zeros((S, S), bool)
    mask[r0:r1, c0:c1] = t > 0.02 * 2 * depth_mm
    box = [max(cx - ex, 0), max(cy - ey, 0), min(cx + ex, S), min(cy + ey, S)]
    return _instance(cv, mask, box, size_mm=2 * max(a_mm, b_mm))


