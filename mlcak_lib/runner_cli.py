"""Command-line pieces shared by the advanced notebooks' grid runners: ``mlcak-detect`` (notebook 07,
:mod:`mlcak_lib.detection_runner`) and ``mlcak-ctxr`` (notebook 08, :mod:`mlcak_lib.ctxr_runner`).

:func:`add_common_arguments` adds the options every such runner has (profile, output, tag, tiny, steps, threads,
merge, quiet); :func:`run_or_merge` is their common ``main``: join CSVs or run the grid, write the table, say where.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch

from . import config as _config


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
