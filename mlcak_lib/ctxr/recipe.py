"""How notebook 08's CT encoders are trained, and under which cache key (issue 17; Cao et al., CVPR 2024).

* :data:`CTXR_VARIANTS` -- the ablations: contrastive image-report alignment alone, + pair-wise KD, + relation KD,
  + both, each with and without false-negative correction (``+fn``). :data:`REFERENCE` is the paired tables'
  baseline (contrastive-only), :data:`HEADLINE` the full method.
* :data:`CTXR_DATA`, :data:`CTXR_TRAINING` -- data sizes and training settings per profile.
* :func:`prepare` -- the data of a run: CT splits by patient, the X-ray pool with the frozen expert's embeddings,
  language-guided retrieval (each training CT's report -> the closest X-ray report of the pool,
  :class:`.retrieval.ReportIndex`; ties broken with seed 0, the same pairs for every variant and seed), the
  report similarities that flag false negatives, and the key describing it all.
* :func:`train_ctxr` -- Adam on :func:`.losses.objective`; the CT encoder and the text encoder are trained
  together from scratch for a fixed number of steps per profile (chosen on the validation split, see
  :data:`CTXR_TRAINING`); the validation split's zero-shot macro AUROC is recorded every ``eval_every`` steps, and
  with ``select=True`` the best of those checkpoints is kept instead of the last (the test split is never looked at).
* :func:`get_ct_model` -- one model through :func:`mlcak_lib.cache.load_or_train` under
  :func:`.keys.ctxr_fingerprint`, keyed by the data (CT volumes' checksums, sizes, pool, the expert's hash), the
  variant, the loss weights, the architecture, the training settings and the seed: a rerun loads it.

**Expert targets.** The KD terms read the expert's class-token embedding of the retrieved film minus the pool's
mean embedding: the raw embeddings share a large common part (mean pairwise cosine 0.40 over the default pool,
0.75 within the same findings), which a cosine or a similarity distribution would mostly spend on; centred, the
mean cosine is 0.02 (0.37 within the same findings, -0.09 across).

**Seeds.** ``seed`` sets the initial weights of both encoders and the batch order (and, in the evaluation, which
10 % of the training studies are labelled); the data, the pool and the retrieved pairs are the same for every seed.
**False negatives.** With ``+fn``, pairs of training reports whose TF-IDF cosine is at least
:data:`.losses.FN_THRESHOLD` are masked out of InfoNCE's denominators (:func:`.losses.false_negative_mask`).
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import config as _config
from ..cache import load_or_train
from .data import CTSplit, XRayPool, ct_data_key, ct_split, xray_pool
from .encoders import CTEncoder, TextEncoder, build_vocabulary
from .evaluate import zero_shot
from .keys import ctxr_fingerprint
from .losses import LossWeights, false_negative_mask, objective
from .retrieval import ReportIndex, report_similarity


@dataclass(frozen=True)
class CTXRVariant:
    """An ablation: the weights of pair-wise and relation KD (contrastive is always on) and false-negative correction."""

    pairwise: float
    relation: float
    fn_correction: bool

    def weights(self, base: LossWeights) -> LossWeights:
        """``base`` with this variant's KD weights (scaled by ``base``'s) and its correction."""
        return replace(base, pairwise=base.pairwise * self.pairwise, relation=base.relation * self.relation)

    @property
    def uses_expert(self) -> bool:
        return bool(self.pairwise or self.relation)


_KD: dict[str, tuple[float, float]] = {"contrastive": (0.0, 0.0), "pairwise": (1.0, 0.0), "relation": (0.0, 1.0),
                                       "both": (1.0, 1.0)}
FN_SUFFIX = "+fn"
#: The ablations of issue 17 (8): each KD setting without and with false-negative correction.
CTXR_VARIANTS: dict[str, CTXRVariant] = {f"{kd}{FN_SUFFIX if fn else ''}": CTXRVariant(p, r, fn)
                                         for kd, (p, r) in _KD.items() for fn in (False, True)}
REFERENCE: str = next(iter(CTXR_VARIANTS))  # contrastive-only
HEADLINE: str = list(CTXR_VARIANTS)[-1]  # both KD terms + false-negative correction


def get_variant(name: str) -> CTXRVariant:
    """A variant of :data:`CTXR_VARIANTS` by name (``ValueError`` naming the choices)."""
    if name not in CTXR_VARIANTS:
        raise ValueError(f"unknown CT-X-ray variant {name!r}; choose from {', '.join(CTXR_VARIANTS)}")
    return CTXR_VARIANTS[name]


@dataclass(frozen=True)
class CTXRData:
    """Studies per split, the encoder's input grid and the X-ray pool's size (every field enters the key)."""

    train: int = 600
    val: int = 200
    test: int = 300
    input_size: int = 32
    pool: int = 1000

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CTXRTraining:
    """Architecture, loss weights and optimisation of a run (every field enters the key)."""

    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    eval_every: int = 100
    embed_dim: int = 128
    channels: tuple[int, ...] = (8, 16, 32, 64)
    text_hidden: int = 128
    shift: int = 2  # random translation of each training volume by up to this many voxels per axis
    select: bool = False  # keep the best validated checkpoint instead of the last
    loss: LossWeights = LossWeights()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> "CTXRTraining":
        return replace(self, **changes)


#: Per profile. Default sized on one CPU core (the other core busy) so that the runner's 8 variants x 3 seeds fit in
#: 45 minutes: 1200 steps of 32 studies take 65-100 s. Validation split, seed 0 (zero-shot macro AUROC every 100
#: steps): contrastive-only 0.63 / 0.41 / 0.45 / 0.46 / 0.50 / 0.53 / 0.51 / 0.53 / 0.53 / 0.52 / 0.61 / 0.59 (InfoNCE
#: 3.47 -> 2.95, ln 32 = 3.47 at chance), both KD + fn correction 0.60 ... 0.66 at step 1200 (still rising at the
#: end); at lr 3e-3 neither got further in 800 steps (0.53 / 0.54). The scores before about 1000 steps are noise
#: around chance, so the last checkpoint is kept (``select=False``) rather than the noisiest validation peak.
#: **The encoder learns slowly at this budget**: a supervised probe (the same encoder + a linear head, BCE on the
#: labels, 600 steps) reached training macro AUROC 0.58-0.76 and validation 0.55-0.70 with GroupNorm or BatchNorm,
#: mean or max pooling, with or without shifts. The studies of one patient share one anatomy (every normal study is
#: the same volume), so a lesion is a small change of a fixed template, and the test patient's anatomy is new.
#: The relation term is about 1 % of the contrastive one at weight 1 (``tau**2`` scaling): relation-only variants
#: stay close to contrastive-only. Full: more studies, 64^3 input, a wider encoder, more steps.
CTXR_DATA: dict[str, CTXRData] = {"default": CTXRData(), "full": CTXRData(3000, 600, 1000, 64, 5000)}
CTXR_TRAINING: dict[str, CTXRTraining] = {
    "default": CTXRTraining(steps=1200, eval_every=200),
    "full": CTXRTraining(steps=4000, batch_size=64, eval_every=500, channels=(16, 32, 64, 128), embed_dim=256),
}
#: ``--tiny``: a handful of studies and steps (tests and smoke runs).
TINY_DATA = CTXRData(train=24, val=12, test=12, input_size=16, pool=48)
TINY_TRAINING = CTXRTraining(steps=4, batch_size=8, eval_every=2, embed_dim=16, channels=(4, 8), text_hidden=16)


def ctxr_settings(profile: str | None = None) -> tuple[CTXRData, CTXRTraining]:
    """The data sizes and training settings of a profile."""
    p = _config.get_profile(profile)
    return CTXR_DATA[p], CTXR_TRAINING[p]


@dataclass
class PreparedData:
    """Everything a run reads: CT splits, the pool, the retrieved film of each training study (``pairs``), the
    expert targets of the training studies ``[n_train, D]``, the training reports' similarity ``[n, n]``, the text
    vocabulary and ``key`` (the data part of every model's cache key)."""

    train: CTSplit
    val: CTSplit
    test: CTSplit
    pool: XRayPool
    pairs: np.ndarray
    targets: Tensor
    report_sim: np.ndarray
    vocabulary: dict[str, int]
    key: dict[str, Any]


def prepare(expert: nn.Module, expert_id: str, data: CTXRData | None = None, profile: str | None = None,
            cache_folder: str | os.PathLike | None = None, progress: bool = False) -> PreparedData:
    """The data of notebook 08's runs (module docstring). ``expert``: the frozen X-ray expert (the course's teacher,
    ``recipes.get_teacher(load_only=True)``); ``expert_id``: its cache hash (``info["hash"]``)."""
    data = data or ctxr_settings(profile)[0]
    splits = {s: ct_split(s, getattr(data, s), data.input_size, cache_folder, progress) for s in ("train", "val", "test")}
    pool = xray_pool(data.pool, expert, expert_id, cache_folder, progress)
    index = ReportIndex(pool.reports)
    pairs = index.retrieve(splits["train"].reports, k=1, seed=0)[:, 0]
    key = {"ct": {s: ct_data_key(s, getattr(data, s), data.input_size) for s in splits}, "sizes": data.as_dict(),
           "expert": expert_id, "retrieval": "tfidf-top1-seed0",
           "targets": "class token - pool mean"}
    targets = pool.embeddings - pool.embeddings.mean(dim=0)  # centred on the pool's mean (module docstring)
    return PreparedData(splits["train"], splits["val"], splits["test"], pool, pairs, targets[torch.as_tensor(pairs)],
                        report_similarity(splits["train"].reports), build_vocabulary(splits["train"].reports), key)


class CTXRModel(nn.Module):
    """The two encoders trained together: ``ct`` (:class:`.encoders.CTEncoder` with the projection to the expert's
    space) and ``text`` (:class:`.encoders.TextEncoder`)."""

    def __init__(self, vocabulary: dict[str, int], expert_dim: int, cfg: CTXRTraining, seed: int = 0) -> None:
        super().__init__()
        self.ct = CTEncoder(cfg.embed_dim, tuple(cfg.channels), expert_dim, seed)
        self.text = TextEncoder(vocabulary, cfg.embed_dim, cfg.text_hidden, seed + 1)


def random_shift(volumes: Tensor, shift: int, generator: torch.Generator) -> Tensor:
    """Each volume translated by a random whole number of voxels in ``[-shift, shift]`` per axis (zero-filled)."""
    if shift <= 0:
        return volumes
    out = torch.zeros_like(volumes)
    s = volumes.shape[-1]
    for i, d in enumerate(torch.randint(-shift, shift + 1, (len(volumes), 3), generator=generator).tolist()):
        src = tuple(slice(max(0, -k), s - max(0, k)) for k in d)
        dst = tuple(slice(max(0, k), s - max(0, -k)) for k in d)
        out[(i, slice(None), *dst)] = volumes[(i, slice(None), *src)]
    return out


def validation_score(model: CTXRModel, val: CTSplit) -> float:
    """The selection score: zero-shot macro AUROC on the validation split."""
    return float(zero_shot(model, val.volumes, val.labels)["zs_macro_auroc"])


def train_ctxr(model: CTXRModel, data: PreparedData, variant: CTXRVariant, cfg: CTXRTraining, seed: int = 0,
               progress: bool = False) -> list[dict[str, Any]]:
    """Train ``model`` in place; returns the history (one row per validation score: step, the mean of each term since
    the last row, ``val_zs_macro_auroc``, seconds, ``best`` on kept rows); ends with the last weights, or with
    ``cfg.select`` the best validated ones."""
    train = data.train
    n = len(train)
    if n < 2:
        raise ValueError("training needs at least two CT studies")
    gen = torch.Generator().manual_seed(int(seed))
    weights = variant.weights(cfg.loss)
    fn_all = false_negative_mask(data.report_sim) if variant.fn_correction else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    batch = min(cfg.batch_size, n)
    history: list[dict[str, Any]] = []
    sums: dict[str, float] = {}
    best, best_state, step, count, start = -np.inf, None, 0, 0, time.perf_counter()
    bar = tqdm(total=cfg.steps, desc="CT encoder", disable=not progress, leave=False)
    while step < cfg.steps:
        order = torch.randperm(n, generator=gen)
        for b0 in range(0, n - batch + 1, batch):
            idx = order[b0:b0 + batch]
            model.train()
            ct = model.ct(random_shift(train.volumes[idx].float(), cfg.shift, gen))
            fn = fn_all[idx][:, idx] if fn_all is not None else None
            terms = objective(ct, model.ct.expert_projection(ct), model.text([train.reports[i] for i in idx.tolist()]),
                              data.targets[idx], fn, weights)
            opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            opt.step()
            step, count = step + 1, count + 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            bar.update(1)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                score = validation_score(model, data.val)
                row = {"step": step, **{k: v / count for k, v in sums.items()}, "val_zs_macro_auroc": score,
                       "seconds": time.perf_counter() - start}
                sums, count = {}, 0
                if best_state is None or not cfg.select or (np.isfinite(score) and score > best):
                    best, best_state, row["best"] = score, copy.deepcopy(model.state_dict()), True
                history.append(row)
                bar.set_postfix(loss=f"{row['total']:.3f}", val=f"{score:.3f}")
            if step >= cfg.steps:
                break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def model_name(variant: str, profile: str) -> str:
    """``ctxr-<profile>-<variant>``: the cached file's stem."""
    return f"ctxr-{profile}-{variant.replace('+', '-')}"


def get_ct_model(variant: str, seed: int, data: PreparedData, profile: str | None = None,
                 config: CTXRTraining | None = None, cache_dir: str | os.PathLike | None = None,
                 load_only: bool = False, progress: bool = False) -> tuple[CTXRModel, list[dict[str, Any]], dict[str, Any]]:
    """One trained model of ``variant`` (loaded when cached); ``data`` from :func:`prepare`. Returns
    ``(model, history, info)`` as :func:`mlcak_lib.cache.load_or_train`, with ``info["config"]`` (the key's dict)."""
    profile = _config.get_profile(profile)
    cfg = config or ctxr_settings(profile)[1]
    v = get_variant(variant)
    expert_dim = int(data.targets.shape[1])
    cfg_dict = {"data": data.key, "variant": variant, "spec": asdict(v), "weights": v.weights(cfg.loss).as_dict(),
                "model": {"expert_dim": expert_dim, "vocabulary": len(data.vocabulary)}, "train": cfg.as_dict(),
                "seed": int(seed)}

    def build() -> CTXRModel:
        return CTXRModel(data.vocabulary, expert_dim, cfg, seed)

    def fit(model: CTXRModel) -> list[dict[str, Any]]:
        return train_ctxr(model, data, v, cfg, seed, progress)

    model, history, info = load_or_train(model_name(variant, profile), cfg_dict, build, fit, cache_dir,
                                         load_only=load_only, code=ctxr_fingerprint())
    return model, history, {**info, "config": cfg_dict}
