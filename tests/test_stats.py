"""Seed-paired confidence intervals (mlcak_lib.stats) against textbook answers."""

import math

import pytest

from mlcak_lib.stats import paired_ci

# Student's (1908) sleep data, as in R's `sleep`: extra hours of sleep of 10 patients under two drugs.
DRUG1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
DRUG2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_paired_ci_matches_r_t_test_on_the_sleep_data():
    # R: t.test(extra ~ group, data = sleep, paired = TRUE) -> mean difference -1.58,
    # 95 % CI -2.4598858 -0.7001142 (group 1 minus group 2)
    ci = paired_ci(DRUG2, DRUG1)
    assert ci.mean == pytest.approx(1.58)
    assert ci.low == pytest.approx(0.7001142, abs=1e-6) and ci.high == pytest.approx(2.4598858, abs=1e-6)
    assert ci.n == 10 and ci.wins == 9 and ci.above_zero  # one patient tied (-0.1 vs -0.1)
    flipped = paired_ci(DRUG1, DRUG2)
    assert flipped.high == pytest.approx(-ci.low) and not flipped.above_zero and flipped.wins == 0


def test_paired_ci_small_example_by_hand():
    ci = paired_ci([2, 3, 4, 5, 6], [1, 1, 1, 1, 1])  # d = 1..5: mean 3, sd sqrt(2.5), t_{0.975,4} = 2.776445
    half = 2.7764451 * math.sqrt(2.5) / math.sqrt(5)
    assert (ci.low, ci.high) == (pytest.approx(3 - half, abs=1e-6), pytest.approx(3 + half, abs=1e-6))
    assert "wins 5/5" in str(ci)
    wider = paired_ci([2, 3, 4, 5, 6], [1, 1, 1, 1, 1], level=0.99)
    assert wider.low < ci.low and wider.high > ci.high


def test_paired_ci_refuses_what_it_cannot_answer():
    with pytest.raises(ValueError, match="at least two seeds"):
        paired_ci([1.0], [0.5])
    with pytest.raises(ValueError, match="equal-length"):
        paired_ci([1.0, 2.0], [0.5])
    with pytest.raises(ValueError, match="finite"):
        paired_ci([1.0, float("nan")], [0.5, 0.5])
