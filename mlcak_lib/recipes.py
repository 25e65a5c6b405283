"""The course's recipes: which model is trained on which data, how, and under which cache key (notebooks 04-06).

* :func:`get_teacher` -- the high-resolution multi-task teacher, trained once and shared by
  notebooks 04-06 (``teacher-<dataset>-<profile>`` in the model cache).
* :func:`train_student` -- one low-resolution student of a :class:`~mlcak_lib.variants.Variant`
  (``student-<dataset>-<profile>-<variant>-r<px>``), with the distillation objective of notebook 05
  and, for the multi-task variants, the local head and objective of notebook 06.
* :data:`TEACHER_TRAINING`, :data:`STUDENT_TRAINING` -- their optimisation settings per profile.

Every cache key of a trained model is assembled here, from four parts: ``data``
(:func:`mlcak_lib.dataswitch.data_description`), ``model`` (resolution, classes, architecture,
local head), ``train`` (:class:`~mlcak_lib.train.TrainConfig`) and ``objective`` (the objective's
``config()``). :func:`mlcak_lib.cache.load_or_train` adds the code fingerprint.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from torch import nn

from . import config as _config
from .cache import CacheMiss, load_or_train
from .augment import AugmentSpec, Augmented
from .dataswitch import data_description, dataset_class_names, dataset_has_boxes, get_splits, resolve_dataset
from . import checkpoints
from .cache import TEACHER_CODE, teacher_fingerprint
from .distill import DistillObjective
from .guidance import AttentionGuidance
from .local_task import LocalObjective, require_boxes
from .models import TEACHER_RESOLUTION, architecture, attach_local_head, build_student, build_teacher
from .splits import InMemorySplit
from .train import Objective, SupervisedObjective, TrainConfig, fit
from .variants import Variant, get_variant

__all__ = ["TEACHER_TRAINING", "TEACHER_OBJECTIVE", "STUDENT_TRAINING", "STUDENT_ARCHITECTURES", "teacher_objective",
           "CacheMiss", "student_training", "student_architecture", "get_teacher", "train_student"]

#: Optimisation of the teacher per profile. Default: the budget that fits notebook 04's 3 minutes on 2 CPU
#: cores (about 60k image passes); validation curves of the simulated data stay flat for several epochs
#: before they rise, so patience is long. Chosen on the validation split (measurements in notebook 04).
#: The learning rate was re-chosen on the five-patient simulator (issue 12: outpainted CTs, drawn ribs; best
#: validation score, seeds 0/1): 2e-3 barely left chance on seed 0 (training loss flat, best 0.57, test MCCT
#: 0.52) and took off only at epoch 12 on seed 1 (0.58); 1e-3 took off by epoch 5-8 on both (0.591/0.590);
#: 5e-4 0.595 on seed 0 but 0.575 by its last epoch (overfitting the three training patients).
TEACHER_TRAINING: dict[str, TrainConfig] = {
    "default": TrainConfig(epochs=30, batch_size=32, lr=1e-3, weight_decay=0.05, warmup_epochs=1.0, patience=5),
    "full": TrainConfig(epochs=60, batch_size=128, lr=5e-4, weight_decay=0.05, warmup_epochs=5.0, patience=10),
}

#: The teacher's architecture per profile, as overrides of the course's family (:data:`mlcak_lib.models.ARCHITECTURES`):
#: a deeper convolutional stem, five stride-2 stages down to the matched 7 x 7 grid (issue 13; the candidates and
#: their measurements are in ``mlcak_lib/data/results/teacher_candidates.jsonl`` and notebook 04). The students keep the family's
#: stem at their own resolution.
TEACHER_ARCHITECTURE: dict[str, dict[str, Any]] = {
    "default": {"stem_channels": (16, 32, 64, 96, 128), "stem_convs": 1},
    "full": {},
}

#: Training films of the teacher per profile, where they differ from the profile's split sizes (``None``: the
#: same splits as the students). The simulator makes films without limit; with the default 3,000 the teacher's
#: training loss kept falling while its validation score stalled (it memorised films), so it sees 9,000 (the
#: first 3,000 are the students' training films; validation and test splits are the same).
TEACHER_SIZES: dict[str, dict[str, int] | None] = {"default": {"train": 9000}, "full": None}

#: How the teacher uses the lesion boxes, per profile (issue 13, notebook 04): ``lambda_local`` weights the
#: local task (which tokens hold a lesion, :class:`~mlcak_lib.local_task.LocalObjective`), ``guide`` the
#: attention guidance of ``guide_blocks`` (:class:`~mlcak_lib.guidance.AttentionGuidance`). Datasets without
#: boxes train the teacher on the image labels alone. ``augment``: the augmentation of its training films
#: (:class:`~mlcak_lib.augment.AugmentSpec` mode, or ``None``). On the default profile (seed 0, 9,000 films, chosen
#: on the validation patient) it raised the best validation score from 0.811 (epoch 10 of 15) to 0.886 (epoch 22
#: of 27); on the unseen test patient MCCT 0.797 -> 0.870, MLCT macro 0.764 -> 0.859 (``teacher-aug-both`` in
#: ``mlcak_lib/data/results/teacher_candidates.jsonl``). The full profile's teacher was never measured with it.
TEACHER_OBJECTIVE: dict[str, dict[str, Any]] = {
    "default": {"lambda_local": 1.0, "guide": 1.0, "guide_blocks": (1, 3), "augment": "both"},
    "full": {"lambda_local": 1.0, "guide": 1.0, "guide_blocks": (5, 11), "augment": None},
}


def teacher_objective(profile: str | None = None, boxes: bool = True, seed: int = 0) -> Objective:
    """The teacher's objective: supervised + local task + attention guidance (:data:`TEACHER_OBJECTIVE`), or
    supervised alone when the data have no boxes (``boxes=False``); on augmented films where the profile says so
    (:class:`~mlcak_lib.augment.Augmented`, its draws seeded with ``seed``)."""
    spec = TEACHER_OBJECTIVE[_config.get_profile(profile)]
    objective: Objective = SupervisedObjective()
    if boxes and spec["lambda_local"] > 0:
        objective = LocalObjective(objective, lambda_local=spec["lambda_local"])
    if boxes and spec["guide"] > 0:
        objective = AttentionGuidance(objective, weight=spec["guide"], blocks=spec["guide_blocks"])
    if spec.get("augment"):
        objective = Augmented(objective, AugmentSpec(mode=spec["augment"]), seed=seed)
    return objective


#: Optimisation of the students per profile: trained to convergence, early stopping on the validation score
#: with a generous maximum, the best epoch kept. Default (issue 14): with a 10-epoch budget 60 of 63 grid runs
#: had their best epoch at 9 or 10; on the five-patient data the 28-px baseline and output-KD students peak
#: around epoch 8 and then overfit the three training patients, so 8 epochs of patience end a run near
#: epoch 16-20, well inside the maximum of 40.
STUDENT_TRAINING: dict[str, TrainConfig] = {
    "default": TrainConfig(epochs=40, batch_size=64, lr=1e-3, weight_decay=0.05, warmup_epochs=1.0, patience=8),
    "full": TrainConfig(epochs=60, batch_size=128, lr=5e-4, weight_decay=0.05, warmup_epochs=5.0, patience=10),
}


#: The student architectures per profile, as overrides of the family (:data:`mlcak_lib.models.ARCHITECTURES`):
#: ``standard`` is the family itself; ``small`` is a student that is really cheaper, not only fed a smaller
#: image (issue 14): half the width and half the depth, the same 7 x 7 token grid and heads, so that every
#: attention term still applies (at 28 px about a fifth of the standard student's FLOPs, notebook 05).
STUDENT_ARCHITECTURES: dict[str, dict[str, dict[str, Any]]] = {
    "default": {"standard": {}, "small": {"embed_dim": 48, "depth": 2}},
    "full": {"standard": {}, "small": {"embed_dim": 96, "depth": 6}},
}


def student_architecture(name: str = "standard", profile: str | None = None) -> dict[str, Any]:
    """The architecture overrides of the student called ``name`` (:data:`STUDENT_ARCHITECTURES`)."""
    table = STUDENT_ARCHITECTURES[_config.get_profile(profile)]
    if name not in table:
        raise ValueError(f"unknown student architecture {name!r}; choose from {', '.join(table)}")
    return dict(table[name])


def student_training(profile: str | None = None) -> TrainConfig:
    """The students' :class:`~mlcak_lib.train.TrainConfig` of a profile (:data:`STUDENT_TRAINING`)."""
    return STUDENT_TRAINING[_config.get_profile(profile)]


def _cache_config(data: Mapping[str, Any], model: Mapping[str, Any], cfg: TrainConfig, objective: Objective) -> dict:
    """The configuration dict of a trained model's cache key (see the module docstring)."""
    return {"data": dict(data), "model": dict(model), "train": cfg.as_dict(), "objective": objective.config()}


def get_teacher(
    profile: str | None = None,
    seed: int = 0,
    config: TrainConfig | None = None,
    sizes: Mapping[str, int] | None = None,
    progress: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    load_only: bool = False,
    dataset: str | None = None,
    ignore_committed: bool = False,
    use_boxes: bool = True,
    **arch_overrides: Any,
) -> tuple[nn.Module, list[dict[str, Any]], dict[str, Any]]:
    """The course's high-resolution multi-task teacher, trained once and shared by notebooks 04-06.

    A teacher committed in the package (:mod:`mlcak_lib.checkpoints`, ``teacher-<dataset>-<profile>.pt``,
    seed 0) answers the default request (no ``config``, ``sizes`` or architecture overrides, seed 0): it
    is loaded when its key matches, and a stale one is refused with a warning that names what changed.
    ``ignore_committed=True`` skips it (``scripts/train_teacher.py`` rebuilds it that way). ``sizes``
    defaults to :data:`TEACHER_SIZES` on the simulator (more training films than the students get).
    With boxes in the data the teacher learns the local task and box-guided attention too
    (:func:`teacher_objective`); ``use_boxes=False`` trains it on the image labels alone (the ablation
    notebook 04 compares with, cached and committed as ``teacher-<dataset>-<profile>-labels-only``).

    Loads it from the cache when a teacher with the same data, architecture, training settings,
    seed and code exists; otherwise reads the data (:func:`mlcak_lib.dataswitch.get_splits`), trains
    with :func:`mlcak_lib.train.fit` (supervised objective, early stopping on the validation split)
    and caches it. Returns ``(model, history, info)`` as :func:`mlcak_lib.cache.load_or_train` does;
    ``load_only=True`` raises :class:`~mlcak_lib.cache.CacheMiss` instead of training. ``dataset``
    (else ``MLCAK_DATASET``, else the simulator) selects the data; the name is resolved once here.
    """
    profile = _config.get_profile(profile)
    dataset = resolve_dataset(dataset)
    # The committed checkpoint answers the course's default request only (profile settings, default sizes, seed 0);
    # another request is another model, not a stale one.
    default_request = config is None and sizes is None and seed == 0 and not arch_overrides
    if sizes is None and dataset == "synth":
        sizes = TEACHER_SIZES[profile]
    cfg = (config or TEACHER_TRAINING[profile]).replace(seed=seed)
    arch_settings = {**TEACHER_ARCHITECTURE[profile], **arch_overrides}
    arch = architecture(profile, **arch_settings)
    boxes = use_boxes and dataset_has_boxes(dataset)
    objective = teacher_objective(profile, boxes, seed)
    local = boxes and TEACHER_OBJECTIVE[profile]["lambda_local"] > 0
    names = dataset_class_names(dataset, profile)
    model_desc = {"resolution": TEACHER_RESOLUTION, "num_classes": len(names), **arch}
    if local:
        model_desc["local_head"] = {"hidden": None}
    cfg_dict = _cache_config(data_description(dataset, profile, seed, sizes), model_desc, cfg, objective)
    name = f"teacher-{dataset}-{profile}" + ("" if use_boxes else "-labels-only")

    def build() -> nn.Module:
        model = build_teacher(len(names), profile=profile, seed=seed, **arch_settings)
        return attach_local_head(model) if local else model

    def train(model: nn.Module) -> list[dict[str, Any]]:
        data = get_splits((TEACHER_RESOLUTION,), profile=profile, seed=seed, splits=("train", "val"), sizes=sizes,
                          dataset=dataset)
        return fit(model, data["train"], data["val"], objective, cfg, progress=progress, desc="teacher")

    committed = checkpoints.committed_path(name) if default_request and not ignore_committed else None
    return load_or_train(name, cfg_dict, build, train, cache_dir, load_only=load_only, code=teacher_fingerprint(),
                         committed=committed, code_names=TEACHER_CODE)


def train_student(
    variant: str | Variant,
    resolution: int,
    splits: Mapping[str, InMemorySplit],
    teacher: nn.Module | None = None,
    teacher_info: Mapping[str, Any] | None = None,
    profile: str | None = None,
    seed: int = 0,
    config: TrainConfig | None = None,
    data_desc: Mapping[str, Any] | None = None,
    progress: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    arch_overrides: Mapping[str, Any] | None = None,
    local_hidden: int | None = None,
    **weights: float | None,
) -> tuple[nn.Module, list[dict[str, Any]], dict[str, Any]]:
    """Train (or load from the cache) one low-resolution student of ``variant``; returns ``(model, history, info)``.

    ``splits``: ``{"train", "val"}`` :class:`~mlcak_lib.splits.InMemorySplit` holding the student's
    ``resolution`` and the teacher's 224 px images. ``seed`` sets the student's initial weights and
    batch order (the data and the teacher stay fixed). ``teacher_info`` is the ``info`` dict from
    :func:`get_teacher` (its ``hash`` enters the student's cache key, so a new teacher means new
    students). ``data_desc`` (required) describes the splits for the cache key:
    :func:`mlcak_lib.dataswitch.data_description` of the splits' dataset, plus whatever you changed
    (e.g. ``{"subset": ...}``), so that different splits never share a cached student; its
    ``dataset`` names the cached file. ``weights`` override alpha/beta/gamma/levels/temperature/lambda_local of the variant.

    Multi-task variants (``variant.uses_local``; notebook 06) get a local head
    (:func:`mlcak_lib.models.attach_local_head`, ``local_hidden`` units or linear) and the objective
    ``LocalObjective(DistillObjective(variant), lambda_local)``; they need boxes in the training
    split (:class:`mlcak_lib.local_task.LocalTaskUnavailable` otherwise).
    """
    profile = _config.get_profile(profile)
    cfg = (config or student_training(profile)).replace(seed=seed)
    v = get_variant(variant, profile, **weights)
    teacher_id = None
    if v.uses_teacher:
        if teacher is None:
            raise ValueError(f"variant {v.name!r} needs a teacher")
        teacher_id = str((teacher_info or {}).get("hash") or "unnamed-teacher")
    objective: Objective = DistillObjective(teacher, v, profile=profile, teacher_id=teacher_id)
    arch_overrides = dict(arch_overrides or {})
    train_split, val_split = splits["train"], splits.get("val")
    num_classes = len(train_split.class_names)
    model_desc: dict[str, Any] = {"resolution": resolution, "num_classes": num_classes,
                                  **architecture(profile, **arch_overrides)}
    if v.uses_local:
        require_boxes(train_split)
        objective = LocalObjective(objective, lambda_local=v.lambda_local, profile=profile)
        model_desc["local_head"] = {"hidden": local_hidden}
    if data_desc is None:
        raise ValueError("train_student needs data_desc, the description of the splits it gets "
                         "(dataswitch.data_description(...) plus what you changed, e.g. a subset)")
    data = dict(data_desc)
    cfg_dict = _cache_config(data, model_desc, cfg, objective)

    def build() -> nn.Module:
        model = build_student(resolution, num_classes, profile=profile, seed=seed, **arch_overrides)
        return attach_local_head(model, hidden=local_hidden) if v.uses_local else model

    def train(model: nn.Module) -> list[dict[str, Any]]:
        return fit(model, train_split, val_split, objective, cfg, resolution=resolution, progress=progress,
                   desc=f"{v.name} @ {resolution}px")

    name = f"student-{data.get('dataset', 'custom')}-{profile}-{v.name}-r{resolution}"
    return load_or_train(name, cfg_dict, build, train, cache_dir)
