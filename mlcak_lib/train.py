"""One training loop for every model of the course and the objectives it optimises (introduced in notebook 04).

* :class:`Objective` -- what the loop optimises. ``objective.forward(model, batch)`` runs the
  model (default ``model(batch["x"])``) and ``objective(batch, outputs, model)`` returns
  ``(loss, parts)`` with ``parts`` a dict of floats for the history. :class:`SupervisedObjective`
  is the teacher's (and the baseline student's) loss ``BCE(MLCT) + CE(MCCT)``; the distillation
  objective of notebook 05 (:mod:`mlcak_lib.distill`) and the local task of notebook 06
  (:mod:`mlcak_lib.local_task`) subclass :class:`Objective` (``setup`` is called once before
  training with the model and the training split, e.g. to precompute teacher outputs). A plain
  function ``loss_fn(batch, outputs, model) -> (loss, parts)`` works too.
* :func:`fit` -- AdamW, linear warm-up + cosine decay, validation each epoch (MCCT AUROC, MLCT
  macro AUROC), early stopping on the validation score with the best weights restored, seeded
  and deterministic on CPU, one progress bar; returns the per-epoch history.

Batches come from :class:`mlcak_lib.splits.InMemorySplit` (see :mod:`mlcak_lib.splits`). Which
model is trained on which data, and its cache key, is :mod:`mlcak_lib.recipes`' business.

**Class imbalance.** Findings are rare, so the BCE of each class is weighted by
``pos_weight_c = n_neg_c / n_pos_c`` computed on the *training* labels (clipped to
``[1, max_pos_weight]``; a class without positives gets 1): each class's positives then carry
as much total weight as its negatives. The MCCT cross-entropy uses class weights
``n / (2 n_k)`` in the same spirit. AUROC itself is insensitive to the weighting; it changes how
much gradient the rare findings receive.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import metrics as _metrics
from .splits import Batch, InMemorySplit

LossFn = Callable[[Batch, Mapping[str, torch.Tensor], nn.Module], "tuple[torch.Tensor, dict[str, float]]"]


# --------------------------------------------------------------------------------------------
# Data in memory
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Objectives
# --------------------------------------------------------------------------------------------


class Objective:
    """What :func:`fit` minimises. Subclass and override :meth:`__call__` (and optionally
    :meth:`setup`, :meth:`forward`, :meth:`config`).

    * ``setup(model, train)`` -- once before the first step (precompute statistics, teacher outputs).
    * ``forward(model, batch)`` -- the model call of a training step; override to capture
      attention with gradients (``attention.capture_attention(model, keep_grad=True)``).
    * ``__call__(batch, outputs, model) -> (loss, parts)`` -- scalar loss and a dict of floats
      (or 0-d tensors) logged in the history as ``train_<part>``.
    * ``config()`` -- a JSON-able description, part of the cache key of :func:`load_or_train`.
    """

    def setup(self, model: nn.Module, train: InMemorySplit) -> None:
        pass

    def forward(self, model: nn.Module, batch: Batch) -> Mapping[str, torch.Tensor]:
        return model(batch["x"])

    def __call__(self, batch: Batch, outputs: Mapping[str, torch.Tensor], model: nn.Module):
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"objective": type(self).__name__}


class FunctionObjective(Objective):
    """Wraps a plain ``loss_fn(batch, outputs, model) -> (loss, parts)``."""

    def __init__(self, loss_fn: LossFn) -> None:
        self.loss_fn = loss_fn

    def __call__(self, batch, outputs, model):
        return self.loss_fn(batch, outputs, model)

    def config(self) -> dict[str, Any]:
        return {"objective": getattr(self.loss_fn, "__qualname__", repr(self.loss_fn))}


def imbalance_weights(mlct: torch.Tensor, mcct: torch.Tensor, max_pos_weight: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pos_weight [C], mcct_class_weight [2])`` from training labels (see module docstring)."""
    n = len(mlct)
    pos = mlct.float().sum(0)
    pos_weight = torch.where(pos > 0, (n - pos) / pos.clamp_min(1), torch.ones_like(pos)).clamp(1.0, max_pos_weight)
    counts = torch.bincount(mcct.long().view(-1), minlength=2).float()
    class_weight = torch.where(counts > 0, n / (2 * counts.clamp_min(1)), torch.ones_like(counts))
    return pos_weight, class_weight


class SupervisedObjective(Objective):
    """``mlct_weight * BCE(MLCT, y_local; pos_weight) + mcct_weight * CE(MCCT, y_global; class weights)``.

    ``balance=True`` computes the imbalance weights from the training split in :meth:`setup`
    (:func:`imbalance_weights`); ``False`` uses plain BCE and CE.
    """

    def __init__(self, balance: bool = True, max_pos_weight: float = 10.0, mlct_weight: float = 1.0, mcct_weight: float = 1.0) -> None:
        self.balance = balance
        self.max_pos_weight = max_pos_weight
        self.mlct_weight = mlct_weight
        self.mcct_weight = mcct_weight
        self.pos_weight: torch.Tensor | None = None
        self.class_weight: torch.Tensor | None = None

    def setup(self, model: nn.Module, train: InMemorySplit) -> None:
        if self.balance:
            self.pos_weight, self.class_weight = imbalance_weights(train.mlct, train.mcct, self.max_pos_weight)

    def losses(self, outputs: Mapping[str, torch.Tensor], mlct: torch.Tensor, mcct: torch.Tensor) -> dict[str, torch.Tensor]:
        """The two terms as tensors: ``{"bce": ..., "ce": ...}``."""
        dev = outputs["mlct"].device
        pw = self.pos_weight.to(dev) if self.pos_weight is not None else None
        cw = self.class_weight.to(dev) if self.class_weight is not None else None
        bce = F.binary_cross_entropy_with_logits(outputs["mlct"], mlct.to(dev).float(), pos_weight=pw)
        ce = F.cross_entropy(outputs["mcct"], mcct.to(dev).long(), weight=cw)
        return {"bce": bce, "ce": ce}

    def __call__(self, batch, outputs, model):
        parts = self.losses(outputs, batch["mlct"], batch["mcct"])
        loss = self.mlct_weight * parts["bce"] + self.mcct_weight * parts["ce"]
        return loss, {k: float(v.detach()) for k, v in parts.items()}

    def config(self) -> dict[str, Any]:
        return {"objective": "supervised", "balance": self.balance, "max_pos_weight": self.max_pos_weight,
                "mlct_weight": self.mlct_weight, "mcct_weight": self.mcct_weight}


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Optimisation settings of :func:`fit` (all part of the cache key)."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.02
    grad_clip: float | None = 1.0
    patience: int | None = 6
    monitor: str = "val_score"
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> "TrainConfig":
        return replace(self, **changes)


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up from ~0 to 1 over ``warmup_steps``, then cosine decay to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, position embeddings and the class token."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "reg_token")):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def show_progress(progress: bool | None = None) -> bool:
    """Progress bars are on unless ``progress=False`` or the environment variable ``CI`` is set."""
    if progress is not None:
        return bool(progress)
    return os.environ.get("CI", "").strip().lower() in ("", "0", "false", "no")


def _progress_bar(total: int, desc: str, enabled: bool):
    # stdout, never stderr: notebooks and the course runner treat stderr output as a failure.
    return tqdm(total=total, desc=desc, unit="epoch", file=sys.stdout, disable=not enabled, leave=True)


def validation_metrics(model: nn.Module, val: InMemorySplit, resolution: int, objective: SupervisedObjective) -> dict[str, float]:
    """``val_loss`` (supervised terms), ``val_mcct_auroc``, ``val_mlct_macro_auroc``, ``val_score`` (their mean)."""
    preds = _metrics.predict(model, val.images[resolution])
    outputs = {"mlct": torch.from_numpy(preds["mlct_logits"]), "mcct": torch.from_numpy(preds["mcct_logits"])}
    with torch.no_grad():
        parts = objective.losses(outputs, val.mlct, val.mcct)
    summary = _metrics.summarize(val.mlct, val.mcct, preds, val.class_names)
    return {
        "val_loss": float(parts["bce"] + parts["ce"]),
        "val_mcct_auroc": summary["mcct_auroc"],
        "val_mlct_macro_auroc": summary["mlct_macro_auroc"],
        "val_score": summary["score"],
    }


def fit(
    model: nn.Module,
    train: InMemorySplit,
    val: InMemorySplit | None = None,
    objective: Objective | LossFn | None = None,
    config: TrainConfig | None = None,
    resolution: int | None = None,
    progress: bool | None = None,
    desc: str = "training",
) -> list[dict[str, Any]]:
    """Train ``model`` in place; return the history, one dict per epoch.

    ``objective``: an :class:`Objective`, a ``loss_fn(batch, outputs, model) -> (loss, parts)``
    or ``None`` (:class:`SupervisedObjective` with class balancing). ``resolution``: input
    resolution (default ``model.resolution``). ``val``: when given, validation after each epoch
    and early stopping on ``config.monitor`` (higher is better; ``patience`` epochs without
    improvement stop training; the best epoch's weights are restored). ``progress``: progress
    bar (default: on unless ``$CI`` is set), written to stdout.

    History keys: ``epoch``, ``lr``, ``train_loss``, ``train_<part>`` for each loss part,
    ``val_loss``, ``val_mcct_auroc``, ``val_mlct_macro_auroc``, ``val_score``, ``seconds``
    (cumulative) and ``best`` (True on the epoch whose weights were kept).

    Determinism: the weight order of batches comes from a ``torch.Generator`` seeded with
    ``config.seed``, the global RNG (dropout, drop-path) is seeded too, and
    ``torch.use_deterministic_algorithms`` is on during the call (restored afterwards). Same
    seed, same data, same thread count -> identical weights on CPU.
    """
    cfg = config or TrainConfig()
    resolution = resolution or model.resolution
    if objective is None:
        objective = SupervisedObjective()
    elif not isinstance(objective, Objective):
        objective = FunctionObjective(objective)
    val_objective = objective if isinstance(objective, SupervisedObjective) else SupervisedObjective()
    device = next(model.parameters()).device

    previous_det = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        objective.setup(model, train)
        if val is not None and val_objective is not objective:
            val_objective.setup(model, train)
        opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
        n = len(train)
        steps_per_epoch = max(1, n // cfg.batch_size)  # drop the last incomplete batch
        total = steps_per_epoch * cfg.epochs
        warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total, warmup, cfg.min_lr_ratio))

        history: list[dict[str, Any]] = []
        best_value, best_state, best_epoch, stale = -math.inf, None, 0, 0
        start = time.perf_counter()
        bar = _progress_bar(cfg.epochs, desc, show_progress(progress))
        try:
            for epoch in range(1, cfg.epochs + 1):
                model.train()
                perm = torch.randperm(n, generator=gen)
                sums: dict[str, float] = {}
                for step in range(steps_per_epoch):
                    idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                    batch = train.batch(idx, resolution)
                    batch["x"] = batch["x"].to(device)
                    outputs = objective.forward(model, batch)
                    loss, parts = objective(batch, outputs, model)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip:
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    opt.step()
                    sched.step()
                    sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
                    for k, v in parts.items():
                        sums[k] = sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
                record: dict[str, Any] = {"epoch": epoch, "lr": opt.param_groups[0]["lr"]}
                record.update({f"train_{k}": v / steps_per_epoch for k, v in sums.items()})
                if val is not None:
                    record.update(validation_metrics(model, val, resolution, val_objective))
                record["seconds"] = time.perf_counter() - start
                record["best"] = False
                history.append(record)

                postfix = {"loss": f"{record['train_loss']:.3f}"}
                if val is not None:
                    value = record[cfg.monitor]
                    postfix.update(mcct=f"{record['val_mcct_auroc']:.3f}", mlct=f"{record['val_mlct_macro_auroc']:.3f}")
                    if value > best_value:
                        best_value, best_epoch, stale = value, epoch, 0
                        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    else:
                        stale += 1
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
                if val is not None and cfg.patience is not None and stale >= cfg.patience:
                    break
        finally:
            bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
            history[best_epoch - 1]["best"] = True
        elif history:
            history[-1]["best"] = True
    finally:
        torch.use_deterministic_algorithms(previous_det, warn_only=previous_warn)
    model.eval()
    return history
