"""Lesion models inside the lung fields (notebook 01): nodule/mass, calcification, opacity, fibrosis."""

from __future__ import annotations

import math

import numpy as np

from .canvas import (
    DMU_SOFT,
    Canvas,
    _ellipsoid,
    _instance,
    _pick,
    _smooth_noise,
    sample_size,
)


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
    r0, r1 = max(int(cy - ry), 0), min(math.ceil(cy + ry) + 1, cv.S)
    c0, c1 = max(int(cx - rx), 0), min(math.ceil(cx + rx) + 1, cv.S)
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


