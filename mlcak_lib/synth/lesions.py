"""Lesion models of the simulator: each adds attenuation (mm x delta-mu) to the line-integral image.

Line integrals are linear, so a 3-D lesion is added in 2-D as the projection of its shape times
its attenuation difference with what it replaces (mostly aerated lung, mu ~ 0.003 mm^-1).
A sphere of radius r adds ``2 * sqrt(r^2 - d^2) * delta_mu`` at distance d from its centre.
Every model returns instances ``(box_xyxy_px, size_mm, mask)``; lesions are added *before* the
log/display step, so they interact with noise, scatter and windowing like real ones.
"""

from __future__ import annotations

import math

import numpy as np

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
        self.lung_mm = aux[..., 0].astype(np.float32)
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
        self.heart_override = None
        self.rows = np.arange(S, dtype=np.float32)[:, None]
        self.cols = np.arange(S, dtype=np.float32)[None, :]

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
            self._field = self.lung & (self._aux[..., 1] < 3) & ((self._aux[..., 3] & 31) == 0) & (self.p < self.p_field)
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
    from scipy import ndimage

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
    r0, r1 = max(int(math.floor(cy - ey)), 0), min(int(math.ceil(cy + ey)), S)
    c0, c1 = max(int(math.floor(cx - ex)), 0), min(int(math.ceil(cx + ex)), S)
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


# ---------------------------------------------------------------- lesion models
def nodule(cv: Canvas, rng, ctx) -> list:
    """Nodule/Mass: 1-3 soft-tissue ellipsoids inside the lungs, diameters from VinDr's box sizes (3-45 mm)."""
    n = 1 + int(rng.random() < 0.3) + int(rng.random() < 0.12)
    out = []
    for _ in range(min(n, ctx.max_nodules)):
        d = sample_size(rng, ctx.rel_sizes, "Nodule/Mass", cv.fov_mm, 3.0, 45.0, ctx.size_scale)
        where = _pick(rng, cv.field & (cv.lung_mm > min(0.9 * d + 10, 80)))
        if where is None:
            continue
        a = d / 2
        inst = _ellipsoid(cv, rng, where[0], where[1], a, a * rng.uniform(0.8, 1.0), a,
                          rng.uniform(0, math.pi), DMU_SOFT * rng.uniform(1.4, 2.0))
        if inst:
            out.append(inst)
    return out


def calcification(cv: Canvas, rng, ctx) -> list:
    """Calcification: a small cluster (or a single granuloma) of dense 2-5 mm spheres (delta-mu ~ dense bone, boosted for learnability)."""
    side = sample_size(rng, ctx.rel_sizes, "Calcification", cv.fov_mm * 0.5, 2.0, 16.0, ctx.size_scale)
    where = _pick(rng, cv.field & (cv.lung_mm > 40))
    if where is None:
        return []
    cy, cx = where
    n = 1 if side < 6 else int(rng.integers(2, 6))
    mask = np.zeros((cv.S, cv.S), bool)
    boxes = []
    for _ in range(n):
        d = min(rng.uniform(2.0, 5.0), side)
        oy, ox = (rng.uniform(-0.5, 0.5, 2) * (side - d)) / cv.mm
        inst = _ellipsoid(cv, rng, cy + oy, cx + ox, d / 2, d / 2, d / 2, 0.0, rng.uniform(0.045, 0.065))
        if inst:
            mask |= inst[2]
            boxes.append(inst[0])
    if not boxes:
        return []
    b = np.array(boxes)
    box = np.array([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()], np.float32)
    return [_instance(cv, mask, box, size_mm=float(max(box[2] - box[0], box[3] - box[1]) * cv.mm))]


def lung_opacity(cv: Canvas, rng, ctx) -> list:
    """Lung Opacity (consolidation): a smooth random blob that fills part of the lung's depth with fluid density."""
    s = sample_size(rng, ctx.rel_sizes, "Lung Opacity", cv.fov_mm, 15.0, 100.0, ctx.size_scale)
    where = _pick(rng, cv.field & (cv.lung_mm > 50))
    if where is None:
        return []
    cy, cx = where
    right = bool(cv.lung_r[int(cy), int(cx)])
    asp = rng.uniform(0.75, 1.3)
    ry, rx = s / 2 / cv.mm / math.sqrt(asp), s / 2 / cv.mm * math.sqrt(asp)
    r0, r1 = max(int(cy - ry), 0), min(int(math.ceil(cy + ry)) + 1, cv.S)
    c0, c1 = max(int(cx - rx), 0), min(int(math.ceil(cx + rx)) + 1, cv.S)
    rr = (np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5 - cy) / ry
    cc = (np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5 - cx) / rx
    base = 1.0 - (rr * rr + cc * cc)
    val = np.clip(base + 0.45 * _smooth_noise(rng, r1 - r0, c1 - c0, 4), 0, None)
    val = np.clip(val * 2.0, 0, 1) ** 1.5 * cv.side(right)[r0:r1, c0:c1]
    fill = rng.uniform(0.3, 0.65)
    cv.add[r0:r1, c0:c1] += val * fill * cv.lung_mm[r0:r1, c0:c1] * DMU_SOFT
    mask = np.zeros((cv.S, cv.S), bool)
    mask[r0:r1, c0:c1] = val > 0.15
    inst = _instance(cv, mask)
    return [inst] if inst else []


def pleural_effusion(cv: Canvas, rng, ctx) -> list:
    """Pleural effusion: basal fluid with a meniscus rising laterally (blunts the costophrenic angle)."""
    sides = [rng.random() < 0.5]
    if rng.random() < 0.25:
        sides = [True, False]
    out = []
    for right in sides:
        m = cv.side(right)
        rows = np.flatnonzero((m & cv.field).any(axis=1))
        cols = np.flatnonzero(m.any(axis=0))
        if len(rows) < 10:
            continue
        h = sample_size(rng, ctx.rel_sizes, "Pleural effusion", cv.fov_mm, 12.0, 90.0, ctx.size_scale) / cv.mm
        bottom, width = rows[-1] + 1, cols[-1] + 1 - cols[0]
        medial = cols[-1] + 1 if right else cols[0]  # patient's right lung is on the viewer's left
        lateral_frac = np.abs(cv.cols - medial) / max(width, 1)
        level = bottom - h - rng.uniform(0.3, 0.7) * h * lateral_frac ** 2
        ramp = rng.uniform(4, 10) / cv.mm
        f = np.clip((cv.rows - level) / ramp, 0, 1) * m * (cv.rows < rows[-1] + 1 + 0.15 * h)
        fluid_mm = f * cv.lung_mm * rng.uniform(0.85, 1.0)
        cv.add += fluid_mm * DMU_SOFT
        inst = _instance(cv, (f > 0.3) & (fluid_mm > 10), min_pixels=30)
        if inst:
            out.append(inst)
    return out


def _scaled_field(field: np.ndarray, centre, sy: float, sx: float, cv: Canvas) -> np.ndarray:
    cy, cx = centre
    r = cy + (cv.rows + 0.5 - cy) / sy - 0.5
    c = cx + (cv.cols + 0.5 - cx) / sx - 0.5
    return _bilinear(field, r + 0 * c, c + 0 * r)


def cardiomegaly(cv: Canvas, rng, ctx) -> list:
    """Cardiomegaly: the heart silhouette enlarged (mostly sideways) to a cardiothoracic ratio of 0.53-0.66."""
    heart = cv.heart_mm > 5
    if not heart.any() or not cv.lung.any():
        return []
    hb, lb = _box_of(heart), _box_of(cv.lung)
    ctr0 = (hb[2] - hb[0]) / (lb[2] - lb[0])
    target = rng.uniform(0.54, 0.66)
    sx = max(target / ctr0, 1.08)
    sy = 1.0 + (sx - 1.0) * rng.uniform(0.2, 0.45)
    w = heart.astype(np.float32)
    centre = ((cv.rows * w).sum() / w.sum() + 0.5, (cv.cols * w).sum() / w.sum() + 0.5)
    big = _scaled_field(cv.heart_mm, centre, sy, sx, cv)
    grow = np.clip(big - cv.heart_mm, 0, None)
    cv.add += np.minimum(grow, cv.lung_mm) * DMU_SOFT
    cv.heart_override = big
    inst = _instance(cv, big > 5, clean=False)
    return [inst] if inst else []


def aortic_enlargement(cv: Canvas, rng, ctx) -> list:
    """Aortic enlargement: the aortic arch/knob (above the heart) dilated 1.35-1.75x."""
    heart = cv.heart_mm > 5
    if not heart.any():
        return []
    top = int(_box_of(heart)[1])
    arch = (cv.aorta_mm > 3) & (cv.rows < top + 5)
    if arch.sum() < 4:
        return []
    w = arch.astype(np.float32)
    centre = ((cv.rows * w).sum() / w.sum() + 0.5, (cv.cols * w).sum() / w.sum() + 0.5)
    s = rng.uniform(1.35, 1.75)
    field = (cv.aorta_mm * np.clip((top + 8 - cv.rows) / 8.0, 0, 1)).astype(np.float32)
    big = _scaled_field(field, centre, s ** 0.5, s, cv)
    grow = np.clip(big - field, 0, None)
    cv.add += np.minimum(grow, cv.lung_mm + 20) * DMU_SOFT
    inst = _instance(cv, big > 3, clean=False)
    return [inst] if inst else []


def _lung_side_extent(cv: Canvas, right: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One lung's mask and the rows and columns it occupies (for lesions along the pleura)."""
    m = cv.side(right)
    return m, np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))


def pneumothorax(cv: Canvas, rng, ctx) -> list:
    """Pneumothorax: apical/lateral rim without lung markings, darker, with a thin visceral pleural line."""
    right = rng.random() < 0.5
    m, rows, cols = _lung_side_extent(cv, right)
    if len(rows) < 10:
        return []
    p_smooth, edge = cv.extra
    w = rng.uniform(10, 30) * max(ctx.size_scale, 0.3)
    extent = sample_size(rng, ctx.rel_sizes, "Pneumothorax", cv.fov_mm, 40.0, 200.0) / cv.mm
    mid = (cols[0] + cols[-1] + 1) / 2
    lateral = (cv.cols < mid) if right else (cv.cols >= mid)
    apical = cv.rows < rows[0] + 0.25 * (rows[-1] - rows[0])
    region_zone = (lateral | apical) & (cv.rows < rows[0] + extent)
    soft = np.clip((w - edge) / 2.0, 0, 1) * m * region_zone
    detail = cv.p - p_smooth
    cv.add -= soft * (detail + cv.lung_mm * DMU_LUNG)
    line = np.exp(-(((edge - w) / 0.9) ** 2)) * m * region_zone
    cv.add += line * 0.12
    inst = _instance(cv, soft > 0.5)
    return [inst] if inst else []


def pleural_thickening(cv: Canvas, rng, ctx) -> list:
    """Pleural thickening: a 2-6 mm soft-tissue band along the lateral chest wall or apex (seen tangentially)."""
    right = rng.random() < 0.5
    m, rows, cols = _lung_side_extent(cv, right)
    if len(rows) < 10:
        return []
    _p, edge = cv.extra
    length = sample_size(rng, ctx.rel_sizes, "Pleural thickening", cv.fov_mm, 10.0, 80.0, ctx.size_scale) / cv.mm
    t = rng.uniform(2.0, 6.0)
    mid = (cols[0] + cols[-1] + 1) / 2
    lateral = (cv.cols < mid - 0.15 * (cols[-1] - cols[0])) if right else (cv.cols >= mid + 0.15 * (cols[-1] - cols[0]))
    start = rng.uniform(rows[0], rows[0] + 0.6 * (rows[-1] - rows[0]))
    zone = lateral & (cv.rows >= start) & (cv.rows < start + length)
    band = np.clip((t - edge) / 1.5, 0, 1) * m * zone
    if not band.any():
        return []
    cv.add += band * math.sqrt(2 * 120.0 * t) * DMU_SOFT
    inst = _instance(cv, band > 0.3, min_pixels=8)
    return [inst] if inst else []


def pulmonary_fibrosis(cv: Canvas, rng, ctx) -> list:
    """Pulmonary fibrosis: a reticular (thin-line network) texture in the lower, peripheral lung zones.

    Confined to the radiographic lung field (:attr:`Canvas.aerated`): above the diaphragm domes, not
    over the liver where the projection still contains thin posterior lung recesses.
    """
    sides = [True, False] if rng.random() < 0.6 else [rng.random() < 0.5]
    tiles = ctx.textures
    tile = tiles[rng.integers(len(tiles))]
    T = tile.shape[0]
    zoom = rng.uniform(0.9, 1.4) * cv.mm / 1.34  # texture pixels per output pixel
    ry = ((np.arange(cv.S) * zoom + rng.integers(T)) % T).astype(np.int32)
    rx = ((np.arange(cv.S) * zoom + rng.integers(T)) % T).astype(np.int32)
    tex = tile[ry[:, None], rx[None, :]]
    _p, edge = cv.extra
    out = []
    h = sample_size(rng, ctx.rel_sizes, "Pulmonary fibrosis", cv.fov_mm, 30.0, 130.0, ctx.size_scale) / cv.mm
    amp = rng.uniform(0.7, 1.1)
    for right in sides:
        m = cv.side(right) & cv.aerated
        rows = np.flatnonzero((m & cv.field).any(axis=1))
        if len(rows) < 10:
            continue
        m = m & (cv.rows < rows[-1] + 1)
        # the band follows the diaphragm dome (height h above each column's lung base), lower zones
        # only (not above the heart border: at most 1.5 h above the side's lowest lung row)
        level = np.maximum((cv.S - np.argmax(m[::-1], axis=0)).astype(np.float32) - h, rows[-1] + 1 - 1.5 * h)[None, :]
        zone = np.clip((cv.rows - level) / (0.25 * h + 1), 0, 1) * np.clip(1.3 - edge / 40.0, 0.2, 1.0) * m
        cv.add += tex * zone * amp * np.minimum(cv.lung_mm, 120) * 0.25 * DMU_SOFT
        inst = _instance(cv, zone > 0.3, min_pixels=30)
        if inst:
            out.append(inst)
    return out


#: The lesion model of each finding, by class name.
MODELS = {"Nodule/Mass": nodule, "Calcification": calcification, "Lung Opacity": lung_opacity,
          "Pleural effusion": pleural_effusion, "Cardiomegaly": cardiomegaly, "Pneumothorax": pneumothorax,
          "Aortic enlargement": aortic_enlargement, "Pleural thickening": pleural_thickening,
          "Pulmonary fibrosis": pulmonary_fibrosis}
