"""Distillation losses and objective (mlcak_lib.distill): zero at identity, gradients, ablations, teacher cache.

The variant registry itself: tests/test_variants.py."""

import pytest
import torch

from mlcak_lib import distill, teacher_cache
from mlcak_lib.distill import (
    OUTPUT_KD,
    DistillObjective,
    attention_kd_loss,
    hinton_kd_loss,
    kd_loss,
    level_pairs,
    output_kd_loss,
    shared_teacher_cache,
)
from mlcak_lib.models import build_vit
from mlcak_lib.splits import InMemorySplit
from mlcak_lib.train import SupervisedObjective, TrainConfig, fit
from mlcak_lib.variants import FAMILIES, MSE, VARIANT_NAMES, get_variant

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
    # absolute gamma: the relative scale divides by the attention term, which is ~0 when the student is the teacher
    obj = DistillObjective(teacher, name, teacher_resolution=32, gamma_mode="absolute")
    obj.setup(teacher, split)  # student == teacher, same 32-px inputs
    terms = obj.terms(batch, obj.forward(teacher, batch))
    assert _f(terms["kd"]) == pytest.approx(0.0, abs=1e-7)
    for key in ("mlct_kd", "mcct_kd", "attn_kd"):
        assert _f(terms[key]) == pytest.approx(0.0, abs=1e-7)

    student = _model(8, seed=2)
    obj = DistillObjective(teacher, name, teacher_resolution=32, gamma_mode="absolute")
    obj.setup(student, split)
    batch = split.batch(torch.arange(8), 8)
    terms = obj.terms(batch, obj.forward(student, batch))
    v = get_variant(name)
    assert _f(terms["kd"]) > 0
    if v.family == MSE:
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
        obj = DistillObjective(teacher, "mlcak", teacher_resolution=32, precompute=precompute, gamma_mode="absolute")
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
    split = _split()
    student = _model(8, seed=2)
    obj, sup = DistillObjective(None, "baseline"), SupervisedObjective()
    obj.setup(student, split)
    sup.setup(student, split)
    batch = split.batch(torch.arange(8), 8)
    out = student(batch["x"])
    assert torch.equal(obj(batch, out, student)[0], sup(batch, out, student)[0])
    assert obj.config()["variant"] == "baseline" and "gamma" not in obj.config() and obj.config().get("teacher") is None
    assert obj.config()["family"] == "labels" and obj.teacher is None
    terms = kd_loss(obj.variant, out, None)
    assert set(terms) == {"mlct_kd", "mcct_kd", "attn_kd", "kd"} and all(float(t) == 0 for t in terms.values())


def test_objective_refuses_a_missing_teacher():
    with pytest.raises(ValueError, match="needs a teacher"):
        DistillObjective(None, "mlcak")
    with pytest.raises(ValueError, match="needs teacher outputs"):
        z = {"mlct": torch.zeros(2, C), "mcct": torch.zeros(2, 2)}
        kd_loss(get_variant("output-kd"), z, None)


def test_every_teacher_family_has_an_output_loss():
    assert {f.output_kd for f in FAMILIES.values() if f.uses_teacher} <= set(OUTPUT_KD)
    for name in VARIANT_NAMES:
        v = get_variant(name)
        assert (v.family.output_kd in OUTPUT_KD) == v.uses_teacher


def test_distill_config_names_the_family_and_teacher(teacher):
    cfg = DistillObjective(teacher, "hinton-kd", teacher_resolution=32, teacher_id="abc").config()
    assert cfg["family"] == "hinton" and cfg["teacher"] == "abc" and cfg["teacher_resolution"] == 32
    assert cfg["temperature"] == get_variant("hinton-kd").temperature and "gamma" not in cfg and "levels" not in cfg
    mlcak = DistillObjective(teacher, "mlcak", teacher_resolution=32, gamma=5.0).config()
    assert mlcak["family"] == "mse" and mlcak["gamma"] == 5.0 and "levels" in mlcak and "temperature" not in mlcak


def test_shared_teacher_cache_reuses_one_teacher_pass(teacher):
    split = _split()
    images = split.images[32]
    teacher_cache._TEACHER_MEMO.clear()
    full = shared_teacher_cache(teacher, images, [0, 1])
    assert len(teacher_cache._TEACHER_MEMO) == 1 and full.maps[0].shape[0] == len(split)
    fewer = shared_teacher_cache(teacher, images, [1])  # a cache holding more blocks serves fewer
    assert len(teacher_cache._TEACHER_MEMO) == 1 and fewer.blocks == [1] and torch.equal(fewer.maps[0], full.maps[1])
    assert torch.equal(fewer.mlct, full.mlct)
    live = teacher_cache.TeacherCache.build(teacher, images, [1])
    assert torch.allclose(live.maps[0], full.maps[1], atol=1e-6) and torch.allclose(live.mlct, full.mlct, atol=1e-6)
    shared_teacher_cache(teacher, images.clone(), [1])  # other images: a new entry
    assert len(teacher_cache._TEACHER_MEMO) == 2
    weight = next(teacher.parameters())
    saved = weight.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)  # changed weights: never served the old outputs
    try:
        changed = shared_teacher_cache(teacher, images, [0, 1])
        assert not torch.equal(changed.mlct, full.mlct)
    finally:
        with torch.no_grad():
            weight.copy_(saved)
        teacher_cache._TEACHER_MEMO.clear()


# -- the attention term's forms and controls (issue 14) --------------------------------------------

def _maps(seed, heads=2, t=5):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(3, heads, t, t, generator=g), -1)


@pytest.mark.parametrize("loss", distill.ATTENTION_LOSSES)
@pytest.mark.parametrize("rows", distill.ATTENTION_ROWS)
def test_every_attention_loss_is_zero_at_identity_and_positive_otherwise(loss, rows):
    a, b = _maps(0), _maps(1)
    assert float(attention_kd_loss([a, a], [a, a], loss, rows)) == pytest.approx(0.0, abs=1e-6)
    assert float(attention_kd_loss([a], [b], loss, rows)) > 1e-4
    assert float(attention_kd_loss([a], [b], loss, rows)) < float(attention_kd_loss([a, a], [b, b], loss, rows))


def test_attention_losses_match_their_formulas():
    a, b = _maps(0), _maps(1)
    assert torch.allclose(attention_kd_loss([a], [b], "mse"), ((a.mean(1) - b.mean(1)) ** 2).mean())
    kl = (b * (b / a).log()).sum(-1).mean()  # KL(teacher b || student a) per head and row
    assert torch.allclose(attention_kd_loss([a], [b], "kl"), kl, atol=1e-6)
    s, t = a.mean(1).flatten(1), b.mean(1).flatten(1)
    cos = torch.nn.functional.cosine_similarity(s, t, dim=1)
    assert torch.allclose(attention_kd_loss([a], [b], "cosine"), (2 - 2 * cos).mean(), atol=1e-6)
    cls = distill.attention_rows(a, "cls")  # the class token's row over the patches, renormalised
    assert cls.shape == (3, 2, 1, 4) and torch.allclose(cls.sum(-1), torch.ones(3, 2, 1))
    assert torch.allclose(cls[:, :, 0], a[:, :, 0, 1:] / a[:, :, 0, 1:].sum(-1, keepdim=True))
    with pytest.raises(ValueError, match="as many student heads"):
        attention_kd_loss([a], [_maps(1, heads=3)], "kl")
    with pytest.raises(ValueError, match="unknown attention loss"):
        attention_kd_loss([a], [b], "l1")


@pytest.mark.parametrize("loss", distill.ATTENTION_LOSSES)
def test_gradients_of_every_form_reach_the_students_attention(teacher, loss):
    split = _split()
    student = _model(8, seed=2)
    obj = DistillObjective(teacher, "attention-kd", teacher_resolution=32, attn_loss=loss, attn_rows="cls")
    obj.setup(student, split)
    batch = split.batch(torch.arange(8), 8)
    out = obj.forward(student, batch)
    assert out["attention"][0].requires_grad and out["attention"][0].dim() == 4  # per head, with gradients
    student.zero_grad()
    obj.terms(batch, out)["attn_kd"].backward()
    assert student.blocks[obj.student_blocks[-1]].attn.qkv.weight.grad.abs().sum() > 0


def test_constant_control_gives_every_image_the_mean_teacher_map(teacher):
    split = _split()
    cache = teacher_cache.TeacherCache.build(teacher, split.images[32], [0, 1], rows="full", heads=True)
    const = cache.constant()
    _, maps = const.lookup(torch.tensor([0, 5, 9]))
    for m, full in zip(maps, cache.maps):
        assert m.shape == (3, *full.shape[1:])
        assert torch.allclose(m[0], full.mean(0)) and torch.equal(m[0], m[2])
    assert torch.equal(const.mlct, cache.mlct)  # the logits stay the teacher's
    obj = DistillObjective(teacher, "mlcak-constant", teacher_resolution=32)
    obj.setup(_model(8, seed=2), split)
    _, targets = obj.teacher_targets(split.batch(torch.tensor([1, 2]), 8))
    assert torch.equal(targets[0][0], targets[0][1])


def test_oracle_control_puts_the_class_token_row_on_the_lesions(teacher):
    split = _split(n=4)
    cache = teacher_cache.TeacherCache.build(teacher, split.images[32], [1], rows="cls")
    lesions = torch.zeros(4, 16)
    lesions[0, 5] = 1.0
    lesions[1, [2, 3]] = 0.5  # films 2 and 3: no lesion
    oracle = cache.oracle(lesions)
    rows = distill.attention_rows(oracle.maps[0], "cls")[:, 0, 0]
    assert torch.allclose(rows[0], lesions[0]) and torch.allclose(rows[1], lesions[1])
    mean_row = distill.attention_rows(cache.maps[0].mean(0, keepdim=True), "cls")[0, 0, 0]
    assert torch.allclose(rows[2], mean_row, atol=1e-6) and torch.allclose(rows[3], mean_row, atol=1e-6)
    with pytest.raises(ValueError, match="class token's row"):
        teacher_cache.TeacherCache.build(teacher, split.images[32], [1], rows="full").oracle(lesions)


def test_oracle_objective_reads_the_boxes(teacher):
    split = _split(n=4)
    split.boxes = [torch.tensor([[0.0, 0.0, 8.0, 8.0]]), torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0, 4)]
    split.box_labels = [torch.tensor([0]), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                        torch.zeros(0, dtype=torch.long)]
    obj = DistillObjective(teacher, "mlcak-oracle", teacher_resolution=32)
    obj.setup(_model(8, seed=2), split)
    _, targets = obj.teacher_targets(split.batch(torch.tensor([0]), 8))
    row = distill.attention_rows(targets[-1], "cls")[0, 0, 0].reshape(4, 4)
    assert row[0, 0] == pytest.approx(1.0) and float(row.sum()) == pytest.approx(1.0)  # the box's token only
    with pytest.raises(ValueError, match="needs precompute"):
        DistillObjective(teacher, "mlcak-oracle", teacher_resolution=32, precompute=False)


def test_relative_gamma_makes_the_attention_term_start_at_the_classification_loss(teacher):
    split = _split(n=32)
    student = _model(8, seed=2)
    obj = DistillObjective(teacher, "mlcak", teacher_resolution=32, attn_loss="kl", attn_rows="full",
                           gamma_mode="relative", gamma=1.0, alpha=0.0, beta=0.0)
    obj.setup(student, split)
    assert obj.attn_scale > 0
    batch = split.batch(torch.arange(len(split)), 8)
    student.eval()
    with torch.no_grad():
        terms = obj.terms(batch, obj.forward(student, batch))
    assert float(terms["kd"]) == pytest.approx(float(terms["cls"]), rel=1e-4)  # the same items as the scale
    fixed = DistillObjective(teacher, "mlcak", teacher_resolution=32, attn_loss="kl", gamma=1.0, gamma_mode="absolute")
    fixed.setup(_model(8, seed=2), split)
    assert fixed.attn_scale == 1.0
