"""Train the course's teacher offline and commit it as a package checkpoint (issue 13, notebook 04).

    python scripts/train_teacher.py                # default profile, 2 threads
    python scripts/train_teacher.py --threads 1    # alongside another job
    python scripts/train_teacher.py --labels-only  # the ablation without boxes that notebook 04 compares with

Trains exactly what ``recipes.get_teacher()`` asks for (the committed checkpoint is ignored, the user's
model cache is not: a teacher already trained under the same key is reused), rounds its weights to
float16, records a small-batch validation check on the rounded weights and writes
``mlcak_lib/data/checkpoints/teacher-<dataset>-<profile>.pt`` (:mod:`mlcak_lib.checkpoints`). Commit
that file; notebooks 04-06 then load it instead of training.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from mlcak_lib import checkpoints, metrics, recipes
from mlcak_lib.cache import code_parts
from mlcak_lib.config import cache_dir
from mlcak_lib.dataswitch import get_splits

#: Films of the validation split on which the committed teacher's check is recorded (and re-measured by the tests).
VAL_CHECK_SIZE = 64


def val_check(model: torch.nn.Module, profile: str, dataset: str) -> dict:
    """Metrics of ``model`` on the first :data:`VAL_CHECK_SIZE` validation films (what the tests reproduce)."""
    val = get_splits((model.resolution,), profile=profile, seed=0, splits=("val",), sizes={"val": VAL_CHECK_SIZE},
                     dataset=dataset)["val"]
    preds = metrics.predict(model, val.images[model.resolution])
    return {"n": VAL_CHECK_SIZE, "mcct_auroc": metrics.mcct_auroc(val.mcct, preds["mcct_logits"]),
            "mcct_logit_mean": float(preds["mcct_logits"][:, 1].mean() - preds["mcct_logits"][:, 0].mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--dataset", default="synth")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--labels-only", action="store_true", help="the ablation without the boxes (notebook 04)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    start = time.time()
    model, history, info = recipes.get_teacher(args.profile, dataset=args.dataset, ignore_committed=True,
                                               progress=True, use_boxes=not args.labels_only)
    name = f"teacher-{args.dataset}-{args.profile}" + ("-labels-only" if args.labels_only else "")
    # the key and configuration exactly as get_teacher made them, read back from the cache file
    cached = torch.load(cache_dir() / info["path"], map_location="cpu", weights_only=True)
    rounded = checkpoints.load_weights(model, {"state_dict": checkpoints.half_state_dict(model)})
    check = val_check(rounded, args.profile, args.dataset)
    path = checkpoints.save_committed(
        checkpoints.committed_path(name), rounded, name=name, hash=info["hash"], config_dict=json.loads(cached["config"]), code_parts=code_parts(), history=history, train_seconds=info["train_seconds"],
        extra={"val_check": check, "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
               "torch": torch.__version__})
    print(f"{path.name}: {path.stat().st_size / 1e6:.2f} MB, key {info['hash']}, trained in "
          f"{info['train_seconds'] / 60:.1f} min, val check {check}; all committed checkpoints "
          f"{checkpoints.total_size_mb():.2f} MB of {checkpoints.MAX_TOTAL_MB:.0f}; {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
