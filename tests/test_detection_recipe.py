"""Notebook 07's training recipe and runner twin (mlcak_lib.detection.recipe, mlcak_lib.detection_runner, issue 16):
the ablations switch exactly their terms, every setting changes the cache key, the loop keeps the best validated
checkpoint, and a tiny grid runs end to end, then loads every detector from the cache."""

from dataclasses import fields

import pandas as pd
import pytest
import torch
from toy_data import toy_split

from mlcak_lib import detection_runner
from mlcak_lib.cache import config_hash
from mlcak_lib.detection import recipe
from mlcak_lib.detection.data import omni_batch
from mlcak_lib.detection.objective import OXnetObjective, OXnetWeights

TERMS = {f.name for f in fields(OXnetWeights)}
ADDED = {"box-only": {"detection", "regression"}, "dual-attention": {"dual"}, "prototypes": {"intra", "inter"},
         "oxnet": {"soft_focal", "soft_regression"}}


def _on(variant):
    return {k for k, v in recipe.variant_weights(variant).as_dict().items() if v}


def test_each_ablation_switches_on_exactly_its_terms():
    names = list(recipe.DETECTOR_VARIANTS)
    assert names == list(ADDED) and recipe.UPPER_BOUND == ("box-only", 1.0) and recipe.REFERENCE == "box-only"
    for before, after in zip(names, names[1:]):
        assert _on(after) - _on(before) == ADDED[after] and _on(before) <= _on(after)
    assert _on("oxnet") == TERMS and all(v == 1.0 for v in recipe.variant_weights("oxnet").as_dict().values())
    assert [recipe.uses_teacher(recipe.variant_weights(v)) for v in names] == [False, False, False, True]
    assert [recipe.uses_unboxed(recipe.variant_weights(v)) for v in names] == [False, True, True, True]
    with pytest.raises(ValueError, match="unknown detector variant"):
        recipe.variant_weights("mlcak")


@pytest.mark.parametrize("variant", list(ADDED))
def test_a_variants_loss_is_the_sum_of_its_terms(variant):
    split = toy_split(8, resolutions=(112,))
    codes = recipe.regime_of(split, 0.5, seed=0)
    model = recipe.build_detector(3, 112, seed=0, **recipe.TINY_TRAINING.architecture)
    teacher = recipe.make_teacher(model)
    terms = OXnetObjective(3, 24, recipe.variant_weights(variant), teacher_score=0.0)(
        model, teacher, omni_batch(split, list(range(8)), 112, codes))
    assert torch.allclose(terms["loss"], sum(terms[k] for k in _on(variant)))


def _key(monkeypatch, split, **changes):
    seen = {}

    def fake(name, cfg, build, train, cache_dir=None, load_only=False, code=None, **_):
        seen["hash"] = config_hash(name, cfg, code)
        return None, [], {"hash": seen["hash"], "cache_hit": True, "train_seconds": 0.0}

    monkeypatch.setattr(recipe, "load_or_train", fake)
    args = dict(variant="oxnet", box_fraction=0.25, resolution=112, seed=0, splits={"train": split},
                data_desc={"dataset": "toy", "n": 16}, profile="default", config=recipe.TINY_TRAINING,
                label_fraction=None)
    args.update(changes)
    recipe.get_detector(**args)
    return seen["hash"]


def test_the_cache_key_changes_with_every_setting(monkeypatch):
    split = toy_split(16, resolutions=(112,))
    base = _key(monkeypatch, split)
    changed = {"variant": "prototypes", "box_fraction": 0.5, "resolution": 224, "seed": 1,
               "data_desc": {"dataset": "toy", "n": 17}, "profile": "full", "label_fraction": 0.5,
               "config": recipe.TINY_TRAINING.replace(steps=3)}
    keys = {name: _key(monkeypatch, split, **{name: value}) for name, value in changed.items()}
    assert base == _key(monkeypatch, split)  # the same request, the same key
    assert base not in keys.values() and len(set(keys.values())) == len(keys), keys


def test_the_loop_keeps_the_best_validated_checkpoint_and_a_fixed_budget(monkeypatch):
    split = toy_split(12, resolutions=(112,))
    scores, seen = iter([0.5, 0.2]), []

    def score(model, *args, **kwargs):
        seen.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(scores)

    monkeypatch.setattr(recipe, "validation_score", score)
    model = recipe.build_detector(3, 112, seed=0, **recipe.TINY_TRAINING.architecture)
    cfg = recipe.TINY_TRAINING.replace(steps=4, eval_every=2)
    history = recipe.train_detector(model, split, split, 112, recipe.regime_of(split, 0.5, 0),
                                    recipe.variant_weights("oxnet"), cfg, seed=0)
    assert [h["step"] for h in history] == [2, 4] and [h.get("best", False) for h in history] == [True, False]
    assert {"loss", "detection", "dual", "soft_focal", "val_ap50", "seconds"} <= set(history[0])
    final = model.state_dict()
    assert all(torch.equal(final[k], seen[0][k]) for k in final)  # step 2's weights (best), not step 4's
    assert not all(torch.equal(final[k], seen[1][k]) for k in final)


def test_the_learning_rate_warms_up_linearly_then_decays_to_zero_on_a_cosine():
    cfg = recipe.TINY_TRAINING.replace(steps=10, warmup=4, cosine=True)
    factors = [recipe.learning_rate_factor(s, cfg) for s in range(11)]
    assert factors[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert factors[4] == pytest.approx(1.0) and factors[7] == pytest.approx(0.5) and factors[10] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))
    flat = recipe.TINY_TRAINING.replace(steps=10)
    assert {recipe.learning_rate_factor(s, flat) for s in range(10)} == {1.0}


def test_anchor_coverage_counts_lesions_with_a_foreground_anchor():
    split = toy_split(6, resolutions=(224,))
    model = recipe.build_detector(3, 224, seed=0, **recipe.TINY_TRAINING.architecture)
    anchors = model(split.images[224][:1]).anchors[0]
    inside = anchors[((anchors >= 0) & (anchors <= 224)).all(dim=1)][:1]  # boxes are clipped to the image
    split.boxes = [inside.clone(), torch.tensor([[0.0, 0.0, 1.0, 1.0]])] + [torch.zeros(0, 4)] * 4
    split.box_labels = [torch.tensor([0]), torch.tensor([1])] + [torch.zeros(0, dtype=torch.long)] * 4
    share = recipe.anchor_coverage(model, split, 224)
    assert share["all"] == 0.5 and share[split.class_names[0]] == 1.0 and share[split.class_names[1]] == 0.0
    assert share[split.class_names[2]] != share[split.class_names[2]]  # NaN: no lesion of that class


def test_regimes_are_nested_across_box_fractions():
    split = toy_split(40, resolutions=(112,))
    small, large = recipe.regime_of(split, 0.1, 3), recipe.regime_of(split, 0.3, 3)
    assert ((small == 0) <= (large == 0)).all() and (small == 0).sum() == 4 and (large == 0).sum() == 12


TINY = ["--tiny", "--quiet", "--resolutions", "112", "--seeds", "0", "1", "--variants", "box-only", "oxnet",
        "--box-fractions", "0.5", "--tag", "t"]


def test_tiny_grid_writes_the_table_and_a_rerun_loads_every_detector(tmp_path, monkeypatch):
    assert detection_runner.main([*TINY, "--out", str(tmp_path)]) == 0
    df = pd.read_csv(tmp_path / "detection_t.csv")
    runs = set(zip(df["variant"], df["box_fraction"], df["seed"]))
    assert runs == {(v, f, s) for v, f in [("box-only", 0.5), ("oxnet", 0.5), ("box-only", 1.0)] for s in (0, 1)}
    assert (df["resolution"] == 112).all() and (df["n_test"] == 16).all() and not df["cache_hit"].any()
    for col in ["ap50", "ap50_95", "froc@0.5", "froc@4", "auroc_global", "auroc_detection", "ap50|< 10 mm",
                "config_hash", "git_rev", "cpu_model", "wall_seconds", "detector_code", "n_boxes", "n_labels",
                "teacher_active", "anchor_coverage"]:
        assert col in df.columns, col
    assert df["config_hash"].nunique() == 6 and (df.loc[df["box_fraction"] == 1.0, "n_labels"] == 0).all()
    md = (tmp_path / "detection_t.md").read_text()
    assert "seed-paired differences against box-only" in md and "oxnet @ 50 % boxes" in md
    assert "gap recovered" in md and "| box-only | 100 % | 112 | 2 |" in md

    def no_training(*args, **kwargs):
        raise AssertionError("a rerun must load every detector from the cache")

    monkeypatch.setattr(recipe, "train_detector", no_training)
    assert detection_runner.main([*TINY, "--out", str(tmp_path), "--tag", "again"]) == 0
    again = pd.read_csv(tmp_path / "detection_again.csv")
    assert again["cache_hit"].all() and (again["config_hash"] == df["config_hash"]).all()
    assert (again["ap50"].fillna(-1) == df["ap50"].fillna(-1)).all()

    assert detection_runner.main(["--merge", str(tmp_path / "detection_t.csv"), str(tmp_path / "detection_again.csv"),
                                  "--out", str(tmp_path), "--tag", "merged", "--quiet"]) == 0
    merged = pd.read_csv(tmp_path / "detection_merged.csv")
    assert len(merged) == 6 and merged["cache_hit"].all()  # the later file's rows replace the earlier ones


def test_the_runner_refuses_an_unknown_variant(tmp_path):
    with pytest.raises(SystemExit, match="unknown detector variant"):
        detection_runner.main([*TINY, "--variants", "mlcak", "--out", str(tmp_path)])


def test_the_gap_recovered_compares_a_variant_with_box_only_and_the_upper_bound_on_its_own_seeds():
    rows = [{"variant": "box-only", "box_fraction": 0.1, "resolution": 112, "seed": s, "ap50": a, "ap50_95": a}
            for s, a in enumerate([0.0, 0.02, 0.01, 0.5, 0.5])]  # seeds 3 and 4 would lift box-only's mean
    rows += [{"variant": "box-only", "box_fraction": 1.0, "resolution": 112, "seed": s, "ap50": 1.0, "ap50_95": 1.0}
             for s in range(5)]
    rows += [{"variant": "oxnet", "box_fraction": 0.1, "resolution": 112, "seed": s, "ap50": 0.51, "ap50_95": 0.51}
             for s in range(3)]
    gaps = detection_runner.gap_table(pd.DataFrame(rows), metrics=("ap50",))
    row = gaps.iloc[0]
    assert row["seeds"] == 3 and row["reference"] == pytest.approx(0.01) and row["upper_bound"] == 1.0
    assert row["gap_recovered"] == pytest.approx(0.5 / 0.99)


def test_class_ap_scores_each_class_and_a_perfect_detector_scores_one():
    split = toy_split(8, resolutions=(112,))
    model = recipe.build_detector(3, 112, seed=0, **recipe.TINY_TRAINING.architecture)

    def perfect(m, s, resolution, **_):  # every lesion found exactly, with full confidence
        dets = [{"boxes": scale(b), "scores": torch.ones(len(b)), "labels": lab.long().reshape(-1)}
                for b, lab in zip(s.boxes, s.box_labels)]
        return dets, torch.zeros(len(s), 3)

    from mlcak_lib.detection.data import scale_boxes

    def scale(b):
        return scale_boxes(b, 112)

    ap = detection_runner.class_ap(model, split, 112)
    assert list(ap) == list(split.class_names)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(detection_runner, "predict", perfect)
    try:
        best = detection_runner.class_ap(model, split, 112)
    finally:
        monkeypatch.undo()
    with_lesions = [c for c in range(3) if any(bool((lab == c).any()) for lab in split.box_labels)]
    assert with_lesions and all(best[split.class_names[c]] == pytest.approx(1.0) for c in with_lesions)
