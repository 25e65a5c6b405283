"""Language-guided retrieval for notebook 08 (issue 17): each CT finds its semantically closest X-ray by report.

Cao et al. (CVPR 2024) pair every CT with the X-ray whose report is closest to the CT's report (the two
are never the same patient), and distil the X-ray expert's embedding of that film into the CT encoder.
Here the report embedding is TF-IDF (scikit-learn; no downloaded language model), compared by cosine.

Documented choices (the paper does not specify them):

* The vectoriser is fitted on the **X-ray pool's** reports (the database searched); CT reports are
  only transformed. Word unigrams and bigrams, sublinear term frequency, L2-normalised rows, so a dot
  product is the cosine.
* **Ties.** Many normal reports are identical, so many X-rays tie for the best match. Similarities are
  rounded to :data:`TIE_DECIMALS` decimals and ties are broken by a seeded random order per query
  (deterministic for a seed), which spreads normal CTs over the equally close normal films instead of
  pinning them all to the first one; ``seed=None`` takes the lowest index instead.
* :func:`recall_at_k` counts ties against the model (pessimistic), so a constant score never scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from .reports import Findings

TIE_DECIMALS = 9  # similarities equal to this many decimals are ties


def make_vectorizer() -> TfidfVectorizer:
    """The course's TF-IDF settings for reports (unigrams + bigrams, sublinear tf, L2 rows)."""
    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")


@dataclass
class ReportIndex:
    """TF-IDF index of a pool of reports (the X-ray pool) that retrieves the closest entries for queries."""

    reports: Sequence[str]
    vectorizer: TfidfVectorizer = field(default_factory=make_vectorizer)

    def __post_init__(self) -> None:
        self.matrix: sparse.csr_matrix = self.vectorizer.fit_transform(list(self.reports))

    def embed(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """TF-IDF rows (L2-normalised) of ``texts`` in the pool's vocabulary."""
        return self.vectorizer.transform(list(texts))

    def similarity(self, queries: Sequence[str]) -> np.ndarray:
        """Cosine similarity ``[len(queries), len(pool)]``."""
        return np.asarray((self.embed(queries) @ self.matrix.T).todense(), dtype=np.float64)

    def retrieve(self, queries: Sequence[str], k: int = 1, seed: int | None = 0) -> np.ndarray:
        """Indices ``[len(queries), k]`` of the pool's closest reports, best first (ties: module docstring)."""
        return top_k(self.similarity(queries), k, seed)


def top_k(sim: np.ndarray, k: int = 1, seed: int | None = 0) -> np.ndarray:
    """Per row of ``sim``, the ``k`` column indices of highest similarity, best first.

    Similarities equal to :data:`TIE_DECIMALS` decimals are ties: broken by a random order drawn once
    per row from ``seed`` (deterministic), or by the lowest index when ``seed`` is ``None``.
    """
    sim = np.round(np.asarray(sim, dtype=np.float64), TIE_DECIMALS)
    n, m = sim.shape
    if not 1 <= k <= m:
        raise ValueError(f"k={k} outside 1..{m}")
    if seed is None:
        tiebreak = np.broadcast_to(np.arange(m), (n, m))
    else:
        tiebreak = np.argsort(np.random.default_rng(seed).random((n, m)), axis=1)
    order = np.lexsort((tiebreak, -sim), axis=1)
    return order[:, :k]


def report_similarity(texts: Sequence[str], vectorizer: TfidfVectorizer | None = None) -> np.ndarray:
    """Cosine similarity ``[n, n]`` of the TF-IDF embeddings of ``texts`` (a vectoriser fitted on them when
    none is given): the report similarity that :func:`mlcak_lib.ctxr.losses.false_negative_mask` thresholds."""
    if vectorizer is None:
        x = make_vectorizer().fit_transform(list(texts))
    else:
        x = vectorizer.transform(list(texts))
    return np.asarray((x @ x.T).todense(), dtype=np.float64)


def recall_at_k(sim: np.ndarray, relevant: np.ndarray | None = None, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall at K of a retrieval: queries are rows of ``sim`` ``[n_queries, n_items]``.

    ``relevant`` (bool, same shape) marks the correct items; default: the diagonal (CT ``i``'s own
    report ``i``). Query ``i`` is a hit at ``k`` when fewer than ``k`` irrelevant items score **at least**
    as high as its best relevant item (ties count against it). Pass ``relevant`` = "same findings" for the
    false-negative-aware recall (another study's identical normal report is then also correct).
    Returns ``{"R@1": ..., "R@5": ..., ...}`` (fractions).
    """
    sim = np.round(np.asarray(sim, dtype=np.float64), TIE_DECIMALS)
    if relevant is None:
        if sim.shape[0] != sim.shape[1]:
            raise ValueError("a non-square similarity needs an explicit `relevant` mask")
        relevant = np.eye(sim.shape[0], dtype=bool)
    relevant = np.asarray(relevant, dtype=bool)
    if relevant.shape != sim.shape or not relevant.any(axis=1).all():
        raise ValueError("`relevant` must have sim's shape and at least one relevant item per query")
    best = np.where(relevant, sim, -np.inf).max(axis=1, keepdims=True)
    ahead = ((sim >= best) & ~relevant).sum(axis=1)
    return {f"R@{k}": float(np.mean(ahead < k)) for k in ks}


def same_findings(findings: Sequence[Findings]) -> np.ndarray:
    """Bool ``[n, n]``: studies whose reports carry the same findings (negatives ignored). The ground truth
    the simulator gives for false negatives, and the ``relevant`` mask of a false-negative-aware
    :func:`recall_at_k`."""
    keys = [f.findings for f in findings]
    return np.array([[a == b for b in keys] for a in keys], dtype=bool)


def pair_detection_quality(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Precision and recall of a false-negative detector (bool ``[n, n]``, e.g. ``losses.false_negative_mask``)
    against ``truth`` (e.g. :func:`same_findings`), over off-diagonal pairs; NaN where undefined."""
    predicted, truth = np.asarray(predicted, dtype=bool), np.asarray(truth, dtype=bool)
    off = ~np.eye(len(truth), dtype=bool)
    tp = int((predicted & truth & off).sum())
    n_pred, n_true = int((predicted & off).sum()), int((truth & off).sum())
    return {"precision": tp / n_pred if n_pred else float("nan"), "recall": tp / n_true if n_true else float("nan"),
            "pairs_flagged": n_pred, "pairs_true": n_true}
