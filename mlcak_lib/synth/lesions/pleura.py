"""Lesion models of the pleura (notebook 01): effusion, pneumothorax, pleural thickening."""

from __future__ import annotations

import math

import numpy as np

from .canvas import DMU_LUNG, DMU_SOFT, Canvas, _instance, sample_size


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


