"""Evaluation rows, grid summary and tables (mlcak_lib.results) on hand-made runner rows."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mlcak_lib import results
from mlcak_lib.models import attach_local_head, build_student
from toy_data import toy_split


def test_loc_column_is_the_one_naming_scheme():
    assert results.loc_column("rollout", "pointing") == "loc_rollout_pointing[all]"
    assert results.loc_column("local", "token_auroc", "< 10 mm") == "loc_local_token_auroc[< 10 mm]"
    for bad in [("attention", "pointing", "all"), ("local", "dice", "all"), ("local", "iou", "huge")]:
        with pytest.raises(ValueError, match="no localization column"):
            results.loc_column(*bad)


def _loc(value):
    return {results.loc_column("rollout", m): value for m in results.LOC_METRICS}


def _rows():
    rows = [{"run": "teacher", "variant": "teacher", "resolution": 224, "seed": 0, "mcct_auroc": 0.9,
             "mlct_macro_auroc": 0.8, "teacher_mcct_auroc": 0.9, **_loc(0.5)}]
    for seed, shift in ((0, 0.0), (1, 0.02)):
        for variant, mcct in (("mlcak", 0.8), ("baseline", 0.7)):
            rows.append({"run": "student", "variant": variant, "resolution": 28, "seed": seed,
                         "mcct_auroc": mcct + shift, "mlct_macro_auroc": 0.6 + shift, "teacher_mcct_auroc": 0.9,
                         **_loc(0.4 + shift)})
    return pd.DataFrame(rows)


def test_summarize_grid_means_stds_and_gap():
    table = results.summarize_grid(_rows())
    assert list(table["variant"]) == ["teacher", "baseline", "mlcak"]  # teacher first, then registry order
    assert not any(c.startswith("teacher_") for c in table.columns)
    mlcak = table[table["variant"] == "mlcak"].iloc[0]
    assert mlcak["n_seeds"] == 2 and mlcak["mcct_auroc_mean"] == pytest.approx(0.81)
    assert mlcak["mcct_auroc_std"] == pytest.approx(0.02 / np.sqrt(2))
    assert mlcak["gap_mcct_auroc"] == pytest.approx((0.81 - 0.71) / (0.9 - 0.71))
    assert table[table["variant"] == "baseline"]["gap_mcct_auroc"].iloc[0] == pytest.approx(0.0)
    assert np.isnan(table[table["variant"] == "teacher"]["gap_mcct_auroc"].iloc[0])
    assert "loc_rollout_pointing[all]_mean" in table.columns
    loc = results.localization_summary(table)
    assert list(loc["model"]) == ["teacher", "baseline", "mlcak"] and set(loc["map"]) == {"attention rollout"}
    assert loc.set_index("model").loc["mlcak", "pointing"] == f"{0.41:.3f} ± {0.02 / np.sqrt(2):.3f}"
    md = results.markdown_table(table, title="grid")
    assert md.startswith("# grid") and "| mlcak | 28 | 2 |" in md and "## Localization" in md


def test_gap_recovered():
    assert results.gap_recovered(0.8, 0.7, 0.9) == pytest.approx(0.5)
    assert np.isnan(results.gap_recovered(0.8, 0.9, 0.85)) and np.isnan(results.gap_recovered(0.8, 0.7, np.nan))


def test_plot_grid_writes_a_figure(tmp_path):
    fig = results.plot_grid(results.summarize_grid(_rows()), tmp_path / "g.png", title="t")
    assert (tmp_path / "g.png").stat().st_size > 1000 and len(fig.axes) == 2


def test_flat_metrics_columns():
    split = toy_split(24, resolutions=(28,), seed=3)
    model = attach_local_head(build_student(28, 3, seed=0, embed_dim=24, depth=1, num_heads=2))
    row = results.flat_metrics(model, split, 28)
    assert {"mcct_auroc", "mlct_macro_auroc", "score", "auroc[bright]", "auroc_size[< 10 mm]"} <= set(row)
    expected = {results.loc_column(m, k, s) for m in results.LOC_MAPS for k in results.LOC_METRICS
                for s in results.LOC_STRATA}
    assert {c for c in row if c.startswith("loc_")} == expected
    no_boxes = replace(split, boxes=[], box_labels=[], box_mm=[])  # image-level labels only (MedMNIST+)
    assert results.flat_localization(model, no_boxes, 28) == {}
    assert not any(c.startswith("loc_") for c in results.flat_metrics(model, no_boxes, 28))


def test_tuning_summary_pairs_each_candidate_with_the_reference_by_seed():
    rows = [{"label": lab, "stage": "form", "seed": seed, "val_score": base + 0.01 * seed, "best_epoch": 5}
            for lab, base in (("output-kd", 0.60), ("kl-cls", 0.62)) for seed in (0, 1, 2)]
    rows[4]["val_score"] += 0.03  # kl-cls, seed 1: differences 0.02, 0.05, 0.02
    summary = results.tuning_summary(pd.DataFrame(rows)).set_index("label")
    assert list(summary.index) == ["output-kd", "kl-cls"] and summary.loc["kl-cls", "seeds"] == 3
    assert summary.loc["kl-cls", "vs output-kd"] == pytest.approx(0.03)
    assert summary.loc["kl-cls", "ci_low"] < 0.03 < summary.loc["kl-cls", "ci_high"]
    assert summary.loc["kl-cls", "wins"] == "3/3" and np.isnan(summary.loc["output-kd", "vs output-kd"])


def test_paired_table_pairs_within_extra_groups():
    """Data regime: the same variant at two training-set sizes is paired with the baseline of its own size."""
    rows = []
    for n, shift in ((250, 0.10), (3000, -0.015)):
        for seed, base in enumerate((0.50, 0.55, 0.60)):
            rows.append({"variant": "baseline", "n_train": n, "resolution": 28, "seed": seed, "mcct_auroc": base})
            rows.append({"variant": "mlcak", "n_train": n, "resolution": 28, "seed": seed,
                         "mcct_auroc": base + shift + 0.01 * seed})
    table = results.paired_table(pd.DataFrame(rows), metrics=["mcct_auroc"], by=["n_train"])
    assert list(table["n_train"]) == [250, 3000] and set(table["n"]) == {3}
    assert table["diff"].tolist() == pytest.approx([0.11, -0.005])
    assert table["wins"].tolist() == [3, 1]
    assert list(table.columns[:6]) == ["model", "variant", "student", "resolution", "n_train", "reference"]


def test_intervals_are_written_one_way_in_tables_and_markdown():
    assert results.ci_text(-0.0304, 0.1) == "[-0.030, +0.100]"
    table = pd.DataFrame({"model": ["a"], "resolution": [28], "reference": ["b"], "metric": ["mcct_auroc"], "n": [3],
                          "diff": [0.05], "ci_low": [0.012], "ci_high": [0.0884], "wins": [3]})
    shown = results.with_ci(table)
    assert shown["95 % CI"].tolist() == ["[+0.012, +0.088]"] and "95 % CI" not in table
    assert "+0.050 [+0.012, +0.088] (3/3) **above 0**" in results.paired_markdown(table)
