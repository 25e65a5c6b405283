"""The heart and great vessels (notebook 01): heart size of every film, cardiomegaly, aortic enlargement.

Heart size is an anatomical variation: :func:`heart_size` (called once per film, before the
findings) draws a cardiothoracic ratio (CTR) from a normal-adult range and resizes the CT's
projected heart to it by a sideways warp of the film (:func:`_warp_heart`: the lung beside the heart
follows its border, so a smaller heart leaves aerated lung with its own texture); cardiomegaly
warps further. The ranges below are quoted from memory and **to be verified**:
Danzer (1919) defined the CTR and its upper normal limit of 0.5 on PA films; Nickol & Wade (1982,
Br Heart J) measured healthy adults at a mean of about 0.45 (sd about 0.04). A normal film's
target is that normal distribution truncated to ``CTR_NORMAL`` (so normals stay below 0.5);
cardiomegaly draws from ``CTR_CARDIOMEGALY``. The CTR is measured like
:func:`mlcak_lib.realism.cardiothoracic_ratio`: the heart mask's column span over the widest row
of the lung mask.
"""

from __future__ import annotations

import numpy as np

from .canvas import DMU_SOFT, Canvas, _blur3, _box_of, _instance, _scaled_window

CTR_MEAN, CTR_SD = 0.45, 0.04  # normal adults, PA (Nickol & Wade 1982; quoted from memory, to verify)
CTR_NORMAL = (0.36, 0.49)  # truncation of a normal film's draw: below Danzer's 0.5 limit
CTR_CARDIOMEGALY = (0.52, 0.66)
HEART_MM = 5.0  # projected heart thickness (mm) that makes the heart mask (the generator's rule)


def _heart_geometry(cv: Canvas):
    """``(rows, cols, ctr)`` of the CT's own heart mask, or ``None`` without heart or lung."""
    hm = cv._aux[..., 1] > HEART_MM  # the uint8 channel of heart_mm: a cheaper comparison
    rows, cols = np.flatnonzero(hm.any(axis=1)), np.flatnonzero(hm.any(axis=0))
    thorax = cv.thorax_px()
    if len(cols) < 3 or thorax < 10:
        return None
    return rows, cols, (cols[-1] + 1 - cols[0]) / thorax


def _resize_heart(cv: Canvas, target_ctr: float, lift: float, geo=None):
    """Rescale the CT's heart to ``target_ctr`` (sideways; ``lift`` of that vertically, the base kept on
    the diaphragm) and add the attenuation change; returns the new heart thickness field or ``None``.

    Where the heart grows it replaces aerated lung (at most the lung's depth); where it shrinks its
    tissue becomes aerated lung, so attenuation falls. Relative to a previous resize (a normal film's
    heart size, then cardiomegaly) only the difference is added. Works in a window around both hearts.
    """
    geo = geo or _heart_geometry(cv)
    if geo is None:
        return None
    rows, cols, ctr0 = geo
    sx = float(target_ctr / ctr0)
    sy = 1.0 + (sx - 1.0) * lift
    # the left ventricle (viewer's right) carries most of the change: scale about a point 40 % across
    centre = (rows[-1] + 1.0, cols[0] + 0.4 * (cols[-1] + 1 - cols[0]))
    S = cv.S
    grow = max(sx, sy, 1.0)
    # window: the heart mask's box plus its thin rim (4 px), scaled, and any previous resize's window
    b = (cols[0] - 4, rows[0] - 4, cols[-1] + 5, rows[-1] + 5)
    r0 = max(min(b[1], int(centre[0] - (centre[0] - b[1]) * grow)) - 2, 0)
    r1 = min(b[3] + 2, S)
    c0 = max(min(b[0], int(centre[1] - (centre[1] - b[0]) * grow)) - 2, 0)
    c1 = min(max(b[2], int(centre[1] + (b[2] - centre[1]) * grow) + 1) + 2, S)
    if cv.heart_override is not None:
        p0, p1, q0, q1 = cv.heart_window
        r0, r1, c0, c1 = min(r0, p0), max(r1, p1), min(c0, q0), max(c1, q1)
    cv.heart_window = (r0, r1, c0, c1)
    base = cv.heart_mm[r0:r1, c0:c1]
    room = base + cv.lung_mm[r0:r1, c0:c1]
    new = _scaled_window(cv.heart_mm, centre, sy, sx, r0, r1, c0, c1)
    # the heart's top (where the CT's heart label is cut from the great vessels) stays where it is:
    # the change fades in over the upper quarter of the heart
    k = min(max(int(rows[0] + 0.25 * (rows[-1] + 1 - rows[0])) + 1 - r0, 0), r1 - r0)
    taper = np.clip((cv.rows[r0:r0 + k] - rows[0]) / (0.25 * (rows[-1] + 1 - rows[0])), 0, 1)
    new[:k] = base[:k] + taper * (new[:k] - base[:k])
    # the projected line integral is smoother than the heart label: blur the change alike
    if cv.heart_override is None:  # min(base, room) is base
        delta = _blur3(np.minimum(new, room) - base, 1) * DMU_SOFT
    else:
        delta = _blur3(np.minimum(new, room) - np.minimum(cv.heart_override[r0:r1, c0:c1], room), 1) * DMU_SOFT
    # where the heart's label overstates its excess over the lung (partial volume), a shrinking heart
    # must not leave a band darker than the lung beside it: the floor on each row runs from the line
    # integral just outside the window's left edge to that just outside its right edge
    now = cv.p[r0:r1, c0:c1] + cv.add[r0:r1, c0:c1]
    w = np.linspace(0.0, 1.0, c1 - c0, dtype=np.float32)[None, :]
    floor = np.minimum(now, now[:, :1] * (1 - w) + now[:, -1:] * w)
    cv.add[r0:r1, c0:c1] += np.maximum(now + delta, floor) - now
    field = cv.heart_mm.copy() if cv.heart_override is None else cv.heart_override
    field[r0:r1, c0:c1] = new
    cv.heart_override = field
    cv._field = None  # the open lung field follows the heart
    return field


SPINE_MM = 12.0  # half-width (mm) of the column around the heart's scaling centre that the warp keeps (the spine)


def _warp_heart(cv: Canvas, sx: float, geo) -> bool:
    """Resize the heart sideways by ``sx`` by warping the film's columns over the heart's rows.

    One piecewise-linear column map: the heart's lateral parts are compressed (or stretched) towards
    their new borders and the lung between the heart and the chest wall is stretched (or compressed)
    to follow, so a smaller heart leaves aerated lung with its own texture where it was. The chest
    walls and a spine-wide column at the scaling centre stay put; the warp fades out over ~4 % of the
    film above and below the heart (blended). The line integral's change goes to ``cv.add``, the warped heart
    thickness to ``cv.heart_override`` (its mask's width is exactly ``sx`` times the CT heart's).
    """
    rows, cols, _ = geo
    S = cv.S
    lc = np.flatnonzero(cv.lung.any(axis=0))
    if len(lc) < 10:
        return False
    wl, wr = float(lc[0]), float(lc[-1] + 1)  # the chest walls (the lung fields' outer columns)
    first, last = float(cols[0]), float(cols[-1] + 1)
    cx = first + 0.4 * (last - first)  # the left ventricle (viewer's right) changes most
    sp = SPINE_MM / cv.mm
    fl, fr = max(cx - sp, first + 1), min(cx + sp, last - 1)
    lnew, rnew = cx - (cx - first) * sx, cx + (last - cx) * sx
    if not (wl + 1 < min(first, lnew) and lnew < fl - 0.5 and fl < fr and rnew > fr + 0.5 and max(last, rnew) < wr - 1):
        return False
    q0, q1 = int(wl), min(int(wr) + 1, S)  # outside the chest walls nothing moves
    c = np.arange(q0, q1, dtype=np.float32) + 0.5
    disp = np.interp(c, [wl, lnew, fl, fr, rnew, wr], [wl, first, fl, fr, last, wr]) - c
    m = int(0.04 * S) + 1
    h0, h1 = int(rows[0]), int(rows[-1]) + 1  # the heart's rows: full warp, one column map for all
    r0, r1 = max(h0 - m, 0), min(h1 + m, S)  # above and below it fades out
    c1d = np.clip(c + disp - 0.5, 0, S - 1.001)
    i1 = c1d.astype(np.int32)
    f1 = c1d - i1

    def warp(img, lo, hi):  # the same column map on every row: 1-D gathers
        win = img[lo:hi]
        return np.take(win, i1, axis=1) * (1 - f1) + np.take(win, i1 + 1, axis=1) * f1

    if cv.heart_change is not None:  # a previous resize of this film (its heart size): replaced
        p0, p1, pc0, pc1, prev = cv.heart_change
        cv.add[p0:p1, pc0:pc1] -= prev
    # above and below the heart the warped rows are blended into the unwarped ones
    rr = cv.rows[r0:r1]
    weight = np.clip(np.minimum(rr - (h0 - m), (h1 - 1 + m) - rr) / m, 0, 1)
    change = (warp(cv.p, r0, r1) - cv.p[r0:r1, q0:q1]) * weight
    cv.add[r0:r1, q0:q1] += change
    cv.heart_change = (r0, r1, q0, q1, change)
    field = cv.heart_mm.copy()
    field[h0:h1, q0:q1] = warp(cv.heart_mm, h0, h1)  # no heart mask outside its rows
    cv.heart_override = field
    cv.heart_window = (r0, r1, q0, q1)
    cv._field = None  # the open lung field follows the heart
    return True


def heart_size(cv: Canvas, rng, strength: float = 1.0) -> None:
    """Every film's heart size: a CTR drawn from the normal-adult range, ``strength`` of the way from the CT's own.

    ``strength`` is ``SynthConfig.anatomy`` (0: the CT's own heart, no random numbers drawn). The heart
    is resized by warping the film sideways (:func:`_warp_heart`).
    """
    if strength <= 0:
        return
    geo = _heart_geometry(cv)
    if geo is None:
        return
    lo, hi = CTR_NORMAL
    draw = CTR_MEAN
    for _ in range(8):
        draw = CTR_MEAN + CTR_SD * rng.standard_normal()
        if lo <= draw <= hi:
            break
    target = geo[2] + strength * (float(np.clip(draw, lo, hi)) - geo[2])
    _warp_heart(cv, target / geo[2], geo)


def cardiomegaly(cv: Canvas, rng, ctx) -> list:
    """Cardiomegaly: the heart's borders moved outwards (mostly leftwards) to a CTR of 0.52-0.66, by the
    same sideways warp as the film's heart size (the lung beside it is compressed); replaces that size."""
    geo = _heart_geometry(cv)
    if geo is None:
        return []
    now = geo[2]
    if cv.heart_override is not None:  # the film's heart size (heart_size) rather than the CT's own
        cols = np.flatnonzero((cv.heart_override > HEART_MM).any(axis=0))
        now = (cols[-1] + 1 - cols[0]) / cv.thorax_px() if len(cols) else now
    target = max(rng.uniform(*CTR_CARDIOMEGALY), now * 1.08)
    lift = rng.uniform(0.2, 0.45)
    if not _warp_heart(cv, target / geo[2], geo) and _resize_heart(cv, target, lift=lift, geo=geo) is None:
        return []  # (no room for the warp: the heart's tissue is added instead)
    inst = _instance(cv, cv.heart_override > HEART_MM, clean=False)
    return [inst] if inst else []


KNOB_MM = (13.0, 11.0, 30.0)  # half-width, half-height and depth along the beam of a normal aortic knob (mm)


def _knob_from_border(cv: Canvas, heart_top: int):
    """A normal aortic knob where the film shows it, for a CT whose label lacks the arch: ``(field, lim)``.

    The knob is the mediastinum's bulge into the left lung (viewer's right) above the heart: on the rows
    from 45 to 5 mm above the heart's top where the left lung is at least half its widest (not the apex),
    the row where its medial border lies furthest out. There an elliptic aorta (``KNOB_MM``) is placed with its outer edge on that border; ``lim`` is the
    first row below it. ``(None, 0)`` without a left lung there."""
    S = cv.S
    r0, r1 = max(heart_top - int(45.0 / cv.mm), 0), max(min(heart_top - int(5.0 / cv.mm), S), 0)
    width = cv.lung_l.sum(axis=1)
    band = cv.lung_l[r0:r1]
    hit = width[r0:r1] >= 0.5 * width.max()
    if hit.sum() < 3:
        return None, 0
    border = np.where(hit, np.argmax(band, axis=1), -1)
    k = int(np.argmax(border))
    cy, edge = r0 + k + 0.5, float(border[k])
    ax, ay, depth = (v / cv.mm for v in KNOB_MM)
    cx = edge - ax + 1.0
    lim = min(int(cy + ay) + 2, S)
    d2 = ((cv.rows[:lim] + 0.5 - cy) / ay) ** 2 + ((cv.cols + 0.5 - cx) / ax) ** 2
    return (depth * cv.mm) * np.sqrt(np.clip(1.0 - d2, 0.0, 1.0)), lim


def aortic_enlargement(cv: Canvas, rng, ctx) -> list:
    """Aortic enlargement: the aortic arch/knob (above the heart) dilated 1.35-1.75x, in a window around it."""
    heart = cv.heart_mm > HEART_MM
    if not heart.any():
        return []
    top = int(_box_of(heart)[1])
    S = cv.S
    lim = min(top + 8, S)
    arch = cv.aorta_mm[:lim] * np.clip((top + 8 - cv.rows[:lim]) / 8.0, 0, 1)
    if np.count_nonzero(arch > 3) < 4:
        # the CT's label holds no arch above the heart (two patients: only the descending aorta was found)
        arch, lim = _knob_from_border(cv, top)
        if arch is None:
            return []
    box = _box_of(arch > 3)
    if box is None or np.count_nonzero(arch > 3) < 4:
        return []
    w = (arch > 3).astype(np.float32)
    centre = ((cv.rows[:lim] * w).sum() / w.sum() + 0.5, (cv.cols * w).sum() / w.sum() + 0.5)
    s = rng.uniform(1.35, 1.75)
    r0 = max(int(centre[0] - (centre[0] - box[1]) * s ** 0.5) - 3, 0)
    r1 = min(int(centre[0] + (lim - centre[0]) * s ** 0.5) + 3, S)
    c0 = max(int(centre[1] - (centre[1] - box[0]) * s) - 3, 0)
    c1 = min(int(centre[1] + (box[2] - centre[1]) * s) + 3, S)
    field = np.zeros((S, S), np.float32)
    field[:lim] = arch
    big = _scaled_window(field, centre, s ** 0.5, s, r0, r1, c0, c1)
    # the arch projects as a curved band: the dilated knob is a filled, smooth outline of it (no ring)
    solid, before = _blur3(big, 4), _blur3(field[r0:r1, c0:c1], 4)
    gain = float(big.max()) / max(float(solid.max()), 1e-6)
    grow = np.clip(solid - before, 0, None) * gain  # smooth: the CT's sharp label edge leaves no outline
    # it adds contrast where it displaces lung (the knob); over the mediastinum it displaces soft tissue
    cv.add[r0:r1, c0:c1] += np.minimum(grow, _blur3(cv.lung_mm[r0:r1, c0:c1], 3)) * DMU_SOFT
    big = np.maximum(big, solid)
    mask = np.zeros((S, S), bool)
    mask[r0:r1, c0:c1] = big > 3
    inst = _instance(cv, mask, clean=False)
    return [inst] if inst else []
