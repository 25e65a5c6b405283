"""Notebook 08's data (mlcak_lib.ctxr.data): CT studies split by patient, their reports, the cache, the X-ray pool."""

import numpy as np
import pytest
import torch
from torch import nn

from mlcak_lib.ctxr import data
from mlcak_lib.ctxr.reports import parse
from mlcak_lib.ctxr.volumes import CT_CLASSES, simulate_study
from mlcak_lib.synth.config import PATIENT_SPLITS


def test_splits_are_by_patient_and_the_test_patient_is_never_in_training(tmp_path):
    train, test = data.split_patients("train"), data.split_patients("test")
    assert train == PATIENT_SPLITS["by_patient"]["train"] and not set(train) & set(test)
    assert not set(data.split_patients("val")) & (set(train) | set(test))
    tr = data.ct_split("train", 6, 16, tmp_path)
    te = data.ct_split("test", 3, 16, tmp_path)
    assert set(tr.patients) == set(train) and set(te.patients) == set(test)
    assert tr.volumes.shape == (6, 1, 16, 16, 16) and float(tr.volumes.min()) >= 0 and float(tr.volumes.max()) <= 1
    with pytest.raises(ValueError, match="unknown split"):
        data.split_patients("holdout")


def test_reports_parse_back_to_the_studies_findings_and_labels(tmp_path):
    split = data.ct_split("val", 8, 16, tmp_path)
    for i, (pid, report) in enumerate(zip(split.patients, split.reports)):
        truth = simulate_study(pid, i).findings
        assert parse(report) == truth == split.findings[i]
        assert split.labels[i].tolist() == [float(c in truth.labels) for c in CT_CLASSES]
    assert len(set(split.reports)) > 1


def test_a_rerun_loads_the_cached_split(tmp_path, monkeypatch):
    first = data.ct_split("test", 4, 16, tmp_path)

    def no_simulation(*args, **kwargs):
        raise AssertionError("simulated again instead of loading the cache")

    monkeypatch.setattr(data, "simulate_study", no_simulation)
    again = data.ct_split("test", 4, 16, tmp_path)
    assert torch.equal(first.volumes, again.volumes) and first.reports == again.reports
    with pytest.raises(AssertionError, match="simulated again"):
        data.ct_split("test", 5, 16, tmp_path)  # another size is another key


def test_downsample_and_bad_input():
    vol = np.arange(64 ** 3, dtype=np.float32).reshape(64, 64, 64)
    small = data.downsample(vol, 32)
    assert small.shape == (1, 32, 32, 32) and float(small[0, 0, 0, 0]) == pytest.approx(vol[:2, :2, :2].mean())
    with pytest.raises(ValueError, match="must divide"):
        data.downsample(vol, 24)
    with pytest.raises(ValueError, match="at least one"):
        data.ct_split("train", 0)


class _FakeExpert(nn.Module):
    """A stand-in for the teacher: the class token is the image's mean and std, repeated."""

    def forward_tokens(self, x):
        feats = torch.stack([x.mean(dim=(1, 2, 3)), x.std(dim=(1, 2, 3))], dim=1)
        return feats[:, None, :].repeat(1, 2, 1)


def test_xray_pool_is_separate_films_with_reports_and_expert_embeddings(tmp_path):
    pool = data.xray_pool(5, _FakeExpert(), "fake", tmp_path, chunk=3)
    assert len(pool) == 5 and pool.embeddings.shape == (5, 2)
    assert set(pool.patients) <= set(data.split_patients("train"))  # never the CT test patient
    assert all(parse(r) == f for r, f in zip(pool.reports, pool.findings))
    assert data.xray_pool(5, cache_folder=tmp_path).reports == pool.reports  # reports without an expert
    with pytest.raises(ValueError, match="expert_id"):
        data.xray_pool(5, _FakeExpert(), None, tmp_path)


def test_anatomical_variation_moves_the_anatomy_but_keeps_the_volume_and_air():
    rng = np.random.default_rng(0)
    vol = np.full((32, 32, 32), -1000.0, np.float32)
    vol[10:22, 8:24, 6:26] = 40.0  # a soft-tissue block
    a = data.vary_anatomy(vol, np.random.default_rng(1))
    b = data.vary_anatomy(vol, np.random.default_rng(2))
    assert a.shape == vol.shape and not np.allclose(a, b) and not np.allclose(a, vol)
    assert np.allclose(data.vary_anatomy(vol, np.random.default_rng(1)), a)  # seeded
    assert a[0, 0, 0] == -1000.0 and a.max() <= 40.0 + 1e-3 and a.min() >= -1000.0 - 1e-3
    tissue = lambda v: float((v > -480).sum())
    assert 0.75 < tissue(a) / tissue(vol) < 1.3  # scale within 8 % per axis
    still = data.vary_anatomy(vol, rng, {"scale": 0.0, "rotate_deg": 0.0, "shift_vox": 0.0})
    assert np.allclose(still, vol, atol=1e-3)  # no variation, no change
