"""Notebook 08's training terms (mlcak_lib.ctxr.losses): InfoNCE with false-negative correction and the two KD terms."""

import numpy as np
import pytest
import torch

from mlcak_lib.ctxr.losses import (FN_THRESHOLD, LossWeights, false_negative_mask, info_nce, objective, pairwise_kd,
                                   relation_kd)
from mlcak_lib.ctxr.reports import random_findings, render
from mlcak_lib.ctxr.retrieval import report_similarity


def _emb(b, d, seed, grad=False):
    x = torch.randn(b, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x.requires_grad_(grad)


def test_false_negative_mask_marks_similar_off_diagonal_pairs():
    sim = torch.tensor([[1.0, 0.95, 0.2], [0.95, 1.0, 0.5], [0.2, 0.5, 1.0]])
    fn = false_negative_mask(sim, threshold=0.9)
    assert fn.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    assert false_negative_mask(np.ones((2, 2))).tolist() == [[False, True], [True, False]]
    with pytest.raises(ValueError):
        false_negative_mask(torch.ones(2, 3))


def test_the_default_threshold_flags_every_normal_pair_and_no_normal_abnormal_pair():
    rng = np.random.default_rng(7)
    findings = [random_findings(rng) for _ in range(300)]
    fn = false_negative_mask(report_similarity([render(f, i) for i, f in enumerate(findings)]), FN_THRESHOLD).numpy()
    normal = np.array([f.normal for f in findings])
    both = np.outer(normal, normal) & ~np.eye(len(findings), dtype=bool)
    assert 50 < normal.sum() < 250 and fn[both].all() and not fn[np.outer(normal, ~normal)].any()
    same = np.array([[a == b for b in findings] for a in findings])
    assert (fn & same).sum() / fn.sum() > 0.95  # what the threshold flags mostly shares its findings


def test_info_nce_rewards_alignment_and_gradients_flow():
    img, txt = _emb(8, 16, 0, grad=True), _emb(8, 16, 1, grad=True)
    loss = info_nce(img, txt)
    loss.backward()
    assert torch.isfinite(loss) and img.grad.abs().sum() > 0 and txt.grad.abs().sum() > 0
    aligned = _emb(8, 16, 0)
    assert info_nce(aligned, aligned) < loss.detach() and info_nce(aligned, aligned) < 1e-3  # temperature 0.07
    assert info_nce(img, txt, reduction="none").shape == (8,)


def _push_apart(mode, corrected):
    """The derivative of study 0's loss along a move of text 5 towards image 0 (which raises their cosine and
    no other cosine study 0's loss reads): > 0 pushes image 0 and text 5 apart, < 0 pulls them together.

    Study 5 duplicates study 0's normal report (a false negative of study 0), with another image."""
    img, txt = _emb(6, 16, 0), _emb(6, 16, 1)
    txt = torch.cat([txt[:5], txt[:1]])  # same report -> same text embedding
    logit = torch.zeros((), dtype=torch.float64, requires_grad=True)
    txt5 = txt[5] + logit * torch.nn.functional.normalize(img[0], dim=0) * txt[5].norm()
    txt = torch.cat([txt[:5], txt5[None]])
    same = torch.zeros(6, 6, dtype=torch.bool)
    same[0, 5] = same[5, 0] = True
    per_study = info_nce(img, txt, false_negatives=same if corrected else None, mode=mode, reduction="none")
    (grad,) = torch.autograd.grad(per_study[0], logit)
    return float(grad)


def test_false_negative_correction_stops_pushing_same_report_studies_apart():
    assert _push_apart("mask", corrected=False) > 0  # plain InfoNCE pushes the duplicate away
    assert _push_apart("mask", corrected=True) == 0.0  # masked: no force at all
    assert _push_apart("soft", corrected=True) < 0  # soft targets: pulled together


def test_a_same_report_study_joining_the_batch_leaves_the_corrected_loss_unchanged():
    img, txt = _emb(5, 16, 2), _emb(5, 16, 3)
    before = info_nce(img, txt, reduction="none")
    img2, txt2 = torch.cat([img, _emb(1, 16, 4)]), torch.cat([txt, txt[:1]])  # a new study, study 0's report
    same = torch.zeros(6, 6, dtype=torch.bool)
    same[0, 5] = same[5, 0] = True
    after = info_nce(img2, txt2, false_negatives=same, reduction="none")
    plain = info_nce(img2, txt2, reduction="none")
    assert torch.allclose(after[0], before[0], atol=1e-12, rtol=0)  # exactly study 0's loss without it
    assert plain[0] > before[0]  # without the correction, study 0 is penalised for its healthy twin
    with pytest.raises(ValueError):
        info_nce(img2, txt2, false_negatives=same, mode="other")


def test_pairwise_kd_is_zero_when_student_and_expert_agree():
    expert = _emb(6, 12, 5, grad=True)
    for kind in ("cosine", "mse"):
        assert abs(pairwise_kd(expert.detach().clone(), expert, kind)) < 1e-12  # zero up to rounding
        student = _emb(6, 12, 6, grad=True)
        loss = pairwise_kd(student, expert, kind)
        loss.backward()
        assert loss > 0 and student.grad.abs().sum() > 0
    assert expert.grad is None  # the expert is frozen
    assert pairwise_kd(3.0 * expert.detach(), expert) < 1e-12  # cosine: scale-free
    with pytest.raises(ValueError):
        pairwise_kd(_emb(6, 8, 0), expert)


def test_relation_kd_is_zero_when_the_relations_agree():
    expert = _emb(8, 12, 7, grad=True)
    assert relation_kd(expert.detach().clone(), expert) == 0.0
    q, _ = torch.linalg.qr(_emb(12, 12, 8))
    assert relation_kd(expert.detach() @ q, expert) < 1e-12  # a rotation keeps every cosine
    student = _emb(8, 20, 9, grad=True)  # another dimension: relations need no projection
    loss = relation_kd(student, expert)
    loss.backward()
    assert loss > 0 and student.grad.abs().sum() > 0 and expert.grad is None
    with pytest.raises(ValueError):
        relation_kd(_emb(1, 4, 0), _emb(1, 4, 1))


def test_objective_sums_the_weighted_terms():
    ct, proj, txt, expert = _emb(6, 16, 0, True), _emb(6, 12, 1, True), _emb(6, 16, 2, True), _emb(6, 12, 3)
    w = LossWeights(contrastive=1.0, pairwise=0.5, relation=2.0)
    terms = objective(ct, proj, txt, expert, None, w)
    expected = terms["contrastive"] + 0.5 * terms["pairwise"] + 2.0 * terms["relation"]
    assert torch.allclose(terms["total"], expected)
    terms["total"].backward()
    assert all(t.grad is not None for t in (ct, proj, txt))
    assert w.as_dict()["fn_mode"] == "mask"
