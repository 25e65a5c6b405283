"""The attention term of MLCAK in its three forms (introduced in notebook 05).

Distillation compares the student's attention maps with the teacher's, level by level
(:func:`mlcak_lib.distill.level_pairs`). This module holds the comparison itself:

* :func:`attention_rows` -- which query rows take part: every row of the ``[T, T]`` map, or the
  class token's row over the patches (renormalised), the row that decides what the classifier reads;
* :func:`attention_kd_loss` -- the paper's head-averaged MSE, the per-head KL on each row (Li et al.
  2024, arXiv 2411.09702) and normalised maps with an L2/cosine loss (Zagoruyko & Komodakis 2017).

Head-averaged probabilities are about ``1/T`` each, so the paper's MSE is tiny unless ``gamma`` is
huge; ``gamma_mode="relative"`` (:class:`mlcak_lib.distill.DistillObjective`) puts every form on the
scale of the classification loss instead.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .variants import ATTENTION_LOSSES, ATTENTION_ROWS

__all__ = ["KL_EPS", "attention_rows", "attention_kd_loss"]

#: Floor of the student's attention inside the log of the KL form.
KL_EPS = 1e-8


def attention_rows(maps: Tensor, rows: str = "full") -> Tensor:
    """The rows of ``maps`` that the attention term compares, always 4-D ``[B, H, Q, K]``.

    ``maps``: ``[B, H, T, T]`` per head, ``[B, T, T]`` head-averaged (one "head"), or a cache's class-token
    rows ``[B, H, 1, T]``. ``rows="full"``: every query row; ``"cls"``: the class token's row over the
    patch tokens, renormalised to sum one (``Q = 1``, ``K = T - 1``).
    """
    if rows not in ATTENTION_ROWS:
        raise ValueError(f"unknown attention rows {rows!r}; choose from {', '.join(ATTENTION_ROWS)}")
    m = maps.unsqueeze(1) if maps.dim() == 3 else maps
    if m.dim() != 4:
        raise ValueError(f"attention maps must be [B, T, T] or [B, H, T, T], got shape {tuple(maps.shape)}")
    if rows == "full":
        return m
    row = m[:, :, :1, 1:]
    return row / row.sum(dim=-1, keepdim=True).clamp_min(1e-12)


def attention_kd_loss(student_maps: Sequence[Tensor], teacher_maps: Sequence[Tensor], loss: str = "mse",
                      rows: str = "full") -> Tensor:
    """Sum over levels of the distance between student and teacher attention (notebook 05).

    * ``"mse"`` -- the paper's form: MSE between head-averaged maps, MLCAK_l^S vs MLCAK_l^T.
    * ``"kl"`` -- per head, KL(teacher || student) of every compared query row (each row is a
      distribution over the keys), averaged over rows, heads and images (Li et al. 2024, arXiv
      2411.09702). Needs as many heads in the student as in the teacher (a one-head target, such as the
      oracle map, is compared with every head).
    * ``"cosine"`` -- the head-averaged map of each image flattened and scaled to unit length, then the
      squared distance ``|s - t|^2 = 2 - 2 cos`` (Zagoruyko & Komodakis 2017), averaged over images.

    ``rows``: :func:`attention_rows`. Each form is zero when the maps are equal and positive otherwise.
    """
    if len(student_maps) != len(teacher_maps) or not student_maps:
        raise ValueError(f"need one teacher map per student map, got {len(student_maps)} and {len(teacher_maps)}")
    if loss not in ATTENTION_LOSSES:
        raise ValueError(f"unknown attention loss {loss!r}; choose from {', '.join(ATTENTION_LOSSES)}")
    total = student_maps[0].new_zeros(())
    for s, t in zip(student_maps, teacher_maps):
        s, t = attention_rows(s, rows), attention_rows(t.detach().to(s.dtype), rows)
        if s.shape[-2:] != t.shape[-2:] or s.shape[0] != t.shape[0]:
            raise ValueError(
                f"attention maps differ in shape: student {tuple(s.shape)} vs teacher {tuple(t.shape)}; "
                "teacher and student need matched token grids (patch size scaled with resolution)"
            )
        if loss == "kl":
            if t.shape[1] not in (1, s.shape[1]):
                raise ValueError(f"the per-head KL needs as many student heads as teacher heads, got {s.shape[1]} "
                                 f"and {t.shape[1]}; use the 'mse' or 'cosine' attention loss")
            kl = t * (torch.log(t.clamp_min(KL_EPS)) - torch.log(s.clamp_min(KL_EPS)))
            total = total + kl.sum(dim=-1).mean()
        else:
            s, t = s.mean(dim=1), t.mean(dim=1)
            if loss == "mse":
                total = total + F.mse_loss(s, t)
            else:
                s, t = F.normalize(s.flatten(1), dim=1), F.normalize(t.flatten(1), dim=1)
                total = total + (s - t).pow(2).sum(dim=1).mean()
    return total
