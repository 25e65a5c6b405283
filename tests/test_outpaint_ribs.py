"""Issue 12's framing of the patients' films: the body beyond the CT (synth.outpaint), the drawn rib cage
(synth.ribs), one field of view for every patient, and the aortic knob where a CT's label lacks the arch."""

import numpy as np
import pytest

from mlcak_lib.synth import SynthConfig, SynthCXR
from mlcak_lib.synth.cohort import PAD_PX, load_patient_asset
from mlcak_lib.synth.generator import FOV_MM_RANGE
from mlcak_lib.synth.outpaint import extend_coverage
from mlcak_lib.synth.patients import PATIENTS
from mlcak_lib.synth.ribs import rib_cage, tube_path


def _toy_arrays(h=60, w=50):
    """A body 40 px wide with a lung inside, covered on rows 10..49 and columns 5..44 only."""
    p = np.zeros((1, h, w), np.float16)
    body = np.zeros((1, h, w), np.uint8)
    lung = np.zeros((1, h, w), np.uint8)
    bone = np.zeros((1, h, w), np.uint8)
    p[0, :, 5:45] = 3.0
    body[0, :, 5:45] = 100  # 200 mm
    lung[0, 20:40, 12:38] = 80
    bone[0, :, 24:26] = 30  # the spine
    labels = np.zeros((1, h, w), np.uint16)
    return {"p": p, "body_mm2": body, "lung_mm": lung, "heart_mm": lung * 0, "aorta_mm": lung * 0,
            "bone_mm": bone, "labels": labels, "pixel_mm": np.array([1.0], np.float32)}


def test_extend_coverage_pads_and_fills_without_lungs():
    arr = _toy_arrays()
    out, rows, cols = extend_coverage(arr, (10, 49), (5, 44), 8, 1.0)
    assert out["p"].shape == (1, 76, 66) and rows == (18, 57) and cols == (13, 52)
    # the real CT is copied unchanged
    np.testing.assert_allclose(out["p"][0, 18:58, 13:53], arr["p"][0, 10:50, 5:45].astype(np.float32))
    # no lung, heart or aorta beyond the CT; soft tissue and the spine's bone continue above and below
    beyond = np.ones((76, 66), bool)
    beyond[18:58, 13:53] = False
    assert out["lung_mm"][0][beyond].max() == 0 and out["labels"][0][beyond].max() == 0
    assert out["p"][0, 0:18, 30].min() > 1.0 and out["p"][0, 58:, 30].min() > 1.0
    assert out["bone_mm"][0, 0:18, 33].min() > 0  # the spine column (centre 33 in the padded grid)
    # beside the covered columns the body's chord closes within CLOSE_FRACTION of 200 mm (50 mm): air beyond
    assert out["p"][0, 30, 12] > 1.0 and out["p"][0, 30, 0] < out["p"][0, 30, 12]
    with pytest.raises(ValueError):
        extend_coverage(arr, (10, 49), (5, 44), -1, 1.0)


def test_extend_coverage_has_no_step_at_the_ct_edge():
    """Where the edge row has no lung and no bone, the first outpainted row continues it exactly."""
    arr = _toy_arrays()
    out, (r0, r1), (c0, _) = extend_coverage(arr, (10, 49), (5, 44), 8, 1.0)
    col = c0 + 12  # inside the body, away from its edges
    assert abs(out["p"][0, r0 - 1, col] - out["p"][0, r0, col]) < 0.05
    assert abs(out["p"][0, r1 + 1, col] - out["p"][0, r1, col]) < 0.05


def test_tube_path_is_brighter_at_the_edges_than_at_the_centre():
    r = np.linspace(0, 5, 51)
    path = tube_path(r, half_height=5.0, half_depth=4.0, cortex=1.5)
    assert path[-1] == 0 and path.max() > path[0] > 0
    assert 3.0 < r[int(np.argmax(path))] < 5.0  # the cortex seen tangentially: a rib edge


def test_rib_cage_draws_ribs_over_the_lungs_only_near_the_thorax():
    pa = load_patient_asset("lidc0001")
    n = pa.asset.views[0].size
    aux = pa.asset.views[0].aux.reshape(n, n)
    lung_r, lung_l = (aux >> 29) & 1 > 0, (aux >> 30) & 1 > 0
    ribs = rib_cage(lung_r, lung_l, pa.asset.views[0].pixel_mm, "lidc0001")
    lung = lung_r | lung_l
    rows = np.flatnonzero(lung.any(axis=1))
    assert ribs[lung].mean() > 0.5  # ribs cross the lung fields
    assert ribs[: max(rows[0] - 40, 1)].max() == 0  # nothing far above the apices
    # ribs are near-horizontal bands: within the lungs the path varies more down a column than along a row
    inside = ribs * lung
    assert np.abs(np.diff(inside, axis=0)).mean() > 1.5 * np.abs(np.diff(inside, axis=1)).mean()
    # the same patient always gets the same ribs; an empty view none
    np.testing.assert_array_equal(ribs, rib_cage(lung_r, lung_l, pa.asset.views[0].pixel_mm, "lidc0001"))
    assert rib_cage(np.zeros_like(lung_r), np.zeros_like(lung_l), 1.0).max() == 0


def test_patient_assets_are_padded_and_know_their_real_ct():
    for pid in PATIENTS:
        pa = load_patient_asset(pid)
        n = pa.asset.views[0].size
        assert pa.rows == (0, n - 1) and pa.cols == (0, n - 1)
        assert PAD_PX <= pa.ct_rows[0] < pa.ct_rows[1] <= n - 1 - PAD_PX
        assert PAD_PX <= pa.ct_cols[0] < pa.ct_cols[1] <= n - 1 - PAD_PX


@pytest.fixture(scope="module")
def per_patient():
    sims = {pid: SynthCXR(SynthConfig(abnormal_fraction=0.0, patients={s: (pid,) for s in ("train", "val", "test")}))
            for pid in PATIENTS}
    return {pid: [sim.generate(i, "test", keep_masks=False) for i in range(12)] for pid, sim in sims.items()}


def test_every_patient_gets_the_same_field_of_view(per_patient):
    """The field of view is drawn from one range for all (widened only for a chest that needs more), so the
    pixel size in mm does not tell the patients apart; the outpainted share of each film is recorded."""
    lo, hi = FOV_MM_RANGE
    for pid, films in per_patient.items():
        fov = np.array([s["params"]["fov_mm"] for s in films])
        assert (fov >= lo - 1e-6).all() and (fov <= hi * 1.1).all(), (pid, fov)
        share = np.array([s["params"]["outpainted_share"] for s in films])
        assert ((share >= 0) & (share < 0.6)).all(), (pid, share)
    means = [np.mean([s["mm_per_px"] for s in films]) for films in per_patient.values()]
    assert max(means) / min(means) < 1.1, means


def test_aortic_enlargement_sits_above_the_heart_for_every_patient():
    """Two CTs' labels lack the arch: their knob is placed at the mediastinum's bulge into the left lung
    above the heart, as the other patients' labelled arch is."""
    for pid in PATIENTS:
        sim = SynthCXR(SynthConfig(patients={s: (pid,) for s in ("train", "val", "test")}))
        for i in range(4):
            s = sim.generate(i, "test", findings=["Aortic enlargement"])
            k = list(s["box_labels"]).index(sim.class_names.index("Aortic enlargement"))
            heart_rows = np.flatnonzero(s["heart_mask"].any(axis=1))
            cy = 0.5 * (s["boxes"][k][1] + s["boxes"][k][3])
            assert cy < heart_rows[0] + 0.15 * (heart_rows[-1] - heart_rows[0]), (pid, i, cy, heart_rows[0])
            assert s["boxes"][k][2] > 0.5 * s["image"].shape[1] - 10, (pid, i)  # on the patient's left (viewer's right)
