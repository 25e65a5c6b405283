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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Variant",
    "VARIANT_NAMES",
    "DISTILL_VARIANTS",
    "LOCAL_VARIANTS",
    "variants",
    "default_weights",
    "write_tuned_weights",
    "get_variant",
    "level_pairs",
    "classification_loss",
    "output_kd_loss",
    "attention_kd_loss",
    "hinton_kd_loss",
    "kd_loss",
    "TeacherCache",
    "DistillObjective",
    "student_training",
    "train_student",
]


# --------------------------------------------------------------------------------------------
# Variants and their weights
# --------------------------------------------------------------------------------------------

#: The file holding the tuned weights per profile (chosen on the validation split by
#: ``scripts/tune_distill.py --write`` and ``scripts/tune_local.py --write``; see its ``_about``).
#: Kept out of the Python source so that retuning does not change the library's code fingerprint
#: (``train.code_fingerprint``) and so does not invalidate every cached model.
TUNED_WEIGHTS_FILE = Path(__file__).resolve().parent / "data" / "tuned_weights.json"

#: The weights a variant can take: ``levels`` is the number of attention levels (:func:`level_pairs`),
#: ``lambda_local`` the weight of the local task (notebook 06, :mod:`mlcak_lib.localization`).
WEIGHT_NAMES: tuple[str, ...] = ("alpha", "beta", "gamma", "levels", "temperature", "lambda_local")


def default_weights(profile: str | None = None) -> dict[str, float]:
    """The tuned weights of a profile, read from :data:`TUNED_WEIGHTS_FILE` (read on every call)."""
    from .config import get_profile

    profile = get_profile(profile)
    table = json.loads(TUNED_WEIGHTS_FILE.read_text())
    if profile not in table:
        raise ValueError(f"{TUNED_WEIGHTS_FILE.name} has no weights for profile {profile!r}")
    weights = {k: table[profile][k] for k in WEIGHT_NAMES}
    weights["levels"] = int(weights["levels"])
    return weights


def write_tuned_weights(profile: str, **weights: float) -> None:
    """Store chosen weights of ``profile`` in :data:`TUNED_WEIGHTS_FILE` (used by the tuning scripts)."""
    unknown = set(weights) - set(WEIGHT_NAMES)
    if unknown:
        raise ValueError(f"unknown weight(s) {sorted(unknown)}; choose from {list(WEIGHT_NAMES)}")
    table = json.loads(TUNED_WEIGHTS_FILE.read_text())
    table.setdefault(profile, {}).update({k: (int(v) if k == "levels" else float(v)) for k, v in weights.items()})
    TUNED_WEIGHTS_FILE.write_text(json.dumps(table, indent=2) + "\n")


@dataclass(frozen=True)
class Variant:
    """One training objective: which distillation terms are on and with what weights.

    ``kind`` is ``"labels"`` (no teacher), ``"mse"`` (the MLCAK family: alpha/beta/gamma) or
    ``"hinton"`` (temperature-scaled KL on both tasks; alpha/beta weight MLCT/MCCT).
    """

    name: str
    kind: str = "mse"
    alpha: float = 0.0
    beta: float = 0.0
    gamma: float = 0.0
    levels: int = 2
    temperature: float = 4.0
    lambda_local: float = 0.0
    description: str = ""

    @property
    def uses_teacher(self) -> bool:
        return self.kind != "labels"

    @property
    def uses_local(self) -> bool:
        """Multi-task variant: a local head and ``lambda_local * L_local`` (notebook 06)."""
        return self.lambda_local > 0

    @property
    def uses_attention(self) -> bool:
        return self.kind == "mse" and self.gamma > 0

    def with_weights(self, **changes) -> "Variant":
        """A copy with some fields changed (e.g. ``v.with_weights(gamma=0.0)``)."""
        unknown = set(changes) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"Variant has no field(s) {sorted(unknown)}")
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("name", "kind", "alpha", "beta", "gamma", "levels", "temperature", "lambda_local")}


def _variants(weights: Mapping[str, float]) -> dict[str, Variant]:
    a, b, g = float(weights["alpha"]), float(weights["beta"]), float(weights["gamma"])
    lv, t, lam = int(weights["levels"]), float(weights["temperature"]), float(weights["lambda_local"])
    return {
        "baseline": Variant("baseline", "labels", levels=lv, temperature=t,
                            description="low-resolution student trained from labels only"),
        "output-kd": Variant("output-kd", "mse", a, b, 0.0, lv, t,
                             description="MSE on MLCT and MCCT logits (gamma = 0)"),
        "attention-kd": Variant("attention-kd", "mse", 0.0, 0.0, g, lv, t,
                                description="multilevel attention term only (alpha = beta = 0)"),
        "mlcak": Variant("mlcak", "mse", a, b, g, lv, t,
                         description="MLCAK: logits of both tasks + multilevel attention"),
        "hinton-kd": Variant("hinton-kd", "hinton", 1.0, 1.0, 0.0, lv, t,
                             description="classic temperature-scaled KL on both tasks (reference)"),
        "multitask": Variant("multitask", "labels", levels=lv, temperature=t, lambda_local=lam,
                             description="labels only + the local task (lesion map per token; notebook 06)"),
        "mlcak-mt": Variant("mlcak-mt", "mse", a, b, g, lv, t, lambda_local=lam,
                            description="the complete system: MLCAK distillation + the local task (notebook 06)"),
    }


#: The distillation variants of notebook 05, in table order.
DISTILL_VARIANTS: tuple[str, ...] = ("baseline", "output-kd", "attention-kd", "mlcak", "hinton-kd")
#: The multi-task variants of notebook 06 (they need boxes), in table order.
LOCAL_VARIANTS: tuple[str, ...] = ("multitask", "mlcak-mt")
#: Every variant name, in table order.
VARIANT_NAMES: tuple[str, ...] = DISTILL_VARIANTS + LOCAL_VARIANTS


def variants(profile: str | None = None, **overrides) -> dict[str, Variant]:
    """Every :class:`Variant` of the course with the profile's tuned weights (see :func:`get_variant`)."""
    return {name: get_variant(name, profile, **overrides) for name in VARIANT_NAMES}


def get_variant(name: str | Variant, profile: str | None = None, **overrides) -> Variant:
    """The :class:`Variant` called ``name`` with the profile's tuned weights.

    ``overrides`` (``alpha``, ``beta``, ``gamma``, ``levels``, ``temperature``) replace the *tuned
    weights* before the variant takes the ones it uses: ``get_variant("output-kd", gamma=300)``
    still has ``gamma = 0``, ``get_variant("mlcak", gamma=0)`` is MLCAK without the attention term.
    A :class:`Variant` instance gets the overrides directly. Raises ``ValueError`` naming the known
    variants when ``name`` is unknown.
    """
    if isinstance(name, Variant):
        return name.with_weights(**overrides) if overrides else name
    from .config import get_profile

    weights = default_weights(get_profile(profile))
    unknown = set(overrides) - set(weights)
    if unknown:
        raise ValueError(f"unknown weight(s) {sorted(unknown)}; choose from {sorted(weights)}")
    weights.update({k: v for k, v in overrides.items() if v is not None})
    table = _variants(weights)
    key = str(name).strip().lower().replace("_", "-")
    if key not in table:
        raise ValueError(f"Unknown variant {name!r}; choose from {', '.join(VARIANT_NAMES)}")
    return table[key]


def level_pairs(teacher_depth: int, student_depth: int, n_levels: int) -> list[tuple[int, int]]:
    """Pairs ``(teacher_block, student_block)`` (0-based) for the multilevel attention term.

    Rule: ``n_levels`` levels evenly spaced in relative depth, the last level always being the
    last block of each network (``attention.evenly_spaced_blocks``): level ``k = 1..n`` uses
    student block ``round(k * Ds / n) - 1`` and teacher block ``round(k * Dt / n) - 1``. Same depths give identical indices; e.g.
    ``level_pairs(12, 4, 2) == [(5, 1), (11, 3)]``.
    """
    from .attention import evenly_spaced_blocks

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

def classification_loss(out: Mapping[str, Tensor], mlct: Tensor, mcct: Tensor) -> Tensor:
    """L_cls = BCE(MLCT logits, multi-hot) + CE(MCCT logits, class index)."""
    return F.binary_cross_entropy_with_logits(out["mlct"], mlct.float()) + F.cross_entropy(out["mcct"], mcct.long())


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


def kd_loss(variant: Variant, student_out: Mapping[str, Tensor], teacher_out: Mapping[str, Tensor] | None,
            student_maps: Sequence[Tensor] = (), teacher_maps: Sequence[Tensor] = ()) -> dict[str, Tensor]:
    """The distillation terms of ``variant`` as a dict: ``mlct_kd``, ``mcct_kd``, ``attn_kd``, ``kd`` (weighted sum).

    Terms whose weight is zero are not computed (reported as 0). ``baseline`` returns zeros.
    """
    ref = student_out["mlct"]
    zero = ref.new_zeros(())
    terms = {"mlct_kd": zero, "mcct_kd": zero, "attn_kd": zero, "kd": zero}
    if not variant.uses_teacher:
        return terms
    if teacher_out is None:
        raise ValueError(f"variant {variant.name!r} needs teacher outputs")
    if variant.kind == "hinton":
        kd = hinton_kd_loss(student_out, teacher_out, variant.temperature, variant.alpha, variant.beta)
        return {**terms, "kd": kd}
    if variant.alpha:
        terms["mlct_kd"] = output_kd_loss(student_out["mlct"], teacher_out["mlct"])
    if variant.beta:
        terms["mcct_kd"] = output_kd_loss(student_out["mcct"], teacher_out["mcct"])
    if variant.gamma:
        terms["attn_kd"] = attention_kd_loss(student_maps, teacher_maps)
    terms["kd"] = variant.alpha * terms["mlct_kd"] + variant.beta * terms["mcct_kd"] + variant.gamma * terms["attn_kd"]
    return terms


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
        from .attention import capture_attention, head_average
        from .metrics import eval_batches

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
_CACHE_MEMO: "dict[tuple, tuple[nn.Module, object, TeacherCache]]" = {}
_CACHE_MEMO_SIZE = 2


def _shared_cache(teacher: nn.Module, images: Tensor, blocks: Sequence[int]) -> TeacherCache:
    """A :class:`TeacherCache` for ``images``, reused while the teacher's weights and the images are unchanged.

    A cache holding more blocks serves a request for fewer (e.g. output-only KD after MLCAK).
    """
    with torch.no_grad():  # a checksum of the weights: a retrained or edited teacher gets a new cache
        weights = float(sum(p.double().sum() for p in teacher.parameters()))
    key = (id(teacher), id(images), weights)
    for (k, cached_blocks), (t, imgs, cache) in _CACHE_MEMO.items():
        if k == key and t is teacher and imgs is images and set(blocks) <= set(cached_blocks):
            pick = [cache.blocks.index(b) for b in blocks]
            return TeacherCache(cache.mlct, cache.mcct, [cache.maps[i] for i in pick], list(blocks))
    cache = TeacherCache.build(teacher, images, blocks)
    _CACHE_MEMO[(key, tuple(blocks))] = (teacher, images, cache)
    while len(_CACHE_MEMO) > _CACHE_MEMO_SIZE:
        _CACHE_MEMO.pop(next(iter(_CACHE_MEMO)))
    return cache


# --------------------------------------------------------------------------------------------
# The objective that plugs into train.fit
# --------------------------------------------------------------------------------------------

try:  # the one training loop's objective interface (mlcak_lib.train)
    from .train import Objective as _Objective, SupervisedObjective as _Supervised
except ImportError:  # pragma: no cover - train.py is part of the library
    _Objective, _Supervised = object, None


class DistillObjective(_Objective):
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
        self.supervised = _Supervised(balance=balance)
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
            self.cache = _shared_cache(self.teacher, self._cache_images, self.teacher_blocks)

    @property
    def teacher_blocks(self) -> list[int]:
        return [t for t, _ in self.pairs]

    @property
    def student_blocks(self) -> list[int]:
        return [s for _, s in self.pairs]

    def forward(self, model: nn.Module, batch) -> dict[str, Tensor]:
        if not self.variant.uses_attention:
            return model(batch["x"])
        from .attention import capture_attention, head_average

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
        from .attention import capture_attention, head_average

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

        Only the fields that act in this variant appear, so e.g. retuning ``gamma`` does not
        invalidate cached ``output-kd`` or ``baseline`` students.
        """
        v = self.variant
        cfg: dict = {"objective": "distill", "variant": v.name, "kind": v.kind, "supervised": self.supervised.config()}
        if v.kind == "mse":
            cfg.update(alpha=v.alpha, beta=v.beta, gamma=v.gamma)
            if v.uses_attention:
                cfg["levels"] = v.levels
        elif v.kind == "hinton":
            cfg.update(alpha=v.alpha, beta=v.beta, temperature=v.temperature)
        if v.uses_teacher:
            cfg.update(teacher=self.teacher_id, teacher_resolution=self.teacher_resolution)
        return cfg


# --------------------------------------------------------------------------------------------
# Training a student (load-or-train)
# --------------------------------------------------------------------------------------------

def _student_training():
    from .train import TrainConfig

    return {
        # Same fixed budget for every variant (no early stop, so a slow starter such as the label-only
        # baseline is not cut short); the epoch with the best validation score is kept.
        "default": TrainConfig(epochs=10, batch_size=64, lr=1e-3, weight_decay=0.05, warmup_epochs=1.0, patience=None),
        "full": TrainConfig(epochs=60, batch_size=128, lr=5e-4, weight_decay=0.05, warmup_epochs=5.0, patience=10),
    }


def student_training(profile: str | None = None):
    """The student's :class:`mlcak_lib.train.TrainConfig` for a profile (``STUDENT_TRAINING``)."""
    from .config import get_profile

    return _student_training()[get_profile(profile)]


def train_student(
    variant: str | Variant,
    resolution: int,
    splits: Mapping[str, object],
    teacher: nn.Module | None = None,
    teacher_info: Mapping[str, object] | None = None,
    profile: str | None = None,
    seed: int = 0,
    config=None,
    data_desc: Mapping[str, object] | None = None,
    progress: bool | None = None,
    cache_dir=None,
    arch_overrides: Mapping[str, object] | None = None,
    local_hidden: int | None = None,
    **weights,
):
    """Train (or load from the cache) one low-resolution student of ``variant``; returns ``(model, history, info)``.

    ``splits``: ``{"train", "val"}`` :class:`~mlcak_lib.train.InMemorySplit` holding the student's
    ``resolution`` and the teacher's 224 px images. ``seed`` sets the student's initial weights and
    batch order (the data and the teacher stay fixed). ``teacher_info`` is the ``info`` dict from
    :func:`mlcak_lib.train.get_teacher` (its ``hash`` enters the student's cache key, so a new
    teacher means new students). ``data_desc`` describes the splits for the cache key (default:
    :func:`mlcak_lib.train.data_config` of the profile). ``weights`` override alpha/beta/gamma/levels/
    temperature/lambda_local of the variant.

    Multi-task variants (``variant.uses_local``: ``multitask``, ``mlcak-mt``; notebook 06) get a
    local head (:func:`mlcak_lib.localization.attach_local_head`, ``local_hidden`` units or linear)
    and the objective ``LocalObjective(DistillObjective(variant), lambda_local)``; they need boxes
    in the training split (:class:`mlcak_lib.localization.LocalTaskUnavailable` otherwise).
    """
    from . import train as _train
    from .config import get_profile
    from .models import architecture, build_student

    profile = get_profile(profile)
    cfg = (config or student_training(profile)).replace(seed=seed)
    v = get_variant(variant, profile, **weights)
    teacher_id = None
    if v.uses_teacher:
        if teacher is None:
            raise ValueError(f"variant {v.name!r} needs a teacher")
        teacher_id = str((teacher_info or {}).get("hash") or "unnamed-teacher")
    objective = DistillObjective(teacher, v, profile=profile, teacher_id=teacher_id)
    arch_overrides = dict(arch_overrides or {})
    arch = architecture(profile, **arch_overrides)
    train_split, val_split = splits["train"], splits.get("val")
    num_classes = len(train_split.class_names)
    model_desc = {"resolution": resolution, "num_classes": num_classes, **arch}
    if v.uses_local:
        from .localization import LocalObjective, require_boxes

        require_boxes(train_split)
        objective = LocalObjective(objective, lambda_local=v.lambda_local, profile=profile)
        model_desc["local_head"] = {"hidden": local_hidden}
    cfg_dict = {
        "data": dict(data_desc) if data_desc is not None else _train.data_config(profile),
        "model": model_desc,
        "train": cfg.as_dict(),
        "objective": objective.config(),
    }

    def build():
        model = build_student(resolution, num_classes, profile=profile, seed=seed, **arch_overrides)
        if v.uses_local:
            from .localization import attach_local_head

            model = attach_local_head(model, hidden=local_hidden)
        return model

    def fit(model):
        return _train.fit(model, train_split, val_split, objective, cfg, resolution=resolution, progress=progress,
                          desc=f"{v.name} @ {resolution}px")

    return _train.load_or_train(f"student-{profile}-{v.name}-r{resolution}", cfg_dict, build, fit, cache_dir)
