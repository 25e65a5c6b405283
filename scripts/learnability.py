#!/usr/bin/env python
"""Can the 224 px model learn the simulator's findings on patients it has never seen? (issue 12)

Trains (or loads from the cache) the teacher exactly as notebook 04 does (``recipes.get_teacher`` on
the default profile, so notebook 04 reuses the cached model), then scores it per class on

* **unseen patients**: the test split, whose patients the training split never shows;
* **seen patients**: new films of the *training* patients (the same configuration with the training
  patients moved into the test split: the test split's image seeds differ from training's, so every
  film is new, only the patients are familiar).

Both sets have the same size and the same label distribution. Writes ``<out>.csv`` (one row per class
and set: positives, AUROC, 95 % stratified bootstrap interval) and ``<out>.md``; prints the table.

Usage: ``python scripts/learnability.py [--profile default] [--seed 0] [--out mlcak_lib/data/results/learnability]``
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pandas as pd

from mlcak_lib import recipes
from mlcak_lib.config import output_dir
from mlcak_lib.datasets import SPLIT_SIZES, SynthCXRDataset
from mlcak_lib.dataswitch import get_splits, synth_config
from mlcak_lib.metrics import auroc_ci, evaluate
from mlcak_lib.splits import materialize
from mlcak_lib.synth import seen_patients


def score(model, split, label: str) -> list[dict]:
    """Per-class and MCCT AUROC of ``model`` on ``split`` with bootstrap intervals."""
    res = evaluate(model, split, by_size=False)
    preds = res["predictions"]
    rows = []
    for c, name in enumerate(split.class_names):
        y = split.mlct[:, c].numpy()
        lo, hi = auroc_ci(y, preds["mlct_prob"][:, c])
        rows.append({"set": label, "class": name, "positives": int(y.sum()), "n": len(y),
                     "auroc": res["mlct_auroc"][name], "ci_low": lo, "ci_high": hi})
    y = split.mcct.numpy()
    p = preds["mcct_prob"]
    lo, hi = auroc_ci(y, p)
    rows.append({"set": label, "class": "MCCT (abnormal)", "positives": int(y.sum()), "n": len(y),
                 "auroc": res["mcct_auroc"], "ci_low": lo, "ci_high": hi})
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(output_dir() / "learnability"))
    args = ap.parse_args(argv)
    cfg = synth_config(args.profile)
    if cfg.patients is None:
        raise SystemExit("the profile's simulator draws one patient: there are no unseen patients to test on")
    teacher, history, info = recipes.get_teacher(args.profile, seed=args.seed, dataset="synth", progress=True)
    test = get_splits((224,), profile=args.profile, seed=args.seed, splits=("test",), dataset="synth")["test"]
    seen_cfg = dataclasses.replace(cfg, patients=seen_patients(cfg.patients))
    seen = materialize(SynthCXRDataset("test", resolutions=(), profile=args.profile, seed=args.seed, config=seen_cfg,
                                       size=SPLIT_SIZES[args.profile]["test"], cache=True), (224,))
    table = pd.DataFrame(score(teacher, seen, "seen patients") + score(teacher, test, "unseen patients"))
    wide = table.pivot(index="class", columns="set", values=["auroc", "ci_low", "ci_high", "positives"])
    order = list(test.class_names) + ["MCCT (abnormal)"]
    wide = wide.reindex(order)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False, float_format="%.4f")
    lines = [f"# Learnability on seen and unseen patients ({args.profile} profile, seed {args.seed})", "",
             f"Teacher as notebook 04 trains it ({len(history)} epochs run; cache hash {info.get('hash', '?')}).",
             f"Patients: {dict(cfg.patients)}; 'seen' = new films of the training patients.", "",
             "| class | seen AUROC [95 % CI] | unseen AUROC [95 % CI] | positives seen / unseen |",
             "|---|---|---|---|"]
    for name in order:
        cell = {s: f"{wide.loc[name, ('auroc', s)]:.3f} [{wide.loc[name, ('ci_low', s)]:.3f}, "
                   f"{wide.loc[name, ('ci_high', s)]:.3f}]" for s in ("seen patients", "unseen patients")}
        lines.append(f"| {name} | {cell['seen patients']} | {cell['unseen patients']} | "
                     f"{int(wide.loc[name, ('positives', 'seen patients')])} / "
                     f"{int(wide.loc[name, ('positives', 'unseen patients')])} |")
    text = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
