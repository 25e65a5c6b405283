"""Lesion models inside the lung fields (notebook 01): nodule/mass, calcification, opacity, fibrosis.

All work in small windows around the lesion. Nodules and masses have soft edges (a few tenths of a
millimetre to 2.5 mm of blur) and come smooth, lobulated, spiculated (thin radiating strands) or
calcified (dense centre); consolidation follows a lobe (a sharp border at the horizontal fissure
for the right upper and middle lobes, ill-defined elsewhere), patchy, with air bronchograms;
fibrosis is a reticular pattern in the lower zones, densest under the pleura.
"""

from __future__ import annotations

import math

import numpy as np

from .canvas import (
    DMU_SOFT,
    Canvas,
    _blur3,
    _ellipsoid,
    _instance,
    _pick,
    _smooth_noise,
    sample_size,
)

DMU_CALCIUM = 0.05  # calcified tissue replacing lung (dense bone-like, boosted for learnability)
NODULE_KINDS = ("smooth", "lobulated", "spiculated", "calcified")
#: kind probabilities for nodules under 10 mm and for larger nodules and masses
NODULE_KIND_P = ((0.55, 0.2, 0.0, 0.25), (0.3, 0.3, 0.3, 0.1))


def _window(cy: float, cx: float, ry: float, rx: float, S: int):
    return max(int(cy - ry), 0), min(math.ceil(cy + ry) + 1, S), max(int(cx - rx), 0), min(math.ceil(cx + rx) + 1, S)


def _mass(cv: Canvas, rng, cy: float, cx: float, a_mm: float, dmu: float, kind: str):
    """One nodule/mass of radius ``a_mm`` at (row, col): soft edge, outline by ``kind``; its instance (box from the mask)."""
    mm = cv.mm
    spic = a_mm * rng.uniform(0.6, 1.3) if kind == "spiculated" else 0.0
    half = (1.35 * a_mm + spic + 3.0) / mm
    r0, r1, c0, c1 = _window(cy, cx, half, half, cv.S)
    if r1 - r0 < 2 or c1 - c0 < 2:
        return None
    y = (np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5 - cy) * mm
    x = (np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5 - cx) * mm
    rho = np.sqrt(x * x + y * y)
    theta = np.arctan2(y, x)
    amp = {"lobulated": 0.12, "spiculated": 0.06}.get(kind, 0.04)
    rb = np.full_like(rho, a_mm)
    for k in (2, 3, 5):  # outline: a slight ellipticity, or lobulation
        rb += a_mm * amp * rng.uniform(0.5, 1.0) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    u = rho / rb
    t = 2.0 * a_mm * np.sqrt(np.clip(1.0 - u * u, 0.0, None))
    # soft edge; outside the lung (chest wall, mediastinum: soft tissue already) a mass adds no contrast
    t = _blur3(t * cv.lung[r0:r1, c0:c1], 1 + int(a_mm > 6) + int(a_mm > 15))
    t = np.minimum(t, cv.lung_mm[r0:r1, c0:c1] + 0.3 * a_mm)
    add = t * dmu
    seen = t > 0.08 * 2.0 * a_mm
    if spic > 0:  # thin radiating strands (tissue planes seen edge-on), tapering outwards
        strands = np.zeros_like(rho)
        for phi in rng.uniform(0, 2 * math.pi, int(rng.integers(8, 16))):
            d = theta - phi
            along, perp = rho * np.cos(d), np.abs(rho * np.sin(d))
            length = spic * rng.uniform(0.5, 1.0)
            taper = np.clip(1.0 - (along - a_mm) / length, 0, 1) * (along > 0.5 * a_mm)
            strands = np.maximum(strands, np.exp(-((perp / (0.45 * mm)) ** 2)) * taper)
        strands *= cv.lung[r0:r1, c0:c1]  # spicules run in the lung
        add += strands * 4.0 * DMU_SOFT
        seen |= strands > 0.35
    if kind == "calcified":  # a dense central (or eccentric) calcification
        rc = a_mm * rng.uniform(0.25, 0.5)
        oy, ox = rng.uniform(-0.3, 0.3, 2) * a_mm
        dc = np.sqrt((x - ox) ** 2 + (y - oy) ** 2) / rc
        add += _blur3(2.0 * rc * np.sqrt(np.clip(1.0 - dc * dc, 0, None)), 1) * DMU_CALCIUM
    cv.add[r0:r1, c0:c1] += add
    mask = np.zeros((cv.S, cv.S), bool)
    mask[r0:r1, c0:c1] = seen
    return _instance(cv, mask, size_mm=2.0 * a_mm, clean=False)


def nodule(cv: Canvas, rng, ctx) -> list:
    """Nodule/Mass: 1-3 soft-edged soft-tissue nodules inside the lungs (smooth, lobulated, spiculated or
    calcified; ``NODULE_KIND_P``), diameters from VinDr's box sizes (3-45 mm)."""
    n = 1 + int(rng.random() < 0.3) + int(rng.random() < 0.12)
    out = []
    for _ in range(min(n, ctx.max_nodules)):
        d = sample_size(rng, ctx.rel_sizes, "Nodule/Mass", cv.fov_mm, 3.0, 45.0, ctx.size_scale)
        where = _pick(rng, cv.field & (cv.lung_mm > min(0.9 * d + 10, 80)))
        if where is None:
            continue
        kind = NODULE_KINDS[int(rng.choice(4, p=NODULE_KIND_P[int(d >= 10)]))]
        inst = _mass(cv, rng, where[0], where[1], d / 2, DMU_SOFT * rng.uniform(1.4, 2.0), kind)
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


def _lung_rows(cv: Canvas, right: bool):
    """``(top, bottom, base)`` of one lung's radiographic field: first and last aerated row (end
    exclusive) and each column's lowest aerated row (the dome; ``bottom`` where none)."""
    sb = cv.side_box(right)
    if sb is None:
        return None
    R0, R1, C0, C1 = sb
    aer = cv.aerated[R0:R1, C0:C1] & cv.side(right)[R0:R1, C0:C1]
    rows = np.flatnonzero(aer.any(axis=1))
    if len(rows) < 10:
        return None
    top, bottom = R0 + int(rows[0]), R0 + int(rows[-1]) + 1
    base = np.full(cv.S, float(bottom), np.float32)
    has = aer.any(axis=0)
    base[C0:C1][has] = (R0 + aer.shape[0] - np.argmax(aer[::-1], axis=0))[has]
    return top, bottom, base


LOBE_P = (0.3, 0.25, 0.45)  # upper lobe, middle lobe (right) / lingula (left), lower lobe


def lung_opacity(cv: Canvas, rng, ctx) -> list:
    """Lung Opacity (consolidation): a patchy, ill-defined airspace opacity within one lobe.

    Its extent comes from VinDr's box sizes; where it reaches the horizontal fissure (right upper and
    middle lobes) its border there is sharp, elsewhere it fades. It fills part of the lung's depth with
    fluid density (a lower-lobe opacity more so towards the base); a dense one may show air bronchograms
    (dark branching lines). Mask: where the added density is at least 15 % of its peak.
    """
    s = sample_size(rng, ctx.rel_sizes, "Lung Opacity", cv.fov_mm, 15.0, 100.0, ctx.size_scale)
    right = bool(rng.random() < 0.55)
    geo = _lung_rows(cv, right)
    if geo is None:
        return []
    top, bottom, _base = geo
    H = bottom - top
    lobe = int(rng.choice(3, p=LOBE_P))
    fissure = top + rng.uniform(0.38, 0.48) * H
    lo, hi = [(top + 0.12 * H, fissure - 0.05 * H), (fissure + 0.08 * H, fissure + 0.35 * H),
              (bottom - 0.4 * H, bottom - 0.08 * H)][lobe]
    cy = rng.uniform(lo, hi)
    row = cv.side(right)[min(int(cy), cv.S - 1)]
    cols = np.flatnonzero(row)
    if len(cols) < 4:
        return []
    medial = rng.uniform(0.55, 0.9) if lobe == 1 else rng.uniform(0.15, 0.85)  # middle lobe: by the heart
    f = medial if not right else 1.0 - medial  # the right lung's medial side is on the viewer's right
    cx = cols[0] + f * (cols[-1] + 1 - cols[0])
    asp = rng.uniform(0.75, 1.3)
    ry, rx = s / 2 / cv.mm / math.sqrt(asp), s / 2 / cv.mm * math.sqrt(asp)
    r0, r1, c0, c1 = _window(cy, cx, ry, rx, cv.S)
    if r1 - r0 < 3 or c1 - c0 < 3:
        return []
    rows = cv.rows[r0:r1]
    rr = (rows + 0.5 - cy) / ry
    cc = (cv.cols[:, c0:c1] + 0.5 - cx) / rx
    fine = max(4, int(s / 7.0))  # acinar-scale patches (~7 mm)
    val = (1.0 - (rr * rr + cc * cc) + 0.45 * _smooth_noise(rng, r1 - r0, c1 - c0, 4)
           + 0.3 * _smooth_noise(rng, r1 - r0, c1 - c0, fine))
    val = np.clip(val, 0, None)
    val = val / max(float(val.max()), 1e-6)
    # no plateau and no cut edge: density rises gradually from the margin (ill-defined), patchy inside
    val = _blur3(np.minimum(1.6 * val * val, 1.0), 2 + int(s > 40)) * cv.side(right)[r0:r1, c0:c1]
    if right and lobe == 0:  # the horizontal fissure bounds the right upper lobe below ...
        val *= np.clip(fissure - rows, 0, 1)
    elif right and lobe == 1:  # ... and the middle lobe above
        val *= np.clip(rows - fissure, 0, 1)
    fill = rng.uniform(0.25, 0.55)
    if lobe == 2:  # the lower lobe fills more of the depth towards the base
        fill = fill * np.clip(0.5 + 0.6 * (rows - (bottom - 0.5 * H)) / (0.5 * H), 0.5, 1.1)
    dense = val * fill
    if s > 30 and rng.random() < 0.5:  # air bronchograms: aerated bronchi inside dense consolidation
        air = np.zeros_like(val)
        out_dir = -1.0 if right else 1.0  # towards the chest wall
        for _ in range(int(rng.integers(2, 4))):
            ang = rng.uniform(-0.6, 0.6) + (0.0 if out_dir > 0 else math.pi)
            y0, x0 = cy + rng.uniform(-0.4, 0.4) * ry, cx - out_dir * 0.5 * rx
            for _seg in range(2):  # two slightly bent segments, branching outwards
                x1, y1 = x0 + math.cos(ang) * 0.6 * rx, y0 + math.sin(ang) * 0.6 * rx
                dx, dy = x1 - x0, y1 - y0
                tt = np.clip(((cv.cols[:, c0:c1] - x0) * dx + (rows - y0) * dy) / (dx * dx + dy * dy), 0, 1)
                dist = np.hypot(cv.cols[:, c0:c1] - x0 - tt * dx, rows - y0 - tt * dy)
                air = np.maximum(air, np.exp(-((dist / 0.5) ** 2)))
                x0, y0, ang = x1, y1, ang + rng.uniform(-0.5, 0.5)
        dense = dense * (1.0 - 0.4 * _blur3(air, 1) * np.clip((val - 0.5) * 4, 0, 1))
    added = dense * cv.lung_mm[r0:r1, c0:c1] * DMU_SOFT
    cv.add[r0:r1, c0:c1] += added
    mask = np.zeros((cv.S, cv.S), bool)
    mask[r0:r1, c0:c1] = added > 0.15 * max(float(added.max()), 1e-6)
    inst = _instance(cv, mask)
    return [inst] if inst else []


def pulmonary_fibrosis(cv: Canvas, rng, ctx) -> list:
    """Pulmonary fibrosis: a reticular (thin-line network) pattern, basal and peripheral (subpleural).

    Per lung, in a window over its lower zones: the pattern follows the diaphragm dome (height h above
    each column's lung base) and fades from the chest wall inwards over ~3 cm. Confined to the
    radiographic lung field (:attr:`Canvas.aerated`): above the domes, not over the liver.
    """
    sides = [True, False] if rng.random() < 0.6 else [bool(rng.random() < 0.5)]
    tiles = ctx.textures
    tile = tiles[rng.integers(len(tiles))]
    T = tile.shape[0]
    zoom = rng.uniform(0.9, 1.4) * cv.mm / 1.34  # texture pixels per output pixel
    oy, ox = int(rng.integers(T)), int(rng.integers(T))
    h = sample_size(rng, ctx.rel_sizes, "Pulmonary fibrosis", cv.fov_mm, 30.0, 130.0, ctx.size_scale) / cv.mm
    amp = rng.uniform(0.7, 1.1)
    reach = rng.uniform(25.0, 40.0)  # mm from the chest wall over which the pattern fades
    out = []
    for right in sides:
        geo = _lung_rows(cv, right)
        if geo is None:
            continue
        top, bottom, base = geo
        _R0, _R1, c0, c1 = cv.side_box(right)
        r0 = max(int(bottom - 1.6 * h) - 1, top)
        r1 = bottom
        m = cv.aerated[r0:r1, c0:c1] & cv.side(right)[r0:r1, c0:c1]
        level = np.maximum(base[None, c0:c1] - h, bottom - 1.5 * h)
        basal = np.clip((cv.rows[r0:r1] - level) / (0.25 * h + 1), 0, 1)
        wall = cv.wall_distance(right, r0, r1, c0, c1) * cv.mm
        zone = basal * np.clip(1.2 - wall / reach, 0.1, 1.0) * m
        ry = ((np.arange(r0, r1) * zoom + oy) % T).astype(np.int32)
        rx = ((np.arange(c0, c1) * zoom + ox) % T).astype(np.int32)
        tex = tile[ry[:, None], rx[None, :]]
        cv.add[r0:r1, c0:c1] += tex * zone * amp * np.minimum(cv.lung_mm[r0:r1, c0:c1], 120) * 0.25 * DMU_SOFT
        mask = np.zeros((cv.S, cv.S), bool)
        mask[r0:r1, c0:c1] = zone > 0.3
        inst = _instance(cv, mask, min_pixels=30)
        if inst:
            out.append(inst)
    return out
