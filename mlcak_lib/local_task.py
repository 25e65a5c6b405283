"""The local task: token targets from boxes, its loss and its objective (introduced in notebook 06).

**The local task.** Besides MLCT (which findings are present) and MCCT (normal or abnormal),
the student predicts *where* the lesions are: for every token of its ``g x g`` grid, one
sigmoid output per class plus one for "any lesion". The targets come from the boxes of the
sample contract through :func:`mlcak_lib.tokens.boxes_to_token_map` (the one source of token
targets in the course); a sample with ``K = 0`` boxes has all-zero maps, and a dataset that has
no boxes at all (MedMNIST+) cannot train or evaluate the local task
(:class:`LocalTaskUnavailable`).

Channel layout of every local map in this module: ``C`` class channels in
``dataset.class_names`` order, then the *any-lesion* channel (index ``C``), so ``C + 1``
channels in all.

**Model side** (:mod:`mlcak_lib.models`): :class:`~mlcak_lib.models.LocalHead` maps each final
patch token ``[B, N, D]`` to ``[B, N, C+1]`` logits; :func:`~mlcak_lib.models.attach_local_head`
puts it into a model, whose forward then returns ``out["local"]``; :func:`~mlcak_lib.models.local_maps`
reshapes it to ``[B, C+1, g, g]``.

**Loss.** ``L_local = BCE_with_logits(local, targets, pos_weight)`` averaged over batch,
channels and tokens. Lesion tokens are rare (a few percent of the grid), so each channel's
positive tokens are up-weighted by ``pos_weight_c = n_neg_c / n_pos_c`` counted on the training
split (:func:`local_pos_weight`), clipped to ``[1, 50]`` so that a class with almost no boxes
cannot dominate. The joint objective of the course (:class:`LocalObjective`) is::

    L = BCE(MLCT) + CE(MCCT) + lambda_local * L_local  [+ L_KD of the distillation variant]

where ``L_KD`` comes from :mod:`mlcak_lib.distill` unchanged (composition, not a copy), and
``lambda_local`` is chosen on the validation split by ``scripts/tune_local.py``
(``mlcak_lib/data/results/tuning_local_val.csv``) and stored with the other tuned weights
(:func:`mlcak_lib.variants.default_weights`). The multi-task variants (:data:`mlcak_lib.variants.LOCAL_VARIANTS`)
are ordinary variants, trained by :func:`mlcak_lib.recipes.train_student` and run by the
experiment runner like every other variant. Localization *metrics* live in :mod:`mlcak_lib.localization`.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import tokens
from .models import local_maps
from .train import FunctionObjective, Objective, SupervisedObjective
from .variants import default_weights

__all__ = [
    "LocalTaskUnavailable",
    "has_boxes",
    "require_boxes",
    "as_box_array",
    "local_targets",
    "batch_local_targets",
    "POS_WEIGHT_RANGE",
    "local_pos_weight",
    "local_loss",
    "LocalObjective",
]


def as_box_array(boxes: Any) -> np.ndarray:
    """Boxes (tensor, array or list) as a float64 ``[K, 4]`` array."""
    arr = np.asarray(boxes.detach().cpu() if isinstance(boxes, Tensor) else boxes, dtype=np.float64)
    return arr.reshape(-1, 4)


class LocalTaskUnavailable(RuntimeError):
    """Raised when the local task is asked of data without boxes (e.g. MedMNIST+)."""


def has_boxes(dataset: Any) -> bool:
    """Whether ``dataset`` carries lesion boxes (the local task needs them).

    A dataset may say so itself with a boolean attribute ``has_boxes``; otherwise its first item
    is inspected (a ``boxes`` entry is required; ``K = 0`` boxes in that item is fine).
    """
    flag = getattr(dataset, "has_boxes", None)
    if isinstance(flag, bool):
        return flag
    if callable(flag):
        return bool(flag())
    boxes = getattr(dataset, "boxes", None)
    if isinstance(boxes, (list, tuple)):  # an InMemorySplit: one entry per image when the source had boxes
        return len(boxes) > 0 and len(boxes) == len(dataset)
    try:
        item = dataset[0]
    except (IndexError, KeyError, TypeError):
        return False
    return isinstance(item, Mapping) and item.get("boxes") is not None


def require_boxes(dataset: Any) -> None:
    """Raise :class:`LocalTaskUnavailable` with a clear message when ``dataset`` has no boxes."""
    if not has_boxes(dataset):
        name = getattr(dataset, "name", type(dataset).__name__)
        raise LocalTaskUnavailable(
            f"no boxes: local task unavailable for dataset {name!r}. The local task (notebook 06) "
            "needs lesion boxes (the simulator, VinDr-CXR, or a CSV with box columns); "
            "image-level datasets such as MedMNIST+ support only MLCT and MCCT."
        )


def local_targets(boxes: Any, labels: Any, image_size: int, grid: int, num_classes: int) -> Tensor:
    """Token targets ``[C + 1, grid, grid]`` (float32, 0/1): one channel per class, then any-lesion.

    Built by :func:`mlcak_lib.tokens.boxes_to_token_map` (class channels) and its any-lesion
    helper; ``K = 0`` boxes gives all zeros.
    """
    b = as_box_array(boxes)
    lab = np.asarray(labels.detach().cpu() if isinstance(labels, Tensor) else labels, dtype=np.int64).reshape(-1)
    per_class = np.asarray(tokens.boxes_to_token_map(b, lab, int(image_size), int(grid), int(num_classes)), dtype=np.float32)
    anymap = np.asarray(tokens.any_lesion_map(per_class), dtype=np.float32).reshape(1, grid, grid)
    return torch.from_numpy(np.concatenate([per_class, anymap], axis=0))


def batch_local_targets(batch: Mapping[str, Any], grid: int, num_classes: int, image_size: int | None = None) -> Tensor:
    """``[B, C + 1, grid, grid]`` targets for a batch from :func:`mlcak_lib.datasets.collate_with_boxes`.

    ``image_size`` defaults to the side of ``batch["image"]`` (boxes are in its pixels).
    """
    if "boxes" not in batch or batch["boxes"] is None:
        raise LocalTaskUnavailable("no boxes: local task unavailable (this batch has no 'boxes' entry)")
    if image_size is None:
        image_size = int(batch["image"].shape[-1])
    maps = [local_targets(b, l, image_size, grid, num_classes) for b, l in zip(batch["boxes"], batch["box_labels"])]
    return torch.stack(maps, dim=0)


# --------------------------------------------------------------------------------------------
# The local loss (torch)
# --------------------------------------------------------------------------------------------

#: Clip range of the per-channel positive weight of the local BCE.
POS_WEIGHT_RANGE: tuple[float, float] = (1.0, 50.0)


def local_pos_weight(targets: Tensor, clip: tuple[float, float] = POS_WEIGHT_RANGE) -> Tensor:
    """Per-channel ``pos_weight = n_neg / n_pos`` of targets ``[B, K, g, g]``, clipped to ``clip``.

    Count it on the *training* split. A channel without positives gets the upper clip value.
    """
    t = (targets > 0.5).float()
    pos = t.sum(dim=(0, 2, 3))
    neg = t.shape[0] * t.shape[2] * t.shape[3] - pos
    w = torch.where(pos > 0, neg / pos.clamp_min(1.0), torch.full_like(pos, clip[1]))
    return w.clamp(*clip)


def local_loss(logits: Tensor, targets: Tensor, pos_weight: Tensor | None = None) -> Tensor:
    """BCE-with-logits between local logits and token targets, mean over batch, channels and tokens.

    ``logits`` is ``[B, N, K]`` (as the model returns it) or ``[B, K, g, g]``; ``targets`` is
    ``[B, K, g, g]``; ``pos_weight`` is ``[K]`` (:func:`local_pos_weight`) or None.
    """
    if logits.dim() == 3:
        logits = local_maps(logits, targets.shape[-1])
    if logits.shape != targets.shape:
        raise ValueError(f"local logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
    pw = None if pos_weight is None else pos_weight.to(logits).reshape(-1, 1, 1)
    return F.binary_cross_entropy_with_logits(logits, targets.to(logits), pos_weight=pw)


# --------------------------------------------------------------------------------------------
# The joint objective (plugs into train.fit; composes with distill's objectives)
# --------------------------------------------------------------------------------------------

class LocalObjective(Objective):
    """``base + lambda_local * L_local``: adds the local task to any :class:`mlcak_lib.train.Objective`.

    ``base`` is the objective without the local task: ``None`` -> :class:`mlcak_lib.train.SupervisedObjective`
    (the *multitask* student: ``BCE(MLCT) + CE(MCCT) + lambda * L_local``), or a distillation
    objective of :mod:`mlcak_lib.distill` (the full system: ``L_cls + L_KD + lambda * L_local``).
    The base keeps its own ``forward`` (e.g. attention capture) and loss; this class only adds
    the local term. The model needs a local head (:func:`mlcak_lib.models.attach_local_head`).

    ``setup`` builds the token targets of the whole training split once (through
    :func:`local_targets`, ``[n, C+1, g, g]``) and the per-channel ``pos_weight``
    (:func:`local_pos_weight`); each step then indexes them with ``batch["index"]``.
    History parts: the base's parts plus ``local`` (the unweighted local BCE).
    """

    def __init__(self, base: Any = None, lambda_local: float | None = None, image_size: int = 224,
                 profile: str | None = None) -> None:
        if base is None:
            base = SupervisedObjective()
        elif not isinstance(base, Objective):
            base = FunctionObjective(base)
        self.base = base
        if lambda_local is None:
            lambda_local = default_weights(profile)["lambda_local"]
        self.lambda_local = float(lambda_local)
        self.image_size = int(image_size)
        self.targets: Tensor | None = None
        self.pos_weight: Tensor | None = None

    def setup(self, model: nn.Module, train: Any) -> None:
        self.base.setup(model, train)
        if getattr(model, "local_head", None) is None:
            raise ValueError("LocalObjective needs a model with a local head: call attach_local_head(model) first")
        if not getattr(train, "boxes", None) or len(train.boxes) != len(train):
            raise LocalTaskUnavailable("no boxes: local task unavailable (the training split carries no boxes)")
        self.targets = torch.stack([
            local_targets(b, l, self.image_size, model.grid, len(train.class_names))
            for b, l in zip(train.boxes, train.box_labels)
        ])
        self.pos_weight = local_pos_weight(self.targets)

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> Mapping[str, Tensor]:
        return self.base.forward(model, batch)

    def __call__(self, batch: Mapping[str, Any], outputs: Mapping[str, Tensor], model: nn.Module):
        if self.targets is None:
            raise RuntimeError("LocalObjective.setup(model, train) must run before the first step")
        loss, parts = self.base(batch, outputs, model)
        idx = batch["index"].to(self.targets.device)
        target = self.targets[idx].to(outputs["local"].device)
        term = local_loss(outputs["local"], target, self.pos_weight)
        parts = dict(parts)
        parts["local"] = float(term.detach())
        return loss + self.lambda_local * term, parts

    def config(self) -> dict[str, Any]:
        return {**self.base.config(), "local": {"lambda_local": self.lambda_local, "image_size": self.image_size,
                                                "pos_weight_clip": list(POS_WEIGHT_RANGE)}}
