"""Choose lambda_local (the weight of the local task) on the VALIDATION split (never on test).

    python scripts/tune_local.py                  # default profile -> mlcak_lib/data/results/tuning_local_val.csv

A small search with the 28-px ``multitask`` student (baseline + local head: labels only, no
teacher, so the choice does not depend on the distillation weights): lambda_local in LAMBDAS,
scored by the best validation score of training (mean of MCCT AUROC and MLCT macro AUROC: the
quantity early stopping keeps), averaged over the seeds. ``lambda = 0`` is the ``baseline``
student (no local head) and is listed as the reference. The validation token AUROC of the
local head (any-lesion channel) is recorded too, to show what the local task itself learns.

Rule: the chosen lambda is the positive value with the best mean validation score (the local
task is the object of notebook 06, so it is kept on even when it does not help; the notebook
then reports whether it helps). The same lambda is used for ``mlcak-mt``. ``--write`` stores it
in ``mlcak_lib/data/tuned_weights.json`` (:func:`mlcak_lib.variants.write_tuned_weights`).
Every run goes through the model cache (``cache.load_or_train``).
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
from mlcak_lib.local_task import local_targets
from mlcak_lib.localization import predict_local_maps, token_auroc
from mlcak_lib.models import TEACHER_RESOLUTION
from mlcak_lib.recipes import student_training, train_student
from mlcak_lib.variants import write_tuned_weights

LAMBDAS = (0.0, 0.3, 1.0, 3.0, 10.0, 30.0)  # extended until the best value lay inside the range


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default=None)
    p.add_argument("--resolution", type=int, default=28)
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--lambdas", nargs="+", type=float, default=list(LAMBDAS))
    p.add_argument("--out", default=None, help="CSV path (default: tuning_local_val.csv in config.output_dir(), mlcak_lib/data/results/ in a checkout)")
    p.add_argument("--write", action="store_true", help="store the chosen lambda_local in the tuned-weights file")
    args = p.parse_args(argv)
    profile = get_profile(args.profile)
    out = Path(args.out) if args.out else output_dir() / "tuning_local_val.csv"
    r = args.resolution

    splits = get_splits((TEACHER_RESOLUTION, r), profile=profile, seed=0, splits=("train", "val"))
    data_desc = data_description(profile=profile)  # the runner's key: students are shared with its grid
    cfg = student_training(profile)
    val = splits["val"]
    rows: list[dict] = []
    for lam in args.lambdas:
        for seed in args.seeds:
            t0 = time.perf_counter()
            if lam == 0:
                model, history, info = train_student("baseline", r, splits, profile=profile, seed=seed, config=cfg,
                                                     data_desc=data_desc, progress=False)
                token_auc = float("nan")
            else:
                model, history, info = train_student("multitask", r, splits, profile=profile, seed=seed, config=cfg,
                                                     data_desc=data_desc, lambda_local=lam, progress=False)
                maps = predict_local_maps(model, val.images[r])[:, -1]
                tgt = torch.stack([local_targets(b, l, TEACHER_RESOLUTION, model.grid, len(val.class_names))[-1]
                                   for b, l in zip(val.boxes, val.box_labels)])
                token_auc = token_auroc(maps, tgt.numpy())
            best = max(history, key=lambda h: h["val_score"])
            rows.append({"variant": "baseline" if lam == 0 else "multitask", "lambda_local": lam, "resolution": r,
                         "seed": seed, "val_mcct_auroc": best["val_mcct_auroc"],
                         "val_mlct_macro_auroc": best["val_mlct_macro_auroc"], "val_score": best["val_score"],
                         "val_token_auroc_any": token_auc, "best_epoch": best["epoch"], "epochs": len(history),
                         "config_hash": info["hash"], "cache_hit": info["cache_hit"],
                         "wall_seconds": time.perf_counter() - t0, "torch_threads": torch.get_num_threads()})
            print(f"lambda_local={lam:g} seed={seed}: val score {best['val_score']:.4f} "
                  f"(MCCT {best['val_mcct_auroc']:.4f}, MLCT {best['val_mlct_macro_auroc']:.4f}), "
                  f"token AUROC {token_auc:.3f}", flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows).to_csv(out, index=False, float_format="%.6g")
    df = pd.DataFrame(rows)
    means = df[df.lambda_local > 0].groupby("lambda_local")["val_score"].mean()
    if len(means):
        print(f"chosen lambda_local = {means.idxmax():g} (mean val score {means.max():.4f}); "
              f"baseline (lambda 0): {df[df.lambda_local == 0]['val_score'].mean():.4f}")
        if args.write:
            write_tuned_weights(profile, lambda_local=float(means.idxmax()))
            print("written to mlcak_lib/data/tuned_weights.json", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
