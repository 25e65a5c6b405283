#!/usr/bin/env python
"""Render ``docs/gallery.png``: a normal simulated radiograph and one per lesion class, with boxes.

Usage: ``python scripts/make_gallery.py [--out docs/gallery.png] [--index 0]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "gallery.png"))
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--dpi", type=int, default=72)
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    from mlcak_lib.synth import gallery

    fig = gallery(index=args.index, ncols=5)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=args.dpi, metadata={"Software": None})
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
