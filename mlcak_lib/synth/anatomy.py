"""Per-film anatomical variation of the simulator (notebook 01): one table of parameters, ranges and sources.

Every simulated film takes one CT patient (:mod:`.cohort`) and varies its anatomy on top, with the
parameters of :data:`ANATOMY_TABLE`, drawn by :func:`draw_anatomy` from the image's random generator.
Each row gives the range at full strength (``SynthConfig.anatomy = 1``) and where it comes from:
published anatomy or radiography teaching, the shipped VinDr-CXR tables
(``mlcak_lib/data/vindr_cxr_class_stats_derived.csv``, ``shared/reference/``), or a design choice.
Numbers marked "from memory" are textbook values quoted without the book at hand: verify before citing.

* Strength ``s``: a value is ``neutral + s * (u - neutral)`` with ``u`` uniform in ``[low, high]``
  (``s = 0``: the bare CT view; ``s = 1``: the table's range). The view is view 0 at ``s = 0``.
* Purity: :func:`draw_anatomy` consumes the SAME random numbers, in the same order, for every
  patient, strength and number of views (:data:`N_DRAWS`), so image ``i`` stays a pure function of
  ``(config, seed, split, i)`` and two patients' films at the same index get the same anatomy draws.
* Heart size is not in this table: it is varied with the heart (cardiomegaly) model of the lesion
  code, whose range comes from the cardiothoracic ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WARP_GRID = 5  # control points per side of the smooth warp (bilinearly interpolated to the film)


@dataclass(frozen=True)
class AnatomyParam:
    """One row of the anatomy table: range at full strength, neutral value, meaning and source."""

    name: str
    unit: str
    low: float
    high: float
    neutral: float
    meaning: str
    source: str


ANATOMY_TABLE: tuple[AnatomyParam, ...] = (
    AnatomyParam(
        "view", "index", 0, 4, 0,
        "which precomputed CT view (asset.views, rotations of the volume before projection): "
        "rotation about the vertical axis of -5, 0 or +5 deg (patient rotation) or a tilt about the "
        "left-right axis of -5 or +5 deg (lordotic / kyphotic projection); drawn uniformly",
        "patient rotation shows as unequal distances from the spinous processes to the medial clavicle "
        "heads; with ~100-130 mm between them front to back, 5 deg shifts them ~9-11 mm against each "
        "other, the visible-but-acceptable rotation of a routine PA film (radiography teaching, from "
        "memory; the precise tolerance needs verifying)"),
    AnatomyParam(
        "tilt_deg", "deg", -3.0, 3.0, 0.0,
        "in-plane rotation of the film (patient not straight on the detector)",
        "design choice within the few degrees of a routine PA film (from memory: a spine visibly off "
        "vertical by > 3-5 deg would usually be repeated or noted)"),
    AnatomyParam(
        "scale", "ratio", 0.95, 1.05, 1.0,
        "global size of the chest within the collimated field (isotropic zoom)",
        "design choice: the field is set from each patient's lung extent (collimation to the lungs), "
        "so only the collimation margin varies (+-5 %); body size itself varies with the five patients "
        "(lung width at mid-lung height 200-261 mm, body width 264-334 mm: measured on the five CTs for issue 12, "
        "body sizes in each asset's meta['calibration_check'])"),
    AnatomyParam(
        "aspect", "ratio", 0.95, 1.05, 1.0,
        "height/width ratio change of the chest (vertical scale over horizontal)",
        "design choice, smaller than the spread of lung height/width between the five patients"),
    AnatomyParam(
        "shift_x_mm", "mm", -8.0, 8.0, 0.0,
        "horizontal position of the patient within the field of view",
        "VinDr-CXR box centres (shipped class stats): Cardiomegaly median column 1409.5 px of a ~2500 px "
        "side, i.e. centred; the horizontal spread is not tabulated, so a centring error of +-8 mm "
        "(design choice)"),
    AnatomyParam(
        "shift_y_mm", "mm", -10.0, 10.0, 0.0,
        "vertical position of the patient within the field of view",
        "VinDr-CXR box centres (shipped class stats): the row of Aortic enlargement boxes has an IQR of "
        "221.5 px (812.5-1034), ~8.9 % of a 2500 px side, ~30 mm, an upper bound that also mixes image "
        "sizes, body sizes and inspiration; +-10 mm here, the rest comes from scale and inspiration"),
    AnatomyParam(
        "inspiration_mm", "mm", -22.0, 11.0, 0.0,
        "depth of inspiration: downward shift of the lung bases (diaphragm) against the CT's breath-hold "
        "position, the lower lung stretched smoothly (quadratic in height); negative = shallower",
        "a good inspiration shows 9-11 posterior ribs (6 anterior) above the right hemidiaphragm "
        "(radiography teaching, from memory); one posterior rib level at the base is ~22 mm (a lower "
        "thoracic vertebra plus disc, from memory). CTs are taken at deep breath-hold (~10-11 ribs), so "
        "films range from one rib shallower to half a rib deeper"),
    AnatomyParam(
        "soft_tissue_mm", "mm water", -20.0, 40.0, 0.0,
        "body habitus: soft tissue added (+) or removed (-) along a 200 mm body path (scaled with the "
        "path), i.e. thinner or heavier chest wall and breasts",
        "chest-wall thickness (skin to pleura) of adults is ~2-8 cm per side, mostly fat and muscle "
        "(needle-decompression studies, from memory: verify); -20..+40 mm over both walls spans thin to "
        "obese without leaving the five CTs' own range far behind"),
    AnatomyParam(
        "warp_mm", "mm", 1.0, 3.5, 0.0,
        "smooth 3-D-like warp: standard deviation of the displacement of a 5x5 grid of control points "
        "(each axis), bilinearly interpolated: organ shapes differ a little from film to film",
        "design choice: a few mm keeps every structure anatomically in place (well below the lung-size "
        "differences between patients); larger warps bend ribs and the spine visibly"),
)
"""The per-film anatomy parameters, in drawing order (see the module docstring)."""

PARAMS: dict[str, AnatomyParam] = {p.name: p for p in ANATOMY_TABLE}
N_DRAWS = len(ANATOMY_TABLE) + 2 * WARP_GRID * WARP_GRID
"""Random numbers consumed per film: one uniform per table row, then the warp field's normals."""


@dataclass(frozen=True)
class Anatomy:
    """The anatomy of one film (values of :data:`ANATOMY_TABLE`; ``warp`` (2, 5, 5) row/column in mm)."""

    view: int
    tilt_deg: float
    scale: float
    aspect: float
    shift_x_mm: float
    shift_y_mm: float
    inspiration_mm: float
    soft_tissue_mm: float
    warp_mm: float
    warp: np.ndarray

    def as_dict(self) -> dict:
        """The scalar values (for a sample's ``params``)."""
        return {p.name: (int(getattr(self, p.name)) if p.name == "view" else float(getattr(self, p.name)))
                for p in ANATOMY_TABLE}


def draw_anatomy(rng: np.random.Generator, strength: float, n_views: int) -> Anatomy:
    """One film's anatomy from ``rng`` at ``strength`` (``SynthConfig.anatomy``), for an asset of ``n_views``
    views; always consumes :data:`N_DRAWS` random numbers (one ``random`` call, one ``standard_normal``)."""
    u = rng.random(len(ANATOMY_TABLE))
    field = rng.standard_normal((2, WARP_GRID, WARP_GRID)).astype(np.float32)
    values = {}
    for p, x in zip(ANATOMY_TABLE[1:], u[1:]):
        values[p.name] = p.neutral + strength * (p.low + x * (p.high - p.low) - p.neutral)
    view = min(int(u[0] * n_views), n_views - 1) if strength > 0 else 0
    return Anatomy(view=view, warp=field * np.float32(values["warp_mm"]), **values)


def table_markdown() -> str:
    """The table as markdown (notebook 01, docs)."""
    rows = ["| parameter | unit | range (strength 1) | meaning | source |", "|---|---|---|---|---|"]
    for p in ANATOMY_TABLE:
        rows.append(f"| `{p.name}` | {p.unit} | {p.low:g} .. {p.high:g} | {p.meaning} | {p.source} |")
    return "\n".join(rows)


__all__ = ["ANATOMY_TABLE", "N_DRAWS", "PARAMS", "Anatomy", "AnatomyParam", "draw_anatomy", "table_markdown"]
