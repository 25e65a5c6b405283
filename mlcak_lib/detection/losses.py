"""OXnet's three losses beyond RetinaNet's own (Luo et al., MICCAI 2021; notebook 07).

1. **Dual attention alignment** (:func:`detection_attention`, :func:`dual_attention_logits`,
   :func:`dual_attention_loss`): the detection subnet's per-class map (max over anchors, at the FPN level
   with the highest peak, resized bilinearly to the global map and normalised to sum 1) weights the global
   head's class activation map; the sum over positions is the image-level logit, trained with BCE on the
   image labels. The map is not detached, so the image labels' gradient reaches the detection branch.
2. **Global prototype alignment** (:func:`class_features`, :class:`PrototypeBank`,
   :func:`prototype_losses`): each class's feature is the last backbone stage pooled with the same map;
   class prototypes follow an EMA of the batch's features (decay 0.7, weighted by the global head's
   probabilities); intra-class compactness pulls a class's feature to its prototype, inter-class
   separability pushes it at least ``margin`` away from the other prototypes.
3. **Soft focal loss** (:func:`soft_focal_loss`): the student's anchor probabilities are pulled towards the
   mean teacher's, weighted by ``alpha(p_t) * |p_t - p_s|^gamma`` with ``alpha = 0.05 + 0.9 p_t``; anchors whose
   IoU with the teacher's boxes lies in [0.4, 0.5) are ignored, and the sum is divided by the number of
   anchors with IoU >= 0.5. An image without teacher boxes contributes zero (as in the official code).

Where this follows the official code (LLYXC/OXnet, ``retinanet/model.py`` and ``losses.py``) and where not:
see each function's docstring.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou

#: The official code's settings.
PROTOTYPE_DECAY: float = 0.7
PROTOTYPE_MARGIN: float = 1.0
SOFT_FOCAL_ALPHA: tuple[float, float] = (0.05, 0.95)
SOFT_FOCAL_GAMMA: float = 2.0
FG_IOU, BG_IOU = 0.5, 0.4


def detection_attention(level_maps: list[torch.Tensor], size: tuple[int, int], detach: bool = False,
                        eps: float = 1e-12) -> torch.Tensor:
    """``[B, C, h, w]`` attention from the detection subnet's per-level maps (``[B, C, H_l, W_l]`` each).

    For each image and class, the level whose map has the highest peak is taken (as the official
    ``_get_local_map``), resized to ``size`` (bilinear, ``align_corners=True``) and divided by its sum.
    ``detach=True`` stops the gradient (the ablation without alignment; the official default keeps it).
    """
    peaks = torch.stack([m.flatten(2).amax(-1) for m in level_maps])  # [L, B, C]
    resized = torch.stack([F.interpolate(m, size=size, mode="bilinear", align_corners=True) for m in level_maps])
    best = peaks.argmax(0)  # [B, C]
    pick = best[None, :, :, None, None].expand(1, *resized.shape[1:])
    att = resized.gather(0, pick)[0]
    att = att / att.flatten(2).sum(-1).clamp_min(eps)[..., None, None]
    return att.detach() if detach else att


def dual_attention_logits(cam: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """Image-level logits ``[B, C]``: the class activation maps weighted by the attention, summed over positions."""
    return (cam * attention).sum(dim=(2, 3))


def dual_attention_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean BCE of image-level logits against multi-hot image labels (the official ``GlobalClassificationLoss``)."""
    if logits.numel() == 0:
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits, labels.float())


def class_features(features: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """``[B, C, D]``: the backbone's last stage ``[B, D, h, w]`` pooled with each class's attention ``[B, C, h, w]``.

    Deviation: the official code stacks these as ``[B, D, C]`` and then *views* them as ``[B, C, D]``, which
    mixes classes and channels; here each row is one class's feature.
    """
    return torch.einsum("bdhw,bchw->bcd", features, attention)


def _mean_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).mean(-1)


class PrototypeBank(nn.Module):
    """One prototype per class (a buffer ``[C, D]``), updated by EMA with ``decay`` (0.7 in the paper).

    A prototype seen for the first time takes the batch's feature without decay (as the official
    ``update_prototypes``). Deviations: only classes present in the batch are updated (the official update
    also decays absent classes' prototypes towards zero), and features enter detached.
    """

    def __init__(self, num_classes: int, dim: int, decay: float = PROTOTYPE_DECAY) -> None:
        super().__init__()
        self.decay = float(decay)
        self.register_buffer("prototypes", torch.zeros(num_classes, dim))
        self.register_buffer("seen", torch.zeros(num_classes, dtype=torch.bool))

    @torch.no_grad()
    def update(self, feats: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor | None = None) -> torch.Tensor:
        """EMA step with class features ``[B, C, D]`` of images with multi-hot ``labels`` ``[B, C]``, each
        weighted by ``probs`` ``[B, C]`` (the global head's probabilities; default 1). Returns the classes updated."""
        w = labels.float() * (torch.ones_like(labels, dtype=torch.float) if probs is None else probs.float())
        present = labels.float().sum(0) > 0
        mean = (feats.detach() * w[..., None]).sum(0) / w.sum(0).clamp_min(1e-10)[:, None]
        decay = torch.where(self.seen, torch.full_like(self.seen, self.decay, dtype=torch.float), torch.zeros(()))
        new = decay[:, None] * self.prototypes + (1 - decay[:, None]) * mean
        self.prototypes[present] = new[present]
        self.seen |= present
        return present


def prototype_losses(feats: torch.Tensor, labels: torch.Tensor, bank: PrototypeBank,
                     margin: float = PROTOTYPE_MARGIN) -> tuple[torch.Tensor, torch.Tensor]:
    """(intra-class compactness, inter-class separability) of class features ``[B, C, D]`` (the official
    ``GlobalContrastiveLoss``).

    For every class ``i`` present in the batch, ``f_i`` is the mean of its images' class-``i`` features;
    with ``d(a, b)`` the mean squared difference over feature dimensions, intra = mean of ``d(f_i, p_i)`` and
    inter = mean over seen prototypes ``j != i`` of ``((m - s)/m)^2 * max(m - s, 0)^2``, ``s = sqrt(d(f_i, p_j))``.
    Both are zero when no class is present; inter is zero once every feature is ``margin`` from the other
    prototypes. Prototypes are constants here (detached).
    """
    present = labels.float().sum(0) > 0
    zero = feats.sum() * 0.0
    if not bool(present.any()):
        return zero, zero
    y = labels.float()
    f = (feats * y[..., None]).sum(0) / y.sum(0).clamp_min(1)[:, None]  # [C, D]
    protos, seen = bank.prototypes.detach(), bank.seen
    dist = _mean_sq(f[:, None, :], protos[None, :, :])  # [C_i, C_j]
    eye = torch.eye(len(protos), dtype=torch.bool)
    intra_mask = present[:, None] & seen[None, :] & eye
    inter_mask = present[:, None] & seen[None, :] & ~eye
    sep = torch.sqrt(dist.clamp_min(1e-12))
    inter_terms = ((margin - sep) / margin).pow(2) * torch.clamp(margin - sep, min=0).pow(2)
    intra = (dist * intra_mask).sum() / intra_mask.sum().clamp_min(1) if intra_mask.any() else zero
    inter = (inter_terms * inter_mask).sum() / inter_mask.sum().clamp_min(1) if inter_mask.any() else zero
    return intra, inter


def soft_focal_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, anchors: torch.Tensor,
                    teacher_boxes: torch.Tensor, gamma: float = SOFT_FOCAL_GAMMA,
                    alpha: tuple[float, float] = SOFT_FOCAL_ALPHA) -> torch.Tensor:
    """Soft focal loss of one image: student logits ``[N, C]`` towards teacher probabilities ``[N, C]`` over
    the ``N`` anchors ``[N, 4]``, with the teacher's boxes ``[K, 4]`` (the official ``ConsistencyLoss``).

    ``alpha(p_t) * |p_t - p_s|^gamma * BCE(p_s, p_t)`` summed over anchors outside the ignore band
    (IoU in [0.4, 0.5) with every teacher box), divided by ``max(1, #anchors with IoU >= 0.5)``. Zero when
    ``K = 0`` and zero where the student already gives the teacher's probabilities. Deviations: the BCE is
    computed from logits (no clamping of probabilities to [1e-4, 1 - 1e-4]), and ``alpha`` uses this
    image's teacher probabilities (the official code broadcasts the whole batch's).
    """
    if len(teacher_boxes) == 0:
        return student_logits.sum() * 0.0
    iou = box_iou(anchors, teacher_boxes).amax(dim=1)
    keep = (iou < BG_IOU) | (iou >= FG_IOU)
    num_pos = int((iou >= FG_IOU).sum())
    p_t = teacher_probs.detach()
    p_s = torch.sigmoid(student_logits)
    a = alpha[0] + p_t * (alpha[1] - alpha[0])
    weight = a * (p_t - p_s).abs().pow(gamma)
    bce = F.binary_cross_entropy_with_logits(student_logits, p_t, reduction="none")
    return (weight * bce)[keep].sum() / max(1, num_pos)
