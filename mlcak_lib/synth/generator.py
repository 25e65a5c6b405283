"""SynthCXR: fast, deterministic simulated PA chest radiographs from one real CT (introduced in notebook 01).

Per image (all vectorised NumPy at the output size, ~ms on one core):

1. **Anatomy** (:mod:`mlcak_lib.synth.anatomy`: one table of parameters, ranges and sources): one of
   the precomputed CT views (small rotations), a random affine (scale, rotation, translation), depth
   of inspiration (the diaphragm moves), a smooth elastic warp and a soft-tissue thickness change; the
   heart size (:func:`mlcak_lib.synth.lesions.heart_size`, a normal cardiothoracic ratio per film).
   **PA framing**: the patients' films share one field of view, ``FOV_MM_RANGE`` (30-36 cm, widened
   only for a chest that needs more), so the pixel size in mm says nothing about the patient; their CTs
   are continued beyond what they cover (:mod:`mlcak_lib.synth.outpaint`) and carry a drawn rib cage
   (:mod:`mlcak_lib.synth.ribs`). The lungs sit with their least margins (``APEX_MM`` above the apices,
   ``BASE_MM`` below the costophrenic angles) and ``PA_BELOW`` of the vertical room left below them.
   The legacy single CT keeps its frame fitted to its lungs (``WALL_MM`` a side; where the CT stops at
   the apices the abdomen strip is capped at ``MAX_BASE_MM`` and the walls narrow, never below
   ``MIN_WALL_MM``), kept inside the CT's covered rows/columns.
   Radiographic convention: patient's right on the viewer's left, bone bright.
2. **Lesions** (see :mod:`mlcak_lib.synth.lesions`) added to the attenuation line integral.
3. **Film** (:func:`mlcak_lib.synth.film.expose`): extra bone attenuation at the film's effective
   energy (from the asset's bone path ``bone_mm``), Beer-Lambert primary, scatter (a broad low-pass
   of the primary), quantum noise (photons/mm^2), detector blur, then CR/DR processing in the log
   domain (Laplacian pyramid: large scales compressed, rib-scale bands boosted, big edges kneed, fine
   texture cored), a percentile window and a sigmoid characteristic curve to float32 in [0, 1].

Image ``i`` of split ``s`` is a pure function of ``(config, seed, s, i)``: its random generator
is ``default_rng(SeedSequence([seed, SPLITS[s], i]))``. With ``SynthConfig(patients=...)`` it first
picks one of the split's patients (:mod:`mlcak_lib.synth.cohort`: own stream, frame kept inside the
CT's covered range, the patient's real findings labelled); without, the single default asset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..threads import single_thread_blas
from ..tokens import DEFAULT_MIN_FRACTION, boxes_to_token_map
from .anatomy import draw_anatomy
from .asset import load_asset
from .cohort import (
    DEFAULT_PATIENT,
    PatientAsset,
    fit_frame,
    known_instances,
    load_patient_asset,
    pick_patient,
    textures,
)
from .config import SPLITS, SynthConfig, vindr_relative_sizes
from .film import expose
from .film import up_matrix as _up_matrix
from .lesions import MODELS, Canvas, heart_size

INSPIRATION_LEVEL = 0.4  # height of the lung bases below the film centre (fraction of the field) for .anatomy's shift


def _lerp4(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, wr: np.ndarray, wc: np.ndarray) -> np.ndarray:
    """Bilinear blend of gathered corners ``a`` (top left), ``b`` (top right), ``c`` (bottom left), ``d``
    (bottom right) with row/column weights ``wr``/``wc``; in place on ``a``..``d`` (a few passes over ``S*S``)."""
    b -= a
    b *= wc
    a += b
    d -= c
    d *= wc
    c += d
    c -= a
    c *= wr
    a += c
    return a


def _bilinear_flat(table: np.ndarray, idx: np.ndarray, n: int, wr: np.ndarray, wc: np.ndarray,
                   axis: int | None = None) -> np.ndarray:
    """Bilinear samples of a flattened ``n``-wide grid at flat corner indices ``idx`` with row/column
    weights ``wr``/``wc`` (``axis=1``: a channels-first ``[C, n*n]`` table)."""
    return _lerp4(np.take(table, idx, axis=axis), np.take(table, idx + 1, axis=axis),
                  np.take(table, idx + n, axis=axis), np.take(table, idx + n + 1, axis=axis), wr, wc)


def _bilinear_pair(pairs: np.ndarray, idx: np.ndarray, n: int, wr: np.ndarray, wc: np.ndarray) -> np.ndarray:
    """:func:`_bilinear_flat` of a flat table stored as :func:`~.asset.pair_table` (two gathers, not four)."""
    top = np.take(pairs, idx)
    bottom = np.take(pairs, idx + n)
    return _lerp4(top.real.copy(), top.imag.copy(), bottom.real.copy(), bottom.imag.copy(), wr, wc)


WALL_MM = 24.0
"""Frame margin beside the lung fields (mm): ribs, chest-wall muscle and some subcutaneous fat."""
MIN_WALL_MM = 12.0
"""Least frame margin beside the lung fields (mm): the lateral rib arcs stay inside."""
APEX_MM, BASE_MM, MAX_BASE_MM = 15.0, 20.0, 45.0
"""Frame margins above the lung apices and below the costophrenic angles (mm): the least ones, and (the
legacy single CT) the most below the CP angles; a wide chest's square frame gets its surplus above the
apices (neck and shoulders, as on a PA film) where the CT reaches that far, else below, up to MAX_BASE_MM."""
FOV_MM_RANGE = (300.0, 360.0)
"""Field of view of the patients' films (mm, uniform; widened where a chest needs more): a PA film
collimated to the chest on a 35 x 43 or 43 x 43 cm detector, cut square (RG1: 368 mm). The same for every
patient, so that the pixel size in mm cannot tell the patients apart."""
PA_BELOW = 0.55
"""Share of the frame's vertical room beyond the least margins that goes below the CP angles (abdomen);
the rest goes above the apices (neck and shoulders)."""


def _legacy_fov(view, lung_h: float, lung_w: float, an: float, rng) -> float:
    """The legacy single CT's field of view: fitted to its lungs and to the rows its CT covers.

    PA framing: the lateral chest walls and some soft tissue beside the lungs (WALL_MM a side), and from
    above the apices to just below the costophrenic angles (BASE_MM): the abdomen only a strip. Where the
    CT stops just above the apices the square frame's surplus would go to the abdomen: cap it at
    MAX_BASE_MM below the CP angles, at the cost of chest wall (never below MIN_WALL_MM a side)."""
    above = max(view.centre[0] - 12, 0.0) * view.pixel_mm - 0.5 * lung_h  # CT above the apices, mm
    fov = min(max(lung_w + 2 * WALL_MM, lung_h + APEX_MM + BASE_MM), lung_h + max(above, APEX_MM) + MAX_BASE_MM)
    return max(fov, lung_w + 2 * MIN_WALL_MM) * (1 + an * rng.uniform(-0.03, 0.06))


@dataclass
class _Ctx:
    rel_sizes: dict
    textures: np.ndarray
    size_scale: float
    max_nodules: int


class SynthCXR:
    """Simulated chest radiographs with exact labels. ``SynthCXR(config).generate(i, split, seed)`` -> dict.

    The output dict holds ``image`` (float32 [S, S] in [0, 1], bone bright), ``mcct`` (0/1),
    ``mlct`` (float32 [C] multi-hot, order = ``class_names``), ``boxes`` (float32 [K, 4] x0, y0, x1,
    y1 in pixels), ``box_labels`` (int64 [K]), ``box_mm`` (float32 [K], lesion size in mm),
    ``lesion_masks`` (bool [K, S, S]), ``lung_mask`` and ``heart_mask`` (bool [S, S]),
    ``mm_per_px``, ``patient`` (the patient id) and ``params`` (the generation parameters).
    """

    def __init__(self, config: SynthConfig | None = None, asset_path: str | None = None):
        self.config = config if config is not None else SynthConfig()
        self.asset_path = asset_path
        self.class_names: tuple[str, ...] = self.config.classes
        self._q = None

    # lazily loaded, shared across instances through load_asset's cache
    @property
    def asset(self):
        return load_asset(self.asset_path)

    def _ctx(self) -> _Ctx:
        if self._q is None:
            prev = self.config.prevalence_dict
            a = self.config.abnormal_fraction
            q = np.array([prev[c] / a if a > 0 else 0.0 for c in self.class_names])
            tex = self.asset.textures if self.config.patients is None else textures()
            self._q = (np.clip(q, 0, 1), _Ctx(vindr_relative_sizes(), tex,
                                               self.config.size_scale, self.config.max_nodules))
        return self._q

    def patient_asset(self, patient_id: str) -> PatientAsset:
        """One patient's prepared asset (cached); its real findings must be a class of this configuration."""
        pa = load_patient_asset(patient_id)
        missing = sorted({f.cls for f in pa.findings} - set(self.class_names))
        if missing:
            raise ValueError(f"patient {patient_id!r} has real finding(s) of class {missing}, which the configuration's "
                             "classes lack: its films cannot be labelled (add the class or leave the patient out)")
        return pa

    # ------------------------------------------------------------ sampling of findings
    def sample_findings(self, rng) -> list[str]:
        """Which classes this image contains (empty list = normal)."""
        q, _ = self._ctx()
        if rng.random() >= self.config.abnormal_fraction:
            return []
        present = rng.random(len(q)) < q
        if not present.any():
            present[rng.choice(len(q), p=q / q.sum())] = True
        return [c for c, keep in zip(self.class_names, present) if keep]

    # ------------------------------------------------------------ the image
    def generate(self, index: int, split: str = "train", seed: int = 0, findings: list[str] | None = None,
                 keep_masks: bool = True, keep_stages: bool = False) -> dict:
        """Image ``index`` of ``split`` (a pure function of config, seed, split, index).

        ``findings`` forces a list of classes (for demonstrations) instead of drawing them.
        ``keep_stages`` adds ``stages``: the intermediate images of the pipeline (notebook 01),
        ``line_integral`` (anatomy, warped CT projection), ``lesion_line_integral`` (what the
        lesions add), ``intensity`` (detected I/I0 with the bone term, scatter, noise and blur),
        ``log`` (-ln of it) and ``processed`` (after the multi-scale processing, before window and
        curve). The pixels are the same either way.
        """
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if index < 0:
            raise ValueError(f"index must be >= 0, got {index}")
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS[split], int(index)]))
        drawn = self.sample_findings(rng)  # always consume the same random numbers
        if findings is not None:
            unknown = [f for f in findings if f not in self.class_names]
            if unknown:
                raise ValueError(f"unknown lesion class(es) {unknown}; valid classes are: {', '.join(self.class_names)}")
            drawn = list(findings)
        patient = None
        if self.config.patients is not None:
            patient = self.patient_asset(pick_patient(self.config.split_patients(split), seed, split, index))
        with single_thread_blas():
            return self._render(rng, drawn, keep_masks, keep_stages, patient)

    def _render(self, rng, findings: list[str], keep_masks: bool, keep_stages: bool = False,
                patient: PatientAsset | None = None) -> dict:
        cfg = self.config
        S = cfg.image_size
        asset = self.asset if patient is None else patient.asset
        an, ac = cfg.anatomy, cfg.acquisition
        anat = draw_anatomy(rng, an, len(asset.views))  # the table of .anatomy: same draws for every patient
        v = anat.view
        view = asset.views[v]
        lung_h, lung_w = view.lung_extent_mm
        if patient is None:  # the legacy single CT: a frame fitted to its lungs (PA framing, below)
            fov = _legacy_fov(view, lung_h, lung_w, an, rng)
            surplus = 0.0
        else:  # the patients: one field of view for all (their CTs are outpainted beyond their coverage)
            lo, hi = FOV_MM_RANGE
            need = max(lung_w + 2 * MIN_WALL_MM, lung_h + APEX_MM + BASE_MM)
            fov = max(lo + (hi - lo) * (0.5 + an * (rng.uniform() - 0.5)), need)
            surplus = PA_BELOW * (fov - (lung_h + APEX_MM + BASE_MM))
        mm = fov / S
        theta = math.radians(anat.tilt_deg)
        sx = anat.scale
        sy = sx * anat.aspect
        tx, ty = anat.shift_x_mm, anat.shift_y_mm
        inflation = anat.inspiration_mm / (fov * INSPIRATION_LEVEL ** 2)  # lung-base shift at that height
        elastic = anat.warp_mm
        soft_mm = anat.soft_tissue_mm
        # output pixel centres in mm, relative to the image centre (x to viewer's right, y down);
        # the affine part is separable (a row term plus a column term), the elastic part smooth
        u = (np.arange(S, dtype=np.float32) + 0.5) / S - 0.5
        x = u * fov / sx
        y = (u * fov - inflation * fov * np.maximum(u, 0) ** 2) / sy  # lung inflation moves the base
        ca, sa = math.cos(theta), math.sin(theta)
        n, apx = view.size, view.pixel_mm
        # keep the frame below the replicated top slices of the CT (asset rows < 12)
        # the frame's lower edge: BASE_MM (plus PA_BELOW of any surplus) below the CP angles
        cy = view.centre[0] + (0.5 * lung_h + BASE_MM + surplus - 0.5 * fov) / apx
        top = 12 if patient is None else patient.rows[0]  # the legacy asset replicates its top 12 rows
        cy = max(cy, top + 0.5 * fov / apx + abs(ty) / apx)
        fc = (ca * x / apx)[None, :] + ((view.centre[1] + tx / apx - 0.5) - sa * y / apx)[:, None]
        fr = (sa * x / apx)[None, :] + ((cy + ty / apx - 0.5) + ca * y / apx)[:, None]
        if elastic > 0:
            up = _up_matrix(anat.warp.shape[-1], S)
            fc += up @ (anat.warp[0] / apx) @ up.T
            fr += up @ (anat.warp[1] / apx) @ up.T
        outpainted = 0.0
        if patient is not None:  # inside the patient's (padded) grid; how much of the film is beyond the real CT
            fov = fit_frame(fr, fc, fov, patient.rows, patient.cols)
            mm = fov / S
            (a0, a1), (b0, b1) = patient.ct_rows, patient.ct_cols
            gr, gc = fr[::4, ::4], fc[::4, ::4]
            outpainted = float(((gr < a0) | (gr > a1) | (gc < b0) | (gc > b1)).mean())
        np.clip(fr, 0, n - 1.001, out=fr)
        np.clip(fc, 0, n - 1.001, out=fc)
        r0 = fr.astype(np.int32)
        c0 = fc.astype(np.int32)
        wr = (fr - r0).ravel()
        wc = (fc - c0).ravel()
        idx = (r0 * n + c0).ravel()
        near = idx + (wr > 0.5) * n + (wc > 0.5)

        def gather(table):  # bilinear, channels first
            return _bilinear_flat(table, idx, n, wr, wc, axis=1).reshape(-1, S, S)

        a = _bilinear_flat(view.p, idx, n, wr, wc) if view.p_pair is None else _bilinear_pair(view.p_pair, idx, n, wr, wc)
        # the smooth auxiliary fields: nearest neighbour on one packed uint32 array
        aux = np.take(view.aux, near).view(np.uint8).reshape(S, S, 4)  # little-endian bytes
        cv = Canvas(S, mm, a.reshape(S, S), aux, lambda: list(gather(view.extra)), fov, view.p_field)
        heart_size(cv, rng, an)  # every film's heart size (a normal CTR), before the findings
        _q, ctx = self._ctx()
        boxes, labels, sizes, masks = [], [], [], []
        for name in findings:
            made = []
            for _attempt in range(3):  # a model may fail to place a lesion (e.g. no room): retry
                made = MODELS[name](cv, rng, ctx)
                if made:
                    break
            for inst in made:
                box, size_mm, mask = inst
                boxes.append(box)
                labels.append(self.class_names.index(name))
                sizes.append(size_mm)
                masks.append(mask)
        known = known_instances(patient, v, fr, fc, cv) if patient is not None else []
        for name, (box, size_mm, mask) in known:  # the patient's real findings: labelled, never "normal"
            boxes.append(box)
            labels.append(self.class_names.index(name))
            sizes.append(size_mm)
            masks.append(mask)
        # ---- acquisition physics and display processing (film.py; lesions are already in the line integral)
        p = cv.p + cv.add
        p += (soft_mm * 0.02 / 200.0) * np.minimum(cv.body_mm, 200.0)
        # bone path: nearest neighbour (20x cheaper than bilinear; the assets' bone is smooth at ~1 mm, the film blurs)
        bone = None if view.bone is None else np.take(view.bone, near).reshape(S, S)
        img, film_stages, film = expose(p, bone, mm, rng, ac, keep_stages)
        if keep_stages:
            stages = {"line_integral": cv.p.copy(), "lesion_line_integral": cv.add.copy(), **film_stages}
        heart = cv.heart_override if cv.heart_override is not None else cv.heart_mm
        k = len(boxes)
        mlct = np.zeros(len(self.class_names), np.float32)
        mlct[np.array(labels, dtype=np.int64)] = 1.0
        out = {
            "image": img,
            "mcct": int(k > 0),
            "mlct": mlct,
            "boxes": np.array(boxes, np.float32).reshape(k, 4),
            "box_labels": np.array(labels, np.int64),
            "box_mm": np.array(sizes, np.float32),
            "lung_mask": cv.lung,
            "heart_mask": heart > 5,
            "mm_per_px": float(mm),
            "patient": DEFAULT_PATIENT if patient is None else patient.patient_id,
            "params": {
                "view": v, "view_deg": [float(a) for a in asset.meta.get("views_deg", [[0, 0]] * 5)[v]]
                if "views_deg" in asset.meta else None,
                "fov_mm": float(fov), "outpainted_share": outpainted, "rotation_deg": math.degrees(theta), "scale": (float(sx), float(sy)),
                "shift_mm": (float(tx), float(ty)), "inflation": float(inflation), "soft_tissue_mm": float(soft_mm),
                "film": film, "findings": list(findings),
                "patient": DEFAULT_PATIENT if patient is None else patient.patient_id,
                "known_findings": [name for name, _ in known], "anatomy": anat.as_dict(),
            },
        }
        if keep_stages:
            out["stages"] = stages
        if keep_masks:
            out["lesion_masks"] = np.stack(masks) if masks else np.zeros((0, S, S), bool)
        return out

    def token_map(self, sample: dict, grid: int, min_fraction: float | None = None) -> np.ndarray:
        """Per-class token lesion map ``[C, grid, grid]`` of a generated sample (rule: :mod:`mlcak_lib.tokens`)."""
        return boxes_to_token_map(sample["boxes"], sample["box_labels"], self.config.image_size, grid,
                                  len(self.class_names), min_fraction or DEFAULT_MIN_FRACTION)

    def generate_batch(self, indices, split: str = "train", seed: int = 0) -> dict:
        """Stack many images: ``images`` float32 [N, S, S], ``mlct`` [N, C], ``mcct`` [N], and per-image box lists."""
        samples = [self.generate(int(i), split, seed, keep_masks=False) for i in indices]
        return {
            "images": np.stack([s["image"] for s in samples]) if samples else np.zeros((0, self.config.image_size, self.config.image_size), np.float32),
            "mlct": np.stack([s["mlct"] for s in samples]) if samples else np.zeros((0, len(self.class_names)), np.float32),
            "mcct": np.array([s["mcct"] for s in samples], np.int64),
            "boxes": [s["boxes"] for s in samples],
            "box_labels": [s["box_labels"] for s in samples],
            "box_mm": [s["box_mm"] for s in samples],
        }


__all__ = ["SynthCXR"]
