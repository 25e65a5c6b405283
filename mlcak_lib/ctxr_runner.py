"""The CT-X-ray twin of the experiment runner (notebook 08, issue 17): the ablations of
:data:`mlcak_lib.ctxr.recipe.CTXR_VARIANTS` x seeds, each CT encoder scored on CT studies of a patient no training
study comes from.

``python -m mlcak_lib.ctxr_runner`` (or ``mlcak-ctxr``) loads the course's committed X-ray expert (the 224-px
teacher, ``recipes.get_teacher(load_only=True)``: never retrained here), prepares the data
(:func:`mlcak_lib.ctxr.recipe.prepare`), trains or loads one model per (variant, seed) with
:func:`~mlcak_lib.ctxr.recipe.get_ct_model` (resumable: every finished run is in the cache) and writes into ``--out``
(default :func:`mlcak_lib.config.output_dir`):

* ``ctxr_<tag>.csv`` -- one row per run: variant, its KD weights and correction, seed, the split sizes, every score of
  :func:`mlcak_lib.ctxr.evaluate.evaluate_model` (zero-shot AUROC per class and macro, R@1/5/10 strict and with
  same-findings reports relevant, the 10 % linear probe's AUROCs), the validation score and step of the kept
  checkpoint (the last one unless ``select``), the cache key's hash, cache hit, training and wall seconds, the ctxr code fingerprint, the expert's
  hash, git revision and dirty flag, and the hardware;
* ``ctxr_<tag>.md`` -- the settings, mean ± std over seeds, and the seed-paired differences against contrastive-only
  (:data:`~mlcak_lib.ctxr.recipe.REFERENCE`) with 95 % t intervals (:func:`mlcak_lib.results.paired_table`).

``--merge A.csv B.csv ...`` joins the CSVs of runs made side by side and rewrites the table without training.
Nothing is chosen on the test split: the training budget was chosen on the validation split.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import torch

from . import config as _config
from .ctxr.evaluate import evaluate_model
from .ctxr.keys import ctxr_fingerprint
from .ctxr.recipe import (
    CTXR_VARIANTS,
    HEADLINE,
    REFERENCE,
    TINY_DATA,
    TINY_TRAINING,
    ctxr_settings,
    get_ct_model,
    prepare,
)
from .envinfo import git_revision, hardware
from .recipes import get_teacher
from .results import paired_markdown, paired_table, pm_text
from .runner_cli import (
    add_common_arguments,
    merge_runs,
    run_or_merge,
    seed_summary,
    write_tables,
)

RUN_KEYS: list[str] = ["variant", "seed"]
#: Columns summarised and compared: column -> label.
METRICS: dict[str, str] = {"zs_macro_auroc": "zero-shot macro AUROC", "R@1|same": "R@1 (same findings)",
                           "R@5|same": "R@5 (same findings)", "R@10|same": "R@10 (same findings)",
                           "R@10": "R@10 (own report)", "ft_macro_auroc": "10 % probe macro AUROC"}


def load_expert(profile: str | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The course's committed X-ray teacher (never trained here) and its ``info``; frozen."""
    teacher, _, info = get_teacher(profile, load_only=True)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval(), info


def run_grid(variants: Sequence[str], seeds: Sequence[int], profile: str | None = None, tiny: bool = False,
             steps: int | None = None, quiet: bool = False,
             on_run: Callable[[pd.DataFrame], Any] | None = None) -> pd.DataFrame:
    """Train or load every model of the grid and evaluate it on the test split: one row per run. ``on_run`` gets the
    rows so far after each run (the CLI rewrites its files then, so an interrupted grid leaves what it finished)."""
    profile = _config.get_profile(profile)
    unknown = [v for v in variants if v not in CTXR_VARIANTS]
    if unknown:
        raise SystemExit(f"unknown CT-X-ray variant(s) {unknown}; choose from {', '.join(CTXR_VARIANTS)}")
    data_cfg, cfg = (TINY_DATA, TINY_TRAINING) if tiny else ctxr_settings(profile)
    if steps is not None:
        cfg = cfg.replace(steps=int(steps), eval_every=min(cfg.eval_every, int(steps)))
    expert, expert_info = load_expert(profile)
    data = prepare(expert, expert_info["hash"], data_cfg, profile, progress=not quiet)
    rev, dirty = git_revision()
    base = {"profile": profile, "tiny": bool(tiny), "resolution": data_cfg.input_size, "n_train": len(data.train),
            "n_val": len(data.val), "n_test": len(data.test), "n_pool": len(data.pool), "steps": cfg.steps,
            "settings": json.dumps({"data": data_cfg.as_dict(), "train": cfg.as_dict()}, default=str),
            "ctxr_code": ctxr_fingerprint(), "expert_hash": expert_info["hash"], "git_rev": rev, "git_dirty": dirty,
            **hardware()}
    rows = []
    for variant in variants:
        for seed in seeds:
            start = time.perf_counter()
            model, history, info = get_ct_model(variant, seed, data, profile, cfg, progress=not quiet)
            scores = evaluate_model(model, data.test, data.train, seed)
            best = next((h for h in reversed(history) if h.get("best")), history[-1] if history else {})
            row = {"variant": variant, "seed": seed, **asdict(CTXR_VARIANTS[variant]), **scores,
                   "val_zs_macro_auroc": best.get("val_zs_macro_auroc"), "best_step": best.get("step"),
                   "config_hash": info["hash"], "cache_hit": info["cache_hit"], "train_seconds": info["train_seconds"],
                   "wall_seconds": time.perf_counter() - start, **base}
            rows.append(row)
            if on_run is not None:
                on_run(pd.DataFrame(rows))
            if not quiet:
                how = "cached" if info["cache_hit"] else f"trained in {info['train_seconds']:.0f} s"
                print(f"{variant}, seed {seed}: zero-shot macro AUROC {row['zs_macro_auroc']:.3f}, "
                      f"R@5|same {row['R@5|same']:.3f}, 10 % probe {row['ft_macro_auroc']:.3f} ({how})", flush=True)
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame, metrics: Sequence[str] = tuple(METRICS)) -> pd.DataFrame:
    """Per variant (in :data:`CTXR_VARIANTS` order): seeds, mean and std of each metric."""
    order = {v: i for i, v in enumerate(CTXR_VARIANTS)}
    return (seed_summary(df, ["variant"], metrics).sort_values("variant", key=lambda s: s.map(order))
            .reset_index(drop=True))


def settings_lines(df: pd.DataFrame) -> list[str]:
    """Provenance of a table: the split sizes, steps, revisions, settings and the seconds the runs took."""
    first = df.iloc[0]
    lines = [f"Profile `{first['profile']}`{' (tiny)' if bool(first['tiny']) else ''}; CT studies train/val/test "
             f"{first['n_train']}/{first['n_val']}/{first['n_test']} (patients split by patient: the test patient is "
             f"never in training), X-ray pool {first['n_pool']} films, encoder input {first['resolution']}^3 voxels, "
             f"{first['steps']} steps; git {', '.join(sorted(set(map(str, df['git_rev']))))}"
             f"{' (dirty)' if df['git_dirty'].astype(str).eq('True').any() else ''}; ctxr code "
             f"{', '.join(sorted(set(map(str, df['ctxr_code']))))}; expert (teacher) {first['expert_hash']}; "
             f"training {df['train_seconds'].sum():.0f} s in all ({df['train_seconds'].mean():.0f} s per run), "
             f"wall {df['wall_seconds'].sum():.0f} s; {first.get('cpu_model', '')} with {first.get('torch_threads', '')} "
             f"torch thread(s).", "", f"Settings: `{first['settings']}`."]
    return lines


def markdown(df: pd.DataFrame, title: str = "CT understanding from an X-ray expert: ablations") -> str:
    """The runner's markdown: provenance, summary, and seed-paired differences against contrastive-only."""
    summary = summarize(df)
    lines = [f"## {title}", "", *settings_lines(df), "",
             "Test split (CT studies of a patient unseen in training); mean ± std over seeds; the training budget was "
             "chosen on the validation split (ctxr.recipe.CTXR_TRAINING). `+fn`: false-negative correction. R@K (same findings) "
             "counts every report with the study's findings as relevant; R@10 (own report) only its own report. In the paired "
             "table, px is the encoder's input grid (voxels per axis).", "",
             "| variant | seeds | " + " | ".join(METRICS.values()) + " |", "|---|---:|" + "---|" * len(METRICS)]
    for _, row in summary.iterrows():
        cells = [pm_text(row[f"{m}_mean"], row[f"{m}_std"]) for m in METRICS]
        lines.append(f"| {row['variant']} | {row['seeds']} | " + " | ".join(cells) + " |")
    paired = paired_table(df.assign(student=""), reference=REFERENCE, metrics=list(METRICS))
    if len(paired):
        shown = paired.assign(metric=paired["metric"].map(METRICS))  # labels: a column name's "|" would split a cell
        lines += ["", paired_markdown(shown, f"Seed-paired differences against {REFERENCE}")]
        head = paired[(paired["variant"] == HEADLINE) & (paired["metric"] == "zs_macro_auroc")]
        for _, r in head.iterrows():
            verdict = "above zero" if r["ci_low"] > 0 else "not above zero"
            lines.append(f"Target (issue 17): {HEADLINE} minus {REFERENCE} on zero-shot macro AUROC = {r['diff']:+.3f} "
                         f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] over {r['n']} seeds ({r['wins']} wins): the CI is "
                         f"{verdict}.")
    return "\n".join(lines) + "\n"


def merge(csvs: Sequence[str | Path]) -> pd.DataFrame:
    """Runs from several CSVs; a later row replaces an earlier one of the same (variant, seed, tiny)."""
    return merge_runs(csvs, RUN_KEYS)


def write(df: pd.DataFrame, out: str | Path, tag: str) -> tuple[Path, Path]:
    """``ctxr_<tag>.csv`` and ``ctxr_<tag>.md`` in ``out``."""
    if df.empty:
        raise ValueError("no runs to write")
    return write_tables(df, out, f"ctxr_{tag}", markdown(df, f"CT understanding from an X-ray expert: ablations ({tag})"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlcak-ctxr", description="Notebook 08's ablations x seeds: train or load each "
                                "CT encoder (distilled from the committed X-ray teacher), score it on unseen patients.")
    p.add_argument("--variants", nargs="+", default=list(CTXR_VARIANTS), help="ablations (default: all)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (init, batch order, labelled 10 %%)")
    return add_common_arguments(p, "a few dozen studies, a few steps, a tiny encoder (tests)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_or_merge(args, lambda profile, tag: run_grid(args.variants, args.seeds, profile, args.tiny, args.steps,
                                                            args.quiet, on_run=lambda rows: write(rows, args.out, tag)),
                        merge, write)


if __name__ == "__main__":
    sys.exit(main())
