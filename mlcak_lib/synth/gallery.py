"""Pictures and tables of the simulator for notebook 01 and the README (``scripts/make_gallery.py``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..reference import vindr_class_stats
from .config import SPLITS, SynthConfig
from .generator import SynthCXR
from .patients import PATIENTS


def gallery_samples(config: SynthConfig | None = None, seed: int = 0, index: int = 0,
                    classes: Sequence[str] | None = None) -> list[tuple[str, dict]]:
    """A normal case and one case per lesion class (same anatomy: image ``index``, findings forced)."""
    sim = SynthCXR(config)
    names = list(classes) if classes is not None else list(sim.class_names)
    out = [("Normal (No finding)", sim.generate(index, "train", seed, findings=[]))]
    out += [(c, sim.generate(index, "train", seed, findings=[c])) for c in names]
    return out


def gallery(config: SynthConfig | None = None, seed: int = 0, index: int = 0, ncols: int = 5,
            classes: Sequence[str] | None = None, show_masks: bool = False, cell_size: float = 2.6):
    """Figure: a normal simulated radiograph and one per lesion class, with boxes (and optional masks).

    Every panel is labelled SIMULATED; titles give the class and lesion size in mm.
    """
    import matplotlib.pyplot as plt

    # heavy: drawing needs matplotlib (through viz); importing the simulator does not
    from ..viz import draw_boxes, show_radiograph

    cases = gallery_samples(config, seed, index, classes)
    class_names = list((config or SynthConfig()).classes)
    nrows = -(-len(cases) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell_size * ncols, cell_size * nrows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, (title, s) in zip(axes.ravel(), cases):
        mm = s["mm_per_px"]
        show_radiograph(s["image"], ax=ax, spacing_mm=(mm, mm), scalebar_mm=50)
        if show_masks and len(s.get("lesion_masks", [])):
            overlay = np.ma.masked_where(~s["lesion_masks"].any(axis=0), np.ones(s["image"].shape))
            ax.imshow(overlay, cmap="autumn", alpha=0.35, vmin=0, vmax=1)
        draw_boxes(ax, s["boxes"], s["box_labels"], class_names, show_labels=False)
        sizes = ", ".join(f"{v:.0f}" for v in s["box_mm"])
        ax.set_title(f"{title}\n{sizes + ' mm' if sizes else ''}", fontsize=8)
    fig.suptitle("Simulated PA chest radiographs (CT-derived simulator; patient's right on the viewer's left)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def patient_roles(config: SynthConfig | None = None) -> dict[str, str]:
    """Patient id -> the split(s) that draw it (``"not used"`` when none) under ``config``'s patients."""
    cfg = config or SynthConfig()
    roles = {p: [s for s, ids in (cfg.patients or ()) if p in ids] for p in PATIENTS}
    return {p: " + ".join(r) if r else "not used" for p, r in roles.items()}


def patients_figure(reference: np.ndarray | None = None, reference_mm: float | None = None, seed: int = 0,
                    index: int = 0, config: SynthConfig | None = None, cell_size: float = 2.4):
    """Figure: the real film ``reference`` (RG1 in notebook 01) beside one normal film of each of the five
    patients (image ``index`` of a configuration that puts all five in its train split), titled with the
    split each patient belongs to under ``config`` (default ``SynthConfig()``)."""
    import dataclasses

    import matplotlib.pyplot as plt

    # heavy: drawing needs matplotlib (through viz); importing the simulator does not
    from ..viz import show_radiograph

    roles = patient_roles(config)
    base = config or SynthConfig()
    panels = [] if reference is None else [("REAL: RG1 (pydicom-data)", reference, reference_mm)]
    for p in PATIENTS:
        sim = SynthCXR(dataclasses.replace(base, patients={"train": (p,)}))
        s = sim.generate(index, "train", seed, findings=[])
        panels.append((f"SIMULATED: {p}\n({roles[p]})", s["image"], s["mm_per_px"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(cell_size * len(panels), cell_size + 0.6), squeeze=False)
    for ax, (title, img, mm) in zip(axes[0], panels):
        show_radiograph(img, ax=ax, spacing_mm=None if mm is None else (mm, mm), scalebar_mm=None if mm is None else 50)
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def label_frequency_table(config: SynthConfig | None = None, n: int = 2000, seed: int = 0, split: str = "train"):
    """Per class: share of images (%) in the simulator (drawn labels, ``n`` images) vs VinDr-CXR (any reader).

    Only the label draw is simulated (fast: no pixels). Returns a pandas DataFrame with a final
    "No finding" row.
    """
    import pandas as pd

    sim = SynthCXR(config)
    counts = dict.fromkeys(sim.class_names, 0)
    normal = 0
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS[split], i]))
        found = sim.sample_findings(rng)
        normal += not found
        for c in found:
            counts[c] += 1
    vindr = vindr_class_stats().set_index("class_name")["pct_images_any_reader"]
    rows = [{"class_name": c, "simulated_pct": 100.0 * counts[c] / n, "vindr_pct": float(vindr.get(c, np.nan)),
             "configured_pct": 100.0 * sim.config.prevalence_dict[c]} for c in sim.class_names]
    rows.append({"class_name": "No finding", "simulated_pct": 100.0 * normal / n,
                 "vindr_pct": float(vindr.get("No finding", np.nan)),
                 "configured_pct": 100.0 * (1 - sim.config.abnormal_fraction)})
    return pd.DataFrame(rows).round(2)
