"""Notebook 08's simulated CT studies (mlcak_lib.ctxr.volumes): patient volumes, 3-D lesions, their AP boxes."""

import shutil

import numpy as np
import pytest

import mlcak_lib.ctxr.volumes as vol
from mlcak_lib.ctxr.reports import parse, render
from mlcak_lib.manifest import read_manifest, sha256_of
from mlcak_lib.synth.asset import AssetError
from mlcak_lib.synth.lesions.canvas import MU_WATER
from mlcak_lib.synth.patients import PATIENTS


def phantom(shape=(40, 32, 40), mm=5.0) -> vol.PatientVolume:
    """A tiny chest: two box lungs (upper/lower lobe bits split at mid-height), a heart between them, soft tissue."""
    hu = np.full(shape, 0.0, np.float32)
    labels = np.full(shape, 1 << vol.BODY_BIT, np.uint8)
    nx, ny, nz = shape
    mid = nz // 2
    for x0, x1, upper, lower in ((3, nx // 2 - 3, 0, 2), (nx // 2 + 3, nx - 3, 3, 4)):
        hu[x0:x1, 3:ny - 3, 3:nz - 3] = -850.0
        labels[x0:x1, 3:ny - 3, mid:nz - 3] |= 1 << upper
        labels[x0:x1, 3:ny - 3, 3:mid] |= 1 << lower
    hu[nx // 2 - 3:nx // 2 + 3, 8:ny - 8, 5:mid] = 40.0
    labels[nx // 2 - 3:nx // 2 + 3, 8:ny - 8, 5:mid] |= 1 << vol.HEART_BIT
    for a in (hu, labels):
        a.setflags(write=False)
    return vol.PatientVolume("phantom", hu, labels, mm, {})


def projected_extent(mask3d: np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) of a 3-D mask projected along AP onto the display image (row 0 superior)."""
    img = mask3d.any(axis=1).T[::-1]
    rows, cols = np.flatnonzero(img.any(axis=1)), np.flatnonzero(img.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


@pytest.fixture(scope="module")
def studies():
    return [vol.simulate_study(pid, seed, findings=list(vol.CT_CLASSES)) for pid in PATIENTS for seed in (0, 1)]


def test_assets_match_manifest_and_budget():
    rows = {e.id: e for e in read_manifest()}
    total = 0
    for pid in PATIENTS:
        path = vol.verify_volume(pid)
        row = rows[f"ct_volume_{pid}"]
        assert row.local_path == f"mlcak_lib/data/ct_volumes/{pid}.npz" and row.access == "derived"
        assert sha256_of(path) == row.sha256 and path.stat().st_size == row.bytes
        assert "shared/" not in row.source and "build_ct_volumes.py" in row.source
        total += row.bytes
        pv = vol.load_volume(pid)
        assert pv.hu.shape == pv.labels.shape == (64, 64, 64) and pv.voxel_mm == pytest.approx(5.3125)
        assert pv.lungs.sum() > 10_000 and pv.heart.sum() > 1_000 and pv.meta["patient_id"] == pid
        assert not pv.hu.flags.writeable
    assert total <= 2_000_000 and vol.volume_sha256s() == {pid: rows[f"ct_volume_{pid}"].sha256 for pid in PATIENTS}


def test_missing_or_stale_asset_names_the_rebuild(tmp_path, monkeypatch):
    monkeypatch.setattr(vol, "VOLUME_DIR", tmp_path)
    with pytest.raises(AssetError, match=r"ct_volume_cip_ct64.*missing.*build_ct_volumes\.py"):
        vol.load_volume("cip_ct64")
    stale = tmp_path / "cip_ct64.npz"
    shutil.copy(vol.Path(vol.__file__).parent.parent / "data" / "ct_volumes" / "cip_ct64.npz", stale)
    data = bytearray(stale.read_bytes())
    data[-100] ^= 0xFF
    stale.write_bytes(bytes(data))
    with pytest.raises(AssetError, match=r"corrupt or a different version.*build_ct_volumes\.py"):
        vol.load_volume("cip_ct64")
    with pytest.raises(KeyError, match="unknown patient"):
        vol.load_volume("nobody")


def test_projected_box_contains_the_lesion_and_is_tight(studies):
    """The acceptance test: CT and radiograph ground truth agree for each inserted lesion."""
    seen = set()
    for st in studies:
        for les in st.lesions:
            seen.add(les.label)
            box = vol.project_box(les)
            ext = projected_extent(les.full_mask())
            # every lesion voxel projects inside the box, and the box is tight (within one voxel)
            assert (ext[:2] >= box[:2]).all() and (ext[2:] <= box[2:]).all(), (les.label, box, ext)
            assert np.abs(ext - box).max() <= 1.0, (les.label, box, ext)
            assert np.allclose(vol.project_box(les, mm=True), box * st.voxel_mm)
            lo, hi = np.asarray(les.box[:3]), np.asarray(les.box[3:])
            assert (lo <= np.asarray(les.centre) + 1).all() and (np.asarray(les.centre) <= hi + 1).all()
    assert seen == set(vol.CT_CLASSES)


@pytest.mark.parametrize("label", vol.CT_CLASSES)
def test_radiograph_of_the_study_shows_the_lesion_inside_its_box(label):
    """A radiograph of the study (AP line integral) differs from the patient's only inside the lesion's box."""
    pv = vol.load_volume("lungdx_a0001")
    st = vol.simulate_study("lungdx_a0001", 3, findings=[label])
    assert st.lesions and {les.label for les in st.lesions} == {label}
    diff = np.abs(vol.ap_projection(st.volume, st.voxel_mm) - vol.ap_projection(pv.hu, pv.voxel_mm))
    inside = np.zeros(diff.shape, bool)
    for les in st.lesions:
        x0, y0, x1, y1 = vol.project_box(les).astype(int)
        inside[max(y0 - 1, 0):y1 + 1, max(x0 - 1, 0):x1 + 1] = True
    assert diff[~inside].max() <= 0.05 * diff.max()


def test_lesions_go_where_the_lesion_model_says(studies):
    for st in studies:
        base = vol.load_volume(st.patient_id)
        for les in st.lesions:
            m = les.full_mask()
            if les.label in ("Nodule/Mass", "Calcification", "Lung Opacity"):
                assert base.lungs[m].all(), les.label
                c = np.asarray(les.centre).astype(int)
                assert base.lungs[tuple(c)], les.label
            elif les.label in ("Pleural effusion", "Pneumothorax"):
                side = base.mask(*[b for b in vol.LABEL_BITS[:5] if b.endswith(les.side)])
                assert side[m].all(), les.label
                if les.label == "Pleural effusion":  # basal: in the lower half of the lungs
                    zs = np.flatnonzero(base.lungs.any(axis=(0, 1)))
                    assert les.box[5] <= zs[0] + 0.5 * (zs[-1] - zs[0]) + 1
            else:
                assert (m | ~base.heart).all() and m.sum() > base.heart.sum()
                ctr = les.params
                assert abs(ctr["ctr_after"] - ctr["ctr_target"]) <= 0.03 and ctr["ctr_after"] > ctr["ctr_before"], ctr
        assert not (vol.normalise(st.volume) < 0).any()


def test_nodule_adds_the_radiograph_models_attenuation():
    """One lesion model: a nodule's added line integral, summed over the film, is the volume of its sphere times
    its delta-mu (the 2-D model adds 2 sqrt(r^2 - d^2) delta-mu, whose integral that is)."""
    pv = phantom()
    for seed in range(3):
        st = vol.simulate_from_volume(pv, seed, findings=["Nodule/Mass"], max_nodules=1, size_scale=3.0)
        (les,) = st.lesions
        diff = vol.ap_projection(st.volume, pv.voxel_mm) - vol.ap_projection(pv.hu, pv.voxel_mm)
        added = float(diff.sum()) * pv.voxel_mm ** 2
        r_mm = les.params["radius_vox"] * pv.voxel_mm
        expected = 4 / 3 * np.pi * r_mm ** 3 * les.params["dmu"]
        if les.params["kind"] == "calcified":
            continue  # its dense core adds more
        assert added == pytest.approx(expected, rel=0.2), (les.params, added, expected)
        assert les.side in ("right", "left") and les.zone in ("upper", "middle", "lower")
        assert diff.min() >= -1e-4 and float(np.abs(st.volume - pv.hu).max()) <= 1000 * 0.04 / MU_WATER


def test_same_seed_same_study_and_reports_parse(studies):
    a, b = vol.simulate_study("cip_ct64", 7), vol.simulate_study("cip_ct64", 7)
    assert np.array_equal(a.volume, b.volume) and np.array_equal(a.labels, b.labels)
    assert [(x.label, x.box, x.centre) for x in a.lesions] == [(x.label, x.box, x.centre) for x in b.lesions]
    assert a.findings == b.findings
    assert not np.array_equal(vol.simulate_study("cip_ct64", 1, ["Nodule/Mass"]).volume,
                              vol.simulate_study("cip_ct64", 2, ["Nodule/Mass"]).volume)
    drawn = [vol.simulate_study("lidc0001", s) for s in range(12)]
    assert any(st.findings.normal for st in drawn) and any(not st.findings.normal for st in drawn)
    for st in [*studies, *drawn]:
        for seed in (0, 1):
            assert parse(render(st.findings, seed)) == st.findings
    with pytest.raises(ValueError, match="not inserted"):
        vol.simulate_study("cip_ct64", 0, findings=["Pulmonary fibrosis"])


def test_phantom_studies_and_orientation():
    """Patient's right on the viewer's left: a right-lung lesion's box lies in the left half of the projection."""
    pv = phantom()
    for seed in range(6):
        st = vol.simulate_from_volume(pv, seed, findings=["Nodule/Mass", "Pleural effusion", "Pneumothorax"])
        assert st.volume.dtype == np.float32 and st.volume.shape == pv.hu.shape
        for les in st.lesions:
            box = vol.project_box(les)
            centre_col = 0.5 * (box[0] + box[2])
            assert (centre_col < pv.hu.shape[0] / 2) == (les.side == "right"), (les.label, les.side, box)
    img = vol.ap_projection(pv.hu, pv.voxel_mm)
    assert img.shape == (pv.hu.shape[2], pv.hu.shape[0])
