"""Data-regime study: the distillation gain vs the amount of labelled low-resolution training data.

    python scripts/data_regime.py                 # default profile -> mlcak_lib/data/results/data_regime.csv (+ _paired.csv)

The 28-px baseline and the MLCAK student are trained on nested random subsets of the training
split (the first ``n`` items of one fixed permutation, so each smaller set is inside the larger
ones), for several seeds, and evaluated on the **test** split. Each variant is paired seed by seed with the
baseline trained on the same images (95 % t interval, ``results.paired_table``) in ``data_regime_paired.csv``. The teacher is the course's
teacher (trained once on the full high-resolution training split); both terms of the student's
loss (labels and distillation) use only the ``n`` selected images. Students come from the model
cache when they exist (the full-size runs are the same as the grid's).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from mlcak_lib.config import get_profile, output_dir
from mlcak_lib.dataswitch import data_description, get_splits
from mlcak_lib.recipes import get_teacher, student_training, train_student
from mlcak_lib.results import flat_metrics, paired_table
from mlcak_lib.variants import HEADLINE, get_variant


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default=None)
    p.add_argument("--resolution", type=int, default=28)
    p.add_argument("--sizes", nargs="+", type=int, default=[250, 750, 3000])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--variants", nargs="+", default=list(HEADLINE))
    p.add_argument("--out", default=None, help="CSV path (default: data_regime.csv in config.output_dir(), mlcak_lib/data/results/ in a checkout)")
    args = p.parse_args(argv)
    profile = get_profile(args.profile)
    out = Path(args.out) if args.out else output_dir() / "data_regime.csv"
    teacher, _, tinfo = get_teacher(profile, seed=0)
    df = study(profile, teacher, tinfo, args.resolution, args.sizes, args.seeds, args.variants, out)
    print(df.groupby(["n_train", "variant"])[["mcct_auroc", "mlct_macro_auroc"]].agg(["mean", "std"]).round(3).to_string())
    paired = paired_table(df, metrics=["mcct_auroc", "mlct_macro_auroc"], by=["n_train"])
    paired.to_csv(out.with_name(out.stem + "_paired.csv"), index=False, float_format="%.6g")
    print(paired[["model", "n_train", "metric", "n", "diff", "ci_low", "ci_high", "wins"]].round(3).to_string(index=False))
    return 0


def study(profile, teacher, tinfo, r=28, sizes=(250, 750, 3000), seeds=(0, 1, 2), variants=HEADLINE, out=None):
    """Train/evaluate every (size, seed, variant); write ``out`` after each run; return the DataFrame."""
    splits = get_splits((224, r), profile=profile, seed=0)
    full_desc = data_description(profile=profile)  # as the runner's: the full-size students are the grid's
    perm = torch.randperm(len(splits["train"]), generator=torch.Generator().manual_seed(0))
    cfg = student_training(profile)
    rows = []
    plan = [(n, s, v) for n in sorted(sizes) for s in seeds for v in variants]
    for n, seed, name in tqdm(plan, desc="data regime", file=sys.stdout):
        n = min(n, len(splits["train"]))
        if n == len(splits["train"]):
            sub, desc = splits, full_desc
        else:
            sub = {"train": splits["train"].subset(perm[:n]), "val": splits["val"]}
            desc = {**full_desc, "train_subset": {"n": n, "permutation_seed": 0}}
        t0 = time.perf_counter()
        v = get_variant(name, profile)
        model, history, info = train_student(v, r, sub, teacher, tinfo, profile, seed, cfg, desc, progress=False)
        metrics = flat_metrics(model, splits["test"], r)
        rows.append({"variant": v.name, "n_train": n, "resolution": r, "seed": seed,
                     "mcct_auroc": metrics["mcct_auroc"], "mlct_macro_auroc": metrics["mlct_macro_auroc"],
                     "epochs": len(history), "config_hash": info["hash"], "cache_hit": info["cache_hit"],
                     "wall_seconds": time.perf_counter() - t0})
        if out is not None:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows).to_csv(out, index=False, float_format="%.6g")
    return pd.DataFrame(rows)


if __name__ == "__main__":
    sys.exit(main())
