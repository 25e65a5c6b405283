"""Attention guided by the lesion boxes: how the course's teacher learns to look at lesions (notebook 04).

MLCAK "incorporates local pathological findings". A teacher trained from scratch on image labels
alone can classify well and still attend to one fixed spot on every film; distilling that map
teaches the student nothing about the image. The course therefore trains its teacher with the
boxes it has, through two terms that act on the class token's attention and on the patch tokens:

* the **local task** of notebook 06 (:class:`mlcak_lib.local_task.LocalObjective`, which tokens hold
  a lesion), and
* **attention guidance** (:class:`AttentionGuidance`, this module): on every training film that
  has a lesion, the class token's head-averaged attention to the patches of the guided blocks,
  renormalised over the patches, is pulled towards the lesion footprint normalised to sum one,
  with a cross-entropy ``-sum_j q_j log p_j`` (the KL divergence up to a constant). Films without
  a lesion get no guidance: where a normal film's attention goes is left to the classification
  loss.

Guidance is training-time only: at test time the teacher's attention comes from the image
alone, so its token AUROC on unseen patients is a real measurement (``scripts/teacher_candidates.py``).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from .attention import capture_attention, cls_attention, head_average
from .local_task import local_targets
from .train import FunctionObjective, Objective, SupervisedObjective

__all__ = ["lesion_distributions", "guidance_loss", "AttentionGuidance"]

#: Floor of the attention probabilities inside the log (an unattended lesion token costs at most -log of it).
EPS = 1e-6


def lesion_distributions(boxes: Sequence[Any], box_labels: Sequence[Any], num_classes: int, image_size: int,
                         grid: int) -> Tensor:
    """Any-lesion footprints of a split as distributions over the tokens, ``[n, grid * grid]``.

    Each row is the any-lesion token map (:func:`mlcak_lib.local_task.local_targets`, the same
    targets as the local task) divided by its sum; a film without a lesion is a row of zeros.
    """
    maps = torch.stack([local_targets(b, l, image_size, grid, num_classes)[-1].reshape(-1)
                        for b, l in zip(boxes, box_labels)])
    total = maps.sum(dim=1, keepdim=True)
    return torch.where(total > 0, maps / total.clamp_min(1e-12), torch.zeros_like(maps))


def guidance_loss(attn: Sequence[Tensor], target: Tensor) -> Tensor:
    """Mean over guided blocks and over films with a lesion of ``-sum_j q_j log p_j``.

    ``attn``: head-averaged maps ``[B, 1 + N, 1 + N]`` (one per block); ``p`` is the class token's
    row over the patches, renormalised (:func:`mlcak_lib.attention.cls_attention`). ``target``:
    ``[B, N]`` rows of :func:`lesion_distributions` (zero rows are skipped). Zero when no film of
    the batch has a lesion.
    """
    has = target.sum(dim=1) > 0
    if not bool(has.any()):
        return target.new_zeros(())
    q = target[has]
    total = q.new_zeros(())
    for a in attn:
        p = cls_attention(a[has], normalize=True).flatten(1)
        total = total - (q * torch.log(p.clamp_min(EPS))).sum(dim=1).mean()
    return total / len(attn)


class AttentionGuidance(Objective):
    """``base + weight * guidance_loss``: box-guided class-token attention as an :class:`~mlcak_lib.train.Objective`.

    ``base``: the objective without guidance (``None`` -> :class:`~mlcak_lib.train.SupervisedObjective`;
    the course's teacher uses ``LocalObjective(SupervisedObjective())``). ``blocks``: the guided
    blocks (negative indices count from the last). The attention of those blocks is captured with
    gradients around the base's own forward pass. History part: ``guide`` (unweighted).
    """

    def __init__(self, base: Any = None, weight: float = 1.0, blocks: Sequence[int] = (-1,),
                 image_size: int = 224) -> None:
        if base is None:
            base = SupervisedObjective()
        elif not isinstance(base, Objective):
            base = FunctionObjective(base)
        if not blocks:
            raise ValueError("AttentionGuidance needs at least one block to guide")
        self.base = base
        self.weight = float(weight)
        self.blocks = [int(b) for b in blocks]
        self.image_size = int(image_size)
        self.targets: Tensor | None = None

    def setup(self, model: nn.Module, train: Any) -> None:
        self.base.setup(model, train)
        if not getattr(train, "boxes", None) or len(train.boxes) != len(train):
            raise ValueError("attention guidance needs lesion boxes in the training split")
        self.targets = lesion_distributions(train.boxes, train.box_labels, len(train.class_names), self.image_size,
                                            model.grid)

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> Mapping[str, Tensor]:
        with capture_attention(model, self.blocks, keep_grad=True) as maps:
            out = dict(self.base.forward(model, batch))
        out["guided_attention"] = [head_average(m) for m in maps]
        return out

    def __call__(self, batch: Mapping[str, Any], outputs: Mapping[str, Tensor], model: nn.Module):
        if self.targets is None:
            raise RuntimeError("AttentionGuidance.setup(model, train) must run before the first step")
        loss, parts = self.base(batch, outputs, model)
        target = self.targets[batch["index"].to(self.targets.device)].to(outputs["mlct"].device)
        term = guidance_loss(outputs["guided_attention"], target)
        parts = dict(parts)
        parts["guide"] = float(term.detach())
        return loss + self.weight * term, parts

    def config(self) -> dict[str, Any]:
        return {**self.base.config(), "guidance": {"weight": self.weight, "blocks": self.blocks,
                                                   "image_size": self.image_size, "eps": EPS}}
