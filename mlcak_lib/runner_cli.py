"""Command-line pieces shared by the advanced notebooks' grid runners: ``mlcak-detect`` (notebook 07,
:mod:`mlcak_lib.detection_runner`) and ``mlcak-ctxr`` (notebook 08, :mod:`mlcak_lib.ctxr_runner`).

:func:`add_common_arguments` adds the options every such runner has (profile, output, tag, tiny, steps, threads,
merge, quiet); :func:`run_or_merge` is their common ``main``: join CSVs or run the grid, write the table, say where.
:func:`seed_summary`, :func:`merge_runs` and :func:`write_tables` are the runners' shared table steps.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch

from . import config as _config


def seed_summary(df: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Per group of ``keys`` (in first-seen order): ``seeds`` (distinct), then ``<metric>_mean`` and ``<metric>_std``."""
    agg = df.groupby(list(keys), sort=False)[list(metrics)].agg(["mean", "std"])
    agg.columns = [f"{m}_{s}" for m, s in agg.columns]
    agg.insert(0, "seeds", df.groupby(list(keys), sort=False)["seed"].nunique())
    return agg.reset_index()


def merge_runs(csvs: Sequence[str | Path], keys: Sequence[str]) -> pd.DataFrame:
    """Runs from several runner CSVs; a later row replaces an earlier one with the same ``keys`` and ``tiny``."""
    df = pd.concat([pd.read_csv(p) for p in csvs], ignore_index=True)
    return df.drop_duplicates(subset=[*keys, "tiny"], keep="last").reset_index(drop=True)


def write_tables(df: pd.DataFrame, out: str | Path, stem: str, markdown_text: str) -> tuple[Path, Path]:
    """``<stem>.csv`` (``df``) and ``<stem>.md`` (``markdown_text``) in ``out`` (created)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    csv, md = out / f"{stem}.csv", out / f"{stem}.md"
    df.to_csv(csv, index=False)
    md.write_text(markdown_text, encoding="utf-8")
    return csv, md


def add_common_arguments(parser: argparse.ArgumentParser, tiny_help: str) -> argparse.ArgumentParser:
    """The runners' shared options; ``tiny_help`` says what ``--tiny`` shrinks."""
    parser.add_argument("--profile", default=None, help="default or full (default: $MLCAK_PROFILE or 'default')")
    parser.add_argument("--out", default=str(_config.output_dir()), help="output folder (default: config.output_dir())")
    parser.add_argument("--tag", default=None, help="file stem suffix (default: the profile, + '-tiny')")
    parser.add_argument("--tiny", action="store_true", help=tiny_help)
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps instead of the profile's")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="CSV", help="join runner CSVs instead of training")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def run_or_merge(args: argparse.Namespace, run: Callable[[str, str], pd.DataFrame],
                 merge: Callable[[Sequence[str]], pd.DataFrame],
                 write: Callable[[pd.DataFrame, str, str], tuple[Path, Path]]) -> int:
    """A runner's ``main`` after parsing: ``merge(args.merge)`` or ``run(profile, tag)`` (with ``--threads``
    applied), then ``write(table, args.out, tag)``; prints what was written unless ``--quiet``. Returns 0."""
    profile = _config.get_profile(args.profile)
    tag = args.tag or (profile + ("-tiny" if args.tiny else ""))
    if args.merge:
        df = merge(args.merge)
    else:
        if args.threads:
            torch.set_num_threads(args.threads)
        df = run(profile, tag)
    csv, md = write(df, args.out, tag)
    if not args.quiet:
        print(f"wrote {csv} ({len(df)} runs) and {md}")
    return 0
