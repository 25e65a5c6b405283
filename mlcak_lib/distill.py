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
* **Attention maps** are the post-softmax maps of a block. The paper's form (``mlcak-paper``)
  averages them over heads and compares the full ``[N+1, N+1]`` matrix by the mean squared error;
  its entries are about ``1/(N+1)``, so that MSE is tiny and its ``gamma`` huge. The course also
  offers a per-head KL on each row and normalised maps with a cosine/L2 loss, on every row or the
  class token's row (:mod:`mlcak_lib.attention_kd`), with ``gamma`` in units of the classification
  loss (``gamma_mode="relative"``); ``mlcak`` takes the form chosen on the validation split
  (``scripts/tune_distill.py``).
* **Levels**: ``level_pairs`` maps ``n_levels`` evenly spaced student blocks, always ending at
  the last block, to the teacher block at the same relative depth.
* **Collaborative** = both tasks (MLCT and MCCT) are distilled together, in one loss, through
  one shared student; **multilevel** = the attention term sums over several blocks.
* **Classic Hinton KD** (reference): temperature-scaled KL divergence, on MLCT as ``C``
  independent Bernoulli distributions ``sigmoid(z / T)`` and on MCCT as ``softmax(z / T)``,
  each multiplied by ``T**2`` so gradients keep their scale as ``T`` changes.

The teacher is frozen (eval mode, no gradients) and sees the high-resolution ``image`` of a
sample while the student sees the low-resolution view ``lowres[r]`` of the same sample in the
same batch; its outputs are computed once per training split (:mod:`mlcak_lib.teacher_cache`),
which also builds the constant-map and oracle controls' targets.

Which terms are on and with what weights is a :class:`mlcak_lib.variants.Variant`; the output
loss of its family is looked up in :data:`OUTPUT_KD`. Training a student end to end (model,
objective, cache key) is :func:`mlcak_lib.recipes.train_student`.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import capture_attention, evenly_spaced_blocks
from .attention_kd import attention_kd_loss, attention_rows
from .guidance import lesion_distributions
from .teacher_cache import TeacherCache, kept_rows, shared_teacher_cache
from .train import Objective, SupervisedObjective
from .variants import ATTENTION_LOSSES, ATTENTION_ROWS, ATTENTION_TARGETS, Variant, get_variant

__all__ = [
    "level_pairs",
    "output_kd_loss",
    "ATTENTION_LOSSES",
    "ATTENTION_ROWS",
    "ATTENTION_TARGETS",
    "attention_rows",
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
               student_maps: Sequence[Tensor], teacher_maps: Sequence[Tensor], attn_scale: float = 1.0) -> dict[str, Tensor]:
    """The MLCAK family: ``alpha * MSE(MLCT) + beta * MSE(MCCT) + gamma * attn_scale * attention term``
    (:func:`attention_kd_loss` in the variant's form); terms whose weight is zero are not computed (reported as 0)."""
    zero = student_out["mlct"].new_zeros(())
    terms = {"mlct_kd": zero, "mcct_kd": zero, "attn_kd": zero}
    if variant.alpha:
        terms["mlct_kd"] = output_kd_loss(student_out["mlct"], teacher_out["mlct"])
    if variant.beta:
        terms["mcct_kd"] = output_kd_loss(student_out["mcct"], teacher_out["mcct"])
    if variant.gamma:
        terms["attn_kd"] = attention_kd_loss(student_maps, teacher_maps, variant.attn_loss, variant.attn_rows)
    gamma = variant.gamma * attn_scale
    terms["kd"] = variant.alpha * terms["mlct_kd"] + variant.beta * terms["mcct_kd"] + gamma * terms["attn_kd"]
    return terms


def _hinton_terms(variant: Variant, student_out: Mapping[str, Tensor], teacher_out: Mapping[str, Tensor],
                  student_maps: Sequence[Tensor], teacher_maps: Sequence[Tensor], attn_scale: float = 1.0) -> dict[str, Tensor]:
    """Classic Hinton KD on both tasks (:func:`hinton_kd_loss`; alpha/beta weight MLCT/MCCT)."""
    zero = student_out["mlct"].new_zeros(())
    kd = hinton_kd_loss(student_out, teacher_out, variant.temperature, variant.alpha, variant.beta)
    return {"mlct_kd": zero, "mcct_kd": zero, "attn_kd": zero, "kd": kd}


#: Output-distillation losses by name (``Family.output_kd`` of :mod:`mlcak_lib.variants`).
OUTPUT_KD: dict[str, Callable[..., dict[str, Tensor]]] = {"mse": _mse_terms, "hinton": _hinton_terms}


def kd_loss(variant: Variant, student_out: Mapping[str, Tensor], teacher_out: Mapping[str, Tensor] | None,
            student_maps: Sequence[Tensor] = (), teacher_maps: Sequence[Tensor] = (),
            attn_scale: float = 1.0) -> dict[str, Tensor]:
    """The distillation terms of ``variant`` as a dict: ``mlct_kd``, ``mcct_kd``, ``attn_kd``, ``kd`` (weighted sum).

    Terms whose weight is zero are not computed (reported as 0). Labels-only variants return zeros.
    ``attn_scale`` multiplies ``gamma`` (:class:`DistillObjective` sets it for ``gamma_mode="relative"``).
    """
    if not variant.uses_teacher:
        zero = student_out["mlct"].new_zeros(())
        return {"mlct_kd": zero, "mcct_kd": zero, "attn_kd": zero, "kd": zero}
    if teacher_out is None:
        raise ValueError(f"variant {variant.name!r} needs teacher outputs")
    return OUTPUT_KD[variant.family.output_kd](variant, student_out, teacher_out, student_maps, teacher_maps, attn_scale)


# --------------------------------------------------------------------------------------------
# Teacher outputs, computed once per dataset
# --------------------------------------------------------------------------------------------



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
      step (identical values, see the class docstring). ``False`` runs the teacher every step
      (not with the constant-map or oracle controls, whose targets are built from the whole split).
    * The attention term compares ``variant.attn_rows`` of the maps with ``variant.attn_loss``
      (:func:`attention_kd_loss`) against ``variant.attn_target``: the teacher's own maps, the
      constant map (:meth:`TeacherCache.constant`) or the oracle map (:meth:`TeacherCache.oracle`).
    * ``gamma_mode="relative"``: before the first step, the untrained student's attention term and
      classification loss are measured on the first ``SCALE_ITEMS`` training items, and ``gamma``
      multiplies their ratio (:attr:`attn_scale`): ``gamma = 1`` makes the attention term start at the
      size of the classification loss, whatever the form. ``"absolute"``: ``gamma`` as it is.
    * Attention maps of the student are captured with gradients (``capture_attention(...,
      keep_grad=True)``) only when ``gamma > 0``; with ``gamma = 0`` the forward pass is the plain
      one, so ``mlcak`` with ``gamma=0`` reproduces ``output-kd`` bit for bit.

    History parts: ``bce``, ``ce`` and, for distillation variants, ``mlct_kd``, ``mcct_kd``,
    ``attn_kd`` (unweighted) and ``kd`` (weighted sum).
    """

    #: Training items on which ``gamma_mode="relative"`` measures the two losses of the untrained student.
    SCALE_ITEMS = 256

    def __init__(self, teacher: nn.Module | None, variant: str | Variant = "mlcak", profile: str | None = None,
                 teacher_resolution: int | None = None, precompute: bool = True, balance: bool = True,
                 teacher_id: str | None = None, **weights) -> None:
        self.variant = get_variant(variant, profile, **weights)
        if self.variant.uses_teacher and teacher is None:
            raise ValueError(f"variant {self.variant.name!r} needs a teacher")
        if self.variant.uses_attention and self.variant.attn_target != "teacher" and not precompute:
            raise ValueError(f"the {self.variant.attn_target} control builds its targets from the whole training "
                             "split: it needs precompute=True")
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
        #: What multiplies ``gamma`` (1 unless ``gamma_mode="relative"``; set in :meth:`setup`).
        self.attn_scale: float = 1.0

    # -- train.Objective interface ------------------------------------------------------------
    def setup(self, model: nn.Module, train) -> None:
        self.supervised.setup(model, train)
        v = self.variant
        if v.uses_attention:
            self.pairs = level_pairs(len(self.teacher.blocks), len(model.blocks), v.levels)
        if self.teacher is not None and self.precompute:
            self._cache_images = train.images[self.teacher_resolution]
            self.cache = shared_teacher_cache(self.teacher, self._cache_images, self.teacher_blocks,
                                              rows=self._rows, heads=self._heads)
            if v.uses_attention and v.attn_target == "constant":
                self.cache = self.cache.constant()
            elif v.uses_attention and v.attn_target == "oracle":
                if not getattr(train, "boxes", None) or len(train.boxes) != len(train):
                    raise ValueError("the oracle control builds its targets from lesion boxes: the training split has none")
                lesions = lesion_distributions(train.boxes, train.box_labels, len(train.class_names),
                                               int(self._cache_images.shape[-1]), model.grid)
                self.cache = self.cache.oracle(lesions)
        self.attn_scale = 1.0
        if v.uses_attention and v.gamma_mode == "relative":
            self.attn_scale = self.initial_ratio(model, train)

    @property
    def _rows(self) -> str:
        return self.variant.attn_rows if self.variant.uses_attention else "full"

    @property
    def _heads(self) -> bool:
        return self.variant.uses_attention and self.variant.attn_loss == "kl"

    def initial_ratio(self, model: nn.Module, train) -> float:
        """Classification loss over the raw attention term of the untrained ``model`` on the first
        :attr:`SCALE_ITEMS` training items (eval mode, no gradients): the ``attn_scale`` of ``gamma_mode="relative"``."""
        index = torch.arange(min(self.SCALE_ITEMS, len(train)))
        batch = train.batch(index, model.resolution)
        batch["x"] = batch["x"].to(next(model.parameters()).device)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                outputs = self.forward(model, batch)
                parts = self.supervised.losses(outputs, batch["mlct"], batch["mcct"])
                _, t_maps = self.teacher_targets(batch)
                dev = outputs["mlct"].device
                attn = attention_kd_loss(outputs["attention"], [m.to(dev) for m in t_maps], self.variant.attn_loss,
                                         self.variant.attn_rows)
        finally:
            model.train(was_training)
        return float((parts["bce"] + parts["ce"]) / attn.clamp_min(1e-12))

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
        out["attention"] = [maps[b] for b in self.student_blocks]  # per head; the loss averages where its form does
        return out

    def teacher_targets(self, batch) -> tuple[dict[str, Tensor] | None, list[Tensor]]:
        """Teacher logits and attention targets for the items of ``batch`` (cache or live pass)."""
        if self.teacher is None:
            return None, []
        split = batch["split"]
        x_hr = split.images[self.teacher_resolution]
        if self.cache is not None and x_hr is self._cache_images:
            return self.cache.lookup(batch["index"])
        if self.variant.uses_attention and self.variant.attn_target != "teacher":
            raise ValueError(f"the {self.variant.attn_target} control has targets for its training split only")
        x = x_hr[batch["index"]].to(next(self.teacher.parameters()).device)
        with torch.no_grad():
            if self.teacher_blocks:
                with capture_attention(self.teacher, self.teacher_blocks) as maps:
                    out = self.teacher(x)
                return out, [kept_rows(maps[b], self._rows, self._heads) for b in self.teacher_blocks]
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
        parts.update(kd_loss(self.variant, outputs, t_out, outputs.get("attention", ()), t_maps, self.attn_scale))
        parts["loss"] = parts["cls"] + parts["kd"]
        return parts

    def __call__(self, batch, outputs, model):
        parts = self.terms(batch, outputs)
        keep = ("bce", "ce") if not self.variant.uses_teacher else ("bce", "ce", "mlct_kd", "mcct_kd", "attn_kd", "kd")
        return parts["loss"], {k: float(parts[k].detach()) for k in keep}

    def config(self) -> dict:
        """The settings that determine the trained student (part of the load-or-train cache key).

        Only the weights and attention settings that act in this variant appear
        (:meth:`~mlcak_lib.variants.Variant.active_weights`, without the local task's, which
        :class:`~mlcak_lib.local_task.LocalObjective` records), so e.g. retuning ``gamma`` does not
        invalidate cached ``output-kd`` or ``baseline`` students.
        """
        v = self.variant
        weights = {k: w for k, w in v.active_weights().items() if k != "lambda_local"}
        cfg: dict = {"objective": "distill", "variant": v.name, "family": v.family.name,
                     "supervised": self.supervised.config(), **weights, **v.attention_settings()}
        if v.uses_teacher:
            cfg.update(teacher=self.teacher_id, teacher_resolution=self.teacher_resolution)
        return cfg
