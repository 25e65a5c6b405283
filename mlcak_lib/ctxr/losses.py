"""The training terms of notebook 08 (issue 17; Cao et al., CVPR 2024): image-report alignment and X-ray KD.

* :func:`info_nce`: symmetric InfoNCE between CT embeddings and their reports' embeddings, with the
  paper's *robust contrastive learning*: pairs whose reports say the same thing (above all the many
  normal studies) are **false negatives** and are not pushed apart (:func:`false_negative_mask`).
* :func:`pairwise_kd`: the CT embedding, projected to the expert's space, towards the embedding the
  X-ray expert gives the retrieved film (:mod:`.retrieval`).
* :func:`relation_kd`: the in-batch similarity distribution of the CT embeddings towards that of the
  retrieved films' expert embeddings (semantic relation KD; no projection needed).

Documented choices (the paper gives no formulas we can check against code):

* **False-negative correction** defaults to ``mode="mask"``: a false-negative pair is removed from the
  softmax's denominator (its logit set to -inf) in both directions, so it is neither pushed apart nor
  pulled together, and an anchor's loss is exactly unchanged when a study with the same report joins
  the batch (tested). ``mode="soft"`` instead spreads the target over the positive and its false
  negatives equally (they are pulled together). False negatives are off-diagonal pairs whose report
  similarity is at least ``threshold`` (:data:`FN_THRESHOLD`, TF-IDF cosine of :mod:`.retrieval`). On
  600 random studies (``reports.random_findings``) every pair of normal reports sits above 0.6 (min
  0.69) and no normal/abnormal pair does (max 0.45); pairs flagged at 0.6 share their findings 98 %
  of the time, but only a third of the abnormal same-findings pairs are caught (their phrasings
  differ): a lesson of the notebook, and ``tests/test_ctxr_losses.py`` keeps the normal facts.
* Pair-wise KD is ``1 - cosine`` by default (scale-free: the expert's feature norm carries no meaning
  here); ``kind="mse"`` compares the raw vectors. The expert side is always detached (frozen expert).
* Relation KD is KL(expert || student) between row-wise softmaxes of cosine similarities at
  temperature ``tau``, the diagonal left out (self-similarity is 1 for both and carries nothing),
  scaled by ``tau**2`` (Hinton's convention: gradients comparable across temperatures).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

FN_THRESHOLD = 0.6
"""Default report-similarity (TF-IDF cosine) from which two different studies are false negatives."""


def false_negative_mask(report_sim: Tensor | np.ndarray, threshold: float = FN_THRESHOLD) -> Tensor:
    """Bool ``[B, B]``: off-diagonal pairs whose report similarity is at least ``threshold``.

    Pass an identical-report or same-findings matrix (1 where equal, 0 elsewhere) for an exact rule.
    """
    sim = torch.as_tensor(np.asarray(report_sim) if not isinstance(report_sim, Tensor) else report_sim)
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"report similarity must be square, got {tuple(sim.shape)}")
    eye = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    return (sim >= threshold) & ~eye


def _cosine_logits(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature


def _one_direction(logits: Tensor, fn: Tensor | None, mode: str) -> Tensor:
    """Per-row cross-entropy of ``logits`` against the diagonal, corrected for false negatives ``fn``."""
    targets = torch.arange(logits.shape[0], device=logits.device)
    if fn is None or not fn.any():
        return F.cross_entropy(logits, targets, reduction="none")
    if mode == "mask":
        return F.cross_entropy(logits.masked_fill(fn, float("-inf")), targets, reduction="none")
    if mode == "soft":
        positive = fn | torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
        soft = positive.float() / positive.sum(dim=1, keepdim=True)
        return -(soft * F.log_softmax(logits, dim=1)).sum(dim=1)
    raise ValueError(f"mode must be 'mask' or 'soft', got {mode!r}")


def info_nce(image: Tensor, text: Tensor, temperature: float = 0.07, false_negatives: Tensor | None = None,
             mode: str = "mask", reduction: str = "mean") -> Tensor:
    """Symmetric InfoNCE between paired rows of ``image`` ``[B, D]`` and ``text`` ``[B, D]`` (cosine logits).

    ``false_negatives`` (bool ``[B, B]``, :func:`false_negative_mask`) marks pairs ``(i, j)`` that are not
    negatives of each other: masked out (``mode="mask"``) or soft positives (``mode="soft"``).
    ``reduction="none"`` gives each study's loss (mean of its image->text and text->image terms).
    """
    if image.shape != text.shape or image.ndim != 2:
        raise ValueError(f"image {tuple(image.shape)} and text {tuple(text.shape)} must be equal [B, D]")
    logits = _cosine_logits(image, text, temperature)
    fn_t = None if false_negatives is None else false_negatives.T
    per_study = 0.5 * (_one_direction(logits, false_negatives, mode) + _one_direction(logits.T, fn_t, mode))
    if reduction == "none":
        return per_study
    if reduction == "mean":
        return per_study.mean()
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def pairwise_kd(student: Tensor, expert: Tensor, kind: str = "cosine") -> Tensor:
    """Pair-wise KD: each CT's projected embedding ``student`` ``[B, D]`` towards its retrieved X-ray's expert
    embedding ``expert`` ``[B, D]`` (detached). ``1 - cosine`` (default) or ``mse``; 0 when they agree."""
    if student.shape != expert.shape:
        raise ValueError(f"student {tuple(student.shape)} and expert {tuple(expert.shape)} differ")
    expert = expert.detach()
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(student, expert, dim=-1)).mean()
    if kind == "mse":
        return F.mse_loss(student, expert)
    raise ValueError(f"kind must be 'cosine' or 'mse', got {kind!r}")


def _off_diagonal(x: Tensor) -> Tensor:
    n = x.shape[0]
    return x[~torch.eye(n, dtype=torch.bool, device=x.device)].view(n, n - 1)


def relation_kd(student: Tensor, expert: Tensor, tau: float = 0.1) -> Tensor:
    """Semantic relation KD: KL(expert || student) between the in-batch cosine-similarity distributions
    (row softmax at ``tau``, diagonal left out), times ``tau**2``. Dimensions may differ; expert detached."""
    if student.shape[0] != expert.shape[0] or student.shape[0] < 2:
        raise ValueError("student and expert need the same batch size, at least 2")
    s = _off_diagonal(_cosine_logits(student, student, tau))
    e = _off_diagonal(_cosine_logits(expert.detach(), expert.detach(), tau))
    kl = F.kl_div(F.log_softmax(s, dim=1), F.log_softmax(e, dim=1), log_target=True, reduction="batchmean")
    return kl * tau ** 2


@dataclass(frozen=True)
class LossWeights:
    """Weights of the three terms and their temperatures (a documented starting point, to tune in notebook 08)."""

    contrastive: float = 1.0
    pairwise: float = 1.0
    relation: float = 1.0
    temperature: float = 0.07
    relation_tau: float = 0.1
    fn_mode: str = "mask"

    def as_dict(self) -> dict:
        return asdict(self)


def objective(ct: Tensor, ct_to_expert: Tensor, text: Tensor, expert: Tensor, false_negatives: Tensor | None,
              weights: LossWeights = LossWeights()) -> dict[str, Tensor]:
    """All terms for one batch: ``ct`` (CT embeddings, aligned with ``text``), ``ct_to_expert`` (the CT
    embeddings projected to the expert's space), ``expert`` (the retrieved films' expert embeddings).
    Returns each term and their weighted sum under ``"total"``."""
    terms = {"contrastive": info_nce(ct, text, weights.temperature, false_negatives, weights.fn_mode),
             "pairwise": pairwise_kd(ct_to_expert, expert),
             "relation": relation_kd(ct, expert, weights.relation_tau)}
    terms["total"] = sum(getattr(weights, k) * v for k, v in terms.items())
    return terms
