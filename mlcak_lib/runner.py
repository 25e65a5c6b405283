"""The experiment runner: the grid of variants x resolutions x seeds in one command (notebook 05).

    python -m mlcak_lib.runner --profile default \\
        --variants baseline output-kd attention-kd mlcak hinton-kd \\
        --resolutions 112 56 28 --seeds 0 1 2 --out mlcak_lib/data/results/

(installed as the console script ``mlcak-run``). For each run it loads the student from the
model cache or trains it (:func:`mlcak_lib.recipes.train_student`, keyed by the hash of the full
configuration, so a rerun of the same grid only evaluates), evaluates it on the **test** split
(:func:`mlcak_lib.results.flat_metrics`), and writes into ``--out``:

* ``grid_<tag>.csv`` -- tidy, one row per run plus one ``teacher`` row: variant, resolution,
  seed, every metric, the teacher's metrics on the same test split, the weights that act in the
  variant, config hash, cache hit, epochs, git revision + dirty flag, hardware and wall time;
* ``grid_<tag>.png`` and ``grid_<tag>.md`` -- :func:`mlcak_lib.results.plot_grid` and
  :func:`mlcak_lib.results.markdown_table` of :func:`mlcak_lib.results.summarize_grid`, and in the
  markdown the seed-paired differences against the baseline (and MLCAK against the constant-map
  control) with 95 % t intervals, also as ``paired_<tag>.csv`` (:func:`mlcak_lib.results.paired_table`);
* ``curves_<tag>.csv`` -- the learning curves: every run's training history, one row per epoch;
* ``cost_<tag>.csv`` -- parameters, analytic FLOPs and measured CPU latency of the teacher and of
  every student architecture x resolution (:func:`cost_rows`).

Seeds change the student's initial weights and batch order; the data (seed 0) and the teacher
(seed 0) are the same for every run. Nothing is chosen on the test split. ``--tiny`` shrinks
everything (a few dozen images, one epoch) for tests and smoke runs.

Every request is checked before any work (:meth:`GridSpec.check`): an unknown dataset or
variant, a resolution the token grid cannot serve, multi-task variants on a dataset without
boxes, unknown weights; then, before any student trains, a teacher that is not cached under
``--teacher-mode load-only``. Each stops the runner with a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import config as _config
from .cache import CacheMiss, stable_hash
from .dataswitch import data_description, dataset_has_boxes, get_splits, resolve_dataset
from .cost import architecture_flops, measure_latency
from .envinfo import git_revision, hardware
from .models import TEACHER_RESOLUTION, architecture, build_student
from .recipes import TEACHER_TRAINING, get_teacher, student_architecture, student_training, train_student
from .results import (STANDARD_STUDENT, flat_metrics, markdown_table, paired_markdown, paired_table, plot_grid,
                      summarize_grid)
from .train import TrainConfig
from .variants import CONTROL_PAIRS, DISTILL_VARIANTS, VARIANT_NAMES, Variant, get_variant

DEFAULT_RESOLUTIONS: tuple[int, ...] = (112, 56, 28)
TEACHER_MODES: tuple[str, ...] = ("load-or-train", "load-only")
#: ``--tiny``: split sizes and epochs for tests and smoke runs (the architecture is the profile's).
TINY: dict[str, Any] = {"sizes": {"train": 32, "val": 24, "test": 24}, "epochs": 1, "batch_size": 16}


class RunnerError(Exception):
    """A user error reported as one line (no stack trace) with exit status 2."""


def check_student_resolutions(resolutions: Sequence[int], profile: str | None = None,
                              arch_overrides: Mapping[str, Any] | None = None) -> list[int]:
    """Resolutions a student can be built for: below the teacher's and served by the teacher's token grid."""
    grid = architecture(profile, **dict(arch_overrides or {}))["grid"]
    out = []
    for r in map(int, resolutions):
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


@dataclass
class GridSpec:
    """What a grid runs: every request in one place, checked by :meth:`check` before any work.

    ``weights`` override the tuned alpha/beta/gamma/levels/temperature/lambda_local (each variant
    takes the ones it uses). ``epochs`` trains students for this many epochs instead of the
    profile's (a budget study; it enters the students' cache keys). ``students`` names student
    architectures (:data:`mlcak_lib.recipes.STUDENT_ARCHITECTURES`; every variant is trained with
    each). ``train_films`` gives the students that many training films instead of the profile's (the
    validation and test splits and the teacher stay the same; it enters the students' cache keys and the
    default tag). ``tiny`` shrinks data and training for tests (:data:`TINY`).
    """

    profile: str | None = None
    variants: Sequence[str] = DISTILL_VARIANTS
    resolutions: Sequence[int] = DEFAULT_RESOLUTIONS
    seeds: Sequence[int] = (0, 1, 2)
    dataset: str | None = None
    teacher_mode: str = "load-or-train"
    tiny: bool = False
    epochs: int | None = None
    weights: Mapping[str, Any] = field(default_factory=dict)
    students: Sequence[str] = (STANDARD_STUDENT,)
    train_films: int | None = None

    def check(self) -> "GridSpec":
        """A copy with every name resolved; :class:`RunnerError` for the first request that cannot be served."""
        try:
            profile = _config.get_profile(self.profile)
            dataset = resolve_dataset(self.dataset)
            chosen = {v.name: v for v in (get_variant(n, profile, **dict(self.weights)) for n in self.variants)}
            names = list(chosen)
        except ValueError as exc:
            raise RunnerError(str(exc)) from None
        if self.teacher_mode not in TEACHER_MODES:
            raise RunnerError(f"unknown teacher mode {self.teacher_mode!r}; choose one of {', '.join(TEACHER_MODES)}")
        seeds = [int(s) for s in self.seeds]
        if not seeds:
            raise RunnerError("give at least one seed")
        if self.epochs is not None and int(self.epochs) < 1:
            raise RunnerError(f"--epochs must be at least 1, got {self.epochs}")
        if self.train_films is not None and (int(self.train_films) < 1 or self.tiny):
            raise RunnerError(f"--train-films must be a positive number of films (not with --tiny), got {self.train_films}")
        local = [n for n, v in chosen.items() if v.uses_local]
        if local and not dataset_has_boxes(dataset):
            raise RunnerError(f"dataset {dataset!r} has no lesion boxes: the multi-task variants "
                              f"({', '.join(local)}) need them")
        students = list(dict.fromkeys(str(s) for s in self.students))
        if not students:
            raise RunnerError("give at least one student architecture")
        try:
            archs = {s: student_architecture(s, profile) for s in students}
        except ValueError as exc:
            raise RunnerError(str(exc)) from None
        for s, arch in archs.items():
            depth = architecture(profile, **arch)["depth"]
            deep = [n for n, v in chosen.items() if v.uses_attention and v.levels > depth]
            if deep:
                raise RunnerError(f"the {s} student has {depth} blocks, fewer than the attention levels of "
                                  f"{', '.join(dict.fromkeys(deep))}; lower --weights levels=...")
        resolutions = [check_student_resolutions(self.resolutions, profile, a) for a in archs.values()][0]
        return replace(self, profile=profile, dataset=dataset, variants=names, seeds=seeds,
                       resolutions=sorted(resolutions), students=students)

    @property
    def sizes(self) -> dict[str, int] | None:
        """Split sizes of the students' data (``None``: the profile's)."""
        if self.tiny:
            return dict(TINY["sizes"])
        return {"train": int(self.train_films)} if self.train_films else None

    @property
    def teacher_sizes(self) -> dict[str, int] | None:
        """Split sizes of the teacher's request: the profile's (the committed teacher), except with ``tiny``."""
        return dict(TINY["sizes"]) if self.tiny else None

    def teacher_config(self) -> TrainConfig | None:
        return TEACHER_TRAINING[self.profile].replace(epochs=TINY["epochs"], batch_size=TINY["batch_size"]) if self.tiny else None

    def student_config(self) -> TrainConfig:
        cfg = student_training(self.profile)
        if self.epochs is not None:
            cfg = cfg.replace(epochs=int(self.epochs))  # a study of the budget; the tuned default stays
        if self.tiny:
            cfg = cfg.replace(epochs=TINY["epochs"], batch_size=TINY["batch_size"])
        return cfg

    def variant(self, name: str) -> Variant:
        return get_variant(name, self.profile, **dict(self.weights))

    def default_tag(self) -> str:
        if self.tiny:
            return f"{self.profile}-tiny"
        return f"{self.profile}-n{int(self.train_films)}" if self.train_films else str(self.profile)


def load_teacher(spec: GridSpec, progress: bool) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The teacher of a checked spec; in ``load-only`` mode a missing cache entry is a :class:`RunnerError`."""
    try:
        teacher, _, info = get_teacher(spec.profile, seed=0, config=spec.teacher_config(), sizes=spec.teacher_sizes,
                                       progress=progress, load_only=(spec.teacher_mode == "load-only"),
                                       dataset=spec.dataset)
    except CacheMiss:
        where = "run notebook 04 or " if spec.dataset == "synth" else ""
        raise RunnerError(f"no cached teacher for profile {spec.profile!r}, dataset {spec.dataset!r} "
                          f"(--teacher-mode load-only); {where}run this runner with --teacher-mode load-or-train first") from None
    return teacher, info


def _student_row(v: Variant, student: str, r: int, seed: int, metrics: Mapping[str, Any], history: list[dict],
                 info: Mapping[str, Any], teacher_metrics: Mapping[str, Any], model: torch.nn.Module) -> dict[str, Any]:
    best = next((h["epoch"] for h in history if h.get("best")), len(history))
    return {"run": "student", "variant": v.name, "student": student, "resolution": r, "seed": seed, **metrics,
            "teacher_mcct_auroc": teacher_metrics["mcct_auroc"], "teacher_mlct_macro_auroc": teacher_metrics["mlct_macro_auroc"],
            **v.active_weights(), **v.attention_settings(), "epochs": len(history), "best_epoch": best,
            "params": sum(p.numel() for p in model.parameters()), "mflops": architecture_flops(model, r) / 1e6,
            "config_hash": info["hash"], "cache_hit": info["cache_hit"], "train_seconds": info.get("train_seconds")}


#: Columns of the learning curves (``curves_<tag>.csv``): one row per run and epoch, from the training history.
CURVE_KEYS: tuple[str, ...] = ("variant", "student", "resolution", "seed", "epoch")


def _curve_rows(v: Variant, student: str, r: int, seed: int, history: list[dict]) -> list[dict[str, Any]]:
    return [{"variant": v.name, "student": student, "resolution": r, "seed": seed, **h} for h in history]


def cost_rows(teacher: torch.nn.Module, spec: "GridSpec", num_classes: int, repeats: int = 5) -> pd.DataFrame:
    """Parameters, analytic MFLOPs and measured CPU latency (ms per image, batch 32) of the teacher and of every
    student architecture x resolution of a checked spec (fresh models: cost does not depend on the weights)."""
    models = [("teacher", "teacher", TEACHER_RESOLUTION, teacher)] + [
        (f"student ({s})", s, r, build_student(r, num_classes, profile=spec.profile, seed=0, **student_architecture(s, spec.profile)))
        for s in spec.students for r in spec.resolutions]
    out = pd.DataFrame([{"model": name, "student": s, "resolution": r, "params": sum(p.numel() for p in m.parameters()),
                         "mflops": architecture_flops(m, r) / 1e6, "latency_ms": measure_latency(m, r, repeats=repeats) * 1e3}
                        for name, s, r, m in models])
    out["torch_threads"] = torch.get_num_threads()
    return out


def run_grid(spec: GridSpec, out: str | os.PathLike | None = "results", progress: bool = True, tag: str | None = None,
             teacher: tuple[torch.nn.Module, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """Run the grid of ``spec`` and write CSV/PNG/markdown into ``out`` (``None``: write nothing); return the DataFrame.

    Runs go resolution by resolution, lowest first (28 px, the headline, is done first), then
    seed, then variant. The CSV is rewritten after every run, so an interrupted grid keeps what it
    finished. ``teacher``: an already loaded ``(model, info)`` from ``recipes.get_teacher`` for the
    same dataset.
    """
    spec = spec.check()
    tag = tag or spec.default_tag()
    csv = Path(out) / f"grid_{tag}.csv" if out is not None else None
    say = (lambda msg: print(msg, flush=True)) if progress else (lambda msg: None)
    grid_start = t0 = time.perf_counter()
    say(f"[runner] profile={spec.profile} dataset={spec.dataset} variants={','.join(spec.variants)} "
        f"resolutions={','.join(map(str, spec.resolutions))} seeds={','.join(map(str, spec.seeds))}")
    given = teacher is not None
    teacher_model, teacher_info = teacher if given else load_teacher(spec, progress)
    splits = get_splits((TEACHER_RESOLUTION, *spec.resolutions), profile=spec.profile, seed=0, sizes=spec.sizes,
                        dataset=spec.dataset)
    data_desc = data_description(spec.dataset, spec.profile, 0, spec.sizes)
    how = "given by the caller" if given else ("loaded from cache" if teacher_info["cache_hit"] else "trained")
    say(f"[runner] teacher {how} ({teacher_info['hash']}, {time.perf_counter() - t0:.0f} s)")

    rev, dirty = git_revision()
    common = {"profile": spec.profile, "dataset": spec.dataset, "data_hash": stable_hash(data_desc, digits=10),
              "git_rev": rev, "git_dirty": dirty, **hardware(),
              "n_train": len(splits["train"]), "n_val": len(splits["val"]), "n_test": len(splits["test"])}
    t0 = time.perf_counter()
    teacher_metrics = flat_metrics(teacher_model, splits["test"], TEACHER_RESOLUTION)
    rows = [{"run": "teacher", "variant": "teacher", "resolution": TEACHER_RESOLUTION, "seed": 0, **teacher_metrics,
             "teacher_mcct_auroc": teacher_metrics["mcct_auroc"],
             "teacher_mlct_macro_auroc": teacher_metrics["mlct_macro_auroc"], "config_hash": teacher_info["hash"],
             "cache_hit": teacher_info["cache_hit"], "train_seconds": teacher_info.get("train_seconds"), **common,
             "wall_seconds": time.perf_counter() - t0}]

    student_cfg = spec.student_config()
    plan = [(r, a, s, v) for r in spec.resolutions for a in spec.students for s in spec.seeds for v in spec.variants]
    curves: list[dict[str, Any]] = []
    bar = tqdm(plan, desc="runs", unit="run", file=sys.stdout, disable=not progress)
    for r, arch, s, name in bar:
        bar.set_description(f"{name} @ {r}px seed {s}" + ("" if arch == STANDARD_STUDENT else f" ({arch})"))
        t0 = time.perf_counter()
        v = spec.variant(name)
        model, history, info = train_student(v, r, splits, teacher=teacher_model, teacher_info=teacher_info,
                                             profile=spec.profile, seed=s, config=student_cfg, data_desc=data_desc,
                                             progress=False, arch_overrides=student_architecture(arch, spec.profile))
        metrics = flat_metrics(model, splits["test"], r)
        rows.append({**_student_row(v, arch, r, s, metrics, history, info, teacher_metrics, model), **common,
                     "wall_seconds": time.perf_counter() - t0})
        curves += _curve_rows(v, arch, r, s, history)
        bar.set_postfix(mcct=f"{metrics['mcct_auroc']:.3f}", mlct=f"{metrics['mlct_macro_auroc']:.3f}", refresh=False)
        if csv is not None:
            _write_csv(pd.DataFrame(rows), csv)
            _write_csv(pd.DataFrame(curves), csv.with_name(f"curves_{tag}.csv"))
    bar.close()
    df = pd.DataFrame(rows)
    df.attrs["grid_wall_seconds"] = total = time.perf_counter() - grid_start
    if csv is not None:
        _write_report(df, csv)
        _write_csv(cost_rows(teacher_model, spec, len(splits["train"].class_names)), csv.with_name(f"cost_{tag}.csv"))
        say(f"[runner] wrote {_shown(csv)}, .png, .md, curves_{tag}.csv and cost_{tag}.csv")
    say(f"[runner] {len(plan)} runs in {total:.0f} s ({sum(bool(r.get('cache_hit')) for r in rows[1:])} from cache)")
    return df


def _write_report(df: pd.DataFrame, csv: Path) -> None:
    _write_csv(df, csv)
    table = summarize_grid(df)
    profile, dataset = df["profile"].iloc[0], df["dataset"].iloc[0]
    n_seeds = df.loc[df["run"] == "student", "seed"].nunique()
    title = f"MLCAK grid, profile `{profile}`, dataset `{dataset}`, test split"
    report = markdown_table(table, title=title)
    paired = [paired_table(df)]
    for variant, control in CONTROL_PAIRS:  # MLCAK against the constant map, the oracle against MLCAK
        if {variant, control} <= set(df["variant"]):
            paired.append(paired_table(df[df["variant"].isin([variant, control])], reference=control))
    paired = pd.concat(paired, ignore_index=True)
    if len(paired):
        report += "\n" + paired_markdown(paired, title="Seed-paired differences")
        _write_csv(paired, csv.with_name(csv.name.replace("grid_", "paired_", 1)))
    csv.with_suffix(".md").write_text(report)
    plot_grid(table, csv.with_suffix(".png"), title=f"Test AUROC vs resolution ({profile} profile, {n_seeds} seeds)")


#: What identifies one run of a grid (a run present in two merged grids is an error).
RUN_KEYS: tuple[str, ...] = ("variant", "student", "resolution", "seed")


def merge_grids(parts: Sequence[str | os.PathLike], out: str | os.PathLike, tag: str) -> pd.DataFrame:
    """Merge grids run side by side (e.g. two single-thread processes, each with some variants or seeds) into
    ``grid_<tag>.csv`` in ``out``, with its report, learning curves (``curves_<tag>.csv``) and cost table.

    ``parts``: the parts' ``grid_*.csv`` files. Rows are kept as they were written (each keeps its own
    revision, hardware and wall time); the teacher row is kept once and must be the same teacher in every
    part; a run present in two parts is an error. Raises :class:`RunnerError` on either.
    """
    paths = [Path(p) for p in parts]
    if any(not p.is_file() for p in paths):
        raise RunnerError(f"no grid CSV at {', '.join(str(p) for p in paths if not p.is_file())}")
    df = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    teacher = df[df["run"] == "teacher"]
    if teacher["config_hash"].nunique() != 1:
        raise RunnerError(f"the parts have different teachers: {sorted(teacher['config_hash'].unique())}")
    students = df[df["run"] == "student"]
    twice = students[students.duplicated([k for k in RUN_KEYS if k in df.columns], keep=False)]
    if len(twice):
        first = twice.iloc[0]
        raise RunnerError("run " + ", ".join(f"{k}={first.get(k)}" for k in RUN_KEYS) + " is in more than one part")
    merged = pd.concat([teacher.iloc[:1], students], ignore_index=True)
    csv = Path(out) / f"grid_{tag}.csv"
    _write_report(merged, csv)
    curves = [p.with_name(p.name.replace("grid_", "curves_", 1)) for p in paths]
    curves = [pd.read_csv(c) for c in curves if c.is_file()]
    if curves:
        _write_csv(pd.concat(curves, ignore_index=True), csv.with_name(f"curves_{tag}.csv"))
    costs = [p.with_name(p.name.replace("grid_", "cost_", 1)) for p in paths]
    costs = [pd.read_csv(c) for c in costs if c.is_file()]
    if costs:
        cost = pd.concat(costs, ignore_index=True).drop_duplicates(["model", "resolution"], keep="first")
        _write_csv(cost, csv.with_name(f"cost_{tag}.csv"))
    return merged


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path.name


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    df.to_csv(tmp, index=False, float_format="%.6g")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlcak-run", description="Run the MLCAK grid (variants x resolutions x seeds) "
                                "and write a results CSV, figure and markdown table.")
    p.add_argument("--profile", default=None, help="default or full (default: $MLCAK_PROFILE or 'default')")
    p.add_argument("--variants", nargs="+", default=list(DISTILL_VARIANTS),
                   help=f"any of {', '.join(VARIANT_NAMES)} (default: {', '.join(DISTILL_VARIANTS)})")
    p.add_argument("--resolutions", nargs="+", type=int, default=list(DEFAULT_RESOLUTIONS), help="student resolutions in px")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="student seeds (init + batch order)")
    p.add_argument("--dataset", default=None, help="default $MLCAK_DATASET or synth; own data, PNG pixel spacing: docs/own_data.md")
    p.add_argument("--out", default=str(_config.output_dir()), help="output folder (default: config.output_dir())")
    p.add_argument("--teacher-mode", default="load-or-train", choices=TEACHER_MODES,
                   help="load-only: fail if the teacher is not cached")
    p.add_argument("--tiny", action="store_true", help="a few dozen images and 1 epoch (tests, smoke runs)")
    p.add_argument("--tag", default=None, help="output file stem suffix (default: the profile, + '-tiny')")
    p.add_argument("--epochs", type=int, default=None, help="student epochs instead of the profile's (a budget study)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--gamma", type=float, default=None, help="override the tuned attention weight")
    p.add_argument("--weights", nargs="+", default=[], metavar="NAME=VALUE",
                   help="override tuned weights or attention settings, e.g. levels=1 attn_loss=kl")
    p.add_argument("--train-films", type=int, default=None,
                   help="students' training films instead of the profile's (validation, test and teacher unchanged)")
    p.add_argument("--students", nargs="+", default=[STANDARD_STUDENT],
                   help="student architectures (mlcak_lib.recipes.STUDENT_ARCHITECTURES), e.g. standard small")
    p.add_argument("--merge", nargs="+", default=None, metavar="GRID_CSV",
                   help="merge grids run side by side into grid_<tag>.csv in --out (no training)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def parse_weights(items: Sequence[str]) -> dict[str, Any]:
    """``["levels=1", "attn_loss=kl"]`` -> ``{"levels": 1, "attn_loss": "kl"}`` (numbers become numbers)."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise RunnerError(f"--weights takes NAME=VALUE pairs, got {item!r}")
        try:
            out[name] = int(value) if name == "levels" else float(value)
        except ValueError:
            out[name] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``mlcak-run``); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.merge:
            if not args.tag:
                raise RunnerError("--merge needs --tag, the name of the merged grid")
            merged = merge_grids(args.merge, args.out, args.tag)
            if not args.quiet:
                print(f"[runner] merged {len(args.merge)} grids ({len(merged) - 1} runs) into {args.out}/grid_{args.tag}.csv")
            return 0
        if args.threads:
            torch.set_num_threads(args.threads)
        weights = parse_weights(args.weights)
        if args.gamma is not None:
            weights["gamma"] = args.gamma
        spec = GridSpec(args.profile, args.variants, args.resolutions, args.seeds, args.dataset, args.teacher_mode,
                        args.tiny, args.epochs, weights, args.students, args.train_films)
        run_grid(spec, args.out, not args.quiet, args.tag)
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
