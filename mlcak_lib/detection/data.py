"""From the course's splits to detector inputs (notebook 07).

Every dataset comes through the one switch (:func:`mlcak_lib.dataswitch.get_splits`) as an
:class:`~mlcak_lib.splits.InMemorySplit`, whose boxes are ``x0, y0, x1, y1`` in pixels of the full-size image
(224 px in the course) with class indices in ``box_labels``. :func:`detection_targets` scales them to the
resolution the detector sees; :func:`omni_batch` adds each image's supervision (boxes, image labels, none)
from a regime (:mod:`mlcak_lib.detection.sampling`). The simulator and VinDr-CXR (both with boxes) use the
same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..splits import InMemorySplit
from .sampling import BOXES, NONE

#: The frame the sample contract's boxes are given in (the full-size image).
BOX_FRAME_PX: int = 224


def scale_boxes(boxes: torch.Tensor, resolution: int, frame: int = BOX_FRAME_PX) -> torch.Tensor:
    """Boxes ``[K, 4]`` from ``frame``-pixel to ``resolution``-pixel coordinates, clipped to the image."""
    return (boxes.float().reshape(-1, 4) * (resolution / frame)).clamp(0, resolution)


def detection_targets(split: InMemorySplit, index: Sequence[int] | torch.Tensor, resolution: int,
                      frame: int = BOX_FRAME_PX) -> list[dict[str, torch.Tensor]]:
    """torchvision detection targets (``boxes`` float ``[K, 4]`` px at ``resolution``, ``labels`` int64 ``[K]``)."""
    if not split.boxes:
        raise ValueError(f"split {split.name!r} has no boxes: detection needs a dataset with boxes (synth, vindr)")
    out = []
    for i in torch.as_tensor(index).tolist():
        out.append({"boxes": scale_boxes(split.boxes[i], resolution, frame),
                    "labels": split.box_labels[i].long().reshape(-1)})
    return out


@dataclass
class OmniBatch:
    """One mixed batch: ``images`` ``[B, 1, r, r]``, ``targets`` (for every image; used only where
    ``supervision`` is :data:`~mlcak_lib.detection.sampling.BOXES`), ``labels`` ``[B, C]`` (image labels; used
    where supervision is not ``NONE``), ``supervision`` int64 ``[B]`` and ``index`` ``[B]`` (positions in the split)."""

    images: torch.Tensor
    targets: list[dict[str, torch.Tensor]]
    labels: torch.Tensor
    supervision: torch.Tensor
    index: torch.Tensor

    @property
    def boxed(self) -> torch.Tensor:
        """Positions in the batch of images trained with boxes."""
        return torch.nonzero(self.supervision == BOXES).flatten()

    @property
    def labelled(self) -> torch.Tensor:
        """Positions in the batch of images with image labels (boxes or labels only)."""
        return torch.nonzero(self.supervision != NONE).flatten()

    @property
    def unboxed(self) -> torch.Tensor:
        """Positions in the batch of images without boxes (the teacher's stream)."""
        return torch.nonzero(self.supervision != BOXES).flatten()


def omni_batch(split: InMemorySplit, index: Sequence[int] | torch.Tensor, resolution: int,
               codes: np.ndarray | torch.Tensor, frame: int = BOX_FRAME_PX) -> OmniBatch:
    """The :class:`OmniBatch` of positions ``index`` of ``split`` at ``resolution`` under regime ``codes``."""
    idx = torch.as_tensor(index, dtype=torch.long)
    sup = torch.as_tensor(np.asarray(codes), dtype=torch.long)[idx]
    return OmniBatch(split.images[resolution][idx], detection_targets(split, idx, resolution, frame),
                     split.mlct[idx].float(), sup, idx)
