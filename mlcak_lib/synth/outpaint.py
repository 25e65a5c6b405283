"""Body beyond a CT's field of view: the rows and columns a patient's CT does not cover (notebook 01).

A PA chest film shows the whole chest with the lateral chest walls, the soft tissue beside them, the
shoulders and neck above the apices and a strip of upper abdomen, on a field of about 30-43 cm. Four
of the five CTs stop at the apices or the diaphragm, and one (cip_ct64, 264 mm wide) cuts the lateral
chest walls, so a film kept inside the covered rows and columns is cut tight and the pixel size in mm
follows the patient. :func:`extend_coverage` pads every channel of a patient's asset by ``pad`` pixels a
side and fills what the CT does not cover with soft tissue continued from its edge (a documented
judgement, not anatomy: no lungs, heart or aorta there):

* **above** the covered rows (neck and shoulders): the top row's line integral with its lungs turned to
  soft tissue and its bone taken out, smoothed more the further it goes (``sigma = 0.5 d``); the body
  narrows from its width to the neck (``NECK_HALF_MM`` from the midline) over ``SHOULDER_MM``, like an
  ellipse (the shoulders); the spine's bone continues;
* **below** (upper abdomen): the bottom row alike, at its full width; the spine's bone continues;
* **beside** the covered columns (chest wall cut by the field of view): each row's edge line integral
  (smoothed along the rows) closes like an ellipse over ``CLOSE_FRACTION`` of the body's chord; beyond
  it, air.

Where the CT's edge is continued, the film is continuous across it (no seam).

The rows/columns that were outpainted are returned, so a film can say how much of it is real CT.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .film import BONE_HU, MU_WATER_PER_MM
from .lesions.canvas import DMU_LUNG as MU_LUNG  # aerated lung (about -850 HU), mm^-1

MU_SOFT = 0.0208  # soft tissue (40 HU) at the CT's effective energy, mm^-1 (the assets' calibration)
BONE_DMU = MU_WATER_PER_MM * BONE_HU / 1000.0  # bone's excess over water per mm of the assets' bone path
TAPER_MM = 6.0  # the edge row's lungs and bone (but the spine's) fade over this distance beyond the CT
NECK_THINNER = 0.3  # above the CT the body thins by up to this share (neck and shoulders: ~30 mm scale)
EDGE_SMOOTH_MM = 4.0  # a cut chest wall's edge column is smoothed along the rows before it is continued
NECK_HALF_MM = 60.0  # half-width of the neck, which continues above the covered rows
SHOULDER_MM = 60.0  # how far above the covered rows the shoulders beside the neck end
SPINE_HALF_MM = 18.0  # half-width of the column whose bone continues above and below (vertebrae)
CLOSE_FRACTION = 0.25  # the body's edge chord closes over this fraction of its length beside the CT
SIGMAS_MM = (0.0, 4.0, 8.0, 16.0, 32.0, 64.0)  # smoothing ladder of the vertical continuation


def _ladder(row: np.ndarray, pixel_mm: float) -> np.ndarray:
    """The row blurred by each of ``SIGMAS_MM`` (``[len(SIGMAS_MM), W]``)."""
    return np.stack([row if s == 0 else ndimage.gaussian_filter1d(row, s / pixel_mm, mode="nearest")
                     for s in SIGMAS_MM])


def _continue(row: np.ndarray, dist_mm: np.ndarray, pixel_mm: float) -> np.ndarray:
    """``[len(dist_mm), W]``: ``row`` blurred by sigma = 0.5 x distance (interpolated on the ladder)."""
    lad = _ladder(row, pixel_mm)
    sig = np.clip(0.5 * dist_mm, 0, SIGMAS_MM[-1])
    k = np.clip(np.searchsorted(SIGMAS_MM, sig, side="right") - 1, 0, len(SIGMAS_MM) - 2)
    f = (sig - np.asarray(SIGMAS_MM)[k]) / (np.asarray(SIGMAS_MM)[k + 1] - np.asarray(SIGMAS_MM)[k])
    return lad[k] * (1 - f)[:, None] + lad[k + 1] * f[:, None]


def extend_coverage(arrays: dict, rows: tuple[int, int], cols: tuple[int, int], pad: int,
                    pixel_mm: float) -> tuple[dict, tuple[int, int], tuple[int, int]]:
    """Pad every ``(V, H, W)`` channel of ``arrays`` by ``pad`` pixels a side and fill what the CT does not
    cover (``rows``/``cols``: the covered ones, inclusive, unpadded indices).

    Returns ``(arrays, rows, cols)`` with ``rows``/``cols`` the real CT's range in the padded grid; the
    other channels (``views_deg``, ``pixel_mm``) pass through."""
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    out = dict(arrays)
    V, H, W = arrays["p"].shape
    r0, r1 = rows[0] + pad, rows[1] + pad
    c0, c1 = cols[0] + pad, cols[1] + pad
    n_h, n_w = H + 2 * pad, W + 2 * pad
    p = np.zeros((V, n_h, n_w), np.float32)
    body = np.zeros((V, n_h, n_w), np.float32)  # full body chord (mm), lungs included
    bone = np.zeros((V, n_h, n_w), np.float32)
    for key in ("lung_mm", "heart_mm", "aorta_mm", "labels"):
        a = np.zeros((V, n_h, n_w), arrays[key].dtype)
        a[:, r0:r1 + 1, c0:c1 + 1] = arrays[key][:, rows[0]:rows[1] + 1, cols[0]:cols[1] + 1]
        out[key] = a
    win = (slice(None), slice(r0, r1 + 1), slice(c0, c1 + 1))
    src = (slice(None), slice(rows[0], rows[1] + 1), slice(cols[0], cols[1] + 1))
    p[win] = arrays["p"][src].astype(np.float32)
    body[win] = arrays["body_mm2"][src].astype(np.float32) * 2.0
    bone[win] = arrays["bone_mm"][src].astype(np.float32)
    x_mm = (np.arange(n_w) - 0.5 * (c0 + c1)) * pixel_mm
    spine = np.abs(x_mm) <= SPINE_HALF_MM
    for v in range(V):
        lung = out["lung_mm"][v].astype(np.float32)
        # the edge rows continue outward; their lungs turn to soft tissue and their bone (but the spine's)
        # goes, both over TAPER_MM, so that the film has no step at the CT's edge
        spine_bone = bone[v] * spine[None, :]
        other_bone = bone[v] - spine_bone
        for edge, idx in (("top", np.arange(r0 - 1, -1, -1)), ("bottom", np.arange(r1 + 1, n_h))):
            if not len(idx):
                continue
            e = r0 if edge == "top" else r1
            d = np.abs(idx - e) * pixel_mm
            gone = (1 - np.exp(-d / TAPER_MM))[:, None]
            keep = np.ones((len(idx), n_w), np.float32)
            if edge == "top":  # the shoulders: the body narrows to the neck over SHOULDER_MM, like an ellipse
                inside = np.flatnonzero(body[v, e] > 0)
                if len(inside):
                    half = max(abs(x_mm[inside[0]]), abs(x_mm[inside[-1]]))
                    reach = NECK_HALF_MM + max(half - NECK_HALF_MM, 0) * np.sqrt(np.clip(1 - (d / SHOULDER_MM) ** 2, 0, 1))
                    keep = np.clip((reach[:, None] - np.abs(x_mm)[None, :]) / 8.0 + 0.5, 0, 1).astype(np.float32)
                keep = keep * (1 - NECK_THINNER * (1 - np.exp(-d / 30.0)))[:, None]  # neck thinner than chest
            w = slice(c0, c1 + 1)
            other = _continue(other_bone[e], d, pixel_mm)
            line = _continue(p[v, e] - BONE_DMU * spine_bone[e], d, pixel_mm)
            line += gone * ((MU_SOFT - MU_LUNG) * _continue(lung[e], d, pixel_mm) - BONE_DMU * other)
            bone[v, idx, w] = (spine_bone[e][None, :] + (1 - gone) * other)[:, w]
            p[v, idx, w] = (np.maximum(line, 0) * keep)[:, w] + BONE_DMU * spine_bone[e][None, w]
            body[v, idx, w] = (_continue(body[v, e], d, pixel_mm) * keep)[:, w]
        for side, idx in (("left", np.arange(c0 - 1, -1, -1)), ("right", np.arange(c1 + 1, n_w))):
            if not len(idx):
                continue
            e = c0 if side == "left" else c1
            d = (np.abs(idx - e) * pixel_mm)[None, :]
            smooth = EDGE_SMOOTH_MM / pixel_mm  # neighbouring rows' chords differ: no streaks
            chord = ndimage.gaussian_filter1d(body[v, :, e], smooth, mode="nearest")[:, None]
            line = ndimage.gaussian_filter1d(np.maximum(p[v, :, e] + (MU_SOFT - MU_LUNG) * lung[:, e]
                                                        - BONE_DMU * bone[v, :, e], 0), smooth, mode="nearest")[:, None]
            profile = np.sqrt(np.clip(1 - (d / np.maximum(CLOSE_FRACTION * chord, 1e-3)) ** 2, 0, 1))
            p[v][:, idx] = line * profile
            body[v][:, idx] = chord * profile
    out["p"] = p  # float32 from here on (the generator's tables are float32)
    out["body_mm2"] = np.clip(np.round(body / 2.0), 0, 255).astype(arrays["body_mm2"].dtype)
    out["bone_mm"] = bone
    return out, (r0, r1), (c0, c1)


__all__ = ["extend_coverage"]
