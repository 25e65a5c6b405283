"""Supervision regimes and the two-stream batch sampler of omni-supervised detection (notebook 07).

A **regime** gives each training image one kind of supervision: :data:`BOXES` (lesion boxes, and so its
image labels), :data:`LABELS` (image-level labels only) or :data:`NONE` (unlabelled). :func:`supervision_regime`
draws exact counts (``round(fraction * n)``) from one seeded order of the images, so with the same seed a
smaller box fraction is a subset of a larger one, and the images with any label are nested the same way.
Given ``strata`` (e.g. normal / abnormal), the order interleaves the strata in proportion, so every prefix,
hence every box subset, keeps the split's mix to within one image per stratum.

:class:`TwoStreamBatchSampler` (the official code's ``TwoStreamBatchSampler``, from the mean-teacher code
it builds on) makes each batch from a primary stream (the box-labelled images, once per epoch) and a
secondary stream (the other images, cycled as long as needed).
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

BOXES, LABELS, NONE = 0, 1, 2
SUPERVISION_NAMES: tuple[str, ...] = ("boxes", "labels", "none")


def _count(fraction: float, n: int) -> int:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"a fraction must lie in [0, 1], got {fraction}")
    return int(math.floor(fraction * n + 0.5))


def supervision_order(n: int, seed: int = 0, strata: Sequence[int] | np.ndarray | torch.Tensor | None = None) -> np.ndarray:
    """The seeded order in which images receive supervision (see module docstring)."""
    rng = np.random.default_rng(seed)
    if strata is None:
        return rng.permutation(n)
    groups = np.asarray(strata.tolist() if isinstance(strata, torch.Tensor) else strata).ravel()
    if len(groups) != n:
        raise ValueError(f"strata has {len(groups)} entries for {n} images")
    key = np.empty(n)
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        members = members[rng.permutation(len(members))]
        key[members] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return np.argsort(key, kind="stable")


def supervision_regime(n: int, box_fraction: float, label_fraction: float | None = None, seed: int = 0,
                       strata: Sequence[int] | np.ndarray | torch.Tensor | None = None) -> np.ndarray:
    """Supervision code per image (``int8`` ``[n]``: :data:`BOXES`, :data:`LABELS`, :data:`NONE`).

    ``round(box_fraction * n)`` images get boxes and ``round(label_fraction * n)`` image labels only
    (default: all the others); the rest are unlabelled. Fractions are of all ``n`` images.
    """
    n_box = _count(box_fraction, n)
    n_label = n - n_box if label_fraction is None else _count(label_fraction, n)
    if n_box + n_label > n:
        raise ValueError(f"box_fraction + label_fraction exceed 1 ({box_fraction} + {label_fraction})")
    order = supervision_order(n, seed, strata)
    codes = np.full(n, NONE, dtype=np.int8)
    codes[order[:n_box]] = BOXES
    codes[order[n_box:n_box + n_label]] = LABELS
    return codes


def regime_counts(codes: np.ndarray) -> dict[str, int]:
    """Images per kind of supervision."""
    return {name: int((np.asarray(codes) == k).sum()) for k, name in enumerate(SUPERVISION_NAMES)}


class TwoStreamBatchSampler(Sampler[list[int]]):
    """Batches of ``primary_batch`` indices from ``primary`` followed by ``secondary_batch`` from ``secondary``.

    An epoch goes once through a seeded permutation of ``primary`` (an incomplete last batch is dropped);
    ``secondary`` is drawn from seeded permutations chained as long as needed. Call :meth:`set_epoch` for a
    new order; the same seed and epoch give the same batches.
    """

    def __init__(self, primary: Sequence[int], secondary: Sequence[int], primary_batch: int, secondary_batch: int,
                 seed: int = 0) -> None:
        if primary_batch < 1 or len(primary) < primary_batch:
            raise ValueError(f"need at least one primary batch: {len(primary)} images, batch {primary_batch}")
        if secondary_batch > 0 and len(secondary) == 0:
            raise ValueError("secondary_batch > 0 but the secondary stream is empty")
        self.primary = [int(i) for i in primary]
        self.secondary = [int(i) for i in secondary]
        self.primary_batch, self.secondary_batch = int(primary_batch), int(secondary_batch)
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.primary) // self.primary_batch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        primary = [self.primary[i] for i in rng.permutation(len(self.primary))]
        pool: list[int] = []
        for b in range(len(self)):
            need = self.secondary_batch
            while len(pool) < need:
                pool += [self.secondary[i] for i in rng.permutation(len(self.secondary))]
            second, pool = pool[:need], pool[need:]
            yield primary[b * self.primary_batch:(b + 1) * self.primary_batch] + second


def two_stream_sampler(codes: np.ndarray, primary_batch: int, secondary_batch: int, seed: int = 0) -> TwoStreamBatchSampler:
    """The sampler of a regime: box-labelled images as the primary stream, all others as the secondary."""
    codes = np.asarray(codes)
    return TwoStreamBatchSampler(np.flatnonzero(codes == BOXES).tolist(), np.flatnonzero(codes != BOXES).tolist(),
                                 primary_batch, secondary_batch, seed)
