"""The simulator's lesion models look like their findings and their ground truth is exact (notebook 01, issue 12)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mlcak_lib.realism import cardiothoracic_ratio
from mlcak_lib.synth import SynthConfig, SynthCXR
from mlcak_lib.synth.lesions import MODELS, Canvas, _instance, heart_size  # noqa: F401  (the package's public names)
from mlcak_lib.synth.patients import PATIENTS


@pytest.fixture(scope="module")
def sim():
    return SynthCXR(SynthConfig(patients={"train": PATIENTS}))


def _ctrs(sim, n, findings):
    out = []
    for i in range(n):
        s = sim.generate(i, "train", 0, findings=findings)
        out.append(cardiothoracic_ratio(s["heart_mask"], s["lung_mask"]))
    return np.array(out)


def test_normal_hearts_have_a_normal_adult_ctr(sim):
    """Every film's heart is resized to a normal CTR: mean ~0.45, 95th percentile below Danzer's 0.5 (five patients)."""
    r = _ctrs(sim, 100, [])
    assert 0.42 <= r.mean() <= 0.48, r.mean()
    assert np.percentile(r, 95) < 0.5 and r.std() > 0.015, (np.percentile(r, 95), r.std())


def test_cardiomegaly_enlarges_the_heart_beyond_half_the_thorax(sim):
    r = _ctrs(sim, 30, ["Cardiomegaly"])
    assert (r > 0.5).all() and r.max() <= 0.70, r


def test_anatomy_zero_keeps_the_cts_own_heart():
    a = SynthCXR(SynthConfig(patients={"train": PATIENTS}, anatomy=0.0))
    ctr = _ctrs(a, 5, [])
    assert np.ptp(ctr) < 0.2 and not np.allclose(ctr, _ctrs(SynthCXR(SynthConfig(patients={"train": PATIENTS})), 5, []))


def test_effusion_meniscus_is_higher_laterally(sim):
    """The fluid's upper border climbs the chest wall: its top is higher (smaller row) laterally than medially.

    Compared: the highest point of the border in the lateral and the medial fifth of the mask's columns (the
    lung mask, which bounds the fluid's, ends at the costophrenic angle, so the outermost columns' top is
    always low: a mean over them measures the lung's corner, not the meniscus)."""
    S = sim.config.image_size
    checked = higher = 0
    for i in range(30):
        s = sim.generate(i, "train", 0, findings=["Pleural effusion"])
        for mask, lab in zip(s["lesion_masks"], s["box_labels"]):
            if sim.class_names[lab] != "Pleural effusion":
                continue
            cols = np.flatnonzero(mask.any(axis=0))
            if len(cols) < 8:
                continue
            top = np.argmax(mask[:, cols], axis=0)
            k = max(len(cols) // 5, 1)
            lateral_first = cols.mean() < S / 2  # the right lung is on the viewer's left
            lat, med = (top[:k], top[-k:]) if lateral_first else (top[-k:], top[:k])
            checked += 1
            higher += lat.min() < med.min()
    assert checked >= 15 and higher >= 0.9 * checked, (higher, checked)


def test_pneumothorax_region_has_no_lung_markings(sim):
    """Inside the pleural air rim the line integral's fine structure (vessels) is largely gone."""
    ratios = []
    for i in range(12):
        s = sim.generate(i, "train", 0, findings=["Pneumothorax"], keep_stages=True)
        st = s["stages"]
        before = st["line_integral"]
        after = before + st["lesion_line_integral"]
        lab = [sim.class_names[k] for k in s["box_labels"]].index("Pneumothorax")
        inner = ndimage.binary_erosion(s["lesion_masks"][lab], iterations=3)  # away from the pleural line
        if inner.sum() < 20:
            continue
        hf_after, hf_before = (float(np.var((x - ndimage.gaussian_filter(x, 1.0))[inner])) for x in (after, before))
        ratios.append(hf_after / max(hf_before, 1e-12))
    # the rim lies along the chest wall, where the line integral's fine structure is mostly the wall's
    # own curvature (kept); the vessel detail on top of it goes
    assert len(ratios) >= 6 and np.mean(np.array(ratios) < 1.0) >= 0.7 and np.median(ratios) < 0.9, ratios


@pytest.mark.parametrize("cls", list(MODELS))
def test_every_mask_is_non_empty_in_place_and_boxed_tightly(sim, cls):
    """Masks are non-empty, lie over the lungs (or the heart/mediastinum), and the box is the mask's."""
    for i in range(8):
        s = sim.generate(i, "train", 0, findings=[cls])
        lung = ndimage.binary_dilation(s["lung_mask"], iterations=3)
        heart = s["heart_mask"]
        n_sim = len(s["boxes"]) - len(s["params"]["known_findings"])  # the patient's real findings come last
        for box, mask, lab in list(zip(s["boxes"], s["lesion_masks"], s["box_labels"]))[:n_sim]:
            name = sim.class_names[lab]
            assert mask.any(), (cls, i)
            x0, y0 = np.floor(box[:2]).astype(int)
            x1, y1 = np.ceil(box[2:]).astype(int)
            assert mask[y0:y1, x0:x1].sum() == mask.sum(), (cls, i, box)
            if name == "Cardiomegaly":
                assert (mask == heart).all()
            elif name != "Aortic enlargement":
                assert (mask & ~lung).sum() <= 0.02 * mask.sum(), (cls, i)


def test_nodules_have_soft_edges(sim):
    """No crisp discs: the added density falls off over more than one pixel at the nodule's border."""
    steps = []
    for i in range(20):
        s = sim.generate(i, "train", 0, findings=["Nodule/Mass"], keep_stages=True)
        add = s["stages"]["lesion_line_integral"]
        for mask, mm in zip(s["lesion_masks"], s["box_mm"]):
            if mm < 12:
                continue
            ring = mask & ~ndimage.binary_erosion(mask)
            peak = add[mask].max()
            if peak > 0:
                steps.append(float(np.median(add[ring]) / peak))
    assert len(steps) >= 5 and np.median(steps) < 0.35, steps
