"""mlcak_lib.synth.patients: the five per-patient CT assets share one format, grid and sharpness."""

import numpy as np
import pytest

from mlcak_lib.synth.patients import CHANNELS, PATIENTS, load_patient, lung_masks

LUNG_FRACTION = (0.30, 0.70)  # share of the 320x320 frame covered by the projected lungs (view 0)
# relative spread allowed in the projection sharpness statistic across patients: 0.06 when the assets were matched
# at 4 mm (lungdx_a0002's coarsest axis), 0.21 at today's 3 mm target, which lungdx_a0002's 8 mm slices cannot reach
# along z (3.9 mm); what the issue asks, that a film's sharpness does not identify its patient, is checked on the
# films themselves (tests/test_sim_realism.py::test_patient_is_not_decodable_from_sharpness)
HF_TOLERANCE = 0.25
SIGMA_TOLERANCE_MM = 0.8  # measured edge sigma after matching vs the common target


@pytest.fixture(scope="module")
def patients():
    return {pid: load_patient(pid) for pid in PATIENTS}


def test_all_load_with_common_channels_and_grid(patients):
    assert len(PATIENTS) == 5 and len(set(PATIENTS)) == 5
    shapes = set()
    for pid, (arrays, meta) in patients.items():
        assert meta["patient_id"] == pid
        for ch in CHANNELS:
            assert ch in arrays, (pid, ch)
            shapes.add(arrays[ch].shape)
        assert arrays["p"].dtype == np.float16 and arrays["labels"].dtype == np.uint16
        assert all(arrays[c].dtype == np.uint8 for c in ("lung_mm", "heart_mm", "aorta_mm", "body_mm2", "bone_mm"))
        assert float(arrays["pixel_mm"].reshape(-1)[0]) == pytest.approx(340.0 / 320)
        assert np.isfinite(arrays["p"].astype(np.float32)).all() and arrays["p"].min() >= 0
        assert meta["source"] and meta["license"] and "/work" not in meta["source"] and "shared/" not in meta["source"]
    assert len(shapes) == 1 and next(iter(shapes))[1:] == (320, 320)


@pytest.mark.parametrize("pid", PATIENTS)
def test_masks_plausible(patients, pid):
    arrays, meta = patients[pid]
    for v in range(arrays["p"].shape[0]):
        right, left = lung_masks(arrays, meta, v)
        frac = (right | left).mean()
        assert LUNG_FRACTION[0] < frac < LUNG_FRACTION[1], (pid, v, frac)
        cols = np.arange(320)
        cr, cl = cols[right.any(axis=0)].mean(), cols[left.any(axis=0)].mean()
        assert cr < cl, "the right lung must be on the viewer's left"
        heart = arrays["heart_mm"][v] > 5
        assert heart.sum() > 1500, (pid, v, heart.sum())
        ch = cols[heart.any(axis=0)].mean()
        assert cr < ch < cl, "the heart lies between the lungs"
        rows = np.arange(320)
        lung_top = rows[(right | left).any(axis=1)][0]
        assert rows[heart.any(axis=1)].mean() > lung_top + 40, "the heart lies below the apices"
        # the heart projects denser than the open lung fields
        assert arrays["p"][v][heart].astype(np.float32).mean() > arrays["p"][v][(right | left) & ~heart].astype(np.float32).mean()
        assert (arrays["bone_mm"][v] > 0).mean() > 0.05


MASKED = {"lidc0001": "Nodule/Mass", "lungdx_a0001": "Mass", "lungdx_a0002": "Mass"}  # the real tumours


def test_real_tumours_masked_and_recorded(patients):
    for pid in PATIENTS:
        meta = patients[pid][1]
        assert meta["known_findings"] == [], f"{pid}: a real finding is left unmasked; the generator would label it"
        assert [f["class"] for f in meta["masked_findings"]] == ([MASKED[pid]] if pid in MASKED else []), pid
    for pid in MASKED:
        arrays, meta = patients[pid]
        for f in meta["masked_findings"]:
            assert len(f["box_xyxy_px_per_view"]) == arrays["p"].shape[0]
            x0, y0, x1, y1 = f["box_xyxy_px_per_view"][0]
            assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 320
            assert 10 < max(f["size_mm_lr_ap_si"]) < 100
            how = f["masking"]
            assert how["voxels_replaced"] > 0 and "mirror" in how["method"] and how["lobe"].startswith("lung")
            # what replaced the tumour is aerated lung (the tumour was soft tissue, > -400 HU on average)
            assert how["hu_mean_before"] > -400 and how["hu_mean_after"] < -650, (pid, how)
            right, left = lung_masks(arrays, meta, 0)
            cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
            assert (right | left)[cy, cx], "the masked tumour's box centre lies in a lung field"
            # the masked region projects lighter than the same rows' other lung (mediastinal side included):
            # by 0.88 / 0.36 / 0.18 now, against 0.67 / 0.11 / 0.04 with the tumours (lidc0001, lungdx A0001, A0002)
            box = np.zeros((320, 320), bool)
            box[int(y0):int(y1), int(x0):int(x1)] = True
            p = arrays["p"][0].astype(np.float32)
            lung = right | left
            assert p[box & lung].mean() < p[lung & ~box & box.any(axis=1)[:, None]].mean() - 0.15, pid


def test_sharpness_matched(patients):
    hf = np.array([patients[p][1]["sharpness"]["hf_ratio_after"] for p in PATIENTS])
    before = np.array([patients[p][1]["sharpness"]["hf_ratio_before"] for p in PATIENTS])
    assert (hf.max() - hf.min()) / hf.mean() < HF_TOLERANCE, hf
    assert (hf < before).all()
    for p in PATIENTS:
        s = patients[p][1]["sharpness"]
        for axis in ("x", "z"):  # the target, or the axis's own sharpness where it is coarser than the target
            reached = max(s["target_sigma_mm"], s["edge_sigma_iso_mm"][axis])
            assert abs(s["edge_sigma_after_mm"][axis] - reached) < SIGMA_TOLERANCE_MM, (p, s)


def test_manifest_rows_and_checksums(patients):
    from mlcak_lib.manifest import read_manifest, verify_manifest

    ids = [f"patient_{p}" for p in PATIENTS]
    rows = {e.id: e for e in read_manifest() if e.id in ids}
    assert set(rows) == set(ids)
    for e in rows.values():
        assert e.access == "derived" and "/work" not in e.source and "shared/" not in e.source
        if "cip" in e.id:
            assert "CIP_LICENSE.txt" in e.license
    assert all(r.status == "ok" for r in verify_manifest(ids=ids))


def test_iv_contrast_removed_where_present(patients):
    """LIDC-IDRI-0001 is a contrast-enhanced CT (blood ~380 HU); a radiograph has no contrast: the builder resets
    its blood pool to unenhanced blood, so the heart and mediastinum cannot identify that patient."""
    for pid in PATIENTS:
        done = patients[pid][1]["contrast_removed"]
        if pid == "lidc0001":
            assert done["blood_hu_median_before"] > 150 and done["blood_hu_after"] == 40 and done["voxels"] > 1000
        else:
            assert done is None, pid
