"""How notebook 07's detectors are trained, and under which cache key (issue 16).

* :data:`DETECTOR_VARIANTS` -- the ablations as named weight settings of :class:`~.objective.OXnetWeights`, each
  adding terms to the one before: ``box-only`` (RetinaNet on the box-labelled films), ``dual-attention`` (+ the
  global head and dual attention alignment on the films with image labels), ``prototypes`` (+ intra- and
  inter-class prototype alignment), ``oxnet`` (+ the mean teacher's soft focal loss and box consistency on the
  films without boxes: full OXnet). The fully box-supervised upper bound is ``box-only`` at box fraction 1.0
  (:data:`UPPER_BOUND`).
* :data:`DETECTOR_TRAINING` -- the training settings per profile (:class:`DetectorTraining`).
* :func:`train_detector` -- the loop: Adam, gradient-norm clipping at 0.1 (the official ``train_oxnet.py``), the
  teacher's EMA step after each optimiser step, the two-stream sampler (box-labelled films as the primary stream).
* :func:`get_detector` -- one detector through :func:`mlcak_lib.cache.load_or_train` under
  :func:`~.keys.detection_fingerprint`, keyed by the data description, the regime, the variant's weights, the
  architecture, the training settings and the seed: a rerun loads it.

**Budget and selection.** Every run takes the same fixed number of optimiser steps (``steps``), whatever its box
fraction: epochs of the two-stream sampler are counted in box-labelled films, so at 10 % boxes an epoch is a tenth
of the upper bound's and an epoch budget would give the runs unequal compute. The student is scored on the
validation split (AP@0.5, :func:`validation_score`) every ``eval_every`` steps and at the end, and the best of
those checkpoints is kept (early stopping by selection; the test split is never looked at). A variant whose
terms all need box-labelled films (``box-only``) draws no secondary stream: the films it would ignore are not
passed through the network.

**Seeds.** ``seed`` sets the initial weights, the batch order and the regime (which films get boxes;
:func:`~.sampling.supervision_regime`, stratified by normal / abnormal), so variants compared at one seed share
their box-labelled films, and the spread over seeds includes which films were boxed.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Mapping

import numpy as np
import torch
from torchvision.ops import box_iou

from .. import config as _config
from ..cache import load_or_train
from ..checkpoints import committed_path
from ..splits import InMemorySplit
from .data import omni_batch, scale_boxes
from .ema import TEACHER_DECAY, ema_update, make_teacher
from .evaluate import detection_report
from .keys import DETECTION_CODE, detection_fingerprint
from .losses import detection_attention, dual_attention_logits
from .model import OXnetDetector, build_detector
from .objective import TEACHER_SCORE, OXnetObjective, OXnetWeights
from .pretrain import PRETRAINING, BackboneClassifier, BackbonePretraining, backbone_key, pretrain
from .sampling import BOXES, regime_counts, supervision_regime, two_stream_sampler

_NOT_GLOBAL = dict(dual=0.0, intra=0.0, inter=0.0)
_NO_TEACHER = dict(soft_focal=0.0, soft_regression=0.0)

#: The ablations of issue 16, in order; each switches on the terms of the one before and more.
DETECTOR_VARIANTS: dict[str, OXnetWeights] = {
    "box-only": OXnetWeights(**_NOT_GLOBAL, **_NO_TEACHER),
    "dual-attention": OXnetWeights(intra=0.0, inter=0.0, **_NO_TEACHER),
    "prototypes": OXnetWeights(**_NO_TEACHER),
    "oxnet": OXnetWeights(),
}
#: The reference of the paired comparisons, and the fully box-supervised upper bound (variant, box fraction).
REFERENCE: str = "box-only"
UPPER_BOUND: tuple[str, float] = ("box-only", 1.0)


@dataclass(frozen=True)
class DetectorTraining:
    """A detector's architecture and optimisation (every field enters the cache key)."""

    steps: int = 300
    primary_batch: int = 8  # box-labelled films per batch
    secondary_batch: int = 8  # films with image labels or none, per batch (variants that use them)
    lr: float = 1e-3
    weight_decay: float = 0.0
    clip: float = 0.1  # gradient-norm clipping of the official code
    warmup: int = 0  # steps of linear learning-rate warm-up
    cosine: bool = False  # cosine decay of the learning rate to zero at the last step
    eval_every: int = 100  # steps between validation scores (and at the last step)
    val_images: int | None = None  # validation films scored (None: all)
    teacher_decay: float = TEACHER_DECAY
    teacher_score: float = TEACHER_SCORE
    widths: tuple[int, ...] = (16, 24, 32, 64, 96)
    fpn_channels: int = 64
    head_convs: int = 2
    anchor_sizes: tuple[int, ...] = (8, 16, 32)  # base anchor sizes of the three levels at 224 px
    same_maps: bool = False  # the same feature-map sizes at 112 px as at 224 px (first stage stride 1)
    pretrained: bool = False  # start from the backbone pretrained on another pool's image labels (.pretrain)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> "DetectorTraining":
        return replace(self, **changes)

    @property
    def architecture(self) -> dict[str, Any]:
        return {"widths": tuple(self.widths), "fpn_channels": self.fpn_channels, "head_convs": self.head_convs,
                "anchor_sizes": tuple(self.anchor_sizes), "same_maps": self.same_maps}


#: Training per profile. **Default** (the committed grid): 1,000 steps (warm-up 50, cosine decay), lr 1e-3,
#: anchors (8, 24, 72), starting from the backbone pretrained on image labels of another pool of films
#: (:mod:`.pretrain`), at 112 px. Measured on one core (another job on the second): box-only about 3 min, the
#: two-stream variants about twice that, full OXnet (the teacher's forward pass too) about three times.
#:
#: **How the budget was found (validation AP@0.5, seed 0; issue 16).** From scratch the detector learns almost
#: nothing on a CPU budget: at 224 px, 300-900 steps with any learning rate, clipping, width, head or matcher
#: end at 0.03-0.05 with only cardiomegaly found; 4,000 steps (27 min) reach 0.082, and nodules stay at the prior
#: even on training films. At 112 px, box-only at 100 % boxes, 1,200 steps: 0.008 from scratch, **0.098 from the
#: pretrained backbone** (cardiomegaly 0.85). With that backbone the box fraction matters only when boxes are
#: very scarce: box-only reaches 0.082 at 2 % boxes (60 films) but 0.002 at 0.5 % (15 films). So the grid's
#: fractions are 0.5 % and 2 %, and the gap that OXnet can close is the one at 0.5 %. Anchors (8, 24, 72) cover
#: cardiomegaly and pneumothorax (74 %, 78 % of validation lesions at IoU >= 0.5 at 112 px; (8, 16, 32) left
#: them without a foreground anchor). The backbone's image classifier reaches validation macro AUROC about 0.6.
#: Only findings with large boxes are learnt at this budget (cardiomegaly, some pneumothorax and aortic
#: enlargement): macro AP over the nine classes is low by construction, and the notebook shows it per class.
#: **Full**: a wider detector and three times the steps (not run for the committed results).
DETECTOR_TRAINING: dict[str, DetectorTraining] = {
    "default": DetectorTraining(steps=1000, eval_every=250, warmup=50, cosine=True, anchor_sizes=(8, 24, 72),
                                pretrained=True),
    "full": DetectorTraining(steps=3000, eval_every=500, warmup=100, cosine=True, anchor_sizes=(8, 24, 72),
                             pretrained=True, widths=(24, 32, 48, 96, 160), fpn_channels=96, head_convs=3),
}
#: ``--tiny``: a handful of steps on a tiny detector (tests and smoke runs).
TINY_TRAINING = DetectorTraining(steps=2, primary_batch=4, secondary_batch=4, eval_every=2,
                                 widths=(8, 8, 16, 16, 24), fpn_channels=16, head_convs=1)


def detector_training(profile: str | None = None) -> DetectorTraining:
    """The :class:`DetectorTraining` of a profile (:data:`DETECTOR_TRAINING`)."""
    return DETECTOR_TRAINING[_config.get_profile(profile)]


def variant_weights(variant: str) -> OXnetWeights:
    """The loss weights of an ablation variant (:data:`DETECTOR_VARIANTS`)."""
    if variant not in DETECTOR_VARIANTS:
        raise ValueError(f"unknown detector variant {variant!r}; choose from {', '.join(DETECTOR_VARIANTS)}")
    return DETECTOR_VARIANTS[variant]


def uses_teacher(weights: OXnetWeights) -> bool:
    """Whether the mean teacher is needed (soft focal loss or box consistency on)."""
    return bool(weights.soft_focal or weights.soft_regression)


def uses_unboxed(weights: OXnetWeights) -> bool:
    """Whether any term reads the films without boxes (so the sampler draws a secondary stream)."""
    return bool(weights.dual or weights.intra or weights.inter or uses_teacher(weights))


@torch.no_grad()
def predict(model: OXnetDetector, split: InMemorySplit, resolution: int, batch_size: int = 64,
            limit: int | None = None) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor]:
    """Detections per image and the global head's image scores ``[n, C]`` (sigmoid of the dual-attention logits,
    what the head is trained on) for the first ``limit`` images of ``split`` (default all)."""
    model.eval()
    images = split.images[resolution][:limit]
    dets, scores = [], []
    for start in range(0, len(images), batch_size):
        out = model(images[start:start + batch_size])
        dets += model.detect(out)
        att = detection_attention(model.level_maps(out), tuple(out.cam.shape[-2:]))
        scores.append(torch.sigmoid(dual_attention_logits(out.cam, att)))
    return dets, torch.cat(scores) if scores else torch.zeros(0, model.num_classes)


def evaluate_split(model: OXnetDetector, split: InMemorySplit, resolution: int, limit: int | None = None,
                   auroc: bool = True) -> dict[str, Any]:
    """:func:`~.evaluate.detection_report` of ``model`` on (the first ``limit`` images of) ``split`` at ``resolution``."""
    n = len(split) if limit is None else min(int(limit), len(split))
    dets, scores = predict(model, split, resolution, limit=n)
    boxes = [scale_boxes(b, resolution) for b in split.boxes[:n]]
    return detection_report(boxes, split.box_labels[:n], dets, split.class_names, gt_mm=split.box_mm[:n],
                            mlct=split.mlct[:n] if auroc else None, global_scores=scores if auroc else None)


@torch.no_grad()
def anchor_coverage(model: OXnetDetector, split: InMemorySplit, resolution: int, iou: float = 0.5) -> dict[str, float]:
    """Share of the split's lesions that some anchor of ``model`` overlaps at IoU >= ``iou`` (RetinaNet's foreground
    threshold), over all lesions (``"all"``) and per class (NaN without lesions). A lesion without such an anchor is
    learnt only through the matcher's low-quality matches: at 112 px the course's detector covers far fewer lesions
    than at 224 px (its anchors shrink with the image, its strides do not; ``same_maps`` fixes that, see
    :data:`DETECTOR_TRAINING`), one thing that breaks at low resolution."""
    model.eval()
    anchors = model(split.images[resolution][:1]).anchors[0]
    boxes = torch.cat([scale_boxes(b, resolution) for b in split.boxes]) if split.boxes else torch.zeros(0, 4)
    labels = torch.cat([lab.reshape(-1) for lab in split.box_labels]) if split.boxes else torch.zeros(0, dtype=torch.long)
    hit = box_iou(boxes, anchors).amax(dim=1) >= iou if len(boxes) else torch.zeros(0, dtype=torch.bool)
    share = {"all": float(hit.float().mean()) if len(hit) else float("nan")}
    for c, name in enumerate(split.class_names):
        share[name] = float(hit[labels == c].float().mean()) if bool((labels == c).any()) else float("nan")
    return share


def validation_score(model: OXnetDetector, split: InMemorySplit, resolution: int, limit: int | None = None) -> float:
    """AP@0.5 over all lesions of the validation split (NaN without lesions): the selection score."""
    report = evaluate_split(model, split, resolution, limit, auroc=False)
    return float(next(r["ap50"] for r in report["strata"] if r["stratum"] == "all"))


def learning_rate_factor(step: int, cfg: DetectorTraining) -> float:
    """The learning rate at optimiser step ``step`` (from 0) as a fraction of ``cfg.lr``: linear warm-up over
    ``cfg.warmup`` steps, then constant or (``cfg.cosine``) a cosine decay that reaches zero at ``cfg.steps``."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if not cfg.cosine:
        return 1.0
    span = max(1, cfg.steps - cfg.warmup)
    return 0.5 * (1.0 + float(np.cos(np.pi * min(1.0, (step - cfg.warmup) / span))))


def train_detector(model: OXnetDetector, train: InMemorySplit, val: InMemorySplit | None, resolution: int,
                   codes: np.ndarray, weights: OXnetWeights, cfg: DetectorTraining, seed: int = 0,
                   progress: bool | None = None) -> list[dict[str, Any]]:
    """Train ``model`` in place under regime ``codes`` (module docstring); returns the history (one row per
    validation score: step, the unweighted mean of every term since the last row, switched off or not, ``val_ap50``,
    seconds, ``best`` on the kept rows) and keeps the best validated weights (the last ones without a validation split)."""
    torch.manual_seed(seed)
    n_box = int((np.asarray(codes) == BOXES).sum())
    if n_box == 0:
        raise ValueError("the regime gives no film boxes: a detector needs box fraction > 0")
    secondary = cfg.secondary_batch if uses_unboxed(weights) and n_box < len(codes) else 0
    sampler = two_stream_sampler(codes, min(cfg.primary_batch, n_box), secondary, seed)
    objective = OXnetObjective(model.num_classes, model.global_head.in_channels, weights, cfg.teacher_score)
    teacher = make_teacher(model) if uses_teacher(weights) else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: learning_rate_factor(s, cfg))
    history: list[dict[str, Any]] = []
    sums: dict[str, float] = {}
    best_key, best_state, step, epoch, count, start = -np.inf, None, 0, 0, 0, time.perf_counter()
    show = progress if progress is not None else False
    while step < cfg.steps:
        sampler.set_epoch(epoch)
        for index in sampler:
            model.train()
            terms = objective(model, teacher, omni_batch(train, index, resolution, codes))
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            sched.step()
            if teacher is not None:
                ema_update(teacher, model, cfg.teacher_decay, step)
            step, count = step + 1, count + 1
            for k, v in terms.items():
                if k != "image_logits":
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
            if step % cfg.eval_every == 0 or step == cfg.steps:
                score = validation_score(model, val, resolution, cfg.val_images) if val is not None else float("nan")
                row = {"step": step, "epoch": epoch, **{k: v / count for k, v in sums.items()}, "val_ap50": score,
                       "seconds": time.perf_counter() - start}
                history.append(row)
                sums, count = {}, 0
                key = score if np.isfinite(score) else -1.0
                if best_state is None or key > best_key or val is None:
                    best_key, best_state = key, copy.deepcopy(model.state_dict())
                    row["best"] = True
                if show:
                    print(f"  step {step}/{cfg.steps} loss {row.get('loss', float('nan')):.3f} val AP50 {score:.3f}",
                          flush=True)
            if step >= cfg.steps:
                break
        epoch += 1
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def regime_of(train: InMemorySplit, box_fraction: float, seed: int, label_fraction: float | None = None) -> np.ndarray:
    """The supervision codes of a run: :func:`~.sampling.supervision_regime` stratified by the films' global state."""
    return supervision_regime(len(train), box_fraction, label_fraction, seed=seed, strata=train.mcct)


def detector_name(variant: str, box_fraction: float, resolution: int, dataset: str, profile: str, seed: int) -> str:
    """``detector-<dataset>-<profile>-<variant>-b<percent>-r<px>-s<seed>``: the cached (or committed) file's stem."""
    return f"detector-{dataset}-{profile}-{variant}-b{box_fraction * 100:g}-r{resolution}-s{seed}"


#: How a stale committed detector or backbone is rebuilt (named when one is refused).
REBUILD_DETECTORS = "python scripts/commit_detectors.py"


def _committed(name: str) -> Any:
    """The committed checkpoint of ``name`` when the package has one (else None: cache or training)."""
    path = committed_path(name)
    return path if path.exists() else None


def get_backbone(
    pool: InMemorySplit,
    val: InMemorySplit | None,
    pool_desc: Mapping[str, Any],
    resolution: int,
    config: DetectorTraining,
    pretraining: BackbonePretraining = PRETRAINING,
    profile: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    load_only: bool = False,
    progress: bool | None = None,
) -> tuple[BackboneClassifier, list[dict[str, Any]], dict[str, Any]]:
    """The backbone of ``config``'s detectors, pretrained on ``pool`` (:mod:`.pretrain`), from the package, the cache
    or trained now. ``pool_desc`` identifies the pool (its ``dataset`` names the file); returns ``(model, history,
    info)`` as :func:`mlcak_lib.cache.load_or_train`."""
    profile = _config.get_profile(profile)
    key = backbone_key(pool_desc, resolution, len(pool.class_names), config.widths, config.same_maps, pretraining)
    name = f"detector-backbone-{pool_desc.get('dataset', 'custom')}-{profile}-r{resolution}"

    def build() -> BackboneClassifier:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(pretraining.seed)
            return BackboneClassifier(len(pool.class_names), resolution, config.widths, config.same_maps)

    def fit(model: BackboneClassifier) -> list[dict[str, Any]]:
        return pretrain(model, pool, val, resolution, pretraining, bool(progress))

    return load_or_train(name, key, build, fit, cache_dir, load_only=load_only, code=detection_fingerprint(),
                         committed=_committed(name), code_names=DETECTION_CODE, rebuild=REBUILD_DETECTORS)


def get_detector(
    variant: str,
    box_fraction: float,
    resolution: int,
    seed: int,
    splits: Mapping[str, InMemorySplit],
    data_desc: Mapping[str, Any],
    profile: str | None = None,
    config: DetectorTraining | None = None,
    label_fraction: float | None = None,
    cache_dir: str | os.PathLike | None = None,
    load_only: bool = False,
    progress: bool | None = None,
    backbone: tuple[BackboneClassifier, str] | None = None,
) -> tuple[OXnetDetector, list[dict[str, Any]], dict[str, Any]]:
    """One trained detector of ``variant`` at ``box_fraction`` and ``resolution`` (loaded when cached).

    ``splits``: ``{"train", "val"}`` holding ``resolution`` (with boxes); ``data_desc``: what identifies them
    (``dataswitch.data_description`` plus the data code, see :mod:`mlcak_lib.detection_runner`); its ``dataset``
    names the file. ``label_fraction``: films with image labels only (default: all films without boxes).
    ``backbone``: ``(classifier, its key hash)`` from :func:`get_backbone`, required when ``config.pretrained``.
    A detector committed in the package under its file name (:func:`detector_name`) is loaded when its key matches.
    Returns ``(model, history, info)`` as :func:`mlcak_lib.cache.load_or_train`, with ``info["config"]`` (the key's
    dict) and ``info["regime"]`` (films per kind of supervision).
    """
    profile = _config.get_profile(profile)
    cfg = config or detector_training(profile)
    if cfg.pretrained and backbone is None:
        raise ValueError("this detector starts from a pretrained backbone (DetectorTraining.pretrained): pass "
                         "backbone=(classifier, hash) from recipe.get_backbone (mlcak_lib.detection_runner."
                         "pretrained_backbone reads the pool), or use a config with pretrained=False")
    weights = variant_weights(variant)
    train, val = splits["train"], splits.get("val")
    codes = regime_of(train, box_fraction, seed, label_fraction)
    counts = regime_counts(codes)
    num_classes = len(train.class_names)
    cfg_dict = {
        "data": dict(data_desc),
        "regime": {"box_fraction": float(box_fraction), "label_fraction": label_fraction, "seed": int(seed),
                   "strata": "mcct", "counts": counts},
        "variant": variant, "weights": weights.as_dict(),
        "model": {"resolution": int(resolution), "num_classes": num_classes, **cfg.architecture},
        "train": cfg.as_dict(), "seed": int(seed),
        "backbone": backbone[1] if cfg.pretrained and backbone is not None else None,
    }

    def build() -> OXnetDetector:
        model = build_detector(num_classes, resolution, seed=seed, **cfg.architecture)
        return model.load_backbone(backbone[0].stages) if cfg.pretrained and backbone is not None else model

    def fit(model: OXnetDetector) -> list[dict[str, Any]]:
        return train_detector(model, train, val, resolution, codes, weights, cfg, seed, progress)

    name = detector_name(variant, box_fraction, resolution, str(data_desc.get("dataset", "custom")), profile, seed)
    model, history, info = load_or_train(name, cfg_dict, build, fit, cache_dir, load_only=load_only,
                                         code=detection_fingerprint(), committed=_committed(name),
                                         code_names=DETECTION_CODE, rebuild=REBUILD_DETECTORS)
    return model, history, {**info, "config": cfg_dict, "regime": counts}
