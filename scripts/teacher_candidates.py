"""Train and measure one teacher candidate (issue 13; the table notebook 04 explains its choice from).

Every candidate is the course's ViT family (:func:`mlcak_lib.models.build_vit`) with a chosen stem,
trained with :func:`mlcak_lib.train.fit` on the default profile's five-patient simulator
(three training patients, validation on a fourth) and measured on the unseen test patient:

* MCCT AUROC, MLCT macro AUROC, AUROC of films whose lesions are all under 10 mm;
* the class token's attention (last block, the guided blocks, rollout): token AUROC and pointing
  against the lesion tokens, beside the constant-map control (the dataset-mean map), and the
  variability statistic (:func:`mlcak_lib.localization.attention_variability`).

One JSON line per run is appended to ``mlcak_lib/data/results/teacher_candidates.jsonl`` (with the git revision and wall
time). Models go to the cache (``MLCAK_CACHE_DIR``), so a rerun only re-measures.

    python scripts/teacher_candidates.py --name deepstem-guided --stem-channels 16,32,64,96,128 \\
        --stem-convs 2 --local 1 --guide 1 --epochs 30
    python scripts/teacher_candidates.py --name teacher --teacher boxes   # the course's teacher, as trained
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from mlcak_lib import localization, metrics, recipes
from mlcak_lib.cache import load_or_train
from mlcak_lib.augment import AugmentSpec, Augmented
from mlcak_lib.dataswitch import data_description, dataset_class_names, get_splits
from mlcak_lib.guidance import AttentionGuidance
from mlcak_lib.local_task import LocalObjective
from mlcak_lib.models import architecture, attach_local_head, build_vit
from mlcak_lib.train import SupervisedObjective, TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "mlcak_lib" / "data" / "results" / "teacher_candidates.jsonl"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(",") if t.strip())


def attention_rows(model, split, res: int, blocks: list[int]) -> dict[str, float]:
    """Token AUROC / pointing of class-token maps (last block, each guided block, rollout), their constant-map
    controls and variability (:func:`mlcak_lib.localization.attention_summary`)."""
    images = split.images[res]
    kinds: dict[str, np.ndarray] = {"last": localization.attention_maps(model, images, "last"),
                                    "rollout": localization.attention_maps(model, images, "rollout")}
    kinds.update({f"block{b}": m for b, m in localization.block_attention_maps(model, images, blocks).items()})
    return {f"attn_{kind}_{key}": value for kind, maps in kinds.items()
            for key, value in localization.attention_summary(maps, split).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--res", type=int, default=224)
    ap.add_argument("--stem-channels", type=_ints, default=None)
    ap.add_argument("--stem-convs", type=int, default=None)
    ap.add_argument("--embed-dim", type=int, default=None)
    ap.add_argument("--depth", type=int, default=None)
    ap.add_argument("--local", type=float, default=0.0, help="weight of the local task (0: off)")
    ap.add_argument("--guide", type=float, default=0.0, help="weight of attention guidance (0: off)")
    ap.add_argument("--guide-blocks", type=_ints, default=(-1,))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-size", type=int, default=None, help="training films (default: the profile's split)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--augment", choices=("none", "geometric", "intensity", "both"), default="none",
                    help="augment the training films (mlcak_lib.augment; the boxes and token targets move with them)")
    ap.add_argument("--teacher", choices=("boxes", "labels-only"), default=None,
                    help="measure the course's teacher (recipes.get_teacher, trained by scripts/train_teacher.py) "
                         "instead of training a candidate")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.teacher:
        args.stem_channels, args.stem_convs = recipes.TEACHER_ARCHITECTURE["default"]["stem_channels"], \
            recipes.TEACHER_ARCHITECTURE["default"]["stem_convs"]
        spec = recipes.TEACHER_OBJECTIVE["default"] if args.teacher == "boxes" else {"lambda_local": 0.0, "guide": 0.0,
                                                                                   "guide_blocks": (-1,)}
        args.local, args.guide, args.guide_blocks = spec["lambda_local"], spec["guide"], tuple(spec["guide_blocks"])
        args.augment = recipes.TEACHER_OBJECTIVE["default"].get("augment") or "none"
        args.res, cfg = 224, recipes.TEACHER_TRAINING["default"]
        args.epochs, args.patience, args.lr, args.batch = cfg.epochs, cfg.patience, cfg.lr, cfg.batch_size

    overrides = {k: v for k, v in dict(stem_channels=args.stem_channels, stem_convs=args.stem_convs,
                                       embed_dim=args.embed_dim, depth=args.depth).items() if v is not None}
    names = dataset_class_names("synth", "default")
    res = args.res
    sizes = {"train": args.train_size} if args.train_size else None
    data = get_splits(tuple(sorted({res, 224})), profile="default", seed=0, splits=("train", "val", "test"),
                      dataset="synth", sizes=sizes)
    objective = SupervisedObjective()
    if args.local > 0:
        objective = LocalObjective(objective, lambda_local=args.local)
    if args.guide > 0:
        objective = AttentionGuidance(objective, weight=args.guide, blocks=args.guide_blocks)
    if args.augment != "none":
        objective = Augmented(objective, AugmentSpec(mode=args.augment), seed=args.seed)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr, weight_decay=0.05, warmup_epochs=1.0,
                      patience=args.patience, seed=args.seed)
    arch = architecture("default", **overrides)
    key = {"data": data_description("synth", "default", 0, sizes), "model": {"resolution": res, "num_classes": len(names),
           **arch, "local_head": args.local > 0}, "train": cfg.as_dict(), "objective": objective.config()}

    def build():
        m = build_vit(res, len(names), profile="default", seed=args.seed, **overrides)
        return attach_local_head(m) if args.local > 0 else m

    def train(m):
        return fit(m, data["train"], data["val"], objective, cfg, resolution=res, progress=True, desc=args.name)

    t0 = time.time()
    if args.teacher:
        model, history, info = recipes.get_teacher("default", dataset="synth", use_boxes=args.teacher == "boxes",
                                                   load_only=True)
    else:
        model, history, info = load_or_train(f"candidate-{args.name}-r{res}", key, build, train)
    best = next(h for h in history if h.get("best"))
    row = {"name": args.name, "teacher_recipe": bool(args.teacher), "resolution": res, "seed": args.seed, "arch": str(overrides), "local": args.local,
           "guide": args.guide, "guide_blocks": ",".join(map(str, args.guide_blocks)), "augment": args.augment,
           "epochs_run": len(history),
           "best_epoch": best["epoch"], "best_val_score": round(best["val_score"], 4),
           "train_seconds": round(info["train_seconds"], 1), "threads": args.threads,
           "params": sum(p.numel() for p in model.parameters()),
           "train_films": (recipes.TEACHER_SIZES["default"] or {}).get("train", len(data["train"])) if args.teacher
           else len(data["train"])}
    for split in ("val", "test"):
        ev = metrics.evaluate(model, data[split], res)
        row[f"{split}_mcct"] = round(ev["mcct_auroc"], 4)
        row[f"{split}_mlct"] = round(ev["mlct_macro_auroc"], 4)
        bs = ev["by_size"]
        row[f"{split}_small_auroc"] = round(float(np.nanmean(bs[bs.size_bin == "< 10 mm"]["auroc"])), 4)
    blocks = sorted({b % len(model.blocks) for b in args.guide_blocks})
    row.update({k: round(v, 4) for k, v in attention_rows(model, data["test"], res, blocks).items()})
    if args.local > 0:
        rep = localization.localization_report(localization.predict_local_maps(model, data["test"].images[res]),
                                               data["test"].boxes, data["test"].box_labels, data["test"].box_mm, 224,
                                               class_names=names)
        sel = rep[(rep.channel == "any") & (rep.stratum == "all")].set_index("metric")["value"]
        row["local_token_auroc"] = round(float(sel["token_auroc"]), 4)
    row["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip()
    row["measured_seconds"] = round(time.time() - t0, 1)
    print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    with OUT.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    for h in history:
        print(f"ep {h['epoch']} loss {h['train_loss']:.3f} val mcct {h['val_mcct_auroc']:.3f} "
              f"mlct {h['val_mlct_macro_auroc']:.3f} {h['seconds']:.0f}s", flush=True)


if __name__ == "__main__":
    main()
