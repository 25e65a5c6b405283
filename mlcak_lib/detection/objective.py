"""OXnet's training objective on one mixed batch (notebook 07).

:class:`OXnetObjective` adds up, with weights (:class:`OXnetWeights`, all 1 as in the official
``train_oxnet.py``):

* RetinaNet's focal loss and smooth-L1 on the box-labelled images (``detection``, ``regression``);
* dual attention alignment on every image with image labels (``dual``);
* prototype alignment, intra- and inter-class (``intra``, ``inter``), after the prototypes' EMA step with
  this batch (the official order);
* the soft focal loss towards the mean teacher on the images without boxes (``soft_focal``), and the
  smooth-L1 of the student's boxes towards the teacher's (``soft_regression``). The teacher's boxes are its
  detections scoring above ``teacher_score`` (0.5); on an image with image labels only those of its positive
  classes are kept (the official ``ConsistencyLoss`` filter).

Where this differs from the official code, and why: RetinaNet's loss on a box-labelled film *without* boxes
treats every anchor as background (the official loss skips such images; in chest films most images are
normal, and a normal film with its boxes known is information); the teacher's boxes come from torchvision's
per-class NMS (the official code's NMS is class-agnostic) and the student's box consistency uses torchvision's
matcher, which also keeps each teacher box's best anchor (``allow_low_quality_matches``).

The training loop, the teacher's EMA step after each optimiser step (:func:`mlcak_lib.detection.ema.ema_update`)
and the sampler are the caller's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .data import OmniBatch
from .losses import (PROTOTYPE_DECAY, PrototypeBank, class_features, detection_attention, dual_attention_logits,
                     dual_attention_loss, prototype_losses, soft_focal_loss)
from .model import DetectorOutput, OXnetDetector
from .sampling import LABELS

#: The official code's threshold on the teacher's scores for pseudo boxes.
TEACHER_SCORE: float = 0.5


@dataclass(frozen=True)
class OXnetWeights:
    """Weights of the loss terms (zero switches a term off: the ablations of notebook 07)."""

    detection: float = 1.0
    regression: float = 1.0
    dual: float = 1.0
    intra: float = 1.0
    inter: float = 1.0
    soft_focal: float = 1.0
    soft_regression: float = 1.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@torch.no_grad()
def teacher_boxes(teacher: OXnetDetector, out: DetectorOutput, labels: torch.Tensor | None = None,
                  score: float = TEACHER_SCORE) -> list[dict[str, torch.Tensor]]:
    """The teacher's pseudo boxes per image: detections above ``score``; where a row of ``labels`` ``[B, C]``
    is given (not NaN), only detections of that image's positive classes."""
    dets = teacher.detect(out)
    out_boxes = []
    for i, det in enumerate(dets):
        size = det["boxes"][:, 2:] - det["boxes"][:, :2]
        keep = (det["scores"] > score) & (size > 1e-3).all(dim=1)
        if labels is not None and not bool(torch.isnan(labels[i]).any()):
            keep &= labels[i][det["labels"]] > 0
        out_boxes.append({"boxes": det["boxes"][keep], "labels": det["labels"][keep]})
    return out_boxes


class OXnetObjective:
    """The OXnet loss of a mixed batch (module docstring); holds the class prototypes (:attr:`bank`)."""

    def __init__(self, num_classes: int, feature_dim: int, weights: OXnetWeights | None = None,
                 teacher_score: float = TEACHER_SCORE, prototype_decay: float = PROTOTYPE_DECAY,
                 detach_attention: bool = False) -> None:
        self.weights = weights or OXnetWeights()
        self.teacher_score = float(teacher_score)
        self.detach_attention = bool(detach_attention)
        self.bank = PrototypeBank(num_classes, feature_dim, prototype_decay)

    def __call__(self, student: OXnetDetector, teacher: OXnetDetector | None, batch: OmniBatch,
                 teacher_images: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Every term and their weighted sum ``loss``; ``teacher_images``: the teacher's view of the batch
        (default the same images)."""
        w = self.weights
        out = student(batch.images)
        zero = out.cls_logits.sum() * 0.0
        terms: dict[str, torch.Tensor] = {}
        boxed = batch.boxed
        det = student.detection_loss(out, [batch.targets[i] for i in boxed.tolist()], boxed)
        terms["detection"], terms["regression"] = det["classification"], det["bbox_regression"]

        att = detection_attention(student.level_maps(out), tuple(out.cam.shape[-2:]), detach=self.detach_attention)
        logits = dual_attention_logits(out.cam, att)
        lab = batch.labelled
        terms["dual"] = dual_attention_loss(logits[lab], batch.labels[lab])
        feats = class_features(out.features, att)[lab]
        if len(lab):
            self.bank.update(feats, batch.labels[lab], torch.sigmoid(logits[lab]).detach())
        terms["intra"], terms["inter"] = prototype_losses(feats, batch.labels[lab], self.bank)

        terms["soft_focal"], terms["soft_regression"] = zero, zero
        unboxed = batch.unboxed
        if teacher is not None and len(unboxed) and (w.soft_focal or w.soft_regression):
            t_images = (batch.images if teacher_images is None else teacher_images)[unboxed]
            with torch.no_grad():
                t_out = teacher(t_images)
            known = batch.labels[unboxed].clone()
            known[batch.supervision[unboxed] != LABELS] = float("nan")  # unlabelled: no class filter
            pseudo = teacher_boxes(teacher, t_out, known, self.teacher_score)
            t_probs = torch.sigmoid(t_out.cls_logits)
            focal = [soft_focal_loss(out.cls_logits[j], t_probs[k], out.anchors[j], pseudo[k]["boxes"])
                     for k, j in enumerate(unboxed.tolist())]
            terms["soft_focal"] = torch.stack(focal).mean()
            terms["soft_regression"] = student.detection_loss(out, pseudo, unboxed)["bbox_regression"]
        terms["loss"] = sum(getattr(w, k) * v for k, v in terms.items())
        terms["image_logits"] = logits.detach()
        return terms
