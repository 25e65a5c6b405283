"""Notebook 08's encoders (mlcak_lib.ctxr.encoders): a small 3-D CNN for CT volumes and a bag-of-n-grams report encoder."""

import numpy as np
import pytest
import torch

from mlcak_lib.ctxr.encoders import CTEncoder, TextEncoder, build_vocabulary, encode_texts, ngrams
from mlcak_lib.ctxr.losses import false_negative_mask, objective
from mlcak_lib.ctxr.reports import random_findings, render
from mlcak_lib.ctxr.retrieval import report_similarity


def _reports(n, seed=0):
    rng = np.random.default_rng(seed)
    return [render(random_findings(rng), i) for i in range(n)]


def test_ct_encoder_shapes_and_projection():
    enc = CTEncoder(embed_dim=32, expert_dim=24)
    vol = torch.rand(2, 1, 64, 64, 64)
    emb = enc(vol)
    assert emb.shape == (2, 32) and enc.expert_projection(emb).shape == (2, 24)
    assert sum(p.numel() for p in enc.parameters()) < 200_000  # CPU-sized
    with pytest.raises(ValueError, match="expert_dim"):
        CTEncoder(embed_dim=8).expert_projection(emb[:, :8])
    with pytest.raises(ValueError, match="volume"):
        enc(torch.rand(2, 64, 64, 64))


def test_encoders_are_seeded_and_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b = CTEncoder(seed=1), CTEncoder(seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.embed.weight, CTEncoder(seed=2).embed.weight)
    vocab = build_vocabulary(["no pneumothorax"])
    assert torch.equal(TextEncoder(vocab, seed=0).bag.weight, TextEncoder(vocab, seed=0).bag.weight)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_the_vocabulary_keeps_negation_and_numbers():
    assert ngrams("No pneumothorax. A 1.2 cm nodule.") == [
        "no", "pneumothorax", "a", "1.2", "cm", "nodule", "no pneumothorax", "pneumothorax a", "a 1.2", "1.2 cm",
        "cm nodule"]
    vocab = build_vocabulary(_reports(100))
    assert "no focal" in vocab and list(vocab.values()) == list(range(len(vocab)))
    assert vocab == build_vocabulary(_reports(100))  # deterministic
    ids, offsets = encode_texts(["no focal consolidation", "unknown words only"], vocab)
    assert offsets.tolist() == [0, 5] and ids.shape == (5,)  # 3 words + 2 bigrams; the unknown bag is empty


def test_text_encoder_shapes_and_gradients():
    reports = _reports(40)
    enc = TextEncoder(build_vocabulary(reports), embed_dim=32)
    out = enc(reports[:5])
    assert out.shape == (5, 32) and torch.isfinite(out).all()
    assert torch.isfinite(enc(["words the grammar never uses"])).all()  # an empty bag embeds to zeros
    out.sum().backward()
    assert enc.bag.weight.grad.abs().sum() > 0


def test_one_step_of_the_full_objective_reaches_both_encoders():
    reports = _reports(6, seed=3)
    ct, text = CTEncoder(embed_dim=16, channels=(4, 8, 8, 16), expert_dim=12), TextEncoder(build_vocabulary(reports), 16)
    emb = ct(torch.rand(6, 1, 64, 64, 64))
    expert = torch.randn(6, 12)
    fn = false_negative_mask(report_similarity(reports))
    terms = objective(emb, ct.expert_projection(emb), text(reports), expert, fn)
    terms["total"].backward()
    assert ct.features[0].weight.grad.abs().sum() > 0 and text.bag.weight.grad.abs().sum() > 0
    assert ct.to_expert.weight.grad.abs().sum() > 0
