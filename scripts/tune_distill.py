"""Choose the form and weight of MLCAK's attention term on the VALIDATION split (never on test).

    python scripts/tune_distill.py --stage form   --shard 0/2 &   # two single-thread processes
    python scripts/tune_distill.py --stage form   --shard 1/2
    python scripts/tune_distill.py --stage levels --shard 0/2 & ...  # then levels, then gamma
    python scripts/tune_distill.py --summarize --write             # merge, choose, store

A staged search with the 28-px student (the headline resolution) over several seeds, scored by the
best validation score of each run (mean of MCCT AUROC and MLCT macro AUROC: the quantity early
stopping keeps), averaged over the seeds. Every candidate is also compared with output-only KD
(gamma = 0) seed by seed (:func:`mlcak_lib.results.paired_ci`).

1. ``form``: the references (``baseline``, ``output-kd``, the paper's ``mlcak-paper``: MSE of
   head-averaged full maps, gamma = ``paper_gamma``), and every attention loss
   (:data:`~mlcak_lib.variants.ATTENTION_LOSSES`) x rows (:data:`~mlcak_lib.variants.ATTENTION_ROWS`)
   with ``gamma_mode="relative"``, gamma = 1 (the attention term starts at the size of the
   classification loss), 2 levels;
2. ``levels``: the best form with 1 level (the last block) and 4 (every block);
3. ``gamma``: the best form and levels with gamma in :data:`GAMMAS`.

Runs go through the model cache, so the grid afterwards reuses every finished student. Each
shard writes ``mlcak_lib/data/results/tuning/<stage>-<k>of<n>.csv``; ``--summarize`` merges them into
``mlcak_lib/data/results/tuning_val.csv`` and prints the choice; ``--write`` stores it in
``mlcak_lib/data/tuned_weights.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from mlcak_lib.config import get_profile, output_dir
from mlcak_lib.dataswitch import data_description, get_splits
from mlcak_lib.recipes import get_teacher, student_training, train_student
from mlcak_lib.results import tuning_summary
from mlcak_lib.variants import ATTENTION_LOSSES, ATTENTION_ROWS, default_weights, get_variant, write_tuned_weights

STAGES: tuple[str, ...] = ("form", "levels", "gamma")
LEVELS: tuple[int, ...] = (1, 4)
GAMMAS: tuple[float, ...] = (0.3, 3.0)
SETTINGS: tuple[str, ...] = ("gamma", "levels", "attn_loss", "attn_rows", "gamma_mode")


def _root() -> Path:
    return output_dir()


def candidates(stage: str, chosen: dict | None = None) -> list[tuple[str, str, dict]]:
    """``(label, variant, overrides)`` of a stage; later stages start from ``chosen`` (the earlier stages' pick)."""
    if stage == "form":
        runs = [("baseline", "baseline", {}), ("output-kd", "output-kd", {}), ("paper", "mlcak-paper", {})]
        runs += [(f"{loss}-{rows}", "mlcak", {"attn_loss": loss, "attn_rows": rows, "gamma_mode": "relative",
                                              "gamma": 1.0, "levels": 2})
                 for loss in ATTENTION_LOSSES for rows in ATTENTION_ROWS]
        return runs
    if chosen is None:
        raise ValueError(f"stage {stage!r} needs the choice of the earlier stages (run them and --summarize first)")
    base = {k: chosen[k] for k in SETTINGS}
    tag = f"{base['attn_loss']}-{base['attn_rows']}"
    if stage == "levels":
        return [(f"{tag}-L{lv}", "mlcak", {**base, "levels": lv}) for lv in LEVELS]
    if stage == "gamma":
        return [(f"{tag}-L{base['levels']}-g{g:g}", "mlcak", {**base, "gamma": g}) for g in GAMMAS]
    raise ValueError(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")


def run_stage(stage: str, shard: tuple[int, int], seeds, profile: str, r: int, chosen: dict | None) -> Path:
    """Train (or load) this shard's runs of ``stage``; write their validation scores; return the CSV path."""
    k, n = shard
    plan = [(label, name, over, s) for label, name, over in candidates(stage, chosen) for s in seeds]
    mine = plan[k::n]
    out = _root() / "tuning" / f"{stage}-{k}of{n}.csv"
    teacher, _, tinfo = get_teacher(profile, seed=0, load_only=True)
    splits = get_splits((224, r), profile=profile, seed=0, splits=("train", "val"))
    data_desc = data_description(profile=profile)
    cfg = student_training(profile)
    rows = []
    for i, (label, name, over, seed) in enumerate(mine, 1):
        t0 = time.perf_counter()
        v = get_variant(name, profile, **over)
        _, history, info = train_student(v, r, splits, teacher, tinfo, profile, seed, cfg, data_desc, progress=False)
        best = next(h for h in history if h.get("best"))
        rows.append({"stage": stage, "label": label, "variant": v.name, "resolution": r, "seed": seed,
                     "alpha": v.alpha, "beta": v.beta, **{s: getattr(v, s) for s in SETTINGS},
                     "uses_attention": v.uses_attention, "val_mcct_auroc": best["val_mcct_auroc"],
                     "val_mlct_macro_auroc": best["val_mlct_macro_auroc"], "val_score": best["val_score"],
                     "best_epoch": best["epoch"], "epochs": len(history), "config_hash": info["hash"],
                     "cache_hit": info["cache_hit"], "wall_seconds": time.perf_counter() - t0,
                     "torch_threads": torch.get_num_threads()})
        out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(out, index=False, float_format="%.6g")  # after every run: nothing lost
        print(f"[{stage} {k}/{n}] {i}/{len(mine)} {label} seed {seed}: val {best['val_score']:.4f} "
              f"(best epoch {best['epoch']} of {len(history)}, {time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def summarize(write: bool, profile: str) -> dict:
    """Merge the shards, rank the candidates by mean validation score, print the table; return the choice."""
    parts = sorted((_root() / "tuning").glob("*of*.csv"))
    if not parts:
        raise SystemExit("no tuning results yet: run a --stage first")
    df = pd.concat([pd.read_csv(p) for p in parts], ignore_index=True)
    first = [label for label, _, _ in candidates("form")]  # the form stage in its own order, later stages after
    rank = {label: first.index(label) if label in first else len(first) for label in df["label"]}
    df = df.assign(_s=df["stage"].map(STAGES.index), _l=df["label"].map(rank))
    df = df.sort_values(["_s", "_l", "label", "seed"]).drop(columns=["_s", "_l"])
    summary = tuning_summary(df)
    print(summary.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    att = df[df["uses_attention"] & (df["variant"] == "mlcak")]
    if att.empty:
        raise SystemExit("no MLCAK candidate finished yet")
    means = att.groupby("label")["val_score"].mean()
    label = means.idxmax()
    row = att[att["label"] == label].iloc[0]
    chosen = {s: (int(row[s]) if s == "levels" else float(row[s]) if s == "gamma" else str(row[s])) for s in SETTINGS}
    paper = df[df["label"] == "paper"]
    if not paper.empty:
        chosen["paper_gamma"] = float(paper["gamma"].iloc[0])
    df["chosen"] = df["label"] == label
    df.to_csv(_root() / "tuning_val.csv", index=False, float_format="%.6g")
    print(f"chosen on the validation split: {label} {chosen}", flush=True)
    if write:
        write_tuned_weights(profile, **chosen)
        print("written to mlcak_lib/data/tuned_weights.json", flush=True)
    return chosen


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default=None)
    p.add_argument("--resolution", type=int, default=28)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--stage", choices=STAGES, default=None)
    p.add_argument("--shard", default="0/1", help="k/n: run every n-th candidate run starting at k (parallel processes)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--summarize", action="store_true", help="merge the shards and print the choice")
    p.add_argument("--write", action="store_true", help="with --summarize: store the choice in the tuned-weights file")
    args = p.parse_args(argv)
    profile = get_profile(args.profile)
    torch.set_num_threads(args.threads)
    if args.stage:
        k, n = (int(x) for x in args.shard.split("/"))
        chosen = None
        if args.stage != "form":
            tuned = default_weights(profile)
            chosen = {s: tuned[s] for s in SETTINGS}
        run_stage(args.stage, (k, n), args.seeds, profile, args.resolution, chosen)
    if args.summarize:
        summarize(args.write, profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
