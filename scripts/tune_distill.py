"""Choose MLCAK's alpha, beta, gamma and attention levels on the VALIDATION split (never on test).

    python scripts/tune_distill.py                # default profile -> results/tuning_val.csv

A small, staged search with the 28-px student (the headline resolution), scored by the best
validation score (mean of MCCT AUROC and MLCT macro AUROC: the quantity the training loop keeps)
averaged over the seeds (default: one seed, to fit the CPU budget -- differences below about
0.01 are within seed noise, so the search only separates orders of magnitude):

1. gamma in GAMMAS with alpha = beta = 1 and 2 levels (also gives notebook 05's sensitivity curve;
   gamma = 0 is output-only KD);
2. levels in LEVELS at the best gamma;
3. (optional, ``--stages 1 2 3``) alpha = beta in OUTPUT_WEIGHTS at the best gamma and levels.

Every run goes through the model cache (``cache.load_or_train``), so rerunning the script, or
running the grid afterwards with the chosen weights, reuses finished students. ``--write`` stores
the chosen values in ``mlcak_lib/data/tuned_weights.json`` (:func:`mlcak_lib.variants.write_tuned_weights`),
where :func:`mlcak_lib.variants.default_weights` reads them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from mlcak_lib.config import get_profile, repo_root
from mlcak_lib.dataswitch import data_description, get_splits
from mlcak_lib.recipes import get_teacher, student_training, train_student
from mlcak_lib.variants import get_variant, write_tuned_weights

GAMMAS = (0.0, 30.0, 100.0, 300.0, 1000.0)
LEVELS = (1, 2, 4)
OUTPUT_WEIGHTS = (0.3, 1.0, 3.0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default=None)
    p.add_argument("--resolution", type=int, default=28)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--out", default=None, help="CSV path (default results/tuning_val.csv in the checkout)")
    p.add_argument("--stages", nargs="+", type=int, default=[1, 2])
    p.add_argument("--gammas", nargs="+", type=float, default=list(GAMMAS))
    p.add_argument("--write", action="store_true", help="store the chosen weights in the tuned-weights file")
    args = p.parse_args(argv)
    profile = get_profile(args.profile)
    out = Path(args.out) if args.out else (repo_root() or Path.cwd()) / "results" / "tuning_val.csv"
    teacher, _, tinfo = get_teacher(profile, seed=0)
    best = tune(profile, teacher, tinfo, args.resolution, args.seeds, out, args.stages, args.gammas)
    print(f"chosen on the validation split: {best}", flush=True)
    if args.write:
        write_tuned_weights(profile, **best)
        print("written to mlcak_lib/data/tuned_weights.json", flush=True)
    return 0


def tune(profile, teacher, tinfo, r: int = 28, seeds=(0,), out: Path | None = None, stages=(1, 2), gammas=GAMMAS) -> dict:
    """Run the staged search (module docstring); write ``out``; return the chosen weights."""
    splits = get_splits((224, r), profile=profile, seed=0, splits=("train", "val"))
    data_desc = data_description(profile=profile)
    cfg = student_training(profile)
    rows: list[dict] = []

    def evaluate(stage: str, **weights) -> float:
        scores = []
        for seed in seeds:
            t0 = time.perf_counter()
            v = get_variant("mlcak", profile, **weights)
            _, history, info = train_student(v, r, splits, teacher, tinfo, profile, seed, cfg, data_desc, progress=False)
            best = max(history, key=lambda h: h["val_score"])
            rows.append({"stage": stage, "resolution": r, "seed": seed, "alpha": v.alpha, "beta": v.beta, "gamma": v.gamma,
                         "levels": v.levels if v.gamma > 0 else None, "val_mcct_auroc": best["val_mcct_auroc"],
                         "val_mlct_macro_auroc": best["val_mlct_macro_auroc"], "val_score": best["val_score"],
                         "best_epoch": best["epoch"], "epochs": len(history), "config_hash": info["hash"],
                         "cache_hit": info["cache_hit"], "wall_seconds": time.perf_counter() - t0,
                         "torch_threads": torch.get_num_threads()})
            scores.append(best["val_score"])
            if out is not None:  # rewritten after every run: an interrupted search keeps its rows
                out.parent.mkdir(parents=True, exist_ok=True)
                pd.DataFrame(rows).to_csv(out, index=False, float_format="%.6g")
        mean = sum(scores) / len(scores)
        print(f"  {stage}: {weights} -> val score {mean:.4f}", flush=True)
        return mean

    best = {"alpha": 1.0, "beta": 1.0, "gamma": float(max(gammas)), "levels": 2}
    if 1 in stages:
        print("stage 1: gamma", flush=True)
        res = {g: evaluate("gamma", alpha=1.0, beta=1.0, gamma=g, levels=2) for g in gammas}
        best["gamma"] = max((g for g in res if g > 0), key=res.get)
    if 2 in stages:
        print("stage 2: levels", flush=True)
        res = {lv: evaluate("levels", alpha=1.0, beta=1.0, gamma=best["gamma"], levels=lv) for lv in LEVELS if lv != 2}
        res[2] = max(row["val_score"] for row in rows if row["gamma"] == best["gamma"] and row["levels"] == 2)
        best["levels"] = max(res, key=res.get)
    if 3 in stages:
        print("stage 3: alpha = beta", flush=True)
        res = {w: evaluate("alpha_beta", alpha=w, beta=w, gamma=best["gamma"], levels=best["levels"]) for w in OUTPUT_WEIGHTS}
        best["alpha"] = best["beta"] = max(res, key=res.get)
    df = pd.DataFrame(rows)
    df["chosen"] = ((df["alpha"] == best["alpha"]) & (df["beta"] == best["beta"]) & (df["gamma"] == best["gamma"])
                    & (df["levels"] == best["levels"]))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(out, index=False, float_format="%.6g")
    return best


if __name__ == "__main__":
    sys.exit(main())
