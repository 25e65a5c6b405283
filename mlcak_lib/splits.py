"""A split of the course's data held in memory as tensors (introduced in notebook 04).

On a CPU, slicing in-memory tensors with a seeded permutation is much faster than a
``DataLoader`` and trivially deterministic, so every model of the course trains from an
:class:`InMemorySplit`. :func:`materialize` builds one from any dataset that follows the sample
contract (CONTRIBUTING.md); :func:`with_views` adds area-resized low-resolution views.

A **batch** (:meth:`InMemorySplit.batch`) is a dict: ``x`` (the model's input ``[B, 1, r, r]``),
``mlct`` ``[B, C]``, ``mcct`` ``[B]``, ``index`` ``[B]`` (positions in the split), ``resolution``
(``r``) and ``split`` (the :class:`InMemorySplit`, so an objective can fetch other views, e.g. the
teacher's 224-pixel image ``batch["split"].images[224][batch["index"]]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import torch

from .resize import area_resize

Batch = dict


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
        boxes, box_labels, box_mm = [], [], []          # so local_task.has_boxes() says no
    return InMemorySplit(
        {r: torch.stack(v).float().contiguous() for r, v in images.items()},
        torch.stack(mlct).float(), torch.stack(mcct).long().view(-1), list(dataset.class_names),
        boxes, box_labels, box_mm, name or str(getattr(dataset, "split", "")),
    )


def with_views(full: InMemorySplit, resolutions: Sequence[int]) -> InMemorySplit:
    """``full`` restricted to ``resolutions``; missing low resolutions are area-resized from the
    highest one and kept in ``full`` for the next call."""
    hr = max(full.images)
    wanted = sorted({int(r) for r in resolutions})
    for r in wanted:
        if r not in full.images:
            if r > hr:
                raise ValueError(f"resolution {r} is above the split's images ({hr} px)")
            full.images[r] = area_resize(full.images[hr], r).float().contiguous()
    return replace(full, images={r: full.images[r] for r in wanted})
