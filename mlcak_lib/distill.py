"""Knowledge distillation losses of MLCAK and its baselines (introduced in notebook 05).

The objective (``shared/design/METHOD.md``; Akhter et al., ISBI 2024, arXiv 2405.13370)::

    L_cls   = BCE(MLCT_S, y_local) + CE(MCCT_S, y_global)
    MLCAK_l = (1/N) sum_i H_i^l                   head-averaged attention map of block l
    L_KD    = alpha * MSE(MLCT_S, MLCT_T) + beta * MSE(MCCT_S, MCCT_T)
              + gamma * sum_{l in levels} MSE(MLCAK_l^S, MLCAK_l^T)
    L_joint = L_cls + L_KD

Course choices (the paper does not publish them), each stated in notebook 05:

* **Output distillation is on logits**, not probabilities: ``MSE(z_S, z_T)`` on the raw MLCT
  logits (one per class) and the raw MCCT logits (two). Logit matching is the large-temperature
  limit of Hinton KD and does not saturate where the teacher is confident.
* **Attention maps** are the post-softmax maps of a block averaged over heads, the full
  ``[N+1, N+1]`` matrix including the CLS row/column, compared by the mean squared error over
  all entries. Their entries are about ``1/(N+1)``, so the attention MSE is small and ``gamma``
  is correspondingly large (chosen on the validation split, ``scripts/tune_distill.py``).
* **Levels**: ``level_pairs`` maps ``n_levels`` evenly spaced student blocks, always ending at
  the last block, to the teacher block at the same relative depth.
* **Collaborative** = both tasks (MLCT and MCCT) are distilled together, in one loss, through
  one shared student; **multilevel** = the attention term sums over several blocks.
* **Classic Hinton KD** (reference): temperature-scaled KL divergence, on MLCT as ``C``
  independent Bernoulli distributions ``sigmoid(z / T)`` and on MCCT as ``softmax(z / T)``,
  each multiplied by ``T**2`` so gradients keep their scale as ``T`` changes.

The teacher is frozen (eval mode, no gradients) and sees the high-resolution ``image`` of a
sample while the student sees the low-resolution view ``lowres[r]`` of the same sample in the
same batch. Because the teacher is frozen *and* the course's training images are not augmented,
the teacher's logits and attention maps are a fixed function of the sample index:
:class:`TeacherCache` computes them once per dataset (one teacher pass over the training set)
instead of once per epoch, which on a CPU removes the 224-pixel forward pass from every
training step.

Which terms are on and with what weights is a :class:`mlcak_lib.variants.Variant`; the output
loss of its family is looked up in :data:`OUTPUT_KD`. Training a student end to end (model,
objective, cache key) is :func:`mlcak_lib.recipes.train_student`.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import capture_attention, evenly_spaced_blocks, head_average
from .metrics import eval_batches
from .train import Objective, SupervisedObjective
from .variants import Variant, get_variant

__all__ = [
    "level_pairs",
    "output_kd_loss",
    "attention_kd_loss",
    "hinton_kd_loss",
    "OUTPUT_KD",
    "kd_loss",
    "TeacherCache",
    "shared_teacher_cache",
    "DistillObjective",
]


def level_pairs(teacher_depth: int, student_depth: int, n_levels: int) -> list[tuple[int, int]]:
    """Pairs ``(teacher_block, student_block)`` (0-based) for the multilevel attention term.

    Rule: ``n_levels`` levels evenly spaced in relative depth, the last level always being the
    last block of each network (``attention.evenly_spaced_blocks``): level ``k = 1..n`` uses
    student block ``round(k * Ds / n) - 1`` and teacher block ``round(k * Dt / n) - 1``. Same depths give identical indices; e.g.
    ``level_pairs(12, 4, 2) == [(5, 1), (11, 3)]``.
    """
    if teacher_depth < 1 or student_depth < 1:
        raise ValueError("depths must be positive")
    if not 1 <= n_levels <= min(teacher_depth, student_depth):
        raise ValueError(
            f"n_levels must be between 1 and min(teacher_depth, student_depth) = "
            f"{min(teacher_depth, student_depth)}, got {n_levels}"
        )
    return list(zip(evenly_spaced_blocks(teacher_depth, n_levels), evenly_spaced_blocks(student_depth, n_levels)))


# --------------------------------------------------------------------------------------------
# Loss terms (pure functions of tensors)
# --------------------------------------------------------------------------------------------

def output_kd_loss(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """MSE between student and teacher **logits** (mean over batch and outputs)."""
    return F.mse_loss(student_logits, teacher_logits.detach().to(student_logits.dtype))


def attention_kd_loss(student_maps: Sequence[Tensor], teacher_maps: Sequence[Tensor]) -> Tensor:
    """Sum over levels of the MSE between head-averaged maps ``[B, N+1, N+1]`` (MLCAK_l^S vs MLCAK_l^T).

    Maps with a head axis (``[B, H, N+1, N+1]``) are averaged over heads first.
    """
    if len(student_maps) != len(teacher_maps) or not student_maps:
        raise ValueError(f"need one teacher map per student map, got {len(student_maps)} and {len(teacher_maps)}")
    total = student_maps[0].new_zeros(())
    for s, t in zip(student_maps, teacher_maps):
        s = s.mean(dim=1) if s.dim() == 4 else s
        t = t.mean(dim=1) if t.dim() == 4 else t
        if s.shape != t.shape:
            raise ValueError(
                f"attention maps differ in shape: student {tuple(s.shape)} vs teacher {tuple(t.shape)}; "
                "teacher and student need matched token grids (patch size scaled with resolution)"
            )
        total = total + F.mse_loss(s, t.detach().to(s.dtype))
    return total


def hinton_kd_loss(student: Mapping[str, Tensor], teacher: Mapping[str, Tensor], temperature: float = 4.0,
                   alpha: float = 1.0, beta: float = 1.0) -> Tensor:
    """Classic temperature-scaled KD (Hinton et al. 2015) on both tasks, times ``T**2``.

    MLCT: mean over classes of KL(Bernoulli(sigmoid(z_T/T)) || Bernoulli(sigmoid(z_S/T))).
    MCCT: KL(softmax(z_T/T) || softmax(z_S/T)). Both averaged over the batch; zero when the
    logits are equal.
    """
    T = float(temperature)
    zs, zt = student["mlct"] / T, teacher["mlct"].detach().to(student["mlct"].dtype) / T
    pt = torch.sigmoid(zt)
    # KL of Bernoullis written with log-sigmoids for stability: p log p/q + (1-p) log (1-p)/(1-q)
    kl_bern = pt * (F.logsigmoid(zt) - F.logsigmoid(zs)) + (1 - pt) * (F.logsigmoid(-zt) - F.logsigmoid(-zs))
    ls = F.log_softmax(student["mcct"] / T, dim=-1)
    lt = F.log_softmax(teacher["mcct"].detach().to(student["mcct"].dtype) / T, dim=-1)
    kl_cat = F.kl_div(ls, lt, log_target=True, reduction="batchmean")
    return (T * T) * (alpha * kl_bern.mean() + beta * kl_cat)


def _mse_terms(variant: Variant, student_out: Mapping[str, Tensor], teacher_out: Mapping[str, Tensor],
               student_maps: Sequence[Tensor], teacher_maps: Sequence[Tensor]) -> dict[str, Tensor]:
    """The MLCAK family: ``alpha * MSE(MLCT) + beta * MSE(MCCT) + gamma * attention term``; terms
    whose weight is zero are not computed (reported as 0)."""
    zero = student_out["mlct"].new_zeros(())
    terms = {"mlct_kd": zero, "mcct_kd": zero, "attn_kd": zero}
    if variant.alpha:
        terms["mlct_kd"] = output_kd_loss(student_out["mlct"], teacher_out["mlct"])
    if variant.beta:
        terms["mcct_kd"] = output_kd_loss(student_out["mcct"], teacher_out["mcct"])
    if variant.gamma:
        terms["attn_kd"] = attention_kd_loss(student_maps, teacher_maps)
    terms["kd"] = variant.alpha * terms["mlct_kd"] + variant.beta * terms["mcct_kd"] + variant.gamma * terms["attn_kd"]
    return terms


def _hinton_terms(variant: Variant, student_out: Mapping[str, Tensor], teacher_out: Mapping[str, Tensor],
                  student_maps: Sequence[Tensor], teacher_maps: Sequence[Tensor]) -> dict[str, Tensor]:
    """Classic Hinton KD on both tasks (:func:`hinton_kd_loss`; alpha/beta weight MLCT/MCCT)."""
    zero = student_out["mlct"].new_zeros(())
    kd = hinton_kd_loss(student_out, teacher_out, variant.temperature, variant.alpha, variant.beta)
    return {"mlct_kd": zero, "mcct_kd": zero, "attn_kd": zero, "kd": kd}


#: Output-distillation losses by name (``Family.output_kd`` of :mod:`mlcak_lib.variants`).
OUTPUT_KD: dict[str, Callable[..., dict[str, Tensor]]] = {"mse": _mse_terms, "hinton": _hinton_terms}


def kd_loss(variant: Variant, student_out: Mapping[str, Tensor], teacher_out: Mapping[str, Tensor] | None,
            student_maps: Sequence[Tensor] = (), teacher_maps: Sequence[Tensor] = ()) -> dict[str, Tensor]:
    """The distillation terms of ``variant`` as a dict: ``mlct_kd``, ``mcct_kd``, ``attn_kd``, ``kd`` (weighted sum).

    Terms whose weight is zero are not computed (reported as 0). Labels-only variants return zeros.
    """
    if not variant.uses_teacher:
        zero = student_out["mlct"].new_zeros(())
        return {"mlct_kd": zero, "mcct_kd": zero, "attn_kd": zero, "kd": zero}
    if teacher_out is None:
        raise ValueError(f"variant {variant.name!r} needs teacher outputs")
    return OUTPUT_KD[variant.family.output_kd](variant, student_out, teacher_out, student_maps, teacher_maps)


# --------------------------------------------------------------------------------------------
# Teacher outputs, computed once per dataset
# --------------------------------------------------------------------------------------------

class TeacherCache:
    """The frozen teacher's logits and head-averaged attention maps for every item of a split.

    Valid because (1) the teacher is frozen and runs in eval mode (no dropout, BatchNorm uses its
    running statistics) and (2) :func:`mlcak_lib.train.fit` slices fixed in-memory tensors
    (``InMemorySplit.batch``) with no augmentation, so the teacher's input for position ``i``
    never changes. One teacher pass over the split replaces one per epoch (and, through a small
    in-process memo, one per run of a grid). :class:`DistillObjective` uses a cache only for the
    very image tensor it was built from; any other split gets live teacher passes.

    Attributes: ``mlct`` ``[n, C]``, ``mcct`` ``[n, 2]``, ``maps`` (list, one ``[n, T, T]`` tensor
    per teacher block in ``blocks``), ``blocks``.
    """

    def __init__(self, mlct: Tensor, mcct: Tensor, maps: list[Tensor], blocks: list[int]) -> None:
        self.mlct, self.mcct, self.maps, self.blocks = mlct, mcct, maps, list(blocks)

    @classmethod
    def build(cls, teacher: nn.Module, images: Tensor, blocks: Sequence[int] = (), batch_size: int = 128) -> "TeacherCache":
        """Run the teacher (eval mode) over ``images`` ``[n, 1, R, R]``; keep logits and head-averaged maps."""
        def outputs(x):
            if not blocks:
                out = teacher(x)
                return out["mlct"].cpu(), out["mcct"].cpu(), []
            with capture_attention(teacher, list(blocks)) as captured:
                out = teacher(x)
            return out["mlct"].cpu(), out["mcct"].cpu(), [head_average(captured[b]).cpu() for b in blocks]

        mlct, mcct, maps = zip(*eval_batches(teacher, images, outputs, batch_size))
        return cls(torch.cat(mlct), torch.cat(mcct), [torch.cat(m) for m in zip(*maps)], list(blocks))

    def lookup(self, index: Tensor) -> tuple[dict[str, Tensor], list[Tensor]]:
        """Teacher outputs and maps for split positions ``index``."""
        index = index.cpu()
        return {"mlct": self.mlct[index], "mcct": self.mcct[index]}, [m[index] for m in self.maps]


#: The last few teacher caches, keyed by (teacher, image tensor, blocks): a grid of runs that share a
#: teacher and a training split (``mlcak_lib.runner``) runs the teacher once, not once per run.
_TEACHER_MEMO: "dict[tuple, tuple[nn.Module, object, TeacherCache]]" = {}
_TEACHER_MEMO_SIZE = 2


def shared_teacher_cache(teacher: nn.Module, images: Tensor, blocks: Sequence[int]) -> TeacherCache:
    """A :class:`TeacherCache` for ``images``, reused while the teacher's weights and the images are unchanged.

    A cache holding more blocks serves a request for fewer (e.g. output-only KD after MLCAK).
    """
    with torch.no_grad():  # a checksum of the weights: a retrained or edited teacher gets a new cache
        weights = float(sum(p.double().sum() for p in teacher.parameters()))
    key = (id(teacher), id(images), weights)
    for (k, cached_blocks), (t, imgs, cache) in _TEACHER_MEMO.items():
        if k == key and t is teacher and imgs is images and set(blocks) <= set(cached_blocks):
            pick = [cache.blocks.index(b) for b in blocks]
            return TeacherCache(cache.mlct, cache.mcct, [cache.maps[i] for i in pick], list(blocks))
    cache = TeacherCache.build(teacher, images, blocks)
    _TEACHER_MEMO[(key, tuple(blocks))] = (teacher, images, cache)
    while len(_TEACHER_MEMO) > _TEACHER_MEMO_SIZE:
        _TEACHER_MEMO.pop(next(iter(_TEACHER_MEMO)))
    return cache


# --------------------------------------------------------------------------------------------
# The objective that plugs into train.fit
# --------------------------------------------------------------------------------------------

class DistillObjective(Objective):
    """``L_joint = L_cls + L_KD`` of a :class:`Variant`, as a :class:`mlcak_lib.train.Objective`.

    >>> objective = DistillObjective(teacher, "mlcak")
    >>> history = train.fit(student, splits["train"], splits["val"], objective, cfg)

    * ``L_cls`` is the course's supervised loss (:class:`mlcak_lib.train.SupervisedObjective`,
      class-balanced BCE + CE), so the ``baseline`` variant trains exactly like a labels-only model.
    * The **student** sees ``batch["x"]`` (the low-resolution view); the **teacher** (frozen, eval
      mode, never updated) sees the same items at ``teacher_resolution`` from the same split
      (``batch["split"].images[teacher_resolution][batch["index"]]``).
    * ``precompute=True`` (default) builds a :class:`TeacherCache` of the training split in
      :meth:`setup`: teacher logits and maps are looked up by index instead of recomputed every
      step (identical values, see the class docstring). ``False`` runs the teacher every step.
    * Attention maps of the student are captured with gradients (``capture_attention(...,
      keep_grad=True)``) only when ``gamma > 0``; with ``gamma = 0`` the forward pass is the plain
      one, so ``mlcak`` with ``gamma=0`` reproduces ``output-kd`` bit for bit.

    History parts: ``bce``, ``ce`` and, for distillation variants, ``mlct_kd``, ``mcct_kd``,
    ``attn_kd`` (unweighted) and ``kd`` (weighted sum).
    """

    def __init__(self, teacher: nn.Module | None, variant: str | Variant = "mlcak", profile: str | None = None,
                 teacher_resolution: int | None = None, precompute: bool = True, balance: bool = True,
                 teacher_id: str | None = None, **weights) -> None:
        self.variant = get_variant(variant, profile, **weights)
        if self.variant.uses_teacher and teacher is None:
            raise ValueError(f"variant {self.variant.name!r} needs a teacher")
        self.teacher = teacher if self.variant.uses_teacher else None
        if self.teacher is not None:
            self.teacher.eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        self.teacher_resolution = teacher_resolution or getattr(teacher, "resolution", 224)
        self.precompute = precompute
        self.teacher_id = teacher_id
        self.supervised = SupervisedObjective(balance=balance)
        self.pairs: list[tuple[int, int]] = []
        self.cache: TeacherCache | None = None
        self._cache_images: Tensor | None = None

    # -- train.Objective interface ------------------------------------------------------------
    def setup(self, model: nn.Module, train) -> None:
        self.supervised.setup(model, train)
        if self.variant.uses_attention:
            self.pairs = level_pairs(len(self.teacher.blocks), len(model.blocks), self.variant.levels)
        if self.teacher is not None and self.precompute:
            self._cache_images = train.images[self.teacher_resolution]
            self.cache = shared_teacher_cache(self.teacher, self._cache_images, self.teacher_blocks)

    @property
    def teacher_blocks(self) -> list[int]:
        return [t for t, _ in self.pairs]

    @property
    def student_blocks(self) -> list[int]:
        return [s for _, s in self.pairs]

    def forward(self, model: nn.Module, batch) -> dict[str, Tensor]:
        if not self.variant.uses_attention:
            return model(batch["x"])
        with capture_attention(model, self.student_blocks, keep_grad=True) as maps:
            out = dict(model(batch["x"]))
        out["attention"] = [head_average(maps[b]) for b in self.student_blocks]
        return out

    def teacher_targets(self, batch) -> tuple[dict[str, Tensor] | None, list[Tensor]]:
        """Teacher logits and head-averaged maps for the items of ``batch`` (cache or live pass)."""
        if self.teacher is None:
            return None, []
        split = batch["split"]
        x_hr = split.images[self.teacher_resolution]
        if self.cache is not None and x_hr is self._cache_images:
            return self.cache.lookup(batch["index"])
        x = x_hr[batch["index"]].to(next(self.teacher.parameters()).device)
        with torch.no_grad():
            if self.teacher_blocks:
                with capture_attention(self.teacher, self.teacher_blocks) as maps:
                    out = self.teacher(x)
                return out, [head_average(maps[b]) for b in self.teacher_blocks]
            return self.teacher(x), []

    def terms(self, batch, outputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """All loss terms as tensors: ``bce``, ``ce``, ``cls``, ``mlct_kd``, ``mcct_kd``, ``attn_kd``, ``kd``, ``loss``."""
        parts = self.supervised.losses(outputs, batch["mlct"], batch["mcct"])
        parts["cls"] = parts["bce"] + parts["ce"]
        t_out, t_maps = self.teacher_targets(batch)
        dev = outputs["mlct"].device
        if t_out is not None:
            t_out = {k: t_out[k].to(dev) for k in ("mlct", "mcct")}
            t_maps = [m.to(dev) for m in t_maps]
        parts.update(kd_loss(self.variant, outputs, t_out, outputs.get("attention", ()), t_maps))
        parts["loss"] = parts["cls"] + parts["kd"]
        return parts

    def __call__(self, batch, outputs, model):
        parts = self.terms(batch, outputs)
        keep = ("bce", "ce") if not self.variant.uses_teacher else ("bce", "ce", "mlct_kd", "mcct_kd", "attn_kd", "kd")
        return parts["loss"], {k: float(parts[k].detach()) for k in keep}

    def config(self) -> dict:
        """The settings that determine the trained student (part of the load-or-train cache key).

        Only the weights that act in this variant appear (:meth:`~mlcak_lib.variants.Variant.active_weights`,
        without the local task's, which :class:`~mlcak_lib.local_task.LocalObjective` records), so
        e.g. retuning ``gamma`` does not invalidate cached ``output-kd`` or ``baseline`` students.
        """
        v = self.variant
        weights = {k: w for k, w in v.active_weights().items() if k != "lambda_local"}
        cfg: dict = {"objective": "distill", "variant": v.name, "family": v.family.name,
                     "supervised": self.supervised.config(), **weights}
        if v.uses_teacher:
            cfg.update(teacher=self.teacher_id, teacher_resolution=self.teacher_resolution)
        return cfg
