"""Distillation losses and objective (mlcak_lib.distill): zero at identity, gradients, ablations."""

import math

import pytest
import torch

from mlcak_lib import distill
from mlcak_lib.distill import (
    VARIANT_NAMES,
    DistillObjective,
    attention_kd_loss,
    get_variant,
    hinton_kd_loss,
    level_pairs,
    output_kd_loss,
)
from mlcak_lib.models import build_vit
from mlcak_lib.train import InMemorySplit, TrainConfig, fit

C = 3
ARCH = dict(grid=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, stem_channels=(8, 16))


def _model(resolution, seed=0):
    return build_vit(resolution, C, profile="default", seed=seed, **ARCH)


def _f(t):
    return float(t.detach())


def _split(n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(n, 1, 32, 32, generator=g)
    lr = torch.nn.functional.avg_pool2d(hr, 4)  # 8 px view of the same images
    mlct = (torch.rand(n, C, generator=g) < 0.4).float()
    mcct = (mlct.sum(1) > 0).long()
    return InMemorySplit({32: hr, 8: lr}, mlct, mcct, [f"c{i}" for i in range(C)], name="train")


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return _model(32, seed=1).eval()


def test_level_pairs_rule():
    assert level_pairs(12, 4, 2) == [(5, 1), (11, 3)]
    assert level_pairs(4, 4, 2) == [(1, 1), (3, 3)]
    assert level_pairs(4, 4, 1) == [(3, 3)]
    with pytest.raises(ValueError):
        level_pairs(4, 2, 3)


def test_pure_terms_zero_at_identity_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, C, generator=g)
    m = torch.randn(5, 2, generator=g)
    a = torch.softmax(torch.randn(5, 2, 7, 7, generator=g), -1)
    b = torch.softmax(torch.randn(5, 2, 7, 7, generator=g), -1)
    assert output_kd_loss(z, z) == 0 and output_kd_loss(z, z + 0.1) > 0
    assert attention_kd_loss([a, a.mean(1)], [a, a.mean(1)]) == 0
    assert attention_kd_loss([a], [b]) > 0
    same = hinton_kd_loss({"mlct": z, "mcct": m}, {"mlct": z, "mcct": m}, temperature=4.0)
    assert abs(float(same)) < 1e-6
    assert hinton_kd_loss({"mlct": z, "mcct": m}, {"mlct": -z, "mcct": -m}) > 0


def test_hinton_matches_explicit_kl():
    z_s, z_t = torch.tensor([[0.3, -1.0]]), torch.tensor([[1.5, 0.2]])
    m_s, m_t = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, -1.0]])
    T = 2.0
    p, q = torch.sigmoid(z_t / T), torch.sigmoid(z_s / T)
    bern = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean()
    pt, ps = torch.softmax(m_t / T, -1), torch.softmax(m_s / T, -1)
    cat = (pt * (pt / ps).log()).sum()
    got = hinton_kd_loss({"mlct": z_s, "mcct": m_s}, {"mlct": z_t, "mcct": m_t}, temperature=T)
    assert torch.allclose(got, T * T * (bern + cat), atol=1e-6)


@pytest.mark.parametrize("name", ["output-kd", "attention-kd", "mlcak", "hinton-kd"])
def test_objective_terms_zero_when_student_is_teacher(teacher, name):
    split = _split()
    batch = split.batch(torch.arange(8), 32)
    obj = DistillObjective(teacher, name, teacher_resolution=32)
    obj.setup(teacher, split)  # student == teacher, same 32-px inputs
    terms = obj.terms(batch, obj.forward(teacher, batch))
    assert _f(terms["kd"]) == pytest.approx(0.0, abs=1e-7)
    for key in ("mlct_kd", "mcct_kd", "attn_kd"):
        assert _f(terms[key]) == pytest.approx(0.0, abs=1e-7)

    student = _model(8, seed=2)
    obj = DistillObjective(teacher, name, teacher_resolution=32)
    obj.setup(student, split)
    batch = split.batch(torch.arange(8), 8)
    terms = obj.terms(batch, obj.forward(student, batch))
    v = get_variant(name)
    assert _f(terms["kd"]) > 0
    if v.kind == "mse":
        assert (_f(terms["mlct_kd"]) > 0) == (v.alpha > 0)
        assert (_f(terms["mcct_kd"]) > 0) == (v.beta > 0)
        assert (_f(terms["attn_kd"]) > 0) == (v.gamma > 0)


def test_attention_term_gradients_reach_attention_and_patch_embedding(teacher):
    split = _split()
    student = _model(8, seed=2)
    obj = DistillObjective(teacher, "attention-kd", teacher_resolution=32)
    obj.setup(student, split)
    batch = split.batch(torch.arange(8), 8)
    terms = obj.terms(batch, obj.forward(student, batch))
    student.zero_grad()
    terms["attn_kd"].backward()
    qkv = student.blocks[obj.student_blocks[-1]].attn.qkv.weight.grad
    stem = student.vit.patch_embed.proj.weight.grad
    assert qkv is not None and qkv.abs().sum() > 0
    assert stem is not None and stem.abs().sum() > 0
    assert student.mlct_head.weight.grad is None or student.mlct_head.weight.grad.abs().sum() == 0


def test_cached_teacher_equals_live_teacher(teacher):
    split = _split()
    student = _model(8, seed=2)
    batch = split.batch(torch.tensor([3, 1, 7, 0]), 8)
    values = []
    for precompute in (True, False):
        obj = DistillObjective(teacher, "mlcak", teacher_resolution=32, precompute=precompute)
        obj.setup(student, split)
        assert (obj.cache is not None) == precompute
        values.append(obj.terms(batch, obj.forward(student, batch)))
    for key in ("mlct_kd", "mcct_kd", "attn_kd", "loss"):
        assert torch.allclose(values[0][key], values[1][key], rtol=1e-5, atol=1e-7)


def test_gamma_zero_reproduces_output_kd_exactly(teacher):
    split = _split(n=32)
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, patience=None, seed=3)
    runs = []
    for objective in (DistillObjective(teacher, "output-kd", teacher_resolution=32),
                      DistillObjective(teacher, "mlcak", teacher_resolution=32, gamma=0.0)):
        student = _model(8, seed=5)
        history = fit(student, split, None, objective, cfg, progress=False)
        runs.append((history, student.state_dict()))
    (h1, w1), (h2, w2) = runs
    assert [r["train_loss"] for r in h1] == [r["train_loss"] for r in h2]
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    # and the attention term does change training when gamma > 0
    student = _model(8, seed=5)
    h3 = fit(student, split, None, DistillObjective(teacher, "mlcak", teacher_resolution=32), cfg, progress=False)
    assert h3[0]["train_attn_kd"] > 0 and h3[0]["train_loss"] != h1[0]["train_loss"]


def test_baseline_is_the_supervised_loss(teacher):
    from mlcak_lib.train import SupervisedObjective

    split = _split()
    student = _model(8, seed=2)
    obj, sup = DistillObjective(None, "baseline"), SupervisedObjective()
    obj.setup(student, split)
    sup.setup(student, split)
    batch = split.batch(torch.arange(8), 8)
    out = student(batch["x"])
    assert torch.equal(obj(batch, out, student)[0], sup(batch, out, student)[0])
    assert obj.config()["variant"] == "baseline" and "gamma" not in obj.config() and obj.config().get("teacher") is None


def test_variants_registry_and_unknown_variant():
    table = distill.variants("default")
    assert list(table) == list(VARIANT_NAMES)
    assert set(VARIANT_NAMES) == {"baseline", "output-kd", "attention-kd", "mlcak", "hinton-kd", "multitask", "mlcak-mt"}
    assert table["output-kd"].gamma == 0 and table["attention-kd"].alpha == table["attention-kd"].beta == 0
    assert [n for n in VARIANT_NAMES if table[n].uses_local] == ["multitask", "mlcak-mt"]
    assert not table["multitask"].uses_teacher and table["mlcak-mt"].gamma == table["mlcak"].gamma > 0
    assert get_variant("MLCAK").name == "mlcak" and get_variant("output_kd").name == "output-kd"
    with pytest.raises(ValueError, match="Unknown variant 'fitnet'"):
        get_variant("fitnet")
    with pytest.raises(ValueError, match="needs a teacher"):
        DistillObjective(None, "mlcak")
    assert math.isfinite(distill.default_weights("default")["gamma"])


def test_tuned_weights_file_round_trip(tmp_path, monkeypatch):
    path = tmp_path / "tuned.json"
    path.write_text(distill.TUNED_WEIGHTS_FILE.read_text())
    monkeypatch.setattr(distill, "TUNED_WEIGHTS_FILE", path)
    distill.write_tuned_weights("default", gamma=123.0, levels=3)
    assert distill.default_weights("default")["gamma"] == 123.0 and distill.default_weights("default")["levels"] == 3
    assert get_variant("mlcak", "default").gamma == 123.0 and get_variant("output-kd", "default").gamma == 0
    with pytest.raises(ValueError, match="unknown weight"):
        distill.write_tuned_weights("default", delta=1.0)


def test_weight_overrides_only_touch_the_terms_a_variant_uses():
    assert get_variant("output-kd", gamma=300.0).gamma == 0
    assert get_variant("attention-kd", alpha=2.0).alpha == 0 and get_variant("attention-kd", gamma=300.0).gamma == 300
    assert get_variant("mlcak", gamma=0.0).gamma == 0 and get_variant("mlcak", levels=1).levels == 1
    with pytest.raises(ValueError, match="unknown weight"):
        get_variant("mlcak", delta=1.0)
