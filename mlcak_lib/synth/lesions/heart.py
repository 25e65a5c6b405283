"""The heart and great vessels (notebook 01): cardiomegaly and aortic enlargement."""

from __future__ import annotations

import numpy as np

from .canvas import DMU_SOFT, Canvas, _bilinear, _box_of, _instance


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


