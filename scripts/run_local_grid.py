"""Notebook 06's grid: every variant at 28 px with and without the local task, plus localization metrics.

    python scripts/run_local_grid.py                  # default profile, seeds 0 1 2, 28 px

For each seed it trains (or loads from the model cache) the runner's variants (``baseline``,
``output-kd``, ``attention-kd``, ``mlcak``, ``hinton-kd``, via :func:`mlcak_lib.distill.train_student`)
and the multi-task variants of :data:`mlcak_lib.localization.LOCAL_VARIANTS` (``multitask`` =
baseline + local head, ``mlcak-mt`` = MLCAK + local head, via
:func:`mlcak_lib.localization.train_local_student`), all with the same data (seed 0) and the same
teacher, evaluates them on the **test** split and writes into ``--out``:

* ``grid_local_<profile>.csv`` -- one row per run plus the teacher, the same columns as the
  runner's ``grid_<profile>.csv`` (so :func:`mlcak_lib.runner.summarize` reads both), with
  ``lambda_local``;
* ``grid_local_<profile>.md`` -- mean ± std per variant and the gap recovered;
* ``localization_<profile>.csv`` -- :func:`mlcak_lib.localization.model_localization` of every
  model (teacher, every student, every seed): variant, seed, map (attention rollout / last block
  / local head), channel, lesion-size stratum, metric, value.

The multi-task variants are not in the runner's own registry (``distill.VARIANTS``); this script
is how they enter results/ until the runner gains a hook for them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

VARIANTS = ("baseline", "output-kd", "attention-kd", "mlcak", "hinton-kd", "multitask", "mlcak-mt")


def main(argv=None) -> int:
    import pandas as pd
    import torch

    from mlcak_lib import localization as loc
    from mlcak_lib import runner, train
    from mlcak_lib.config import get_profile, repo_root
    from mlcak_lib.distill import get_variant, student_training, train_student
    from mlcak_lib.models import TEACHER_RESOLUTION

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default=None)
    p.add_argument("--resolution", type=int, default=28)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--lambda-local", default=None,
                   help="a number, 'tuned' (the rule of scripts/tune_local.py applied to results/tuning_local_val.csv "
                        "when the first multi-task student starts) or nothing (localization.DEFAULT_LAMBDA_LOCAL)")
    p.add_argument("--out", default=None, help="output folder (default results/ in the checkout)")
    args = p.parse_args(argv)
    profile = get_profile(args.profile)
    out = Path(args.out) if args.out else (repo_root() or Path.cwd()) / "results"
    out.mkdir(parents=True, exist_ok=True)
    r = args.resolution

    def lambda_local() -> float:
        if args.lambda_local is None:
            return float(loc.DEFAULT_LAMBDA_LOCAL[profile])
        if str(args.lambda_local).lower() == "tuned":
            tuning = pd.read_csv(out / "tuning_local_val.csv")
            means = tuning[tuning.lambda_local > 0].groupby("lambda_local")["val_score"].mean()
            return float(means.idxmax())
        return float(args.lambda_local)

    t0 = time.perf_counter()
    teacher, _, tinfo = train.get_teacher(profile, seed=0, progress=False)
    print(f"teacher {'loaded' if tinfo['cache_hit'] else 'trained'} in {time.perf_counter() - t0:.0f} s", flush=True)
    splits = train.get_splits((TEACHER_RESOLUTION, r), profile=profile, seed=0)
    data_desc = runner.student_data_desc(profile)  # the runner's key: students are shared with its grid
    cfg = student_training(profile)
    test = splits["test"]
    rev, dirty = runner.git_revision()
    common = {"profile": profile, "git_rev": rev, "git_dirty": dirty, **runner.hardware(),
              "n_train": len(splits["train"]), "n_val": len(splits["val"]), "n_test": len(test)}

    t0 = time.perf_counter()
    tm = runner.flat_metrics(teacher, test, TEACHER_RESOLUTION)
    rows = [{"run": "teacher", "variant": "teacher", "resolution": TEACHER_RESOLUTION, "seed": 0, **tm,
             "teacher_mcct_auroc": tm["mcct_auroc"], "teacher_mlct_macro_auroc": tm["mlct_macro_auroc"],
             "config_hash": tinfo["hash"], "cache_hit": tinfo["cache_hit"], "train_seconds": tinfo.get("train_seconds"),
             **common, "wall_seconds": time.perf_counter() - t0}]
    locs = [loc.model_localization(teacher, test, TEACHER_RESOLUTION).assign(variant="teacher", resolution=TEACHER_RESOLUTION, seed=0)]

    def write():
        df = pd.DataFrame(rows)
        df.to_csv(out / f"grid_local_{profile}.csv", index=False, float_format="%.6g")
        pd.concat(locs, ignore_index=True).to_csv(out / f"localization_{profile}.csv", index=False, float_format="%.6g")
        return df

    write()
    for v in args.variants:  # variant by variant (all seeds), in the order given
        for seed in args.seeds:
            t0 = time.perf_counter()
            lam = lambda_local() if loc.local_variant_base(v) is not None else 0.0
            if lam:
                model, history, info = loc.train_local_student(v, r, splits, teacher, tinfo, profile, seed, cfg, data_desc,
                                                               lambda_local=lam, progress=False)
                base = get_variant(loc.local_variant_base(v), profile)
            else:
                base = get_variant(v, profile)
                model, history, info = train_student(base, r, splits, teacher, tinfo, profile, seed, cfg, data_desc,
                                                     progress=False)
            m = runner.flat_metrics(model, test, r)
            best = next((h["epoch"] for h in history if h.get("best")), len(history))
            name = v.strip().lower().replace("_", "-")
            rows.append({"run": "student", "variant": name, "resolution": r, "seed": seed, **m,
                         "teacher_mcct_auroc": tm["mcct_auroc"], "teacher_mlct_macro_auroc": tm["mlct_macro_auroc"],
                         "alpha": base.alpha, "beta": base.beta, "gamma": base.gamma,
                         "levels": base.levels if base.uses_attention else None,
                         "temperature": base.temperature if base.kind == "hinton" else None,
                         "lambda_local": lam,
                         "epochs": len(history), "best_epoch": best, "config_hash": info["hash"],
                         "cache_hit": info["cache_hit"], "train_seconds": info.get("train_seconds"), **common,
                         "wall_seconds": time.perf_counter() - t0})
            locs.append(loc.model_localization(model, test, r).assign(variant=name, resolution=r, seed=seed))
            print(f"{name:>13} seed {seed}: MCCT {m['mcct_auroc']:.4f} MLCT {m['mlct_macro_auroc']:.4f} "
                  f"({time.perf_counter() - t0:.0f} s, {'cache' if info['cache_hit'] else 'trained'})", flush=True)
            write()
    df = write()
    table = runner.summarize(df)
    (out / f"grid_local_{profile}.md").write_text(runner.markdown_table(
        table, title=f"Notebook 06 grid at {r} px: variants with and without the local task (profile `{profile}`, test split)"))
    print(f"wrote grid_local_{profile}.csv/.md and localization_{profile}.csv to {out.name}/", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
