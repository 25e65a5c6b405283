"""Commit notebook 07's pretrained backbone and the detectors its pictures use as package checkpoints (issue 16).

    python scripts/commit_detectors.py                      # after the grid (mlcak-detect) has trained them
    python scripts/commit_detectors.py --runs box-only:1.0:0 oxnet:0.005:0

Loads (or trains) exactly what ``mlcak-detect`` asks for in the default profile at 112 px: the backbone
(:func:`mlcak_lib.detection_runner.pretrained_backbone`) and each ``variant:box_fraction:seed`` detector
(:func:`mlcak_lib.detection.recipe.get_detector`, the user's model cache first), rounds the weights to float16,
records a validation check on the rounded weights
(:func:`mlcak_lib.detection_runner.committed_check`, which the tests reproduce) and writes
``mlcak_lib/data/checkpoints/<name>.pt`` (:mod:`mlcak_lib.checkpoints`). A detector trained later from the
committed backbone starts from its float16-rounded weights (the grid's detectors started from the float32 ones).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from mlcak_lib import checkpoints, detection_runner
from mlcak_lib.cache import code_parts
from mlcak_lib.config import cache_dir
from mlcak_lib.dataswitch import get_splits
from mlcak_lib.detection.keys import DETECTION_CODE
from mlcak_lib.detection.recipe import (
    detector_training,
    get_detector,
)

DEFAULT_RUNS = ("box-only:1.0:0", "oxnet:0.005:0")


def commit(model: torch.nn.Module, history: list, info: dict, val: Any, resolution: int) -> None:
    """Write ``model`` (from the cache file ``info["path"]``) as the committed checkpoint of the same name."""
    name = Path(info["path"]).name[:-len(f"-{info['hash']}.pt")]
    cached = torch.load(cache_dir() / info["path"], map_location="cpu", weights_only=True)
    rounded = checkpoints.load_weights(model, {"state_dict": checkpoints.half_state_dict(model)})
    check = detection_runner.committed_check(rounded, val, resolution)
    path = checkpoints.save_committed(
        checkpoints.committed_path(name), rounded, name=name, hash=info["hash"], config_dict=json.loads(cached["config"]),
        code_parts=code_parts(DETECTION_CODE), history=history, train_seconds=info["train_seconds"],
        extra={"val_check": check, "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
               "torch": torch.__version__})
    print(f"{path.name}: {path.stat().st_size / 1e6:.2f} MB, key {info['hash']}, val check {check}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--dataset", default="synth")
    ap.add_argument("--resolution", type=int, default=112)
    ap.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), help="variant:box_fraction:seed")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start, r = time.time(), args.resolution
    cfg = detector_training(args.profile)
    splits = get_splits((r,), args.profile, splits=("train", "val"), dataset=args.dataset)
    check_val = get_splits((r,), args.profile, splits=("val",), sizes={"val": detection_runner.CHECK_FILMS}, dataset=args.dataset)["val"]
    desc = detection_runner.detection_data_description(args.dataset, args.profile)
    clf, history, info = detection_runner.backbone_run(r, cfg, args.profile, args.dataset, progress=True)
    if not info.get("committed"):
        commit(clf, history, info, check_val, r)
    for run in args.runs:
        variant, fraction, seed = run.split(":")
        model, history, det = get_detector(variant, float(fraction), r, int(seed), splits, desc, args.profile, cfg,
                                           backbone=(clf, info["hash"]), progress=True)
        if not det.get("committed"):
            commit(model, history, det, check_val, r)
    print(f"all committed checkpoints {checkpoints.total_size_mb():.2f} MB of {checkpoints.MAX_TOTAL_MB:.0f}; "
          f"{time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
