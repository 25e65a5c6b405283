"""A drawn rib cage for the patients' assets: rib edges a film can show (notebook 01).

Every patient's CT is blurred to one common resolution (sharpness matching, 3 mm sigma) and three
of them have 4-8 mm voxels, so their ribs, a thin cortical shell round a 8-12 mm
tall bone, are lost: on the films the ribs were almost invisible, the commonest give-away of the
simulator. :func:`rib_cage` draws them instead, per view, at the asset's 1.06 mm pixels, from the
view's own lung fields (the same rule for every patient, so ribs cannot tell the patients apart):

* **posterior ribs** 1-11 start beside the spine at equal spacing from just above the apices to below
  the costophrenic angles (the 10th posterior rib near the dome in a good inspiration), arch slightly
  up and run down by about one interspace to the lateral chest wall, just outside the lung field;
* **anterior ribs** 1-8 run from there medially and down by about two interspaces (the first one much
  less) to the costochondral junction, ``ANTERIOR_END`` of the hemithorax from the midline (the
  cartilage is not drawn: it is not calcified in the young);
* **cross-section**: an elliptic tube of cortical bone round trabecular bone. Its path along the beam
  is brighter at the edges (the cortex seen tangentially), which is what a rib edge looks like.

The result is a bone path in mm; the asset adds ``RIB_DMU`` per mm to its line integral (cortical bone
replacing chest-wall soft tissue at the CT's energy) and the path times ``CORTICAL_HU / film.BONE_HU``
to its bone channel (the film's energy-dependent bone term counts nominal 700 HU bone). A posterior rib
is ~9 mm tall and ~7 mm deep with a 1.5 mm cortex (textbook values): its edges add ~0.2 to the line
integral at a film's energy. Shape constants are a judgement from textbook PA anatomy, not fitted.
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy.spatial import cKDTree

RIB_DMU = 0.029  # cortical bone (~1500 HU, mu 0.05 mm^-1) replacing soft tissue (0.0208), per mm of path
CORTICAL_HU = 1500.0  # the film's bone term counts a rib's path as this over film.BONE_HU of nominal bone
POSTERIOR_RIBS, ANTERIOR_RIBS = 11, 8
ANTERIOR_END = 0.38  # where the anterior ribs end: this fraction of the hemithorax width from the midline
SPINE_START_MM = 15.0  # the posterior ribs start this far from the midline (inside the spine's shadow)
WALL_OFFSET_MM = 3.0  # the lateral arc's centre line lies this far outside the lung field


def tube_path(r_mm: np.ndarray, half_height: float, half_depth: float, cortex: float,
              marrow: float = 0.2) -> np.ndarray:
    """Bone path (mm) through an elliptic tube at in-plane distance ``r_mm`` from its centre line:
    cortical shell ``cortex`` mm thick round trabecular bone worth ``marrow`` of cortical bone."""
    r = np.asarray(r_mm, np.float32)
    outer = 2 * half_depth * np.sqrt(np.clip(1 - (r / half_height) ** 2, 0, 1))
    ih, idp = half_height - cortex, half_depth - cortex
    inner = 2 * idp * np.sqrt(np.clip(1 - (r / ih) ** 2, 0, 1))
    return (outer - (1 - marrow) * inner).astype(np.float32)


def _outer_border(side: np.ndarray, right: bool) -> np.ndarray:
    """Per row, the lung's outer column (right lung: its first column, on the viewer's left); rows without
    lung take the nearest row's value."""
    hit = side.any(axis=1)
    rows = np.flatnonzero(hit)
    if right:
        border = np.argmax(side, axis=1).astype(np.float32)
    else:
        border = (side.shape[1] - 1 - np.argmax(side[:, ::-1], axis=1)).astype(np.float32)
    return np.interp(np.arange(side.shape[0]), rows, border[rows]).astype(np.float32)


def _draw(out: np.ndarray, xs: np.ndarray, ys: np.ndarray, pixel_mm: float, h_mm: float,
          e_mm: float, cortex: float) -> None:
    """Add one rib segment (centre line ``xs``/``ys`` in pixels, densely sampled) to ``out``."""
    reach = h_mm / pixel_mm + 1
    H, W = out.shape
    r0, r1 = max(int(ys.min() - reach), 0), min(int(ys.max() + reach) + 1, H)
    c0, c1 = max(int(xs.min() - reach), 0), min(int(xs.max() + reach) + 1, W)
    if r0 >= r1 or c0 >= c1:
        return
    rr, cc = np.mgrid[r0:r1, c0:c1]
    dist, _ = cKDTree(np.column_stack([ys, xs])).query(np.column_stack([rr.ravel() + 0.5, cc.ravel() + 0.5]),
                                                       distance_upper_bound=reach)
    dist = np.where(np.isfinite(dist), dist, 1e6).reshape(rr.shape) * pixel_mm
    out[r0:r1, c0:c1] += tube_path(dist, h_mm, e_mm, cortex)


def rib_cage(lung_r: np.ndarray, lung_l: np.ndarray, pixel_mm: float, patient: str = "") -> np.ndarray:
    """Bone path (mm, float32, the masks' shape) of a drawn rib cage fitted to one view's lung fields.

    ``lung_r``/``lung_l`` are the right/left lung masks (right lung on the viewer's left); ``patient``
    seeds the small per-patient variation of the shape (the same for all of the patient's views)."""
    lung = lung_r | lung_l
    if lung.sum() < 100:
        return np.zeros(lung.shape, np.float32)
    rng = np.random.default_rng(zlib.crc32(patient.encode()))
    post_drop, ant_drop, size = rng.uniform(0.75, 1.05), rng.uniform(1.8, 2.4), rng.uniform(0.9, 1.1)
    width = lung.sum(axis=1)
    rows = np.flatnonzero(width)
    top = float(rows[0])
    widest = int(np.argmax(width))
    below = np.flatnonzero(width[widest:] < 0.7 * width.max())
    cp = float(widest + (below[0] if len(below) else len(width) - widest))
    cols = np.flatnonzero(lung.any(axis=0))
    mid = 0.5 * (cols[0] + cols[-1] + 1)
    d = (cp - top) / 9.3  # the posterior interspace (px): ~10 ribs from the apex to the CP angle
    out = np.zeros(lung.shape, np.float32)
    t = np.linspace(0.0, 1.0, 400)
    for right, side in ((True, lung_r), (False, lung_l)):
        if side.sum() < 50:
            continue
        sgn = -1.0 if right else 1.0  # lateral direction on the film
        outer = _outer_border(side, right)
        half = abs(float(np.median(outer[int(top):int(cp)])) - mid)

        # the lateral arc's column on each row: just outside the lung field
        wall = outer + sgn * (WALL_OFFSET_MM / pixel_mm + 0.5)
        x_spine = mid + sgn * SPINE_START_MM / pixel_mm
        for k in range(1, POSTERIOR_RIBS + 1):
            y_k = top + (k - 1.25) * d
            y_lat = y_k + post_drop * d
            x_lat = float(wall[int(np.clip(np.round(y_lat), top, cp))])
            ys = y_k + d * (post_drop * t ** 2.5 - 0.25 * np.sin(np.pi * t))
            xs = x_spine + t * (x_lat - x_spine)
            h = (0.17 if k > 1 else 0.14) * d * pixel_mm * size
            _draw(out, xs, ys, pixel_mm, h, 0.8 * h, min(1.5, 0.3 * h))
            if k <= ANTERIOR_RIBS:
                drop = (0.9 if k == 1 else ant_drop) * d
                x_end = mid + sgn * ANTERIOR_END * half
                ya = y_lat + drop * (0.35 * t + 0.65 * (1 - (1 - t) ** 2))
                xa = x_lat + t * (x_end - x_lat)
                ha = 0.2 * d * pixel_mm * size
                _draw(out, xa, ya, pixel_mm, ha, 0.45 * ha, min(0.8, 0.2 * ha))
    return out


__all__ = ["CORTICAL_HU", "RIB_DMU", "rib_cage", "tube_path"]
