"""The 3-D lesion models of notebook 08's simulated CT studies (issue 17; used by :mod:`.volumes`, which
documents the choices): the radiograph simulator's lesion model (``synth.lesions``), drawn into a volume.

Each model takes a :class:`Work` (the study's HU volume and label bit field, changed in place) and the study's
random generator, draws as its 2-D counterpart draws (same samplers and constants, imported) and returns
:class:`CTLesion` records: class, patient's side, zone or lobe, size (mm), centre and box (voxel edges), mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..synth.config import vindr_relative_sizes
from ..synth.generator import FOV_MM_RANGE
from ..synth.lesions.canvas import DMU_LUNG, DMU_SOFT, MU_WATER, sample_size
from ..synth.lesions.heart import CTR_CARDIOMEGALY
from ..synth.lesions.lung import DMU_CALCIUM, LOBE_P, NODULE_KIND_P, NODULE_KINDS
from .reports import SPECS, ZONES, Finding

LABEL_BITS: tuple[str, ...] = ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right",
                               "lung_upper_lobe_left", "lung_lower_lobe_left", "heart", "aorta", "body")
HEART_BIT, BODY_BIT = 5, 7
CT_CLASSES: tuple[str, ...] = ("Nodule/Mass", "Calcification", "Lung Opacity", "Pleural effusion",
                               "Cardiomegaly", "Pneumothorax")
"""The classes a CT study can hold (the simulator's other three are not inserted: see :mod:`.volumes`)."""
SOFT_HU = 1000.0 * (DMU_LUNG + DMU_SOFT) / MU_WATER - 1000.0  # soft tissue / fluid: +40 HU
MASK_FRACTION = 0.15
FOV_MM = float(np.mean(FOV_MM_RANGE))  # the film field of view that VinDr's relative box sizes refer to
INSERT_ORDER = ("Cardiomegaly", "Pleural effusion", "Pneumothorax", "Lung Opacity", "Nodule/Mass", "Calcification")


@dataclass(frozen=True)
class CTLesion:
    """One inserted lesion: class, patient's ``side``, ``zone`` (or lobe), ``size_mm``, ``centre`` (x, y, z voxel
    edges), ``box`` (x0, y0, z0, x1, y1, z1 voxels, end exclusive), ``mask`` (bool, the box's shape)."""

    label: str
    side: str | None
    zone: str | None
    size_mm: float
    centre: tuple[float, float, float]
    box: tuple[int, int, int, int, int, int]
    mask: np.ndarray
    voxel_mm: float
    grid: tuple[int, int, int]
    params: dict = field(default_factory=dict)

    @property
    def centre_mm(self) -> np.ndarray:
        return np.asarray(self.centre) * self.voxel_mm

    @property
    def box_mm(self) -> np.ndarray:
        return np.asarray(self.box, np.float32) * self.voxel_mm

    def full_mask(self) -> np.ndarray:
        """The lesion's mask on the whole grid."""
        out = np.zeros(self.grid, bool)
        x0, y0, z0, x1, y1, z1 = self.box
        out[x0:x1, y0:y1, z0:z1] = self.mask
        return out

    def finding(self) -> Finding:
        """The lesion as a report finding (:mod:`.reports`): side, zone and size where the class has them."""
        spec = SPECS[self.label]
        size = int(np.clip(round(self.size_mm), *spec.size_mm)) if spec.size_mm else None
        return Finding(self.label, self.side if spec.sides else None, self.zone if spec.region else None, size)


class Work:
    """The study being drawn: HU volume and labels (both changed in place), the lesion model's context."""

    def __init__(self, hu: np.ndarray, labels: np.ndarray, voxel_mm: float, size_scale: float = 1.0, max_nodules: int = 3):
        self.hu, self.labels, self.mm = np.array(hu, np.float32), np.array(labels, np.uint8), float(voxel_mm)
        self.rel, self.scale, self.max_nodules = vindr_relative_sizes(), size_scale, max_nodules
        self.shape = self.hu.shape

    def side_mask(self, right: bool) -> np.ndarray:
        return (self.labels & (0b00111 if right else 0b11000)) > 0

    @property
    def lungs(self) -> np.ndarray:
        return (self.labels & 0b11111) > 0

    def depth_mm(self) -> np.ndarray:
        return ndimage.distance_transform_edt(self.lungs) * self.mm

    def pick(self, rng, cond: np.ndarray):
        idx = np.flatnonzero(cond)
        if len(idx) == 0:
            return None
        return np.array(np.unravel_index(int(idx[rng.integers(len(idx))]), self.shape), float) + rng.random(3)

    def side_of(self, c) -> str:
        bits = int(self.labels[tuple(np.minimum(np.asarray(c, int), np.array(self.shape) - 1))])
        if bits & 0b11111:
            return "right" if bits & 0b00111 else "left"
        xs = np.flatnonzero(self.lungs.any(axis=(1, 2)))
        return "right" if c[0] < 0.5 * (xs[0] + xs[-1] + 1) else "left"

    def zone_of(self, c) -> str:
        zs = np.flatnonzero(self.lungs.any(axis=(0, 1)))
        top, bottom = zs[-1] + 1, zs[0]
        return ZONES[int(np.clip((top - c[2]) / max(top - bottom, 1) * 3, 0, 2))]

    def lesion(self, label, mask, side, zone, size_mm, centre=None, params=None) -> CTLesion | None:
        if not mask.any():
            return None
        ix = np.argwhere(mask)
        lo, hi = ix.min(axis=0), ix.max(axis=0) + 1
        if centre is None:
            centre = ix.mean(axis=0) + 0.5
        sub = mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].copy()
        return CTLesion(label, side, zone, float(size_mm), tuple(float(v) for v in centre),
                        tuple(int(v) for v in (*lo, *hi)), sub, self.mm, self.shape, params or {})


def _window(shape, c, half) -> tuple[slice, ...]:
    return tuple(slice(max(int(np.floor(c[a] - half[a])) - 2, 0), min(int(np.ceil(c[a] + half[a])) + 2, shape[a]))
                 for a in range(3))


def _soft(a: np.ndarray) -> np.ndarray:
    """One [1, 2, 1] / 4 pass per axis (about the volume's 4 mm resolution)."""
    for ax in range(3):
        a = ndimage.convolve1d(a, [0.25, 0.5, 0.25], axis=ax, mode="constant")
    return a


def _occupancy(win, inside, ss: int = 3) -> np.ndarray:
    """Soft share of each voxel of window ``win`` where ``inside(x, y, z)`` (voxel-edge coordinates) holds (ss^3 samples)."""
    axes = [(np.arange(w.start, w.stop)[:, None] + (np.arange(ss) + 0.5) / ss).ravel() for w in win]
    n = [w.stop - w.start for w in win]
    occ = inside(*np.meshgrid(*axes, indexing="ij")).astype(np.float32)
    return _soft(occ.reshape(n[0], ss, n[1], ss, n[2], ss).mean(axis=(1, 3, 5)))


def _ball(cc, r):
    return lambda x, y, z: (x - cc[0]) ** 2 + (y - cc[1]) ** 2 + (z - cc[2]) ** 2 <= r * r


def _keep_main(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return mask if n <= 1 else np.isin(lab, np.flatnonzero(sizes >= 0.05 * sizes.max()))


def _extent_mm(mask: np.ndarray, mm: float) -> float:
    """The larger of a mask's left-right and superior-inferior extents (the box side a film sees), mm."""
    return float(max(np.ptp(np.flatnonzero(mask.any(axis=ax))) + 1 for ax in ((1, 2), (0, 1)))) * mm


def _add(w: Work, win, added: np.ndarray) -> np.ndarray:
    """Add HU in a window (lung only); return the lesion mask (added >= MASK_FRACTION of its peak) on the grid."""
    added = added * w.lungs[win]
    w.hu[win] += added
    mask = np.zeros(w.shape, bool)
    if added.max() > 0:
        mask[win] = _keep_main(added >= MASK_FRACTION * added.max())
    return mask


def nodule(w: Work, rng) -> list[CTLesion]:
    """Nodule/Mass: 1-3 nodules in the lungs, as ``synth.lesions.lung.nodule`` draws them (count, diameter, kind,
    density), each a lobulated sphere; a calcified one has a dense core (``DMU_CALCIUM``)."""
    n = 1 + int(rng.random() < 0.3) + int(rng.random() < 0.12)
    out, depth = [], w.depth_mm()
    for _ in range(min(n, w.max_nodules)):
        d = sample_size(rng, w.rel, "Nodule/Mass", FOV_MM, *SPECS["Nodule/Mass"].size_mm, w.scale)
        a = d / 2 / w.mm  # radius in voxels
        c = w.pick(rng, depth >= min(0.6 * d / 2 + w.mm, 20.0, 0.8 * depth.max()))
        if c is None:
            continue
        kind = NODULE_KINDS[int(rng.choice(4, p=NODULE_KIND_P[int(d >= 10)]))]
        dmu = DMU_SOFT * rng.uniform(1.4, 2.0)
        amp = {"lobulated": 0.12, "spiculated": 0.06}.get(kind, 0.04)
        lobes = [(rng.normal(size=3), k, amp * rng.uniform(0.5, 1.0), rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5)]
        win = _window(w.shape, c, [a * 1.5 + 1] * 3)

        def inside(x, y, z, c=c, a=a, lobes=lobes):
            v = np.stack([x - c[0], y - c[1], z - c[2]])
            rho = np.sqrt((v * v).sum(axis=0)) + 1e-6
            rb = np.full_like(rho, a)
            for n_, k, am, ph in lobes:
                rb += a * am * np.cos(k * np.arccos(np.tensordot(n_ / np.linalg.norm(n_), v, 1) / rho) + ph)
            return rho <= rb

        added = _occupancy(win, inside, 5 if a < 1.5 else 3) * (1000.0 * dmu / MU_WATER)
        if kind == "calcified":  # a dense core
            rc = a * rng.uniform(0.25, 0.5)
            added += _occupancy(win, _ball(c + rng.uniform(-0.3, 0.3, 3) * a, rc), 5) * (1000.0 * DMU_CALCIUM / MU_WATER)
        les = w.lesion("Nodule/Mass", _add(w, win, added), w.side_of(c), w.zone_of(c), d, c,
                       {"kind": kind, "dmu": round(dmu, 5), "radius_vox": round(a, 3)})
        if les:
            out.append(les)
    return out


def calcification(w: Work, rng) -> list[CTLesion]:
    """Calcification: a single granuloma or a cluster of 2-5 dense 2-5 mm spheres (``lung.calcification``'s draws)."""
    side = sample_size(rng, w.rel, "Calcification", FOV_MM * 0.5, *SPECS["Calcification"].size_mm, w.scale)
    depth = w.depth_mm()
    c = w.pick(rng, depth >= min(side / 2 + w.mm, 0.8 * depth.max()))
    if c is None:
        return []
    n = 1 if side < 6 else int(rng.integers(2, 6))
    spheres = [(min(rng.uniform(2.0, 5.0), side), rng.uniform(-0.5, 0.5, 3), rng.uniform(0.045, 0.065)) for _ in range(n)]
    spheres = [(d / 2 / w.mm, c + off * (side - d) / w.mm, dmu) for d, off, dmu in spheres]
    win = _window(w.shape, c, [side / w.mm + 1] * 3)
    added = np.zeros([s.stop - s.start for s in win], np.float32)
    for r, cc, dmu in spheres:
        added += _occupancy(win, _ball(cc, r), 5) * (1000.0 * dmu / MU_WATER)
    lo = np.min([cc - r for r, cc, _ in spheres], axis=0)
    hi = np.max([cc + r for r, cc, _ in spheres], axis=0)
    size = float(max(hi[0] - lo[0], hi[2] - lo[2]) * w.mm)  # the box side a film sees (LR, SI), as in 2-D
    les = w.lesion("Calcification", _add(w, win, added), w.side_of(c), w.zone_of(c), size, c, {"spheres": n})
    return [les] if les else []


def _lobe_region(w: Work, right: bool, lobe: int) -> np.ndarray:
    """Lobe ``lobe`` (0 upper, 1 middle / lingula, 2 lower) of one lung. The left lung has no middle lobe bit: the
    lingula is approximated by the anterior half of the left lung's middle third of height."""
    if right:
        return ((w.labels >> lobe) & 1) > 0
    if lobe != 1:
        return ((w.labels >> (3 if lobe == 0 else 4)) & 1) > 0
    left = w.side_mask(False)
    zs, ys = np.flatnonzero(left.any(axis=(0, 1))), np.flatnonzero(left.any(axis=(0, 2)))
    h = zs[-1] + 1 - zs[0]
    zz, yy = np.arange(w.shape[2])[None, None, :], np.arange(w.shape[1])[None, :, None]
    return left & (zz >= zs[0] + h / 3) & (zz < zs[0] + 2 * h / 3) & (yy >= 0.5 * (ys[0] + ys[-1]))


def _smooth_noise(rng, shape, cells: int) -> np.ndarray:
    g = rng.standard_normal((cells,) * 3).astype(np.float32)
    return ndimage.zoom(g, [s / cells for s in shape], order=1, mode="nearest", grid_mode=True)


def lung_opacity(w: Work, rng) -> list[CTLesion]:
    """Lung Opacity: a patchy consolidation inside one lobe (``lung.lung_opacity``'s size, side and ``LOBE_P``);
    the lobe's border (a fissure) bounds it sharply, elsewhere it fades."""
    s = sample_size(rng, w.rel, "Lung Opacity", FOV_MM, 15.0, 100.0, w.scale)
    right = bool(rng.random() < 0.55)
    lobe = int(rng.choice(3, p=LOBE_P))
    region = _lobe_region(w, right, lobe) & w.lungs
    core = ndimage.binary_erosion(region)
    c = w.pick(rng, core if core.any() else region)
    if c is None:
        return []
    asp = rng.uniform(0.75, 1.3)
    half = np.array([s / 2 * np.sqrt(asp), s / 2 * rng.uniform(0.6, 1.0), s / 2 / np.sqrt(asp)]) / w.mm
    win = _window(w.shape, c, half)
    pos = np.meshgrid(*[np.arange(ws.start, ws.stop) + 0.5 for ws in win], indexing="ij")
    rho2 = sum(((p - c[a]) / half[a]) ** 2 for a, p in enumerate(pos))
    shape = rho2.shape
    val = 1.0 - rho2 + 0.45 * _smooth_noise(rng, shape, 4) + 0.3 * _smooth_noise(rng, shape, max(4, int(s / 7.0)))
    val = np.clip(val, 0, None) / max(float(val.max()), 1e-6)
    val = np.minimum(1.6 * val * val, 1.0) * region[win]
    fill = rng.uniform(0.6, 1.0)
    added = val * fill * np.clip(SOFT_HU - w.hu[win], 0, None)
    mask = _add(w, win, added)
    size = _extent_mm(mask, w.mm) if mask.any() else s
    les = w.lesion("Lung Opacity", mask, "right" if right else "left", ZONES[lobe], size, c, {"fill": round(fill, 3)})
    return [les] if les else []


def _replace(w: Work, occ: np.ndarray, target: float, label: str, side: str, size: float, params: dict):
    """Replace lung by ``target`` HU where ``occ`` (0-1, whole grid) fills it; the filled voxels leave the lungs."""
    w.hu += occ * (target - w.hu)
    mask = occ >= 0.5
    w.labels[mask] &= np.uint8(~0b11111 & 0xFF)
    return w.lesion(label, mask, side, None, size, None, params)


def pleural_effusion(w: Work, rng) -> list[CTLesion]:
    """Pleural effusion: basal fluid up to a height drawn as ``pleura.pleural_effusion`` draws it (one side, or
    both in 25 %), with its meniscus (the level climbs the chest wall; a small one fills only the lateral angle)."""
    sides = [bool(rng.random() < 0.5)]
    if rng.random() < 0.25:
        sides = [True, False]
    out = []
    for right in sides:
        lung = w.side_mask(right)
        if lung.sum() < 50:
            continue
        h_mm = sample_size(rng, w.rel, "Pleural effusion", FOV_MM, 12.0, 90.0, w.scale)
        xs = np.flatnonzero(lung.any(axis=(1, 2)))
        third = max((xs[-1] + 1 - xs[0]) // 3, 1)
        lat = lung[xs[0]:xs[0] + third] if right else lung[xs[-1] + 1 - third:xs[-1] + 1]
        cp = float(np.flatnonzero(lat.any(axis=(0, 1)))[0])  # the lateral costophrenic angle's level
        medial = 0.0 if h_mm < 25 else rng.uniform(0.35, 0.75)
        xx = np.arange(w.shape[0], dtype=np.float32)[:, None, None] + 0.5
        lat_frac = np.clip((xs[-1] + 1 - xx if right else xx - xs[0]) / (xs[-1] + 1 - xs[0]), 0, 1)
        top = cp + h_mm / w.mm * (medial + (1 - medial) * lat_frac ** 3)
        occ = np.clip(top - np.arange(w.shape[2], dtype=np.float32)[None, None, :], 0, 1) * lung
        les = _replace(w, occ, SOFT_HU, "Pleural effusion", "right" if right else "left", h_mm,
                       {"height_mm": round(h_mm, 1), "medial_fraction": round(medial, 3)})
        if les:
            out.append(les)
    return out


def pneumothorax(w: Work, rng) -> list[CTLesion]:
    """Pneumothorax: a rim of pleural air (no lung markings) along the apical and lateral pleura of one lung,
    widest at the apex (width and extent as ``pleura.pneumothorax`` draws them)."""
    right = bool(rng.random() < 0.5)
    lung = w.side_mask(right)
    zs = np.flatnonzero(lung.any(axis=(0, 1)))
    if len(zs) < 5:
        return []
    w_mm = rng.uniform(12, 35) * max(w.scale, 0.3)
    extent = min(sample_size(rng, w.rel, "Pneumothorax", FOV_MM, 40.0, 200.0), (zs[-1] + 1 - zs[0]) * w.mm)
    flat = lung if right else lung[::-1]
    filled = np.logical_or.accumulate(flat, axis=0)  # from the lateral wall medially: the mediastinum is no pleura
    filled = filled if right else filled[::-1]
    d = ndimage.distance_transform_edt(filled) * w.mm
    below = (zs[-1] + 1 - (np.arange(w.shape[2]) + 0.5)) * w.mm
    width = w_mm * np.clip(1.0 - below / extent, 0, 1) ** 0.6 + 1.0
    occ = np.clip((width[None, None, :] - d) / w.mm + 0.5, 0, 1) * lung
    les = _replace(w, occ, -1000.0, "Pneumothorax", "right" if right else "left", extent,
                   {"rim_mm": round(w_mm, 1), "extent_mm": round(extent, 1)})
    return [les] if les else []


def _ctr(heart: np.ndarray, lungs: np.ndarray) -> float:
    """Cardiothoracic ratio on the AP projection: the heart's width over the widest row of the lungs."""
    hx = np.flatnonzero(heart.any(axis=(1, 2)))
    proj = lungs.any(axis=1)  # (x, z)
    widths = [np.ptp(np.flatnonzero(proj[:, z])) + 1 for z in range(proj.shape[1]) if proj[:, z].any()]
    return (hx[-1] + 1 - hx[0]) / max(widths) if len(hx) and widths else 0.0


def cardiomegaly(w: Work, rng) -> list[CTLesion]:
    """Cardiomegaly: the heart scaled to a CTR drawn from ``CTR_CARDIOMEGALY`` (at least 1.08x its own), mostly
    towards the patient's left, raised by 20-45 % of that; its new part replaces lung and fat at heart density."""
    heart = ((w.labels >> HEART_BIT) & 1) > 0
    now = _ctr(heart, w.lungs)
    if now <= 0:
        return []
    target = max(rng.uniform(*CTR_CARDIOMEGALY), now * 1.08)
    lift = rng.uniform(0.2, 0.45)
    sx = target / now
    scale = np.array([sx, 1 + 0.5 * (sx - 1), 1 + lift * (sx - 1)])
    ix = np.argwhere(heart)
    lo, hi = ix.min(axis=0), ix.max(axis=0) + 1
    anchor = np.array([lo[0] + 0.4 * (hi[0] - lo[0]), ix[:, 1].mean() + 0.5, lo[2]])  # the base stays on the diaphragm
    big = ndimage.affine_transform(heart.astype(np.float32), 1 / scale, offset=anchor - anchor / scale - 0.5 + 0.5 / scale,
                                   order=1) >= 0.5
    big = (big | heart) & (((w.labels >> BODY_BIT) & 1) > 0) & (w.hu < 200)
    grown = big & ~heart
    core = ndimage.binary_erosion(heart)
    hh = float(np.median(w.hu[core if core.any() else heart]))
    w.hu += _soft(big.astype(np.float32)) * (w.hu < 200) * np.clip(hh - w.hu, 0, None)  # also fills the old rim
    w.labels[grown] = (w.labels[grown] & np.uint8(~0b11111 & 0xFF)) | np.uint8(1 << HEART_BIT)
    after = _ctr(big, w.lungs | big)
    les = w.lesion("Cardiomegaly", big, None, None, _extent_mm(big, w.mm), None,
                   {"ctr_before": round(float(now), 3), "ctr_target": round(float(target), 3), "ctr_after": round(float(after), 3)})
    return [les] if les else []


MODELS = {"Nodule/Mass": nodule, "Calcification": calcification, "Lung Opacity": lung_opacity,
          "Pleural effusion": pleural_effusion, "Cardiomegaly": cardiomegaly, "Pneumothorax": pneumothorax}
"""The 3-D lesion model of each class in :data:`CT_CLASSES`."""
