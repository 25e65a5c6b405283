"""The detection twin of the experiment runner (notebook 07, issue 16): OXnet's ablations x box fractions x
resolutions x seeds, each detector evaluated on the test split (patients no training film comes from).

``python -m mlcak_lib.detection_runner`` (or ``mlcak-detect``) trains, or loads from the cache, one detector per
(variant, box fraction, resolution, seed) with :func:`mlcak_lib.detection.recipe.get_detector`, plus the fully
box-supervised upper bound (``box-only`` at box fraction 1.0) at each resolution and seed, every detector starting
from the backbone pretrained once per resolution on a separate pool of films (:func:`pretrained_backbone`), and writes into
``--out`` (default :func:`mlcak_lib.config.output_dir`):

* ``detection_<tag>.csv`` -- one row per run: variant, box fraction, resolution, seed, the films per kind of
  supervision, every metric of :func:`mlcak_lib.detection.evaluate.detection_report` (AP@0.5, AP@[.5:.95],
  FROC at 0.5/1/2/4 false positives per image, over all lesions and as ``<metric>|<size stratum>``; macro image
  AUROC from the global head and from the detections), the share of test lesions with an anchor at IoU >= 0.5
  (``anchor_coverage``), the validation score and step of the kept checkpoint,
  whether the mean teacher ever gave the soft focal loss a box (``teacher_active``), the cache key's hash, cache hit, training and wall seconds, the detection code fingerprint, git revision and
  dirty flag, and the hardware;
* ``detection_<tag>.md`` -- mean ± std over seeds, seed-paired differences against ``box-only`` at the same
  box fraction and resolution with 95 % t intervals (:func:`mlcak_lib.results.paired_table`), and the share of
  the AP gap between ``box-only`` and the upper bound that each variant recovers
  (:func:`mlcak_lib.results.gap_recovered`, under the course's two-seed-SD rule).

``--merge A.csv B.csv ...`` joins the CSVs of runs made side by side (a later row replaces an earlier one of
the same run) and writes the CSV and the table under ``--tag`` without training. Nothing is chosen on the test
split: each detector's checkpoint is selected on the validation split (:mod:`mlcak_lib.detection.recipe`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from torch import nn

from . import config as _config
from .cache import adapter_fingerprint, simulator_fingerprint, source_hash
from .dataswitch import data_description, get_splits, resolve_dataset
from .detection.data import scale_boxes
from .detection.evaluate import (
    average_precision,
    coco_dicts,
    coco_evaluation,
    mm_per_pixel,
)
from .detection.keys import detection_fingerprint
from .detection.pretrain import (
    PRETRAIN_SEED,
    PRETRAINING,
    TINY_PRETRAINING,
    BackboneClassifier,
    classifier_auroc,
)
from .detection.recipe import (
    DETECTOR_VARIANTS,
    REFERENCE,
    TINY_TRAINING,
    UPPER_BOUND,
    DetectorTraining,
    anchor_coverage,
    detector_training,
    evaluate_split,
    get_backbone,
    get_detector,
    predict,
)
from .envinfo import git_revision, hardware
from .results import gap_reason, gap_recovered, paired_markdown, paired_table, pm_text
from .runner_cli import (
    add_common_arguments,
    merge_runs,
    run_or_merge,
    seed_summary,
    write_tables,
)
from .splits import InMemorySplit

#: The committed grid's box fractions and resolution (why: :data:`mlcak_lib.detection.recipe.DETECTOR_TRAINING`).
DEFAULT_FRACTIONS: tuple[float, ...] = (0.005, 0.02)
DEFAULT_RESOLUTIONS: tuple[int, ...] = (112,)
#: ``--tiny``: split sizes for tests and smoke runs (training: :data:`~mlcak_lib.detection.recipe.TINY_TRAINING`).
TINY_SIZES: dict[str, int] = {"train": 32, "val": 16, "test": 16}
RUN_KEYS: list[str] = ["variant", "box_fraction", "resolution", "seed"]
#: Columns summarised and compared (over all lesions).
METRICS: dict[str, str] = {"ap50": "AP@0.5", "ap50_95": "AP@[.5:.95]", "froc@1": "FROC@1", "auroc_global": "AUROC global",
                           "auroc_detection": "AUROC det."}
GAP_METRICS: tuple[str, ...] = ("ap50", "ap50_95")


def detection_data_description(dataset: str, profile: str, sizes: dict[str, int] | None = None,
                               seed: int = 0) -> dict[str, Any]:
    """:func:`~mlcak_lib.dataswitch.data_description` plus the data code: the simulator's (or the adapters')
    source and that of the switch, which the detectors' code fingerprint does not cover."""
    code = simulator_fingerprint() if dataset == "synth" else adapter_fingerprint()
    return {**data_description(dataset, profile, seed, sizes), "data_code": f"{source_hash('dataswitch', 'datasets')}+{code}"}


def tiny_named(desc: dict[str, Any], tiny: bool) -> dict[str, Any]:
    """``desc`` with ``dataset`` marked ``-tiny`` for ``--tiny`` runs: their files are then named apart from the
    committed checkpoints (which a tiny run would otherwise meet, and refuse, under the same name)."""
    return {**desc, "dataset": f"{desc['dataset']}-tiny"} if tiny else desc


def pretraining_pool(resolution: int, profile: str | None = None, dataset: str | None = None,
                     sizes: dict[str, int] | None = None) -> tuple[InMemorySplit, InMemorySplit, dict[str, Any]]:
    """The backbone's pretraining pool, the validation split that picks its epoch, and the pool's description.

    Simulator: the training patients' films of simulator seed :data:`~mlcak_lib.detection.pretrain.PRETRAIN_SEED`,
    which no detector trains on. Real data has one set of films: the pool is the training split itself (its image
    labels; the box-only detectors then share them, which the simulator's separate pool avoids)."""
    profile = _config.get_profile(profile)
    dataset = resolve_dataset(dataset)
    seed = PRETRAIN_SEED if dataset == "synth" else 0
    pool = get_splits((resolution,), profile, seed=seed, splits=("train",), sizes=sizes, dataset=dataset)["train"]
    val = get_splits((resolution,), profile, splits=("val",), sizes=sizes, dataset=dataset)["val"]
    return pool, val, detection_data_description(dataset, profile, sizes, seed)


def pretrained_backbone(resolution: int, config: DetectorTraining, profile: str | None = None,
                        dataset: str | None = None, sizes: dict[str, int] | None = None, tiny: bool = False,
                        load_only: bool = False, progress: bool | None = None) -> tuple[BackboneClassifier, str] | None:
    """``(classifier, key hash)`` of the pretrained backbone that ``config``'s detectors start from at ``resolution``
    (:func:`~mlcak_lib.detection.recipe.get_backbone` on :func:`pretraining_pool`); None when ``config`` starts from
    scratch."""
    if not config.pretrained:
        return None
    model, _, info = backbone_run(resolution, config, profile, dataset, sizes, tiny, load_only, progress)
    return model, info["hash"]


def backbone_run(resolution: int, config: DetectorTraining, profile: str | None = None, dataset: str | None = None,
                 sizes: dict[str, int] | None = None, tiny: bool = False, load_only: bool = False,
                 progress: bool | None = None) -> tuple[BackboneClassifier, list[dict[str, Any]], dict[str, Any]]:
    """:func:`~mlcak_lib.detection.recipe.get_backbone` on :func:`pretraining_pool`: ``(model, history, info)``."""
    pool, val, desc = pretraining_pool(resolution, profile, dataset, sizes)
    return get_backbone(pool, val, tiny_named(desc, tiny), resolution, config, TINY_PRETRAINING if tiny else PRETRAINING,
                        profile, load_only=load_only, progress=progress)


def percent(fraction: float) -> str:
    """A box fraction as the tables and figures write it: ``0.005`` -> ``"0.5 %"``, ``1.0`` -> ``"100 %"``."""
    return f"{100 * float(fraction):g} %"


def runs(variants: Sequence[str], fractions: Sequence[float], upper_bound: bool = True) -> list[tuple[str, float]]:
    """The (variant, box fraction) pairs of a grid, the upper bound last (once)."""
    pairs = [(v, float(f)) for f in fractions for v in variants]
    if upper_bound and UPPER_BOUND not in pairs:
        pairs.append(UPPER_BOUND)
    return pairs


def flat_report(report: dict[str, Any]) -> dict[str, Any]:
    """A :func:`~mlcak_lib.detection.evaluate.detection_report` as flat CSV columns."""
    row: dict[str, Any] = {}
    for stratum in report["strata"]:
        suffix = "" if stratum["stratum"] == "all" else f"|{stratum['stratum']}"
        row.update({f"{k}{suffix}": v for k, v in stratum.items() if k != "stratum"})
    for source, entry in report.get("auroc", {}).items():
        row[f"auroc_{source}"] = entry["macro"]
    row["mm_per_px"] = report.get("mm_per_px", float("nan"))
    return row


#: Validation films on which a committed detector's or backbone's check is recorded (and re-measured by the tests).
CHECK_FILMS = 64


def committed_check(model: nn.Module, val: InMemorySplit, resolution: int) -> dict[str, float]:
    """What ``scripts/commit_detectors.py`` records and the tests reproduce on the first :data:`CHECK_FILMS` films of
    ``val``: a detector's summed detection scores and mean image score, or a backbone classifier's macro AUROC."""
    if isinstance(model, BackboneClassifier):
        return {"n": CHECK_FILMS, "auroc": classifier_auroc(model, val, resolution)}
    dets, scores = predict(model, val, resolution, limit=CHECK_FILMS)
    return {"n": CHECK_FILMS, "score_sum": float(sum(float(d["scores"].sum()) for d in dets)),
            "global_mean": float(scores.mean())}


def class_ap(model: nn.Module, split: InMemorySplit, resolution: int) -> dict[str, float]:
    """AP@0.5 per class of ``model`` on ``split`` (COCO's evaluation, :mod:`mlcak_lib.detection.evaluate`; NaN for a
    class without lesions): what macro AP averages (notebook 07, section 9)."""
    dets, _ = predict(model, split, resolution)
    boxes = [scale_boxes(b, resolution) for b in split.boxes]
    gt, dt = coco_dicts(boxes, split.box_labels, dets, len(split.class_names), split.box_mm,
                        mm_per_pixel(boxes, split.box_mm))
    ev = coco_evaluation(gt, dt)
    return {name: average_precision(ev, "all", 0.5, c) for c, name in enumerate(split.class_names)}


def run_grid(variants: Sequence[str], fractions: Sequence[float], resolutions: Sequence[int], seeds: Sequence[int],
             profile: str | None = None, dataset: str | None = None, tiny: bool = False, steps: int | None = None,
             upper_bound: bool = True, quiet: bool = False) -> pd.DataFrame:
    """Train or load every detector of the grid and evaluate it on the test split: one row per run."""
    profile = _config.get_profile(profile)
    dataset = resolve_dataset(dataset)
    unknown = [v for v in variants if v not in DETECTOR_VARIANTS]
    if unknown:
        raise SystemExit(f"unknown detector variant(s) {unknown}; choose from {', '.join(DETECTOR_VARIANTS)}")
    sizes = dict(TINY_SIZES) if tiny else None
    cfg = TINY_TRAINING.replace(pretrained=True) if tiny else detector_training(profile)
    if steps is not None:
        cfg = cfg.replace(steps=int(steps), eval_every=min(cfg.eval_every, int(steps)))
    desc = tiny_named(detection_data_description(dataset, profile, sizes), tiny)
    splits = get_splits(tuple(resolutions), profile, splits=("train", "val", "test"), sizes=sizes, dataset=dataset)
    rev, dirty = git_revision()
    base = {"dataset": dataset, "profile": profile, "tiny": bool(tiny), "detector_code": detection_fingerprint(),
            "git_rev": rev, "git_dirty": dirty, **hardware()}
    rows = []
    for r in resolutions:
        backbone = pretrained_backbone(r, cfg, profile, dataset, sizes, tiny, progress=not quiet)
        for variant, fraction in runs(variants, fractions, upper_bound):
            for seed in seeds:
                start = time.perf_counter()
                model, history, info = get_detector(variant, fraction, r, seed, splits, desc, profile, cfg,
                                                    progress=not quiet, backbone=backbone)
                report = evaluate_split(model, splits["test"], r)
                coverage = anchor_coverage(model, splits["test"], r)["all"]
                best = next((h for h in reversed(history) if h.get("best")), history[-1] if history else {})
                row = {"variant": variant, "box_fraction": fraction, "resolution": r, "seed": seed,
                       "upper_bound": (variant, fraction) == UPPER_BOUND, **{f"n_{k}": v for k, v in info["regime"].items()},
                       "n_test": len(splits["test"]), **flat_report(report), "anchor_coverage": coverage, "val_ap50": best.get("val_ap50"),
                       "best_step": best.get("step"), "steps": cfg.steps,
                       "teacher_active": any(h.get("soft_focal", 0.0) > 0 for h in history), "config_hash": info["hash"],
                       "cache_hit": info["cache_hit"], "train_seconds": info["train_seconds"],
                       "wall_seconds": time.perf_counter() - start, **base}
                rows.append(row)
                if not quiet:
                    how = "cached" if info["cache_hit"] else f"trained in {info['train_seconds']:.0f} s"
                    print(f"{variant} @ {percent(fraction)} boxes, {r} px, seed {seed}: AP50 {row['ap50']:.3f} ({how})", flush=True)
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame, metrics: Sequence[str] = tuple(METRICS)) -> pd.DataFrame:
    """Per (variant, box fraction, resolution): seeds, mean and std of each metric."""
    return seed_summary(df, ["variant", "box_fraction", "resolution"], metrics)


def gap_table(df: pd.DataFrame, metrics: Sequence[str] = GAP_METRICS) -> pd.DataFrame:
    """The share of the gap between ``box-only`` and the upper bound that each variant recovers, per box fraction,
    resolution and metric (means over the variant's seeds, the same seeds for box-only and the upper bound; NaN with
    the reason when :func:`~mlcak_lib.results.gap_reason` withholds it)."""
    rows = []
    upper_variant, upper_fraction = UPPER_BOUND
    for r, at_r in df.groupby("resolution", sort=False):
        upper = at_r[(at_r["variant"] == upper_variant) & np.isclose(at_r["box_fraction"], upper_fraction)]
        for fraction, group in at_r[~np.isclose(at_r["box_fraction"], upper_fraction)].groupby("box_fraction", sort=False):
            ref = group[group["variant"] == REFERENCE]
            for variant, sub in group[group["variant"] != REFERENCE].groupby("variant", sort=False):
                seeds = set(sub["seed"])  # the same seeds on all three sides: a variant run on fewer seeds is not
                ref_s, up_s = ref[ref["seed"].isin(seeds)], upper[upper["seed"].isin(seeds)]  # compared to others'
                for m in metrics:
                    u, b = up_s[m].mean(), ref_s[m].mean()
                    b_std, n = ref_s[m].std(), ref_s["seed"].nunique()
                    rows.append({"variant": variant, "box_fraction": fraction, "resolution": r, "metric": m,
                                 "value": sub[m].mean(), "reference": b, "upper_bound": u,
                                 "gap_recovered": gap_recovered(sub[m].mean(), b, u, b_std, n),
                                 "seeds": n, "note": _reworded(gap_reason(b, u, b_std, n)) if len(up_s) else "no upper-bound run"})
    return pd.DataFrame(rows)


def _reworded(reason: str) -> str:
    """:func:`~mlcak_lib.results.gap_reason` speaks of a teacher and a baseline: here the upper bound and box-only."""
    return reason.replace("teacher", "upper bound").replace("baseline", REFERENCE)


def markdown(df: pd.DataFrame, title: str = "Detection ablations") -> str:
    """The runner's markdown: summary, seed-paired differences against ``box-only`` and the gap recovered."""
    summary = summarize(df)
    lines = [f"## {title}", "", "Test split (patients unseen in training); mean ± std over seeds; the checkpoint of "
             "each run was chosen on the validation split.", "",
             "| variant | boxes | px | seeds | " + " | ".join(METRICS.values()) + " |",
             "|---|---:|---:|---:|" + "---|" * len(METRICS)]
    for _, row in summary.iterrows():
        cells = [pm_text(row[f"{m}_mean"], row[f"{m}_std"]) for m in METRICS]
        lines.append(f"| {row['variant']} | {percent(row['box_fraction'])} | {row['resolution']} | {row['seeds']} | "
                     + " | ".join(cells) + " |")
    paired = paired_table(df.assign(student=""), reference=REFERENCE, metrics=list(METRICS), by=["box_fraction"])
    if len(paired):
        paired["model"] = [f"{v} @ {percent(f)} boxes" for v, f in zip(paired["variant"], paired["box_fraction"])]
        lines += ["", paired_markdown(paired, f"{title}: seed-paired differences against {REFERENCE}")]
    gaps = gap_table(df)
    if len(gaps):
        lines += [f"## {title}: gap recovered between {REFERENCE} and the upper bound ({UPPER_BOUND[0]} at "
                  f"{percent(UPPER_BOUND[1])} boxes)", "", "| variant | boxes | px | seeds | metric | gap recovered |", "|---|---:|---:|---:|---|---|"]
        for _, g in gaps.iterrows():
            text = f"{100 * g['gap_recovered']:.0f} %" if np.isfinite(g["gap_recovered"]) else f"not shown ({g['note']})"
            lines.append(f"| {g['variant']} | {percent(g['box_fraction'])} | {g['resolution']} | {g['seeds']} | {g['metric']} | "
                         f"{text} |")
        lines.append("")
    return "\n".join(lines)


def merge(csvs: Sequence[str | Path]) -> pd.DataFrame:
    """Runs from several CSVs; a later row replaces an earlier one of the same (variant, fraction, px, seed, tiny)."""
    return merge_runs(csvs, RUN_KEYS)


def write(df: pd.DataFrame, out: str | Path, tag: str) -> tuple[Path, Path]:
    """``detection_<tag>.csv`` and ``detection_<tag>.md`` in ``out``."""
    return write_tables(df, out, f"detection_{tag}", markdown(df, f"Detection ablations ({tag})"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlcak-detect", description="OXnet's ablations x box fractions x resolutions x "
                                "seeds (notebook 07): train or load each detector, evaluate it on the test split.")
    p.add_argument("--variants", nargs="+", default=list(DETECTOR_VARIANTS), help="ablations, each adding terms")
    p.add_argument("--box-fractions", nargs="+", type=float, default=list(DEFAULT_FRACTIONS),
                   help="fractions of the training films with boxes (the others have image labels)")
    p.add_argument("--no-upper-bound", action="store_true", help="skip box-only at box fraction 1.0")
    p.add_argument("--resolutions", nargs="+", type=int, default=list(DEFAULT_RESOLUTIONS), help="detector input px")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (init, batch order, boxed films)")
    p.add_argument("--dataset", default=None, help="default $MLCAK_DATASET or synth (needs boxes: synth, vindr)")
    return add_common_arguments(p, "a few dozen films, 2 steps, a tiny detector (tests)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_or_merge(args, lambda profile, tag: run_grid(args.variants, args.box_fractions, args.resolutions,
                                                            args.seeds, profile, args.dataset, args.tiny, args.steps,
                                                            not args.no_upper_bound, args.quiet),
                        merge, write)


if __name__ == "__main__":
    sys.exit(main())
