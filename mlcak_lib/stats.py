"""Seed-paired comparisons with t-distribution confidence intervals (notebook 05; the runner's reports).

Two variants trained with the same seeds share each seed's initial weights and batch order, so
their difference is measured seed by seed: ``d_s = a_s - b_s``. The 95 % confidence interval of
the mean difference is ``mean(d) ± t_{0.975, n-1} * sd(d) / sqrt(n)`` (Student's t with ``n - 1``
degrees of freedom). A variant "beats" another only when the whole interval lies above zero; with
3 seeds ``t = 4.30``, which is why the course's headline comparison uses 5 or more seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as _st

__all__ = ["PairedCI", "paired_ci"]


@dataclass(frozen=True)
class PairedCI:
    """Mean of the paired differences ``a - b``, its confidence interval, and on how many pairs ``a`` won."""

    mean: float
    low: float
    high: float
    n: int
    wins: int
    std: float
    level: float = 0.95

    @property
    def above_zero(self) -> bool:
        """The whole interval is above zero: ``a`` is better than ``b`` at this confidence level."""
        return bool(self.low > 0)

    def __str__(self) -> str:
        return (f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}] "
                f"({int(self.level * 100)} % CI, wins {self.wins}/{self.n})")


def paired_ci(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> PairedCI:
    """Seed-paired difference ``a - b`` with its two-sided t confidence interval at ``level``.

    ``a`` and ``b`` hold one value per seed, in the same seed order. Raises ``ValueError`` for
    fewer than two pairs, unequal lengths or non-finite values. Zero spread gives a zero-width interval.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two equal-length lists of per-seed values, got shapes {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError("a confidence interval needs at least two seeds")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("per-seed values must be finite")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    d = a - b
    n = len(d)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(_st.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return PairedCI(mean, mean - half, mean + half, n, int((d > 0).sum()), sd, level)
