"""One training loop for every model of the course, and the load-or-train cache (introduced in notebook 04).

The pieces, from low to high level:

* :class:`InMemorySplit` -- a split materialised once as tensors (images per resolution, labels,
  boxes). On a CPU, slicing in-memory tensors with a seeded permutation is much faster than a
  ``DataLoader`` and trivially deterministic. :func:`materialize` builds one from any dataset
  that follows the sample contract (CONTRIBUTING.md).
* :class:`Objective` -- what the loop optimises. ``objective.forward(model, batch)`` runs the
  model (default ``model(batch["x"])``) and ``objective(batch, outputs, model)`` returns
  ``(loss, parts)`` with ``parts`` a dict of floats for the history. :class:`SupervisedObjective`
  is the teacher's (and the baseline student's) loss ``BCE(MLCT) + CE(MCCT)``; the distillation
  objectives of notebook 05 subclass :class:`Objective` (``setup`` is called once before
  training with the model and the training split, e.g. to precompute teacher outputs). A plain
  function ``loss_fn(batch, outputs, model) -> (loss, parts)`` works too.
* :func:`fit` -- AdamW, linear warm-up + cosine decay, validation each epoch (MCCT AUROC, MLCT
  macro AUROC), early stopping on the validation score with the best weights restored, seeded
  and deterministic on CPU, one progress bar; returns the per-epoch history.
* :func:`load_or_train` -- a model cache keyed by the hash of the full configuration.
* :func:`get_splits` / :func:`get_teacher` -- the course's data and its shared teacher, used by
  notebooks 04, 05 and 06 (a notebook opened alone trains what it needs, one run after another
  reuses the cached teacher).

A **batch** is a dict: ``x`` (the model's input ``[B, 1, r, r]``), ``mlct`` ``[B, C]``, ``mcct``
``[B]``, ``index`` ``[B]`` (positions in the split), ``resolution`` (``r``) and ``split`` (the
:class:`InMemorySplit`, so an objective can fetch other views, e.g. the teacher's 224-pixel
image ``batch["split"].images[224][batch["index"]]``).

**Class imbalance.** Findings are rare, so the BCE of each class is weighted by
``pos_weight_c = n_neg_c / n_pos_c`` computed on the *training* labels (clipped to
``[1, max_pos_weight]``; a class without positives gets 1): each class's positives then carry
as much total weight as its negatives. The MCCT cross-entropy uses class weights
``n / (2 n_k)`` in the same spirit. AUROC itself is insensitive to the weighting; it changes how
much gradient the rare findings receive.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import config as _config
from . import metrics as _metrics

Batch = dict
LossFn = Callable[[Batch, Mapping[str, torch.Tensor], nn.Module], "tuple[torch.Tensor, dict[str, float]]"]


# --------------------------------------------------------------------------------------------
# Data in memory
# --------------------------------------------------------------------------------------------


@dataclass
class InMemorySplit:
    """One split as tensors: ``images[r]`` ``[n, 1, r, r]`` float32 in [0, 1] for each resolution,
    ``mlct`` ``[n, C]`` float32, ``mcct`` ``[n]`` int64, per-image ``boxes`` / ``box_labels`` /
    ``box_mm`` lists (sample contract), ``class_names`` and the split ``name``."""

    images: dict[int, torch.Tensor]
    mlct: torch.Tensor
    mcct: torch.Tensor
    class_names: list[str]
    boxes: list[torch.Tensor] = field(default_factory=list)
    box_labels: list[torch.Tensor] = field(default_factory=list)
    box_mm: list[torch.Tensor] = field(default_factory=list)
    name: str = ""

    def __len__(self) -> int:
        return len(self.mlct)

    @property
    def resolutions(self) -> list[int]:
        return sorted(self.images)

    def batch(self, index: torch.Tensor, resolution: int) -> Batch:
        """The batch dict (see module docstring) for positions ``index`` at ``resolution``."""
        return {
            "x": self.images[resolution][index],
            "mlct": self.mlct[index],
            "mcct": self.mcct[index],
            "index": index,
            "resolution": resolution,
            "split": self,
        }

    def subset(self, index: Sequence[int] | torch.Tensor) -> "InMemorySplit":
        """A new split made of the items at ``index`` (in that order)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        pick = lambda seq: [seq[i] for i in idx.tolist()] if seq else []  # noqa: E731
        return InMemorySplit(
            {r: t[idx] for r, t in self.images.items()}, self.mlct[idx], self.mcct[idx], list(self.class_names),
            pick(self.boxes), pick(self.box_labels), pick(self.box_mm), self.name,
        )

    def label_counts(self) -> dict[str, int]:
        """Positives per finding and number of abnormal images."""
        counts = {name: int(v) for name, v in zip(self.class_names, self.mlct.sum(0).tolist())}
        counts["abnormal (MCCT)"] = int(self.mcct.sum())
        return counts


def materialize(dataset, resolutions: Sequence[int], name: str = "") -> InMemorySplit:
    """Read every item of a contract-following dataset once into an :class:`InMemorySplit`.

    ``resolutions`` may include the dataset's high resolution (its ``image``, 224 in the course)
    and any low resolution (made with ``area_resize``). A dataset with a ``materialize(lowres)``
    method returning ``images`` ``[N, 1, H, H]``, ``lowres`` ``{r: [N, 1, r, r]}`` and the label
    tensors (``SynthCXRDataset``, with its on-disk cache) is asked to do it; any other dataset is
    read item by item.
    """
    resolutions = sorted({int(r) for r in resolutions})
    if hasattr(dataset, "materialize"):
        hr = int(getattr(dataset, "image_size", 224))
        out = dataset.materialize([r for r in resolutions if r != hr])
        images = {r: (out["images"] if r == hr else out["lowres"][r]).float().contiguous() for r in resolutions}
        return InMemorySplit(
            images, out["mlct"].float(), out["mcct"].long().view(-1), list(out.get("class_names", dataset.class_names)),
            list(out.get("boxes", [])), list(out.get("box_labels", [])), list(out.get("box_mm", [])),
            name or str(getattr(dataset, "split", "")),
        )
    from .resize import area_resize

    images: dict[int, list[torch.Tensor]] = {r: [] for r in resolutions}
    mlct, mcct, boxes, box_labels, box_mm = [], [], [], [], []
    for i in range(len(dataset)):
        item = dataset[i]
        hr = item["image"].shape[-1]
        for r in resolutions:
            view = item["image"] if r == hr else item.get("lowres", {}).get(r)
            images[r].append(view if view is not None else area_resize(item["image"], r))
        mlct.append(item["mlct"])
        mcct.append(item["mcct"])
        boxes.append(item.get("boxes", torch.zeros(0, 4)))
        box_labels.append(item.get("box_labels", torch.zeros(0, dtype=torch.long)))
        box_mm.append(item.get("box_mm", torch.zeros(0)))
    if getattr(dataset, "has_boxes", True) is False:  # image-level labels only (MedMNIST+): no box lists,
        boxes, box_labels, box_mm = [], [], []          # so localization.has_boxes() says no
    return InMemorySplit(
        {r: torch.stack(v).float().contiguous() for r, v in images.items()},
        torch.stack(mlct).float(), torch.stack(mcct).long().view(-1), list(dataset.class_names),
        boxes, box_labels, box_mm, name or str(getattr(dataset, "split", "")),
    )


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
    from tqdm.auto import tqdm

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


# --------------------------------------------------------------------------------------------
# Load-or-train cache
# --------------------------------------------------------------------------------------------

#: Modules that cannot change a model trained on the course's simulated data: presentation, the
#: experiment runner (it calls the training code, it does not hold any), and the real-data path.
#: Editing them does not invalidate cached models. The real-data code instead enters the cache key
#: of real-data models through their data description (:func:`source_hash`, ``dataswitch``).
_UNHASHED_MODULES = {"viz", "widgets", "envinfo", "course", "cost", "__init__", "runner", "reference", "manifest",
                     "dicom", "dataswitch"}
_UNHASHED_PACKAGES = {"realdata"}


def source_hash(*names: str) -> str:
    """10-hex-digit hash of the source of ``mlcak_lib`` modules or packages named relative to the
    package (e.g. ``"dicom"``, ``"realdata"``)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in names:
        target = root / name
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target.with_suffix(".py")]
        for path in files:
            h.update(path.relative_to(root).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:10]


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Library version + hash of the source of every ``mlcak_lib`` module that can change a trained model.

    Computed once per Python process (the code that runs is the code that was imported), so a file
    edited while a notebook runs does not change the cache key halfway through the notebook.
    """
    from . import __version__

    root = Path(__file__).resolve().parent
    h = hashlib.sha256(__version__.encode())
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if (path.parent == root and path.stem in _UNHASHED_MODULES) or rel.parts[0] in _UNHASHED_PACKAGES:
            continue
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return f"{__version__}+{h.hexdigest()[:10]}"


class CacheMiss(FileNotFoundError):
    """:func:`load_or_train` with ``load_only=True`` found no cached model."""


def config_hash(name: str, config_dict: Mapping[str, Any], code: str | None = None) -> str:
    """12-hex-digit hash of ``name``, the configuration and the code fingerprint."""
    payload = {"name": name, "config": config_dict, "code": code if code is not None else code_fingerprint()}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_or_train(
    name: str,
    config_dict: Mapping[str, Any],
    build_fn: Callable[[], nn.Module],
    train_fn: Callable[[nn.Module], list[dict[str, Any]]],
    cache_dir: str | os.PathLike | None = None,
    load_only: bool = False,
) -> tuple[nn.Module, list[dict[str, Any]], dict[str, Any]]:
    """Return a trained model from the cache, or build, train and cache it.

    ``config_dict`` must describe everything that determines the trained weights (data, model,
    training, seed); together with ``name`` and :func:`code_fingerprint` it is hashed into the
    file name ``models/<name>-<hash>.pt`` under :func:`mlcak_lib.config.cache_dir` (or
    ``cache_dir``). ``build_fn()`` returns a fresh untrained model; ``train_fn(model)`` trains it
    in place and returns its history.

    Returns ``(model, history, info)`` with the model in eval mode and ``info`` =
    ``{"cache_hit": bool, "path": "models/<name>-<hash>.pt" (relative to the cache folder),
    "hash": str, "train_seconds": float}``. ``load_only=True`` never trains: a cache miss raises
    :class:`CacheMiss` (a ``FileNotFoundError``) naming the missing file.
    """
    h = config_hash(name, config_dict)
    folder = _config.cache_dir(cache_dir) / "models"
    folder.mkdir(parents=True, exist_ok=True)
    filename = f"{name}-{h}.pt"
    path = folder / filename
    model = build_fn()
    if path.exists():
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["state_dict"])
        model.eval()
        info = {"cache_hit": True, "path": f"models/{filename}", "hash": h, "train_seconds": ckpt.get("train_seconds", float("nan"))}
        return model, ckpt["history"], info
    if load_only:
        raise CacheMiss(f"no cached model models/{filename} in the cache folder (load_only=True): train it first")
    start = time.perf_counter()
    history = train_fn(model)
    seconds = time.perf_counter() - start
    history = json.loads(json.dumps(history, default=float))  # plain Python types: safe to load with weights_only
    ckpt = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": history,
        "config": json.dumps(dict(config_dict), sort_keys=True, default=str),
        "name": name,
        "hash": h,
        "train_seconds": seconds,
    }
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    model.eval()
    return model, history, {"cache_hit": False, "path": f"models/{filename}", "hash": h, "train_seconds": seconds}


# --------------------------------------------------------------------------------------------
# The course's data and teacher
# --------------------------------------------------------------------------------------------

#: Optimisation of the teacher per profile. Default: the budget that fits notebook 04's 3 minutes on 2 CPU
#: cores (about 60k image passes); validation curves of the simulated data stay flat for several epochs
#: before they rise, so patience is long. Chosen on the validation split (measurements in notebook 04).
TEACHER_TRAINING: dict[str, TrainConfig] = {
    "default": TrainConfig(epochs=20, batch_size=32, lr=2e-3, weight_decay=0.05, warmup_epochs=1.0, patience=8),
    "full": TrainConfig(epochs=60, batch_size=128, lr=5e-4, weight_decay=0.05, warmup_epochs=5.0, patience=10),
}

#: Simulator settings (``SynthConfig`` keyword overrides) of the course's teacher/student data per profile.
#: Default profile: one fixed anatomy (``anatomy=0``; lesions, acquisition and noise still vary). Measured
#: with the default teacher and budget (3000 training images, 20 epochs, seed 0, test split): anatomy=0 ->
#: MCCT AUROC 0.955, MLCT macro 0.904; anatomy=0.5 -> 0.55 / 0.55; anatomy=1 (simulator default) ->
#: 0.56 / 0.53 (training loss does not move: random pose and anatomy hide the lesions from a model this
#: small trained this briefly). The full profile keeps the simulator's defaults.
SYNTH_SETTINGS: dict[str, dict[str, Any]] = {"default": {"anatomy": 0.0}, "full": {}}

_SPLIT_MEMO: dict[str, InMemorySplit] = {}


def synth_config(profile: str | None = None, **overrides: Any):
    """The ``SynthConfig`` of the course's data for a profile (``SYNTH_SETTINGS``, then ``overrides``)."""
    from .synth import SynthConfig

    return SynthConfig(**{**SYNTH_SETTINGS[_config.get_profile(profile)], **overrides})


def _split_sizes(profile: str, sizes: Mapping[str, int] | None) -> dict[str, int]:
    from .datasets import SPLIT_SIZES

    return {**SPLIT_SIZES[profile], **{k: int(v) for k, v in (sizes or {}).items()}}


def _real(dataset: str | None) -> str | None:
    """The real dataset named by ``dataset`` / ``MLCAK_DATASET`` (the one switch), or ``None`` for the simulator."""
    name = _config.get_dataset_name(dataset)
    return None if name == "synth" else name


def data_config(profile: str | None = None, seed: int = 0, sizes: Mapping[str, int] | None = None,
                dataset: str | None = None) -> dict[str, Any]:
    """The description of the course's splits that enters cache keys.

    Simulator: generator config, sizes, seed. A real dataset (``dataset`` or ``MLCAK_DATASET``):
    :func:`mlcak_lib.dataswitch.real_data_config` (name, data folder, sizes, adapter code).
    """
    profile = _config.get_profile(profile)
    real = _real(dataset)
    if real is not None:
        from .dataswitch import real_data_config

        return real_data_config(real, sizes, seed=seed)
    sim = synth_config(profile)
    return {"dataset": "synth", "profile": profile, "seed": seed, "sizes": _split_sizes(profile, sizes),
            "synth_config": sim.to_dict(), "synth_hash": sim.config_hash()}


def class_names(profile: str | None = None, dataset: str | None = None) -> list[str]:
    """Finding names of the course's data (MLCT order): the simulator's, or the real dataset's."""
    real = _real(dataset)
    if real is not None:
        from .dataswitch import real_class_names

        return real_class_names(real)
    return list(synth_config(profile).classes)


def get_splits(
    resolutions: Sequence[int] = (224,),
    profile: str | None = None,
    seed: int = 0,
    splits: Sequence[str] = ("train", "val", "test"),
    sizes: Mapping[str, int] | None = None,
    dataset: str | None = None,
) -> dict[str, InMemorySplit]:
    """The course's splits as :class:`InMemorySplit` holding the requested ``resolutions``.

    Simulator (default): images come from :class:`mlcak_lib.datasets.SynthCXRDataset` with its
    on-disk cache (so a notebook run after another skips generation) and are memoised within the
    Python process: asking again, or for another resolution of the same split, reuses the tensors
    already in memory (low resolutions are area-resized from the 224-pixel images). ``sizes``
    overrides the profile's split sizes, e.g. ``{"train": 500}``.

    ``dataset`` (else ``MLCAK_DATASET``; the one switch) selects a real dataset instead, read by
    :func:`mlcak_lib.dataswitch.real_splits` with the same memoising and views.
    """
    from .datasets import SynthCXRDataset

    profile = _config.get_profile(profile)
    real = _real(dataset)
    if real is not None:
        from .dataswitch import real_splits

        return real_splits(real, resolutions, splits=splits, sizes=sizes, seed=seed, memo=_SPLIT_MEMO)
    all_sizes = _split_sizes(profile, sizes)
    wanted = sorted({int(r) for r in resolutions})
    out = {}
    for split in splits:
        sim = synth_config(profile)
        key = json.dumps([profile, seed, split, all_sizes[split], sim.config_hash()])
        if key not in _SPLIT_MEMO:
            ds = SynthCXRDataset(split, resolutions=(), profile=profile, size=all_sizes[split], seed=seed, config=sim, cache=True)
            _SPLIT_MEMO[key] = materialize(ds, [ds.image_size], name=split)
        out[split] = with_views(_SPLIT_MEMO[key], wanted)
    return out


def with_views(full: InMemorySplit, resolutions: Sequence[int]) -> InMemorySplit:
    """``full`` restricted to ``resolutions``; missing low resolutions are area-resized from the
    highest one and kept in ``full`` for the next call."""
    from .resize import area_resize

    hr = max(full.images)
    wanted = sorted({int(r) for r in resolutions})
    for r in wanted:
        if r not in full.images:
            if r > hr:
                raise ValueError(f"resolution {r} is above the split's images ({hr} px)")
            full.images[r] = area_resize(full.images[hr], r).float().contiguous()
    return replace(full, images={r: full.images[r] for r in wanted})


def get_teacher(
    profile: str | None = None,
    seed: int = 0,
    config: TrainConfig | None = None,
    sizes: Mapping[str, int] | None = None,
    progress: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    load_only: bool = False,
    dataset: str | None = None,
    **arch_overrides: Any,
) -> tuple[nn.Module, list[dict[str, Any]], dict[str, Any]]:
    """The course's high-resolution multi-task teacher, trained once and shared by notebooks 04-06.

    Loads it from the cache when a teacher with the same data, architecture, training settings,
    seed and code exists; otherwise generates the data (:func:`get_splits`), trains with
    :func:`fit` (supervised objective, early stopping on the validation split) and caches it.
    Returns ``(model, history, info)`` as :func:`load_or_train` does; ``load_only=True`` raises
    :class:`CacheMiss` instead of training. ``dataset`` (else ``MLCAK_DATASET``) trains it on a
    real dataset instead of the simulator (cached under ``teacher-<profile>-<dataset>``).
    """
    from .models import TEACHER_RESOLUTION, architecture, build_teacher

    profile = _config.get_profile(profile)
    real = _real(dataset)
    cfg = (config or TEACHER_TRAINING[profile]).replace(seed=seed)
    arch = architecture(profile, **arch_overrides)
    objective = SupervisedObjective()
    names = class_names(profile, real)
    cfg_dict = {
        "data": data_config(profile, seed, sizes, real),
        "model": {"resolution": TEACHER_RESOLUTION, "num_classes": len(names), **arch},
        "train": cfg.as_dict(),
        "objective": objective.config(),
    }

    def build():
        return build_teacher(len(names), profile=profile, seed=seed, **arch_overrides)

    def train(model):
        data = get_splits((TEACHER_RESOLUTION,), profile=profile, seed=seed, splits=("train", "val"), sizes=sizes,
                          dataset=real)
        return fit(model, data["train"], data["val"], objective, cfg, progress=progress, desc="teacher")

    name = f"teacher-{profile}" if real is None else f"teacher-{profile}-{real}"
    return load_or_train(name, cfg_dict, build, train, cache_dir, load_only=load_only)
