"""The registry of training variants (mlcak_lib.variants): families, active weights, tuned weights, pairs."""

import math

import pytest
import torch

from mlcak_lib import variants as V
from mlcak_lib.distill import DistillObjective
from mlcak_lib.variants import (
    DISTILL_VARIANTS,
    HINTON,
    LABELS,
    LOCAL_VARIANTS,
    MSE,
    VARIANT_NAMES,
    get_variant,
    local_pairs,
)


def test_names_and_groups():
    assert VARIANT_NAMES == ("baseline", "output-kd", "attention-kd", "mlcak", "mlcak-paper", "mlcak-constant",
                             "mlcak-oracle", "hinton-kd", "multitask", "mlcak-mt")
    assert LOCAL_VARIANTS == ("multitask", "mlcak-mt")
    assert DISTILL_VARIANTS == ("baseline", "output-kd", "attention-kd", "mlcak", "mlcak-paper", "mlcak-constant",
                                "mlcak-oracle", "hinton-kd")
    assert set(V.HEADLINE) <= set(DISTILL_VARIANTS)
    table = V.variants("default")
    assert list(table) == list(VARIANT_NAMES)
    assert [n for n in VARIANT_NAMES if table[n].uses_local] == list(LOCAL_VARIANTS)


def test_families():
    table = V.variants("default")
    families = {name: v.family for name, v in table.items()}
    assert families == {"baseline": LABELS, "output-kd": MSE, "attention-kd": MSE, "mlcak": MSE, "mlcak-paper": MSE,
                        "mlcak-constant": MSE, "mlcak-oracle": MSE, "hinton-kd": HINTON, "multitask": LABELS,
                        "mlcak-mt": MSE}
    assert V.FAMILIES == {"labels": LABELS, "mse": MSE, "hinton": HINTON}
    assert not LABELS.uses_teacher and MSE.uses_teacher and HINTON.uses_teacher
    attention = ["attention-kd", "mlcak", "mlcak-paper", "mlcak-constant", "mlcak-oracle"]
    assert [n for n, v in table.items() if v.uses_teacher] == ["output-kd", *attention, "hinton-kd", "mlcak-mt"]
    assert [n for n, v in table.items() if v.uses_attention] == [*attention, "mlcak-mt"]
    assert table["mlcak-constant"].attn_target == "constant" and table["mlcak-oracle"].attn_target == "oracle"
    assert table["mlcak-oracle"].attn_rows == "cls" and table["mlcak-paper"].attn_loss == "mse"
    assert (table["mlcak-paper"].attn_rows, table["mlcak-paper"].gamma_mode) == ("full", "absolute")
    assert table["output-kd"].gamma == 0 and table["attention-kd"].alpha == table["attention-kd"].beta == 0
    assert not table["multitask"].uses_teacher and table["mlcak-mt"].gamma == table["mlcak"].gamma > 0
    assert all(v.description for v in table.values())


def test_active_weights_are_the_weights_that_act():
    table = V.variants("default")
    keys = {name: sorted(v.active_weights()) for name, v in table.items()}
    assert keys == {
        "baseline": [],
        "output-kd": ["alpha", "beta", "gamma"],
        "attention-kd": ["alpha", "beta", "gamma", "levels"],
        "mlcak": ["alpha", "beta", "gamma", "levels"],
        "mlcak-paper": ["alpha", "beta", "gamma", "levels"],
        "mlcak-constant": ["alpha", "beta", "gamma", "levels"],
        "mlcak-oracle": ["alpha", "beta", "gamma", "levels"],
        "hinton-kd": ["alpha", "beta", "temperature"],
        "multitask": ["lambda_local"],
        "mlcak-mt": ["alpha", "beta", "gamma", "lambda_local", "levels"],
    }
    assert table["mlcak"].active_weights()["gamma"] == table["mlcak"].gamma
    assert get_variant("mlcak", gamma=0.0).active_weights() == {"alpha": table["mlcak"].alpha,
                                                               "beta": table["mlcak"].beta, "gamma": 0.0}


@pytest.mark.parametrize("weight, value", [("alpha", 7.0), ("beta", 7.0), ("gamma", 777.0), ("levels", 1),
                                           ("temperature", 9.0), ("lambda_local", 0.77)])
def test_retuning_one_weight_changes_only_the_variants_that_use_it(weight, value):
    """What enters the cache keys: a retuned weight must not invalidate students that do not use it."""
    old, new = V.variants("default"), V.variants("default", **{weight: value})
    changed = [n for n in VARIANT_NAMES if old[n].active_weights() != new[n].active_weights()]
    configs = [n for n in VARIANT_NAMES if n not in LOCAL_VARIANTS
               and _config(old[n]) != _config(new[n])]
    expected = {
        "alpha": ["output-kd", "mlcak", "mlcak-paper", "mlcak-constant", "mlcak-oracle", "mlcak-mt"],  # attention-kd
        "beta": ["output-kd", "mlcak", "mlcak-paper", "mlcak-constant", "mlcak-oracle", "mlcak-mt"],  # fixes 0, hinton 1
        "gamma": ["attention-kd", "mlcak", "mlcak-constant", "mlcak-oracle", "mlcak-mt"],  # the paper form: paper_gamma
        "levels": ["attention-kd", "mlcak", "mlcak-paper", "mlcak-constant", "mlcak-oracle", "mlcak-mt"],
        "temperature": ["hinton-kd"],
        "lambda_local": ["multitask", "mlcak-mt"],
    }[weight]
    assert changed == expected
    assert configs == [n for n in expected if n not in LOCAL_VARIANTS]


def _config(v):
    teacher = torch.nn.Linear(1, 1) if v.uses_teacher else None  # config() never runs the teacher
    return DistillObjective(teacher, v, teacher_resolution=224, teacher_id="t").config()


def test_objective_config_names_family_and_only_active_weights():
    for name, v in V.variants("default").items():
        cfg = _config(v)
        assert cfg["variant"] == name and cfg["family"] == v.family.name
        weights = {k for k in V.WEIGHT_NAMES if k in cfg}
        assert weights == set(v.active_weights()) - {"lambda_local"}, name  # the local term is LocalObjective's
        assert ("teacher" in cfg) == v.uses_teacher


def test_local_pairs():
    assert local_pairs() == [("multitask", "baseline"), ("mlcak-mt", "mlcak")]
    assert local_pairs("full") == [("multitask", "baseline"), ("mlcak-mt", "mlcak")]


def test_get_variant_names_and_errors():
    assert get_variant("MLCAK").name == "mlcak" and get_variant("output_kd").name == "output-kd"
    with pytest.raises(ValueError, match="Unknown variant 'fitnet'"):
        get_variant("fitnet")
    v = get_variant("mlcak")
    assert get_variant(v) is v and get_variant(v, gamma=1.0).gamma == 1.0
    with pytest.raises(ValueError, match="no field"):
        v.with_weights(delta=1.0)
    assert v.as_dict()["family"] == "mse" and set(V.WEIGHT_NAMES) <= set(v.as_dict())
    assert math.isfinite(V.default_weights("default")["gamma"])
    assert isinstance(V.default_weights("default")["levels"], int)


def test_tuned_weights_file_round_trip(tmp_path, monkeypatch):
    path = tmp_path / "tuned.json"
    path.write_text(V.TUNED_WEIGHTS_FILE.read_text())
    monkeypatch.setattr(V, "TUNED_WEIGHTS_FILE", path)
    V.write_tuned_weights("default", gamma=123.0, levels=3)
    assert V.default_weights("default")["gamma"] == 123.0 and V.default_weights("default")["levels"] == 3
    assert get_variant("mlcak", "default").gamma == 123.0 and get_variant("output-kd", "default").gamma == 0
    with pytest.raises(ValueError, match="unknown weight"):
        V.write_tuned_weights("default", delta=1.0)
    with pytest.raises(ValueError, match="no weights for profile"):
        path.write_text('{"full": {}}')
        V.default_weights("default")


def test_the_committed_file_has_every_weight_of_every_profile():
    for profile in ("default", "full"):
        weights = V.default_weights(profile)
        assert set(weights) == {*V.WEIGHT_NAMES, *V.SETTING_NAMES, "paper_gamma"}
        assert all(math.isfinite(weights[w]) and weights[w] >= 0 for w in (*V.WEIGHT_NAMES, "paper_gamma"))
        assert weights["attn_loss"] in V.ATTENTION_LOSSES and weights["attn_rows"] in V.ATTENTION_ROWS
        assert weights["gamma_mode"] in V.GAMMA_MODES


def test_attention_settings_are_checked_and_enter_the_config():
    with pytest.raises(ValueError, match="unknown attn_loss 'l1'"):
        get_variant("mlcak", attn_loss="l1")
    with pytest.raises(ValueError, match="oracle map defines only the class token's row"):
        V.Variant("x", MSE, 1, 1, 1, attn_target="oracle")
    kl = get_variant("mlcak", attn_loss="kl", attn_rows="cls", gamma_mode="relative")
    assert kl.attention_settings() == {"attn_loss": "kl", "attn_rows": "cls", "gamma_mode": "relative",
                                       "attn_target": "teacher"}
    assert _config(kl)["attn_loss"] == "kl" and _config(kl) != _config(get_variant("mlcak", attn_loss="cosine"))
    assert get_variant("output-kd", attn_loss="kl").attention_settings() == {}  # no attention term, no settings
    assert get_variant("mlcak-paper", attn_loss="kl").attn_loss == "mse"  # the paper's form stays the paper's


def test_weight_overrides_only_touch_the_terms_a_variant_uses():
    assert get_variant("output-kd", gamma=300.0).gamma == 0
    assert get_variant("attention-kd", alpha=2.0).alpha == 0 and get_variant("attention-kd", gamma=300.0).gamma == 300
    assert get_variant("mlcak", gamma=0.0).gamma == 0 and get_variant("mlcak", levels=1).levels == 1
    assert get_variant("mlcak", gamma=None).gamma == V.default_weights()["gamma"]  # None: keep the tuned value
    with pytest.raises(ValueError, match="unknown weight"):
        get_variant("mlcak", delta=1.0)


def test_none_overrides_keep_the_weights_of_a_variant_instance():
    v = get_variant("mlcak")
    assert get_variant(v, gamma=None).gamma == v.gamma
