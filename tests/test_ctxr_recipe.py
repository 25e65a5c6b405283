"""Notebook 08's recipe and evaluation (mlcak_lib.ctxr.recipe, mlcak_lib.ctxr.evaluate)."""

import numpy as np
import pytest
import torch

from mlcak_lib.ctxr import evaluate, recipe
from mlcak_lib.ctxr.data import XRayPool, ct_split
from mlcak_lib.ctxr.encoders import build_vocabulary
from mlcak_lib.ctxr.reports import parse, with_standard_negatives
from mlcak_lib.ctxr.retrieval import report_similarity


def test_the_variants_are_every_kd_setting_with_and_without_fn_correction():
    variants = recipe.CTXR_VARIANTS
    assert len(variants) == 8
    assert {(bool(v.pairwise), bool(v.relation), v.fn_correction) for v in variants.values()} == {
        (p, r, f) for p in (False, True) for r in (False, True) for f in (False, True)}
    ref, head = variants[recipe.REFERENCE], variants[recipe.HEADLINE]
    assert not ref.uses_expert and not ref.fn_correction
    assert head.pairwise and head.relation and head.fn_correction
    assert ref.weights(recipe.CTXRTraining().loss).pairwise == 0.0
    with pytest.raises(ValueError, match="choose from"):
        recipe.get_variant("distil-everything")


def test_zero_shot_auroc_on_a_hand_made_case():
    e = torch.eye(3)
    positive = {"A": e[[0, 0]], "B": e[[1]]}  # class A's prompts embed to e0, B's to e1; normal prompts to e2
    ct = torch.stack([e[0], e[1], e[2], e[0] + e[1]])
    scores = evaluate.zero_shot_scores(ct, positive, e[[2, 2]])
    labels = np.array([[1, 0], [0, 1], [0, 0], [1, 1]])
    assert scores.shape == (4, 2)
    assert evaluate.auroc(labels[:, 0], scores[:, 0]) == 1.0 and evaluate.auroc(labels[:, 1], scores[:, 1]) == 1.0
    assert evaluate.auroc(1 - labels[:, 0], scores[:, 0]) == 0.0


def test_prompts_come_from_the_grammar_and_name_their_class():
    positives, negatives = evaluate.prompts(("Pleural effusion", "Cardiomegaly"), per_class=3)
    assert all(len(p) == 3 for p in positives.values())
    assert len(negatives) == evaluate.NORMAL_PHRASINGS and len(set(negatives)) == evaluate.NORMAL_PHRASINGS
    assert all(parse(t).labels == ("Pleural effusion",) for t in positives["Pleural effusion"])
    assert all(parse(t).normal for t in negatives)


def test_retrieval_counts_same_findings_reports_only_when_asked():
    normal = with_standard_negatives([])
    findings = [normal, normal, normal]
    text = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])  # three identical normal reports
    scores = evaluate.retrieval_scores(text.clone(), text, findings, ks=(1,))
    assert scores["R@1"] == 0.0 and scores["R@1|same"] == 1.0


def test_linear_probe_and_the_labelled_subset():
    rng = np.random.default_rng(0)
    y = np.zeros((60, 2))
    y[:30, 0] = 1
    x = rng.normal(size=(60, 4)) + 4.0 * y[:, :1]
    out = evaluate.linear_probe(x, y, x, y, classes=("A", "B"))
    assert out["ft_auroc[A]"] == 1.0 and np.isnan(out["ft_auroc[B]"])
    y_test = y.copy()
    y_test[::2, 1] = 1
    assert evaluate.linear_probe(x, y, x, y_test, classes=("A", "B"))["ft_auroc[B]"] == 0.5  # nothing to learn from
    pick = evaluate.label_subset(50, 0.1, seed=3)
    assert len(pick) == 5 and np.array_equal(pick, evaluate.label_subset(50, 0.1, seed=3))
    with pytest.raises(ValueError):
        evaluate.label_subset(50, 0.0)


def test_random_shift_moves_content_and_keeps_the_shape():
    v = torch.zeros(2, 1, 8, 8, 8)
    v[:, :, 4, 4, 4] = 1.0
    g = torch.Generator().manual_seed(0)
    out = recipe.random_shift(v, 2, g)
    assert out.shape == v.shape and torch.allclose(out.sum(dim=(1, 2, 3, 4)), torch.ones(2))
    assert torch.equal(recipe.random_shift(v, 0, g), v)


def _prepared(tmp_path):
    """A tiny PreparedData without the teacher: random 'expert' embeddings for a pool of 4 films."""
    train, val, test = (ct_split(s, n, 16, tmp_path) for s, n in (("train", 12), ("val", 6), ("test", 6)))
    pool = XRayPool(train.reports[:4], train.findings[:4], ["x"] * 4, torch.randn(4, 5, generator=torch.Generator().manual_seed(0)))
    pairs = np.arange(12) % 4
    return recipe.PreparedData(train, val, test, pool, pairs, pool.embeddings[torch.as_tensor(pairs)],
                               report_similarity(train.reports), build_vocabulary(train.reports), {"test": "tiny"})


def test_get_ct_model_trains_keeps_the_validated_best_and_reloads(tmp_path):
    data = _prepared(tmp_path)
    cfg = recipe.TINY_TRAINING
    model, history, info = recipe.get_ct_model(recipe.HEADLINE, 0, data, "default", cfg, cache_dir=tmp_path)
    assert not info["cache_hit"] and [h["step"] for h in history] == [2, 4]
    assert sum(bool(h.get("best")) for h in history) >= 1
    assert all(h["pairwise"] > 0 and np.isfinite(h["total"]) for h in history)
    again, _, info2 = recipe.get_ct_model(recipe.HEADLINE, 0, data, "default", cfg, cache_dir=tmp_path, load_only=True)
    assert info2["cache_hit"] and info2["hash"] == info["hash"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    _, _, other = recipe.get_ct_model(recipe.REFERENCE, 0, data, "default", cfg, cache_dir=tmp_path)
    assert other["hash"] != info["hash"]
    row = evaluate.evaluate_model(model, data.test, data.train, seed=0)
    assert {"zs_macro_auroc", "R@1", "R@5|same", "ft_macro_auroc", "n_labelled"} <= set(row)
