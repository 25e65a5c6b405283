"""Several patients for the simulator (notebook 01): who draws image i, their views, frame and real findings.

With ``SynthConfig(patients=...)`` image ``i`` of split ``s`` picks one of that split's patients with its
own random stream ``SeedSequence([seed, SPLITS[s], i, PATIENT_STREAM])`` (so the image's other draws
are those of the single-patient simulator), then views, anatomy, lesions and acquisition as usual.

* **Assets**: ``mlcak_lib/data/patients/<id>.npz`` (:mod:`.patients`), prepared into the same
  :class:`~.asset.View` objects as the default asset, lazily (the patient's first image) and cached.
* **Body path**: ``body_mm2`` minus the lungs' path, the default asset's meaning (HU > -500).
* **Beyond the CT** (:mod:`.outpaint`): every channel is padded by ``PAD_PX`` a side and what the CT
  does not cover (``meta['ct_rows']`` / ``['ct_cols']``: neck and shoulders, upper abdomen, a chest wall
  cut by the field of view) is continued as soft tissue, so a film of any patient can have the same
  field of view (a PA film's, not the CT's). ``PatientAsset.ct_rows``/``ct_cols`` say where the real CT
  is; the film records the share of its pixels outside it (``params['outpainted_share']``).
* **Ribs** (:mod:`.ribs`): a drawn rib cage per view, fitted to the view's lung fields, added to the
  line integral and the bone channel (the CTs' own ribs are lost to their coarse voxels and blur).
* **Frame**: kept inside the padded grid (:func:`fit_frame`, which shrinks it only if it ever
  reached further).
* **Known findings** (real findings the builder recorded but could not mask; none today, the three real
  tumours are masked out of the CTs, ``meta['masked_findings']``): every film of such a patient carries
  them as labelled lesions (class ``Nodule/Mass``, box transformed by the film's warp exactly,
  mask = the ellipse inscribed in the recorded box, size = the larger in-plane extent in mm). They
  are real ground truth; a film of such a patient is therefore never "normal".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .asset import Asset, _prepare_view, _reticular_textures, lung_sides
from .config import LESION_CLASSES, SPLITS
from .film import BONE_HU
from .lesions import Canvas, _instance
from .outpaint import extend_coverage
from .patients import load_patient
from .ribs import CORTICAL_HU, RIB_DMU, rib_cage

PATIENT_STREAM = 1_770_012  # extra entropy word: the patient pick has a stream of its own
DEFAULT_PATIENT = "lidc0001"  # the default asset (ct_cxr_asset.npz) is built from the same CT, LIDC-IDRI-0001
PAD_PX = 32  # padding a side (34 mm): room for a 30-36 cm field of view with the anatomy's rotation and shift
CLASS_ALIASES = {"Mass": "Nodule/Mass", "Nodule": "Nodule/Mass"}  # builder's names -> VinDr-CXR classes


@dataclass(frozen=True)
class KnownFinding:
    """A real finding of a patient: class (a ``LESION_CLASSES`` name), box per view in asset pixels, size."""

    cls: str
    boxes: np.ndarray  # (V, 4) x0, y0, x1, y1 in asset pixel edges
    size_mm: float
    where: str


@dataclass(frozen=True)
class PatientAsset:
    """One patient ready for the generator: prepared views, covered rows/columns, known findings."""

    patient_id: str
    asset: Asset
    rows: tuple[int, int]  # display rows a film may use, inclusive (asset pixel indices)
    cols: tuple[int, int]
    findings: tuple[KnownFinding, ...]
    ct_rows: tuple[int, int] = (0, 0)  # the rows/columns the real CT covers (the rest is outpainted)
    ct_cols: tuple[int, int] = (0, 0)


def _json_field(meta: dict, key: str, default):
    value = meta.get(key, default)
    return json.loads(value) if isinstance(value, str) else value


@lru_cache(maxsize=1)
def textures() -> np.ndarray:
    """The fibrosis texture tiles (the same for every patient and the default asset)."""
    return _reticular_textures()


@lru_cache(maxsize=8)
def load_patient_asset(patient_id: str) -> PatientAsset:
    """Load (once per process, checksum verified) and prepare one patient's views."""
    arrays, meta = load_patient(patient_id)
    pixel_mm = float(arrays["pixel_mm"].reshape(-1)[0])
    ct_rows = tuple(int(r) for r in meta["ct_rows"])
    ct_cols = tuple(int(c) for c in meta["ct_cols"])
    arrays, ct_rows, ct_cols = extend_coverage(arrays, ct_rows, ct_cols, PAD_PX, pixel_mm)
    for v in range(arrays["p"].shape[0]):
        ribs = rib_cage(*lung_sides(arrays["labels"][v], meta["groups"]), pixel_mm, patient_id)
        arrays["p"][v] += RIB_DMU * ribs
        arrays["bone_mm"][v] += (CORTICAL_HU / BONE_HU) * ribs
    # the generator's soft-tissue term expects the default asset's body path (HU > -500, lungs excluded);
    # the patient assets' body_mm2 runs through the whole body outline (lungs included): subtract the lungs
    body = arrays["body_mm2"].astype(np.int16) - (arrays["lung_mm"].astype(np.int16) + 1) // 2
    arrays = dict(arrays, body_mm2=np.clip(body, 0, 255).astype(np.uint8))
    views = tuple(_prepare_view(arrays, v, pixel_mm, meta["groups"]) for v in range(arrays["p"].shape[0]))
    findings = []
    for f in _json_field(meta, "known_findings", []):
        cls = CLASS_ALIASES.get(f["class"], f["class"])
        if cls not in LESION_CLASSES:
            raise ValueError(f"patient {patient_id!r}: known finding class {f['class']!r} has no simulator class")
        lr, _ap, si = f["size_mm_lr_ap_si"]
        findings.append(KnownFinding(cls, np.asarray(f["box_xyxy_px_per_view"], np.float32) + PAD_PX, float(max(lr, si)),
                                     str(f.get("where", ""))))
    full_meta = dict(meta, views_deg=arrays["views_deg"].tolist())
    n = arrays["p"].shape[1]
    return PatientAsset(patient_id, Asset(views, full_meta, textures(), f"patients/{patient_id}.npz"),
                        (0, n - 1), (0, n - 1), tuple(findings), ct_rows, ct_cols)


def pick_patient(patient_ids: tuple[str, ...], seed: int, split: str, index: int) -> str:
    """The patient of image ``index`` of ``split``: uniform among ``patient_ids``, a pure function of
    ``(seed, split, index)`` on its own random stream."""
    if len(patient_ids) == 1:
        return patient_ids[0]
    word = np.random.SeedSequence([int(seed), SPLITS[split], int(index), PATIENT_STREAM]).generate_state(1)[0]
    return patient_ids[int(word) % len(patient_ids)]


def fit_frame(fr: np.ndarray, fc: np.ndarray, fov: float, rows: tuple[int, int],
              cols: tuple[int, int]) -> float:
    """Move (in place) the film's sampling positions inside the covered ``rows``/``cols``; if they span
    more than the CT covers, shrink them about their middle first. Returns the new field of view (mm)."""
    ext = [(float(f.min()), float(f.max())) for f in (fr, fc)]
    k = min([1.0] + [(hi - lo) / (b - a) for (a, b), (lo, hi) in zip(ext, (rows, cols)) if b - a > hi - lo])
    for f, (a, b), (lo, hi) in zip((fr, fc), ext, (rows, cols)):
        mid = 0.5 * (a + b)
        if k < 1.0:
            f -= mid
            f *= k
            f += mid
            a, b = mid + k * (a - mid), mid + k * (b - mid)
        if a < lo:
            f += lo - a
        elif b > hi:
            f -= b - hi
    return fov * k


_STEP = 4  # coarse grid that finds a known finding's window in the film


def known_instances(patient: PatientAsset, view: int, fr: np.ndarray, fc: np.ndarray, cv: Canvas) -> list:
    """The patient's real findings seen in this film: ``(class, (box, size_mm, mask))`` per visible finding.

    ``fr``/``fc`` are the asset positions (pixel-centre indices) sampled by each output pixel, so the
    mask of the ellipse inscribed in the recorded box follows the film's affine and elastic warp exactly;
    the box is the mask's (as for the simulated lesions). A finding outside the frame is not seen."""
    out = []
    S = fr.shape[0]
    for f in patient.findings:
        x0, y0, x1, y1 = (float(v) for v in f.boxes[view])
        # window: coarse-grid pixels inside the recorded box, widened by one coarse step (smooth warp)
        cr, cc = fr[::_STEP, ::_STEP] + 0.5, fc[::_STEP, ::_STEP] + 0.5
        hit = np.flatnonzero(((cr >= y0) & (cr < y1) & (cc >= x0) & (cc < x1)).ravel())
        if len(hit):
            r, c = np.divmod(hit, cr.shape[1])
            r0, r1 = max(int(r.min()) - 1, 0) * _STEP, min((int(r.max()) + 2) * _STEP, S)
            c0, c1 = max(int(c.min()) - 1, 0) * _STEP, min((int(c.max()) + 2) * _STEP, S)
        else:  # smaller than the coarse grid (or outside the frame): look everywhere
            r0, r1, c0, c1 = 0, S, 0, S
        ax, ay = max(0.5 * (x1 - x0), 0.5), max(0.5 * (y1 - y0), 0.5)
        dx = (fc[r0:r1, c0:c1] + (0.5 - 0.5 * (x0 + x1))) / ax
        dy = (fr[r0:r1, c0:c1] + (0.5 - 0.5 * (y0 + y1))) / ay
        mask = np.zeros((S, S), bool)
        mask[r0:r1, c0:c1] = dx * dx + dy * dy <= 1.0
        inst = _instance(cv, mask, size_mm=f.size_mm, clean=False)
        if inst is not None:
            out.append((f.cls, inst))
    return out


__all__ = ["DEFAULT_PATIENT", "KnownFinding", "PatientAsset", "fit_frame", "known_instances",
           "load_patient_asset", "pick_patient"]
