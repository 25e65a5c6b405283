"""Print how long each committed notebook took to execute, from its cells' own timestamps.

nbclient (``python -m mlcak_lib.course run``, nbval, ``jupyter nbconvert --execute``) records in
each code cell's ``metadata.execution`` when the kernel began it (``iopub.execute_input``) and
when it replied (``shell.execute_reply``). This script sums the cells (``cells``: kernel time) and
takes the span from the first cell's start to the last cell's reply (``wall``: includes the gaps
between cells), and lists the slowest cell. docs/workshop.md's schedule uses these numbers;
regenerate them after re-executing the notebooks::

    python scripts/notebook_timings.py            # markdown table
    python scripts/notebook_timings.py --csv

The numbers are those of the machine and run that produced the committed outputs (the
environment report in each notebook names its cores and torch version), not a benchmark.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def notebook_timing(path: Path) -> dict:
    """``{notebook, cells_s, wall_s, slowest_cell, slowest_s, timed_cells, code_cells}`` of one notebook."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    spans = []
    code_cells = 0
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        code_cells += 1
        stamps = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in stamps and "shell.execute_reply" in stamps:
            start, end = _time(stamps["iopub.execute_input"]), _time(stamps["shell.execute_reply"])
            spans.append((index, start, end))
    if not spans:
        return {"notebook": path.name, "cells_s": None, "wall_s": None, "slowest_cell": None, "slowest_s": None,
                "timed_cells": 0, "code_cells": code_cells}
    durations = [(index, (end - start).total_seconds()) for index, start, end in spans]
    slowest = max(durations, key=lambda item: item[1])
    return {
        "notebook": path.name,
        "cells_s": round(sum(d for _, d in durations), 1),
        "wall_s": round((max(e for _, _, e in spans) - min(s for _, s, _ in spans)).total_seconds(), 1),
        "slowest_cell": slowest[0],
        "slowest_s": round(slowest[1], 1),
        "timed_cells": len(spans),
        "code_cells": code_cells,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/NN_*.ipynb")
    parser.add_argument("--csv", action="store_true", help="CSV instead of a markdown table")
    args = parser.parse_args(argv)
    rows = [notebook_timing(p) for p in (args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))]
    keys = ["notebook", "cells_s", "wall_s", "slowest_cell", "slowest_s", "timed_cells", "code_cells"]
    if args.csv:
        print(",".join(keys))
        for row in rows:
            print(",".join("" if row[k] is None else str(row[k]) for k in keys))
        return 0
    print("| notebook | kernel time (s) | wall (s) | slowest cell | its time (s) | timed / code cells |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['notebook']} | {row['cells_s']} | {row['wall_s']} | {row['slowest_cell']} | {row['slowest_s']} | "
              f"{row['timed_cells']} / {row['code_cells']} |")
    total = sum(r["wall_s"] or 0 for r in rows)
    print(f"| **all** | {sum(r['cells_s'] or 0 for r in rows):.1f} | {total:.1f} | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
