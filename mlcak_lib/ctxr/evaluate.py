"""How notebook 08 scores a CT encoder (issue 17) on studies of patients it never saw in training.

* **Zero-shot classification** (:func:`zero_shot_scores`): for each CT class, the *positive prompts* are
  :data:`PROMPTS_PER_CLASS` reports of the report grammar that hold one finding of that class (side, zone and size
  drawn, phrasing seeded) and the standard negatives; the *negative prompts* are the normal report in each of its
  phrasings. A study's score for the class is its cosine with the mean positive prompt minus its cosine with the
  mean negative prompt (the course's choice; the paper gives no prompt). AUROC per class and macro
  (:func:`mlcak_lib.metrics.auroc_per_class`, classes with one label value excluded).
* **CT -> report retrieval** (:func:`retrieval_scores`): R@1/5/10 of each test study's own report among all test
  reports (``R@K``, strict: an identical report of another study ties against it, so normal studies can hardly
  score), and with every report of the same findings counted as relevant (``R@K|same``, the false-negative-aware
  recall; :func:`.retrieval.same_findings`). The headline is ``R@K|same``.
* **Fine-tuning with 10 % of labels** (:func:`linear_probe`): a linear probe (one logistic regression per class,
  standardised features) on the frozen CT embedding of a seeded 10 % of the training studies, scored on the test
  studies (macro AUROC). A class without a positive among the labelled studies scores 0.5 (constant score): the
  probe cannot learn it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import Tensor, nn

from ..metrics import auroc, auroc_per_class, macro_auroc
from .reports import random_finding, render, with_standard_negatives
from .retrieval import recall_at_k, same_findings
from .volumes import CT_CLASSES

PROMPTS_PER_CLASS = 8
NORMAL_PHRASINGS = 4  # the normal report's phrasings (two openers x two negative openers)
LABEL_FRACTION = 0.1
KS: tuple[int, ...] = (1, 5, 10)


def prompts(classes: Sequence[str] = CT_CLASSES, per_class: int = PROMPTS_PER_CLASS,
            seed: int = 0) -> tuple[dict[str, list[str]], list[str]]:
    """``({class: positive prompts}, negative prompts)`` (module docstring); deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    positives = {c: [render(with_standard_negatives([random_finding(c, rng)]), seed=k) for k in range(per_class)]
                 for c in classes}
    normal = with_standard_negatives([])
    negatives = list(dict.fromkeys(render(normal, seed=k) for k in range(64)))[:NORMAL_PHRASINGS]
    return positives, negatives


@torch.no_grad()
def embed_volumes(model: nn.Module, volumes: Tensor, batch_size: int = 64) -> Tensor:
    """L2-normalised CT embeddings ``[n, D]`` of ``model.ct`` (eval mode) for ``volumes`` ``[n, 1, s, s, s]``."""
    model.eval()
    out = [model.ct(volumes[i:i + batch_size].float()) for i in range(0, len(volumes), batch_size)]
    return F.normalize(torch.cat(out), dim=-1)


@torch.no_grad()
def embed_texts(model: nn.Module, texts: Sequence[str]) -> Tensor:
    """L2-normalised report embeddings ``[n, D]`` of ``model.text`` (eval mode)."""
    model.eval()
    return F.normalize(model.text(list(texts)), dim=-1)


def zero_shot_scores(ct: Tensor, positive: dict[str, Tensor], negative: Tensor) -> np.ndarray:
    """Scores ``[n, C]``: cosine of each normalised CT embedding with the class's mean positive prompt minus that
    with the mean negative prompt; ``positive`` maps class -> prompt embeddings ``[k, D]``, ``negative`` ``[m, D]``."""
    ct = F.normalize(ct, dim=-1)
    neg = F.normalize(negative.mean(dim=0), dim=-1)
    cols = [ct @ F.normalize(p.mean(dim=0), dim=-1) - ct @ neg for p in positive.values()]
    return torch.stack(cols, dim=1).cpu().numpy()


def zero_shot(model: nn.Module, volumes: Tensor, labels: Tensor, classes: Sequence[str] = CT_CLASSES,
              ct: Tensor | None = None) -> dict[str, float]:
    """Zero-shot AUROC per class (``zs_auroc[<class>]``) and macro (``zs_macro_auroc``) of ``model`` on a split."""
    pos_text, neg_text = prompts(classes)
    positive = {c: embed_texts(model, t) for c, t in pos_text.items()}
    ct = embed_volumes(model, volumes) if ct is None else ct
    scores = zero_shot_scores(ct, positive, embed_texts(model, neg_text))
    per = auroc_per_class(labels.numpy(), scores, list(classes))
    return {"zs_macro_auroc": macro_auroc(per), **{f"zs_auroc[{c}]": v for c, v in per.items()}}


def retrieval_scores(ct: Tensor, text: Tensor, findings: Sequence, ks: Sequence[int] = KS) -> dict[str, float]:
    """CT -> report recall at K, strict (``R@K``) and with same-findings reports relevant (``R@K|same``)."""
    sim = (F.normalize(ct, dim=-1) @ F.normalize(text, dim=-1).T).cpu().numpy()
    ks = [k for k in ks if k <= sim.shape[1]]
    strict = recall_at_k(sim, ks=ks)
    aware = recall_at_k(sim, relevant=same_findings(findings), ks=ks)
    return {**strict, **{f"{k}|same": v for k, v in aware.items()}}


def label_subset(n: int, fraction: float = LABEL_FRACTION, seed: int = 0) -> np.ndarray:
    """Seeded indices of ``ceil(fraction * n)`` labelled training studies (at least two)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    k = min(n, max(2, int(np.ceil(fraction * n))))
    return np.sort(np.random.default_rng(seed).permutation(n)[:k])


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 classes: Sequence[str] = CT_CLASSES, c: float = 1.0) -> dict[str, float]:
    """Per-class logistic regression on standardised features; test AUROC per class (``ft_auroc[<class>]``) and
    macro (``ft_macro_auroc``). A class with one label value in ``train_y`` gets a constant score (AUROC 0.5)."""
    scaler = StandardScaler().fit(train_x)
    tr, te = scaler.transform(train_x), scaler.transform(test_x)
    per: dict[str, float] = {}
    for j, name in enumerate(classes):
        y = np.asarray(train_y[:, j]).astype(int)
        if y.min() == y.max():
            score = np.zeros(len(te))
        else:
            score = LogisticRegression(C=c, max_iter=2000).fit(tr, y).decision_function(te)
        per[name] = auroc(np.asarray(test_y[:, j]), score)
    return {"ft_macro_auroc": macro_auroc(per), **{f"ft_auroc[{k}]": v for k, v in per.items()}}


@torch.no_grad()
def evaluate_model(model: nn.Module, test: Any, train: Any, seed: int = 0,
                   fraction: float = LABEL_FRACTION) -> dict[str, float]:
    """Every score of notebook 08 for one model: zero-shot, retrieval and the 10 % linear probe (``seed`` picks the
    labelled studies). ``test`` and ``train`` are :class:`.data.CTSplit` objects."""
    ct = embed_volumes(model, test.volumes)
    row: dict[str, Any] = zero_shot(model, test.volumes, test.labels, ct=ct)
    row.update(retrieval_scores(ct, embed_texts(model, test.reports), test.findings))
    pick = label_subset(len(train), fraction, seed)
    train_x = embed_volumes(model, train.volumes[torch.as_tensor(pick)]).numpy()
    row.update(linear_probe(train_x, train.labels[torch.as_tensor(pick)].numpy(), ct.numpy(), test.labels.numpy()))
    row["n_labelled"] = len(pick)
    return row
