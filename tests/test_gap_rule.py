"""The gap-recovered rule (issue 15): the ratio is reported only when the teacher-baseline gap is more than
2 seed standard deviations of the baseline; otherwise it is NaN / "–" and the report says why."""

import numpy as np
import pandas as pd
import pytest

from mlcak_lib import results


def _grid(teacher: float, baseline: tuple[float, ...], student: tuple[float, ...], resolution: int = 28,
          student_arch: str = "standard") -> pd.DataFrame:
    rows = [{"run": "teacher", "variant": "teacher", "student": None, "resolution": 224, "seed": 0,
             "mcct_auroc": teacher, "mlct_macro_auroc": 0.9}]
    for seed, (b, s) in enumerate(zip(baseline, student)):
        rows.append({"run": "student", "variant": "baseline", "student": student_arch, "resolution": resolution,
                     "seed": seed, "mcct_auroc": b, "mlct_macro_auroc": 0.6 + 0.01 * seed})
        rows.append({"run": "student", "variant": "mlcak", "student": student_arch, "resolution": resolution,
                     "seed": seed, "mcct_auroc": s, "mlct_macro_auroc": 0.7 + 0.01 * seed})
    return pd.DataFrame(rows)


def test_gap_clearly_above_the_seed_spread_is_shown():
    # baseline 0.60 ± 0.01 (3 seeds), teacher 0.80: gap 0.20 >> 2 x 0.01
    table = results.summarize_grid(_grid(0.80, (0.59, 0.60, 0.61), (0.69, 0.70, 0.71)))
    mlcak = table[table["variant"] == "mlcak"].iloc[0]
    assert mlcak["gap_mcct_auroc"] == pytest.approx((0.70 - 0.60) / (0.80 - 0.60))
    assert mlcak["gap_mcct_auroc_note"] == ""
    md = results.markdown_table(table)
    assert "| 50 % |" in md and "not shown" not in md


def test_gap_within_the_seed_spread_is_not_shown_and_the_report_says_why():
    # issue 15: teacher-baseline gap 0.01 against a seed spread of 0.03 made the ratio swing from -191 % to +79 %
    baseline = (0.56, 0.59, 0.62)  # mean 0.59, std 0.03
    table = results.summarize_grid(_grid(0.60, baseline, (0.57, 0.60, 0.63)))
    for variant in ("baseline", "mlcak"):
        row = table[table["variant"] == variant].iloc[0]
        assert np.isnan(row["gap_mcct_auroc"])
        assert row["gap_mcct_auroc_note"] == ("teacher−baseline gap 0.010 is within 2 × the baseline's seed spread "
                                              "(std 0.030 over 3 seeds)")
    # the other metric of the same grid has a clear gap (teacher 0.9, baseline 0.61 ± 0.01): still shown
    assert table[table["variant"] == "mlcak"]["gap_mlct_macro_auroc"].iloc[0] == pytest.approx((0.71 - 0.61) / 0.29)
    md = results.markdown_table(table)
    assert "| mlcak | 28 | 3 | 0.600 ± 0.030 | – |" in md
    assert ("- gap MCCT not shown at 28 px: teacher−baseline gap 0.010 is within 2 × the baseline's seed spread "
            "(std 0.030 over 3 seeds).") in md
    assert "gap MLCT not shown" not in md and md.count("gap MCCT not shown") == 1  # one line per baseline, not per row


def test_boundary_and_one_seed():
    assert results.gap_reason(0.5, 0.75, 0.125, 5) != ""  # gap exactly 2 SDs (exact in binary): not "more than"
    assert results.gap_reason(0.5, 0.75, 0.124, 5) == ""
    assert "one seed" in results.gap_reason(0.60, 0.90, np.nan, 1)
    assert "not above the baseline" in results.gap_reason(0.70, 0.65, 0.01, 5)
    assert "no baseline" in results.gap_reason(np.nan, 0.80, np.nan, 0)
    table = results.summarize_grid(_grid(0.90, (0.60,), (0.70,)))
    assert np.isnan(table[table["variant"] == "mlcak"]["gap_mcct_auroc"].iloc[0])
    assert "one seed" in results.markdown_table(table)


def test_gap_recovered_applies_the_rule_when_given_the_spread():
    assert results.gap_recovered(0.8, 0.7, 0.9) == pytest.approx(0.5)  # plain ratio (per-seed exploration)
    assert results.gap_recovered(0.8, 0.7, 0.9, baseline_std=0.02, n_seeds=5) == pytest.approx(0.5)
    assert np.isnan(results.gap_recovered(0.8, 0.7, 0.9, baseline_std=0.12, n_seeds=5))
    assert np.isnan(results.gap_recovered(0.8, 0.7, 0.9, baseline_std=0.02, n_seeds=1))


def test_non_standard_student_is_named_in_the_footnote():
    table = results.summarize_grid(_grid(0.60, (0.56, 0.59, 0.62), (0.57, 0.60, 0.63), student_arch="small"))
    assert "- gap MCCT not shown at 28 px, small student: teacher−baseline gap 0.010" in results.markdown_table(table)


def test_size_columns_na_are_explained():
    md = results.markdown_table(results.summarize_grid(_grid(0.80, (0.59, 0.60, 0.61), (0.69, 0.70, 0.71))))
    assert "Size columns n/a" in md and "MLCAK_PIXEL_SPACING_MM" in md and "docs/own_data.md" in md
    grid = _grid(0.80, (0.59, 0.60, 0.61), (0.69, 0.70, 0.71))
    grid["auroc_size[< 10 mm]"] = 0.6
    assert "Size columns n/a" not in results.markdown_table(results.summarize_grid(grid))


def test_gap_text_for_notebooks():
    clear = results.summarize_grid(_grid(0.80, (0.59, 0.60, 0.61), (0.69, 0.70, 0.71))).set_index("variant")
    assert results.gap_text(clear.loc["mlcak"], "mcct_auroc") == "50 %"
    noisy = results.summarize_grid(_grid(0.60, (0.56, 0.59, 0.62), (0.57, 0.60, 0.63))).set_index("variant")
    assert results.gap_text(noisy.loc["mlcak"], "mcct_auroc") == (
        "not shown (teacher−baseline gap 0.010 is within 2 × the baseline's seed spread (std 0.030 over 3 seeds))")
    assert results.gap_text(noisy.loc["teacher"], "mcct_auroc") == "not shown"
