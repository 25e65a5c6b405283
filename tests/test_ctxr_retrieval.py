"""Notebook 08's language-guided retrieval (mlcak_lib.ctxr.retrieval) and the package's own cache key."""


import numpy as np
import pytest

from mlcak_lib.ctxr import keys
from mlcak_lib.ctxr.reports import Finding, Findings, random_findings, render, with_standard_negatives
from mlcak_lib.ctxr.losses import false_negative_mask
from mlcak_lib.ctxr.retrieval import (ReportIndex, pair_detection_quality, recall_at_k, report_similarity, same_findings,
                                      top_k)
from test_cache import assert_fingerprint_follows, assert_outside_model_code


def _pool(n, seed=0):
    rng = np.random.default_rng(seed)
    findings = [random_findings(rng) for _ in range(n)]
    return findings, [render(f, seed=1000 * seed + i) for i, f in enumerate(findings)]


def test_each_ct_report_retrieves_an_xray_with_the_same_findings_when_one_exists():
    xray_findings, xray_reports = _pool(200, seed=1)
    index = ReportIndex(xray_reports)
    queries = xray_reports[:40]  # a CT whose report is worded exactly like an X-ray's
    best = index.retrieve(queries, k=1)[:, 0]
    assert all(xray_findings[j] == xray_findings[i] for i, j in enumerate(best))
    sim = index.similarity(queries)
    assert sim.shape == (40, 200) and np.allclose(sim[np.arange(40), best], 1.0)
    # a different wording of an abnormal study still finds that study's class first
    effusion = with_standard_negatives([Finding("Pleural effusion", "left")])
    hits = index.retrieve([render(effusion, s) for s in range(4)], k=1)[:, 0]
    assert all("Pleural effusion" in xray_findings[j].labels for j in hits)


def test_ties_among_identical_normal_reports_are_spread_and_deterministic():
    normal = render(with_standard_negatives([]), 0)
    index = ReportIndex([normal] * 20 + [render(Findings((Finding("Cardiomegaly"),)), 0)])
    queries = [normal] * 50
    a, b = index.retrieve(queries, seed=3), index.retrieve(queries, seed=3)
    assert np.array_equal(a, b) and len(set(a[:, 0])) > 5 and a.max() < 20
    assert set(index.retrieve(queries, seed=None)[:, 0]) == {0}  # seed=None: lowest index


def test_top_k_orders_by_similarity():
    sim = np.array([[0.1, 0.9, 0.5], [0.7, 0.2, 0.7]])
    assert top_k(sim, 3, seed=None).tolist() == [[1, 2, 0], [0, 2, 1]]
    assert set(top_k(sim, 1, seed=1)[1]) <= {0, 2}
    with pytest.raises(ValueError):
        top_k(sim, 4)


def test_recall_at_k_counts_ties_against_the_model():
    n = 12
    assert recall_at_k(np.eye(n)) == {"R@1": 1.0, "R@5": 1.0, "R@10": 1.0}
    flat = recall_at_k(np.zeros((n, n)))  # a constant score: 11 items tie ahead of the right one
    assert flat == {"R@1": 0.0, "R@5": 0.0, "R@10": 0.0}
    rng = np.random.default_rng(0)
    sim = rng.random((n, n))
    order = np.argsort(-sim, axis=1)
    rank = np.argmax(order == np.arange(n)[:, None], axis=1)
    assert recall_at_k(sim, ks=(1, 5)) == {"R@1": float(np.mean(rank < 1)), "R@5": float(np.mean(rank < 5))}
    # another study with the same findings also counts when `relevant` says so
    sim = np.array([[0.5, 0.9, 0.1], [0.2, 0.8, 0.3], [0.1, 0.2, 0.9]])
    same = np.eye(3, dtype=bool) | np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=bool)
    assert recall_at_k(sim, ks=(1,))["R@1"] == pytest.approx(2 / 3)
    assert recall_at_k(sim, relevant=same, ks=(1,))["R@1"] == 1.0


def test_report_similarity_is_a_cosine_matrix():
    _, reports = _pool(30)
    sim = report_similarity(reports)
    assert sim.shape == (30, 30) and np.allclose(sim, sim.T) and np.allclose(np.diag(sim), 1.0)
    assert sim.min() >= 0.0


def test_ctxr_is_outside_the_teacher_and_student_keys_and_has_its_own():
    assert_outside_model_code("ctxr", keys.CTXR_CODE)


def test_ctxr_fingerprint_follows_the_package_source(tmp_path, monkeypatch):
    assert_fingerprint_follows(keys.ctxr_fingerprint, "ctxr/retrieval.py", tmp_path, monkeypatch)


def test_same_findings_is_the_ground_truth_of_false_negatives():
    findings, reports = _pool(120, seed=2)
    truth = same_findings(findings)
    assert truth.shape == (120, 120) and np.diag(truth).all() and np.array_equal(truth, truth.T)
    normal = np.array([f.normal for f in findings])
    assert truth[np.ix_(normal, normal)].all()
    quality = pair_detection_quality(false_negative_mask(report_similarity(reports)).numpy(), truth)
    assert quality["precision"] > 0.95 and quality["pairs_flagged"] > 0
    assert pair_detection_quality(truth, truth)["recall"] == 1.0
    # the false-negative-aware recall counts another study with the same findings as a hit
    sim = report_similarity(reports)
    assert recall_at_k(sim, relevant=truth)["R@1"] >= recall_at_k(sim)["R@1"]
