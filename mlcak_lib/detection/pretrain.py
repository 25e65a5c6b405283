"""The detector's backbone, pretrained on image labels of an independent pool of films (notebook 07).

The official OXnet starts from an ImageNet-pretrained ResNet-101. Nothing can be downloaded here, and trained
from scratch the course's CPU-sized detector learns almost nothing within a CPU budget (box-only, 100 % boxes,
112 px, 1,200 steps: validation AP@0.5 0.008 from scratch, 0.098 from this backbone; measured for issue 16).
So every detector starts from the same backbone, pretrained once as a multi-label image classifier
(:class:`BackboneClassifier`: the detector's five stages, global average pooling, a linear layer; binary
cross-entropy on the finding labels) on a *pool* of films that the detection experiment never trains on:
for the simulator, the training patients' films of another simulator seed (:data:`PRETRAIN_SEED`); the
caller (:func:`mlcak_lib.detection_runner.pretrained_backbone`) reads it through the course's data switch.

This plays the part of ImageNet (or a public CXR dataset) in the paper: upstream data with image labels that
every ablation shares, box-only included. What the ablations then measure is what the *training* films' image
labels and unlabelled films add on top of it. The backbone is keyed like a detector
(:func:`~.keys.detection_fingerprint`, the pool's description, architecture, training settings) and cached.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..dicom import NETWORK_MEAN, NETWORK_STD
from ..metrics import auroc_per_class, macro_auroc
from ..splits import InMemorySplit
from .model import TinyFPNBackbone, stem_stride

#: The simulator seed of the pretraining pool (the detection experiment's own splits use seed 0).
PRETRAIN_SEED: int = 1


@dataclass(frozen=True)
class BackbonePretraining:
    """How the backbone is pretrained (every field enters its cache key)."""

    epochs: int = 12
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Default pretraining (about 2 minutes on one core at 112 px for 3,000 films) and a tiny one for tests.
PRETRAINING = BackbonePretraining()
TINY_PRETRAINING = BackbonePretraining(epochs=1, batch_size=8)


class BackboneClassifier(nn.Module):
    """The detector's backbone stages (:class:`~.model.TinyFPNBackbone`, without its FPN) + average pooling +
    a linear layer: a multi-label image classifier whose ``stages`` a detector copies."""

    def __init__(self, num_classes: int, image_size: int, widths: tuple[int, ...] = (16, 24, 32, 64, 96),
                 same_maps: bool = False) -> None:
        super().__init__()
        self.stages = TinyFPNBackbone(tuple(widths), 8, stem_stride(image_size, same_maps)).stages
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - NETWORK_MEAN) / NETWORK_STD
        for stage in self.stages:
            x = stage(x)
        return self.head(F.relu(x).mean(dim=(2, 3)))


@torch.no_grad()
def classifier_auroc(model: BackboneClassifier, split: InMemorySplit, resolution: int, batch_size: int = 128) -> float:
    """Macro AUROC of ``model``'s image scores against ``split``'s finding labels (NaN without both values)."""
    model.eval()
    images = split.images[resolution]
    scores = torch.cat([torch.sigmoid(model(images[i:i + batch_size])) for i in range(0, len(images), batch_size)])
    return macro_auroc(auroc_per_class(split.mlct.numpy(), scores.numpy()))


def pretrain(model: BackboneClassifier, pool: InMemorySplit, val: InMemorySplit | None, resolution: int,
             cfg: BackbonePretraining = PRETRAINING, progress: bool = False) -> list[dict[str, Any]]:
    """Train ``model`` in place on ``pool``'s finding labels (Adam, BCE); returns one row per epoch
    (mean loss, validation macro AUROC, seconds) and keeps the epoch with the best validation AUROC."""
    if len(pool) < cfg.batch_size:
        raise ValueError(f"the pretraining pool has {len(pool)} films, fewer than one batch ({cfg.batch_size})")
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    images, labels = pool.images[resolution], pool.mlct.float()
    history: list[dict[str, Any]] = []
    best, best_state, start = -np.inf, None, time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        order, total = torch.randperm(len(images), generator=gen), 0.0
        for i in range(0, len(order) - cfg.batch_size + 1, cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            loss = F.binary_cross_entropy_with_logits(model(images[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        score = classifier_auroc(model, val, resolution) if val is not None else float("nan")
        row = {"epoch": epoch + 1, "loss": total / len(order), "val_auroc": score, "seconds": time.perf_counter() - start}
        key = score if np.isfinite(score) else -1.0
        if best_state is None or key > best or val is None:
            best, best_state = key, {k: v.detach().clone() for k, v in model.state_dict().items()}
            row["best"] = True
        history.append(row)
        if progress:
            print(f"  backbone epoch {epoch + 1}/{cfg.epochs} loss {row['loss']:.3f} val AUROC {score:.3f}", flush=True)
    model.load_state_dict(best_state)
    return history


def backbone_key(pool_desc: Mapping[str, Any], resolution: int, num_classes: int, widths: tuple[int, ...],
                 same_maps: bool, cfg: BackbonePretraining) -> dict[str, Any]:
    """The configuration part of the backbone's cache key."""
    return {"pool": dict(pool_desc), "resolution": int(resolution), "num_classes": int(num_classes),
            "widths": tuple(int(w) for w in widths), "same_maps": bool(same_maps), "train": cfg.as_dict()}
