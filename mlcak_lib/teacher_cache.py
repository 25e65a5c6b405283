"""The frozen teacher's outputs, computed once per training split, and the two controls (notebook 05).

Because the teacher is frozen and the course's training images are not augmented, the teacher's
logits and attention maps are a fixed function of the sample index: :class:`TeacherCache` computes
them once per dataset (one teacher pass over the training set) instead of once per epoch, which on
a CPU removes the 224-pixel forward pass from every training step. The same cache builds the
targets of the controls that tell what MLCAK's attention term carries:

* :meth:`TeacherCache.constant` -- the dataset-mean teacher map for every image: a gain over it is
  image-specific;
* :meth:`TeacherCache.oracle` -- the class token's row taken from the lesion boxes: the upper bound of
  what the attention channel can carry about where the lesions are.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .attention import capture_attention
from .attention_kd import attention_rows
from .metrics import eval_batches

__all__ = ["TeacherCache", "kept_rows", "shared_teacher_cache"]


def kept_rows(maps: Tensor, rows: str, heads: bool) -> Tensor:
    """What a cache keeps of captured maps ``[B, H, T, T]``: every row or the class-token row (``[B, H, 1, T]``),
    per head or averaged over heads (a head axis of one)."""
    maps = maps if rows == "full" else maps[:, :, :1]
    return maps if heads else maps.mean(dim=1, keepdim=True)


class TeacherCache:
    """The frozen teacher's logits and attention maps for every item of a split.

    Valid because (1) the teacher is frozen and runs in eval mode (no dropout, BatchNorm uses its
    running statistics) and (2) :func:`mlcak_lib.train.fit` slices fixed in-memory tensors
    (``InMemorySplit.batch``) with no augmentation, so the teacher's input for position ``i``
    never changes. One teacher pass over the split replaces one per epoch (and, through a small
    in-process memo, one per run of a grid). :class:`DistillObjective` uses a cache only for the
    very image tensor it was built from; any other split gets live teacher passes.

    Attributes: ``mlct`` ``[n, C]``, ``mcct`` ``[n, 2]``, ``maps`` (list, one ``[n, H, Q, T]`` tensor per
    teacher block in ``blocks``: ``Q = T`` rows, or ``Q = 1`` with ``rows="cls"``; ``H`` heads, or one
    with ``heads=False``, the head average), ``blocks``, ``rows``, ``heads``. A map with a first axis of
    one (a control's target) serves every item.
    """

    def __init__(self, mlct: Tensor, mcct: Tensor, maps: list[Tensor], blocks: list[int], rows: str = "full",
                 heads: bool = False) -> None:
        self.mlct, self.mcct, self.maps, self.blocks = mlct, mcct, maps, list(blocks)
        self.rows, self.heads = rows, heads

    @classmethod
    def build(cls, teacher: nn.Module, images: Tensor, blocks: Sequence[int] = (), batch_size: int = 128,
              rows: str = "full", heads: bool = False) -> "TeacherCache":
        """Run the teacher (eval mode) over ``images`` ``[n, 1, R, R]``; keep logits and the maps' ``rows``."""
        attention_rows(torch.zeros(1, 1, 2, 2), rows)  # checks the name

        def outputs(x):
            if not blocks:
                out = teacher(x)
                return out["mlct"].cpu(), out["mcct"].cpu(), []
            with capture_attention(teacher, list(blocks)) as captured:
                out = teacher(x)
            return out["mlct"].cpu(), out["mcct"].cpu(), [kept_rows(captured[b], rows, heads).cpu() for b in blocks]

        mlct, mcct, maps = zip(*eval_batches(teacher, images, outputs, batch_size))
        return cls(torch.cat(mlct), torch.cat(mcct), [torch.cat(m) for m in zip(*maps)], list(blocks), rows, heads)

    def lookup(self, index: Tensor) -> tuple[dict[str, Tensor], list[Tensor]]:
        """Teacher outputs and maps for split positions ``index``."""
        index = index.cpu()
        maps = [m.expand(len(index), *m.shape[1:]) if len(m) == 1 else m[index] for m in self.maps]
        return {"mlct": self.mlct[index], "mcct": self.mcct[index]}, maps

    def constant(self) -> "TeacherCache":
        """The **constant-map control**: every item's maps replaced by their mean over the split (the dataset-mean
        teacher attention, per head and level). Logits unchanged. What MLCAK gains over this is image-specific."""
        return TeacherCache(self.mlct, self.mcct, [m.mean(dim=0, keepdim=True) for m in self.maps], self.blocks,
                            self.rows, self.heads)

    def oracle(self, lesions: Tensor) -> "TeacherCache":
        """The **oracle-map control**: the class-token row of every level replaced by the lesion footprint.

        ``lesions``: ``[n, N]`` rows of :func:`mlcak_lib.guidance.lesion_distributions` (the boxes, normalised
        to sum one; zero rows for films without a lesion, which keep the dataset-mean class-token row of the
        teacher). Only the class-token row is defined by boxes, so the cache must hold ``rows="cls"``.
        The upper bound of what the attention channel can carry about where the lesions are.
        """
        if self.rows != "cls":
            raise ValueError("the oracle map defines only the class token's row: build the cache with rows='cls' "
                             "(attn_rows='cls')")
        if lesions.shape[0] != len(self.mlct):
            raise ValueError(f"need one lesion row per item: {lesions.shape[0]} rows for {len(self.mlct)} items")
        has = lesions.sum(dim=1) > 0
        maps = []
        for m in self.maps:
            mean_row = attention_rows(m.mean(dim=(0, 1), keepdim=True), "cls")[:, :, 0]  # [1, 1, N], sums to one
            if lesions.shape[1] != mean_row.shape[-1]:
                raise ValueError(f"lesion rows have {lesions.shape[1]} tokens, the maps {mean_row.shape[-1]}")
            patches = torch.where(has[:, None], lesions.to(m.dtype), mean_row[0].expand(len(lesions), -1))
            maps.append(torch.cat([torch.zeros(len(lesions), 1), patches], dim=1)[:, None, None, :])
        return TeacherCache(self.mlct, self.mcct, maps, self.blocks, "cls", False)


#: The last few teacher caches, keyed by (teacher, image tensor, blocks, rows, heads): a grid of runs that
#: share a teacher and a training split (``mlcak_lib.runner``) runs the teacher once, not once per run.
_TEACHER_MEMO: "dict[tuple, tuple[nn.Module, object, TeacherCache]]" = {}
_TEACHER_MEMO_SIZE = 2


def shared_teacher_cache(teacher: nn.Module, images: Tensor, blocks: Sequence[int], rows: str = "full",
                         heads: bool = False) -> TeacherCache:
    """A :class:`TeacherCache` for ``images``, reused while the teacher's weights and the images are unchanged.

    A cache holding more blocks serves a request for fewer (e.g. output-only KD after MLCAK) with the same
    ``rows`` and ``heads``.
    """
    with torch.no_grad():  # a checksum of the weights: a retrained or edited teacher gets a new cache
        weights = float(sum(p.double().sum() for p in teacher.parameters()))
    key = (id(teacher), id(images), weights)
    for (k, cached_blocks, c_rows, c_heads), (t, imgs, cache) in _TEACHER_MEMO.items():
        if (k == key and t is teacher and imgs is images and set(blocks) <= set(cached_blocks)
                and (not blocks or (c_rows, c_heads) == (rows, heads))):
            pick = [cache.blocks.index(b) for b in blocks]
            return TeacherCache(cache.mlct, cache.mcct, [cache.maps[i] for i in pick], list(blocks), rows, heads)
    cache = TeacherCache.build(teacher, images, blocks, rows=rows, heads=heads)
    _TEACHER_MEMO[(key, tuple(blocks), rows, heads)] = (teacher, images, cache)
    while len(_TEACHER_MEMO) > _TEACHER_MEMO_SIZE:
        _TEACHER_MEMO.pop(next(iter(_TEACHER_MEMO)))
    return cache
