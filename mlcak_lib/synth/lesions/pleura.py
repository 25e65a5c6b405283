"""Lesion models of the pleura (notebook 01): effusion, pneumothorax, pleural thickening.

Each works in a window around one lung (:meth:`Canvas.side_box`) and measures distances from that
lung's lateral border row by row (:meth:`Canvas.wall_distance`): the chest wall along which pleural
findings are seen tangentially.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .canvas import DMU_SOFT, Canvas, _blur3, _instance, sample_size

MENISCUS_MM = 8.0  # width (mm, 1/e) of the fluid layer along the chest wall that the PA beam meets edge-on
EFFUSION_VISIBLE_MM = 8.0  # fluid thickness along the beam from which an effusion counts as seen (mask)


def pleural_effusion(cv: Canvas, rng, ctx) -> list:
    """Pleural effusion (erect PA): basal fluid with a meniscus, blunting the costophrenic angle.

    The fluid's upper border is concave: highest laterally (fluid climbing the chest wall, seen
    tangentially), lower medially; small effusions (< 25 mm) fill only the lateral costophrenic
    angle. Its thickness along the beam grows downward from a thin sheet at the border to the full
    lung depth (the lung is displaced), so the density is graded and the hemidiaphragm's silhouette
    is lost under a large one. Box and mask: where the fluid is at least ``EFFUSION_VISIBLE_MM`` thick.
    """
    sides = [rng.random() < 0.5]
    if rng.random() < 0.25:
        sides = [True, False]
    out = []
    for right in sides:
        sb = cv.side_box(right)
        if sb is None:
            continue
        R0, R1, C0, C1 = sb
        h_mm = sample_size(rng, ctx.rel_sizes, "Pleural effusion", cv.fov_mm, 12.0, 90.0, ctx.size_scale)
        h = h_mm / cv.mm
        # the costophrenic angle: lowest row of the aerated lung in the lateral third of this lung
        third = max((C1 - C0) // 3, 1)
        lat = slice(C0, C0 + third) if right else slice(C1 - third, C1)
        aer = cv.aerated[R0:R1, lat]
        if not aer.any():
            continue
        cp = R0 + int(np.flatnonzero(aer.any(axis=1))[-1]) + 1
        medial_frac = 0.0 if h_mm < 25 else rng.uniform(0.35, 0.75)  # small: the angle only
        r0, r1 = max(int(cp - 1.1 * h) - 2, R0), R1  # down to the lung mask's end (no cut edge)
        if r1 - r0 < 4:
            continue
        m = cv.side(right)[r0:r1, C0:C1]
        aer = cv.aerated[r0:r1, C0:C1]
        # each column's radiographic lung base (the dome): its lowest aerated row, else the angle's
        base = np.where(aer.any(axis=0), r0 + aer.shape[0] - np.argmax(aer[::-1], axis=0), cp)[None, :]
        wall = cv.wall_distance(right, r0, r1, C0, C1)
        lat_frac = np.clip(1.0 - wall / max(C1 - C0, 1), 0, 1)  # 1 at the chest wall, 0 medially
        top = cp - h * (medial_frac + (1 - medial_frac) * lat_frac ** 3)
        above = cv.rows[r0:r1] < base + 0.1 * h  # above the dome (the radiographic lung base)
        tangential = np.exp(-wall * (cv.mm / MENISCUS_MM)) * above  # the meniscus: a layer climbing the wall, seen edge-on
        top -= (0.15 * h) * tangential
        grade = rng.uniform(0.5, 0.9) * h + 4.0  # px below the border to reach the full depth
        depth = np.clip((cv.rows[r0:r1] + 0.5 - top) / grade, 0, 1) ** 0.8
        lung = np.maximum(cv.lung_mm[r0:r1, C0:C1], 40.0 * tangential)
        fluid = _blur3(depth * m * lung * rng.uniform(0.85, 1.0), 1)
        cv.add[r0:r1, C0:C1] += fluid * DMU_SOFT
        mask = np.zeros((cv.S, cv.S), bool)
        mask[r0:r1, C0:C1] = (fluid > EFFUSION_VISIBLE_MM) & m & above
        inst = _instance(cv, mask, min_pixels=20)
        if inst:
            out.append(inst)
    return out


def pneumothorax(cv: Canvas, rng, ctx) -> list:
    """Pneumothorax (erect PA): an apical/lateral rim of pleural air with no lung markings and a visceral pleural line.

    The air rim is widest at the apex and tapers down the lateral chest wall. Inside it the lung's
    structure (vessels) is replaced by its smooth background (its hyperlucency is not modelled);
    at its inner edge the visceral pleura, seen tangentially, is a thin slightly denser line.
    The mask is the air rim (box from it); the size is its extent down the chest wall (mm).
    """
    right = rng.random() < 0.5
    sb = cv.side_box(right)
    if sb is None:
        return []
    R0, R1, C0, C1 = sb
    w_mm = rng.uniform(12, 35) * max(ctx.size_scale, 0.3)  # apical rim width
    extent = min(sample_size(rng, ctx.rel_sizes, "Pneumothorax", cv.fov_mm, 40.0, 200.0) / cv.mm, R1 - R0)
    r0, r1 = R0, min(int(R0 + extent) + 1, R1)
    c0, c1 = C0, C1
    m = cv.side(right)[r0:r1, c0:c1]
    rows = cv.rows[r0:r1]
    # the rim: distance (mm) from the lung's apical and lateral pleura, not from the mediastinal one
    # (each row is filled from its lateral border medially) nor the window's lower edge
    if right:
        filled = np.logical_or.accumulate(m, axis=1)
        d = ndimage.distance_transform_edt(np.pad(filled, ((1, 0), (1, 0))))[1:, 1:]
    else:
        filled = np.logical_or.accumulate(m[:, ::-1], axis=1)[:, ::-1]
        d = ndimage.distance_transform_edt(np.pad(filled, ((1, 0), (0, 1))))[1:, :-1]
    d = d.astype(np.float32) * cv.mm
    width = w_mm * np.clip(1.0 - (rows - R0) / max(extent, 1.0), 0.0, 1.0) ** 0.6 + 1.0
    air = np.clip((width - d) / cv.mm + 0.5, 0, 1) * m  # a one-pixel transition at the visceral pleura
    if not (air > 0.5).any():
        return []
    p = cv.p[r0:r1, c0:c1] + cv.add[r0:r1, c0:c1]  # the film so far (the heart-size warp moved the lung beside the heart)
    # the lung's structure goes: its line integral is replaced by its smooth background (the hyperlucency of
    # the lost lung tissue is left out: the lung-depth field is blocky at the film's scale and drew edges)
    smooth = _blur3(p, 8)
    cv.add[r0:r1, c0:c1] -= air * (p - smooth)
    line = np.exp(-(((d - width) / (0.7 * cv.mm)) ** 2)) * m * (width > 1.5)
    cv.add[r0:r1, c0:c1] += line * rng.uniform(0.1, 0.16)
    mask = np.zeros((cv.S, cv.S), bool)
    mask[r0:r1, c0:c1] = air > 0.5
    inst = _instance(cv, mask, min_pixels=8)
    return [inst] if inst else []


def pleural_thickening(cv: Canvas, rng, ctx) -> list:
    """Pleural thickening: a 2-6 mm soft-tissue band along the lateral chest wall (seen tangentially), slightly undulating."""
    right = rng.random() < 0.5
    sb = cv.side_box(right)
    if sb is None:
        return []
    R0, R1, C0, C1 = sb
    length = sample_size(rng, ctx.rel_sizes, "Pleural thickening", cv.fov_mm, 10.0, 80.0, ctx.size_scale) / cv.mm
    t = rng.uniform(2.0, 6.0)
    start = rng.uniform(R0, R0 + 0.6 * (R1 - R0))
    r0, r1 = int(start), min(int(start + length) + 1, R1)
    band_w = int(3 * t / cv.mm) + 4
    c0, c1 = (C0, min(C0 + (C1 - C0) // 2, C0 + band_w + 30)) if right else (max(C1 - band_w - 30, C0 + (C1 - C0) // 2), C1)
    if r1 - r0 < 3 or c1 <= c0:
        return []
    m = cv.side(right)[r0:r1, c0:c1]
    wall = cv.wall_distance(right, r0, r1, c0, c1) * cv.mm
    phase = rng.uniform(0, 2 * math.pi)
    tt = t * (1.0 + 0.3 * np.sin((cv.rows[r0:r1] - r0) * cv.mm / 9.0 + phase))  # undulating thickness
    ends = np.clip(np.minimum(cv.rows[r0:r1] - start, start + length - cv.rows[r0:r1]) / 3.0, 0, 1)  # tapered ends
    band = np.clip((tt * ends - wall) / 1.5, 0, 1) * m
    if not band.any():
        return []
    cv.add[r0:r1, c0:c1] += band * np.sqrt(2 * 120.0 * tt) * DMU_SOFT
    mask = np.zeros((cv.S, cv.S), bool)
    mask[r0:r1, c0:c1] = band > 0.3
    inst = _instance(cv, mask, min_pixels=8)
    return [inst] if inst else []
