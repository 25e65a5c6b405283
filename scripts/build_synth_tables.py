#!/usr/bin/env python
"""Ship the computed nodule contrast-retention table used by notebook 02 in ``mlcak_lib/data``.

Input: ``shared/reference/nodule_contrast_retention_by_resolution.csv`` (computed for the course:
a projected sphere on a 400 mm field of view, 2016 px native grid, block-mean ("area") vs
one-pixel-per-block ("point") downsampling to 224 and 28, 200 random sub-pixel positions per
size). It is copied unchanged; the script prints size and sha256 for ``data_manifest.csv``.
(The simulator's size calibration uses the VinDr-CXR tables of ``mlcak_lib.reference``.)

Usage: ``python scripts/build_synth_tables.py [--reference ../shared/reference]``.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "mlcak_lib" / "data"
NAME = "nodule_contrast_retention_by_resolution.csv"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", default=str(ROOT.parent / "shared" / "reference"))
    args = ap.parse_args(argv)
    data = (Path(args.reference) / NAME).read_bytes()
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / NAME).write_bytes(data)
    print(f"{NAME}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
