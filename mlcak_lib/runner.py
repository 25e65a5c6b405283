"""The experiment runner: the grid of variants x resolutions x seeds in one command (notebook 05).

    python -m mlcak_lib.runner --profile default \\
        --variants baseline output-kd attention-kd mlcak hinton-kd \\
        --resolutions 112 56 28 --seeds 0 1 2 --out results/

(installed as the console script ``mlcak-run``). For each run it loads the student from the
model cache or trains it (``train.load_or_train``, keyed by the hash of the full configuration,
so a rerun of the same grid only evaluates), evaluates it on the **test** split, and writes
into ``--out``:

* ``grid_<profile>.csv`` -- tidy, one row per run plus one ``teacher`` row: variant, resolution,
  seed, every metric (MCCT AUROC, MLCT macro and per-class AUROC, MLCT macro AUROC per lesion-size
  bin), the teacher's metrics on the same test split, loss weights, config hash, cache hit,
  epochs, git revision + dirty flag, hardware (CPU model, cores, torch threads, device) and
  wall time;
* ``grid_<profile>.png`` -- AUROC vs resolution per variant (mean +- std over seeds) with the
  teacher as a dashed line;
* ``grid_<profile>.md`` -- the table "mean +- std" per variant x resolution and the **gap
  recovered** ``(AUROC_student - AUROC_baseline) / (AUROC_teacher - AUROC_baseline)``.

Seeds change the student's initial weights and batch order; the data (seed 0) and the teacher
(seed 0) are the same for every run. Students early-stop on the validation split; nothing is
chosen on the test split. ``--tiny`` shrinks everything (a few dozen images, one epoch) for
tests and smoke runs; ``summarize(csv)`` turns a results CSV into the per-variant table that
notebook 05 shows.

Errors a user can make (an unknown variant, a resolution the token grid cannot serve, a teacher
that is not cached under ``--teacher-mode load-only``) stop the runner before any training
with a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

#: Headline metrics, in table order: column name -> label.
METRICS: dict[str, str] = {"mcct_auroc": "MCCT AUROC", "mlct_macro_auroc": "MLCT macro AUROC"}
#: The grid's default variants: notebook 05's distillation variants (``distill.DISTILL_VARIANTS``).
#: The multi-task variants of notebook 06 (``multitask``, ``mlcak-mt``) run when named.
DEFAULT_VARIANTS: tuple[str, ...] = ("baseline", "output-kd", "attention-kd", "mlcak", "hinton-kd")
#: Every variant in table order (``distill.VARIANT_NAMES``).
ALL_VARIANTS: tuple[str, ...] = DEFAULT_VARIANTS + ("multitask", "mlcak-mt")
#: Localization maps in the CSV: column prefix -> ``model_localization`` map name.
LOC_MAPS: dict[str, str] = {"rollout": "attention:rollout", "local": "local-head"}
LOC_METRICS: tuple[str, ...] = ("token_auroc", "pointing", "iou", "mass_in_box")
DEFAULT_RESOLUTIONS: tuple[int, ...] = (112, 56, 28)
TEACHER_MODES: tuple[str, ...] = ("load-or-train", "load-only")

#: ``--tiny``: split sizes and epochs for tests and smoke runs (the architecture is the profile's).
TINY: dict[str, Any] = {"sizes": {"train": 32, "val": 24, "test": 24}, "epochs": 1, "batch_size": 16}


class RunnerError(Exception):
    """A user error reported as one line (no stack trace) with exit status 2."""


# --------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------

def git_revision(root: str | os.PathLike | None = None) -> tuple[str, bool | None]:
    """``(short hash, dirty)`` of the checkout holding the library (``("unknown", None)`` outside git)."""
    from .config import repo_root

    where = Path(root) if root else (repo_root() or Path.cwd())
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown", None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                capture_output=True, text=True, timeout=10)
        return rev.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return "unknown", None


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def hardware() -> dict[str, Any]:
    """CPU model, cores, torch threads and device of this process."""
    import torch

    from .envinfo import default_device

    device = default_device()
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    return {"cpu_model": cpu_model(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": name}


# --------------------------------------------------------------------------------------------
# Checks that run before any work
# --------------------------------------------------------------------------------------------

def check_variants(variants: Sequence[str], profile: str | None = None) -> list[str]:
    """Canonical variant names; :class:`RunnerError` for an unknown one."""
    from .distill import get_variant

    names = []
    for v in variants:
        try:
            names.append(get_variant(v, profile).name)
        except ValueError as exc:
            raise RunnerError(str(exc)) from None
    return list(dict.fromkeys(names))


def check_resolutions(resolutions: Sequence[int], profile: str | None = None, arch_overrides: Mapping[str, Any] | None = None) -> list[int]:
    """Resolutions a student can be built for: below the teacher's and served by the teacher's token grid."""
    from .models import TEACHER_RESOLUTION, architecture, build_student

    arch = architecture(profile, **dict(arch_overrides or {}))
    grid = arch["grid"]
    out = []
    for r in resolutions:
        r = int(r)
        if not 0 < r < TEACHER_RESOLUTION:
            raise RunnerError(f"resolution {r} must be below the teacher's {TEACHER_RESOLUTION} px")
        if r % grid:
            raise RunnerError(f"resolution {r} cannot serve the teacher's {grid}x{grid} token grid "
                              f"({r} is not divisible by {grid}); try one of {[TEACHER_RESOLUTION // 2**k for k in (1, 2, 3)]}")
        try:
            build_student(r, 2, profile=profile, **dict(arch_overrides or {}))
        except ValueError as exc:
            raise RunnerError(f"resolution {r} cannot serve the teacher's {grid}x{grid} token grid: {exc}") from None
        out.append(r)
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------------------------
# Teacher and data
# --------------------------------------------------------------------------------------------

def _teacher(profile: str, mode: str, sizes, teacher_cfg, progress: bool, dataset: str = "synth"):
    """The course teacher for the dataset of the switch; in ``load-only`` mode a missing cache entry is a
    :class:`RunnerError`."""
    from . import train

    try:
        return train.get_teacher(profile, seed=0, config=teacher_cfg, sizes=sizes, progress=progress,
                                 load_only=(mode == "load-only"), dataset=dataset)
    except train.CacheMiss:
        where = "run notebook 04 or " if dataset == "synth" else ""
        raise RunnerError(f"no cached teacher for profile {profile!r}, dataset {dataset!r} (--teacher-mode load-only); "
                          f"{where}run this runner with --teacher-mode load-or-train first") from None


def student_data_desc(profile: str | None = None, sizes: Mapping[str, int] | None = None,
                      dataset: str | None = None) -> dict:
    """The description of the students' data (``train.get_splits``: 224 px images and their
    area-resized views) that enters students' cache keys; shared by the runner,
    ``scripts/tune_distill.py``, ``scripts/data_regime.py`` and notebooks 05-06, so they reuse each
    other's students. ``dataset``: the switch (default ``MLCAK_DATASET``, else the simulator)."""
    from . import train

    return {**train.data_config(profile, 0, sizes, dataset), "views": "area_resize(image, r)"}


def flat_localization(model, split, resolution: int) -> dict[str, Any]:
    """Localization metrics (any-lesion channel) as flat columns ``loc_<map>_<metric>[<stratum>]``.

    Maps: ``rollout`` (class-token attention rollout, every model) and ``local`` (the local head,
    multi-task students only); metrics of :func:`mlcak_lib.localization.localization_report`;
    strata ``all`` and the lesion-size bins. Empty when the split has no boxes.
    """
    from .localization import has_boxes, model_localization

    if not has_boxes(split):
        return {}
    df = model_localization(model, split, resolution, attention=("rollout",))
    df = df[df["channel"] == "any"]
    row: dict[str, Any] = {}
    for prefix, name in LOC_MAPS.items():
        sub = df[df["map"] == name]
        for _, r in sub.iterrows():
            row[f"loc_{prefix}_{r['metric']}[{r['stratum']}]"] = float(r["value"])
    return row


def flat_metrics(model, split, resolution: int) -> dict[str, Any]:
    """Test metrics as flat columns: headline AUROCs, per-class AUROC, macro AUROC per size bin,
    and the localization metrics (:func:`flat_localization`)."""
    import warnings

    from .metrics import SIZE_BINS, evaluate

    with warnings.catch_warnings():  # a class without positives in a small real split: NaN, reported as such
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        res = evaluate(model, split, resolution)
    row: dict[str, Any] = {"mcct_auroc": res["mcct_auroc"], "mlct_macro_auroc": res["mlct_macro_auroc"], "score": res["score"]}
    for name, value in res["mlct_auroc"].items():
        row[f"auroc[{name}]"] = value
    by_size = res.get("by_size")
    for label, _, _ in SIZE_BINS:
        values = by_size.loc[by_size["size_bin"] == label, "auroc"] if by_size is not None and len(by_size) else []
        values = np.asarray(values, dtype=float)
        values = values[~np.isnan(values)]
        row[f"auroc_size[{label}]"] = float(values.mean()) if len(values) else float("nan")
    row.update(flat_localization(model, split, resolution))
    return row


# --------------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------------

def run_grid(
    profile: str | None = None,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    resolutions: Sequence[int] = DEFAULT_RESOLUTIONS,
    seeds: Sequence[int] = (0, 1, 2),
    dataset: str | None = None,
    out: str | os.PathLike | None = "results",
    teacher_mode: str = "load-or-train",
    tiny: bool = False,
    progress: bool = True,
    weights: Mapping[str, float] | None = None,
    tag: str | None = None,
    teacher: tuple | None = None,
    epochs: int | None = None,
):
    """Run the grid and write CSV/PNG/markdown into ``out`` (``None``: write nothing); return the DataFrame.

    Runs go resolution by resolution, lowest first (28 px, the headline, is done first), then
    seed, then variant. The CSV is rewritten after every run, so an interrupted grid keeps what it
    finished. ``weights`` overrides the tuned alpha/beta/gamma/levels/temperature (each variant
    takes the ones it uses, see ``distill.get_variant``).
    ``teacher``: an already loaded ``(model, info)`` from ``train.get_teacher`` for the same dataset.
    ``epochs``: train students for this many epochs instead of the profile's (``student_training``);
    the value enters the students' cache keys, so such runs never replace the default grid's.
    """
    import pandas as pd
    import torch
    from tqdm.auto import tqdm

    from . import config as _config
    from . import train
    from .distill import get_variant, student_training, train_student
    from .models import TEACHER_RESOLUTION

    try:
        profile = _config.get_profile(profile)
    except ValueError as exc:
        raise RunnerError(str(exc)) from None
    from .dataswitch import DATASET_NAMES

    dataset_name = _config.get_dataset_name(dataset)  # the one switch: argument, else $MLCAK_DATASET, else synth
    if dataset_name not in DATASET_NAMES:
        raise RunnerError(f"unknown dataset {dataset_name!r}; choose one of {', '.join(DATASET_NAMES)}")
    variants = check_variants(variants, profile)
    resolutions = sorted(check_resolutions(resolutions, profile))
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise RunnerError("give at least one seed")
    if teacher_mode not in TEACHER_MODES:
        raise RunnerError(f"unknown teacher mode {teacher_mode!r}; choose one of {', '.join(TEACHER_MODES)}")

    sizes = dict(TINY["sizes"]) if tiny else None
    teacher_cfg = train.TEACHER_TRAINING[profile].replace(epochs=TINY["epochs"], batch_size=TINY["batch_size"]) if tiny else None
    student_cfg = student_training(profile)
    if epochs is not None:
        if int(epochs) < 1:
            raise RunnerError(f"--epochs must be at least 1, got {epochs}")
        student_cfg = student_cfg.replace(epochs=int(epochs))  # a study of the budget; the tuned default stays
    if tiny:
        student_cfg = student_cfg.replace(epochs=TINY["epochs"], batch_size=TINY["batch_size"])
    tag = tag or (f"{profile}-tiny" if tiny else profile)
    out_dir = Path(out) if out is not None else None
    rev, dirty = git_revision()
    hw = hardware()
    say = (lambda msg: print(msg, flush=True)) if progress else (lambda msg: None)

    grid_start = time.perf_counter()
    say(f"[runner] profile={profile} dataset={dataset_name} variants={','.join(variants)} "
        f"resolutions={','.join(map(str, resolutions))} seeds={','.join(map(str, seeds))}")
    t0 = time.perf_counter()
    given = teacher is not None
    if given:
        teacher, teacher_info = teacher
    else:
        teacher, _, teacher_info = _teacher(profile, teacher_mode, sizes, teacher_cfg, progress, dataset_name)
    splits = train.get_splits((TEACHER_RESOLUTION, *resolutions), profile=profile, seed=0, sizes=sizes,
                              dataset=dataset_name)
    data_desc = student_data_desc(profile, sizes, dataset_name)
    local = [v for v in variants if get_variant(v, profile).uses_local]
    if local:
        from .localization import has_boxes

        if not has_boxes(splits["train"]):
            raise RunnerError(f"dataset {dataset_name!r} has no lesion boxes: the multi-task variants "
                              f"({', '.join(local)}) need them")
    how = "given by the caller" if given else ("loaded from cache" if teacher_info["cache_hit"] else "trained")
    say(f"[runner] teacher {how} ({teacher_info['hash']}, {time.perf_counter() - t0:.0f} s)")

    data_hash = str(data_desc.get("synth_hash") or train.config_hash("data", data_desc, code=""))
    common = {"profile": profile, "dataset": dataset_name, "data_hash": data_hash, "git_rev": rev, "git_dirty": dirty, **hw,
              "n_train": len(splits["train"]), "n_val": len(splits["val"]), "n_test": len(splits["test"])}
    t0 = time.perf_counter()
    teacher_metrics = flat_metrics(teacher, splits["test"], TEACHER_RESOLUTION)
    teacher_row = {"run": "teacher", "variant": "teacher", "resolution": TEACHER_RESOLUTION, "seed": 0, **teacher_metrics,
                   "teacher_mcct_auroc": teacher_metrics["mcct_auroc"],
                   "teacher_mlct_macro_auroc": teacher_metrics["mlct_macro_auroc"],
                   "config_hash": teacher_info["hash"], "cache_hit": teacher_info["cache_hit"],
                   "train_seconds": teacher_info.get("train_seconds"), **common,
                   "wall_seconds": time.perf_counter() - t0}
    rows = [teacher_row]

    plan = [(r, s, v) for r in resolutions for s in seeds for v in variants]
    bar = tqdm(plan, desc="runs", unit="run", file=sys.stdout, disable=not progress)
    for r, s, v in bar:
        bar.set_description(f"{v} @ {r}px seed {s}")
        t0 = time.perf_counter()
        variant = get_variant(v, profile, **dict(weights or {}))
        model, history, info = train_student(
            variant, r, splits, teacher=teacher, teacher_info=teacher_info, profile=profile, seed=s,
            config=student_cfg, data_desc=data_desc, progress=False,
        )
        metrics = flat_metrics(model, splits["test"], r)
        best = next((h["epoch"] for h in history if h.get("best")), len(history))
        rows.append({"run": "student", "variant": variant.name, "resolution": r, "seed": s, **metrics,
                     "teacher_mcct_auroc": teacher_metrics["mcct_auroc"],
                     "teacher_mlct_macro_auroc": teacher_metrics["mlct_macro_auroc"],
                     "alpha": variant.alpha, "beta": variant.beta, "gamma": variant.gamma,
                     "levels": variant.levels if variant.uses_attention else None,
                     "temperature": variant.temperature if variant.kind == "hinton" else None,
                     "lambda_local": variant.lambda_local if variant.uses_local else None,
                     "epochs": len(history), "best_epoch": best, "config_hash": info["hash"], "cache_hit": info["cache_hit"],
                     "train_seconds": info.get("train_seconds"), **common, "wall_seconds": time.perf_counter() - t0})
        bar.set_postfix(mcct=f"{metrics['mcct_auroc']:.3f}", mlct=f"{metrics['mlct_macro_auroc']:.3f}", refresh=False)
        if out_dir is not None:
            _write_csv(pd.DataFrame(rows), out_dir / f"grid_{tag}.csv")
    bar.close()
    df = pd.DataFrame(rows)
    total = time.perf_counter() - grid_start
    df.attrs["grid_wall_seconds"] = total
    if out_dir is not None:
        csv = out_dir / f"grid_{tag}.csv"
        _write_csv(df, csv)
        table = summarize(df)
        (out_dir / f"grid_{tag}.md").write_text(markdown_table(table, title=f"MLCAK grid, profile `{profile}`, "
                                                                            f"dataset `{dataset_name}`, test split"))
        plot_grid(table, out_dir / f"grid_{tag}.png", title=f"Test AUROC vs resolution ({profile} profile, {len(seeds)} seeds)")
        say(f"[runner] wrote {_shown(csv)}, .png and .md")
    say(f"[runner] {len(plan)} runs in {total:.0f} s ({sum(bool(r.get('cache_hit')) for r in rows[1:])} from cache)")
    return df


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path.name


def _write_csv(df, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    df.to_csv(tmp, index=False, float_format="%.6g")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# Summaries: table, gap recovered, figure
# --------------------------------------------------------------------------------------------

def gap_recovered(student: float, baseline: float, teacher: float) -> float:
    """``(student - baseline) / (teacher - baseline)``; NaN when the teacher is not above the baseline."""
    denom = teacher - baseline
    if not np.isfinite(denom) or denom <= 0:
        return float("nan")
    return (student - baseline) / denom


def summarize(csv) -> "pd.DataFrame":  # noqa: F821
    """Per (variant, resolution): seeds, mean and std of every AUROC column and the gap recovered.

    ``csv``: a path to a runner CSV or its DataFrame. Columns: ``variant``, ``resolution``,
    ``n_seeds``, ``<metric>_mean`` / ``<metric>_std`` for every ``*auroc*`` column, and
    ``gap_<metric>`` for the two headline metrics (means of the student and of the baseline at
    the same resolution, teacher from the teacher row). The teacher is the row with variant
    ``teacher`` (std 0, gap 1 by definition: NaN is written instead to avoid a misleading 100 %).
    """
    import pandas as pd

    df = pd.read_csv(csv) if not isinstance(csv, pd.DataFrame) else csv.copy()
    cols = [c for c in df.columns if ("auroc" in c or c.startswith("loc_")) and not c.startswith("teacher_")]
    g = df.groupby(["variant", "resolution"], sort=False)
    table = g[cols].agg(["mean", "std"])
    table.columns = [f"{c}_{stat}" for c, stat in table.columns]
    table.insert(0, "n_seeds", g["seed"].nunique())
    table = table.reset_index()
    teacher = df[df["variant"] == "teacher"]
    for metric in METRICS:
        t = float(teacher[metric].mean()) if len(teacher) else float("nan")
        base = table[table["variant"] == "baseline"].set_index("resolution")[f"{metric}_mean"]
        table[f"gap_{metric}"] = [
            gap_recovered(row[f"{metric}_mean"], float(base.get(row["resolution"], np.nan)), t)
            if row["variant"] != "teacher" else float("nan")
            for _, row in table.iterrows()
        ]
    order = {v: i for i, v in enumerate(["teacher", *ALL_VARIANTS])}
    table["_o"] = table["variant"].map(lambda v: order.get(v, len(order)))
    table = table.sort_values(["_o", "resolution"], ascending=[True, False]).drop(columns="_o").reset_index(drop=True)
    return table


def _pm(mean: float, std: float) -> str:
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}" if np.isfinite(std) else f"{mean:.3f}"


def markdown_table(table, title: str | None = None) -> str:
    """The summary as markdown: mean ± std per variant x resolution and the gap recovered."""
    lines = [f"# {title}", ""] if title else []
    lines += ["| variant | px | seeds | MCCT AUROC | gap MCCT | MLCT macro AUROC | gap MLCT | < 10 mm | 10-20 mm | >= 20 mm |",
              "|---|---:|---:|---|---:|---|---:|---|---|---|"]

    def pct(x):
        return f"{100 * x:.0f} %" if np.isfinite(x) else "–"

    for _, row in table.iterrows():
        size = [_pm(row.get(f"auroc_size[{b}]_mean", np.nan), row.get(f"auroc_size[{b}]_std", np.nan))
                for b in ("< 10 mm", "10-20 mm", ">= 20 mm")]
        lines.append(f"| {row['variant']} | {row['resolution']} | {row['n_seeds']} | "
                     f"{_pm(row['mcct_auroc_mean'], row['mcct_auroc_std'])} | {pct(row['gap_mcct_auroc'])} | "
                     f"{_pm(row['mlct_macro_auroc_mean'], row['mlct_macro_auroc_std'])} | {pct(row['gap_mlct_macro_auroc'])} | "
                     + " | ".join(size) + " |")
    lines += ["", "Gap recovered = (AUROC_student − AUROC_baseline) / (AUROC_teacher − AUROC_baseline), "
              "on means over seeds at the same resolution. Size columns: MLCT macro AUROC per lesion-size bin.", ""]
    loc_cols = [("rollout", "pointing"), ("rollout", "mass_in_box"), ("local", "token_auroc"), ("local", "pointing")]
    if any(f"loc_{m}_{k}[all]_mean" in table.columns for m, k in loc_cols):
        lines += ["## Localization (any lesion, test split)", "",
                  "| variant | px | attention: pointing | attention: mass in boxes | local head: token AUROC | local head: pointing |",
                  "|---|---:|---|---|---|---|"]
        for _, row in table.iterrows():
            cells = [_pm(row.get(f"loc_{m}_{k}[all]_mean", np.nan), row.get(f"loc_{m}_{k}[all]_std", np.nan))
                     for m, k in loc_cols]
            lines.append(f"| {row['variant']} | {row['resolution']} | " + " | ".join(cells) + " |")
        lines += ["", "Attention: class-token attention rollout on the 7×7 token grid; local head: the any-lesion map "
                  "of the multi-task students. Pointing game with a one-token tolerance (notebook 06).", ""]
    return "\n".join(lines)


def plot_grid(table, path: str | os.PathLike | None = None, title: str | None = None):
    """AUROC vs resolution per variant (mean ± std error bars), teacher as a dashed line; returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    teacher = table[table["variant"] == "teacher"]
    students = table[table["variant"] != "teacher"]
    resolutions = sorted(students["resolution"].unique())
    variants = list(dict.fromkeys(students["variant"]))
    for ax, (metric, label) in zip(axes, METRICS.items()):
        for k, v in enumerate(variants):
            sub = students[students["variant"] == v].sort_values("resolution")
            offset = (k - (len(variants) - 1) / 2) * 0.04
            x = np.log2(np.asarray(sub["resolution"], dtype=float)) + offset  # log2 axis drawn linearly: NaN-safe
            ax.errorbar(x, sub[f"{metric}_mean"], yerr=sub[f"{metric}_std"].fillna(0), marker="o", capsize=3, label=v)
        if len(teacher) and np.isfinite(float(teacher[f"{metric}_mean"].iloc[0])):
            ax.axhline(float(teacher[f"{metric}_mean"].iloc[0]), color="k", ls="--", lw=1, label="teacher (224 px)")
        ax.set_xticks(np.log2(np.asarray(resolutions, dtype=float)))
        ax.set_xticklabels([str(r) for r in resolutions])
        ax.set_xlabel("student input resolution (px)")
        ax.set_ylabel(f"test {label}")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlcak-run", description="Run the MLCAK grid (variants x resolutions x seeds) "
                                "and write a results CSV, figure and markdown table.")
    p.add_argument("--profile", default=None, help="default or full (default: $MLCAK_PROFILE or 'default')")
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), help=f"any of {', '.join(ALL_VARIANTS)} (default: the first five)")
    p.add_argument("--resolutions", nargs="+", type=int, default=list(DEFAULT_RESOLUTIONS), help="student resolutions in px")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="student seeds (init + batch order)")
    p.add_argument("--dataset", default=None, help="the one dataset switch (default: $MLCAK_DATASET or 'synth')")
    p.add_argument("--out", default="results", help="output folder (default results/)")
    p.add_argument("--teacher-mode", default="load-or-train", choices=TEACHER_MODES,
                   help="load-only: fail if the teacher is not cached")
    p.add_argument("--tiny", action="store_true", help="a few dozen images and 1 epoch (tests, smoke runs)")
    p.add_argument("--tag", default=None, help="output file stem suffix (default: the profile, + '-tiny')")
    p.add_argument("--epochs", type=int, default=None, help="student epochs instead of the profile's (a budget study)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--gamma", type=float, default=None, help="override the tuned attention weight")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``mlcak-run``); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        weights = {"gamma": args.gamma} if args.gamma is not None else None
        run_grid(args.profile, args.variants, args.resolutions, args.seeds, args.dataset, args.out,
                 args.teacher_mode, args.tiny, not args.quiet, weights, args.tag, epochs=args.epochs)
    except RunnerError as exc:
        print(f"mlcak-run: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlcak-run: interrupted (finished runs are in the CSV)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - e.g. DatasetNotFoundError: one readable line
        if os.environ.get("MLCAK_DEBUG"):
            raise
        print(f"mlcak-run: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
