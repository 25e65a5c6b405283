"""Make the course notebooks workshop-ready (issue 15); idempotent, changes nothing else.

For every ``notebooks/NN_*.ipynb`` (or the notebooks given):

1. each exercise N of the ``## Exercises`` list gets an empty learner code cell, tagged
   ``learner``, with the source ``# Your turn: exercise N``, placed before its reference solution
   (before the "Reference solution N" markdown where a notebook has one);
2. every solution cell (tag ``solution``) is collapsed in JupyterLab (``metadata.jupyter.
   source_hidden``) and in Colab (``metadata.cellView = "form"`` and a first line
   ``#@title Solution N (run to check, double-click to show the code)``: Colab's form view shows
   the title instead of the code only when that line is there); a former ``# Solution N`` first
   line is replaced by the title;
3. solution outputs are removed (their execution counts stay) (``mlcak_lib.course.strip_solution_outputs``;
   ``python -m mlcak_lib.course run`` does the same to every executed copy);
4. the import cell (the one calling ``print_environment_report()``) imports and calls
   ``mlcak_lib.viz.use_course_style()`` (110 dpi, column-wide figures, constrained layout), just
   before ``print_environment_report()``, so it overrides an earlier ``rcParams`` line.

Usage::

    python scripts/workshop_cells.py            # rewrite the notebooks that need it
    python scripts/workshop_cells.py --check    # exit 1 and list what would change

Run it before executing the notebooks (the learner cells then get their execution counts), or
after (then ``--check`` passes but the execution counts of the new cells are missing until the
notebook is executed again). It also warns about explicit ``dpi=`` below 110 in code cells,
which the style cannot override.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from mlcak_lib.course import (
    LEARNER_TAG,
    SOLUTION_TAG,
    cell_tags,
    strip_solution_outputs,
)

ROOT = Path(__file__).resolve().parent.parent
TITLE = "#@title Solution {n} (run to check, double-click to show the code)"
LEARNER_SOURCE = "# Your turn: exercise {n}\n"
STYLE_IMPORT = "from mlcak_lib.viz import use_course_style"
STYLE_CALL = "use_course_style()  # 110 dpi, figures at most a column wide, no overlapping text (mlcak_lib.viz)"
EXERCISE_ITEM = re.compile(r"^(\d+)\.\s", re.MULTILINE)
SOLUTION_NUMBER = re.compile(r"^#\s*(?:@title\s+)?solution\s+(\d+)\b", re.IGNORECASE)
REFERENCE_MD = re.compile(r"^\s*(?:\*\*)?reference solution\s+(\d+)\b", re.IGNORECASE)
LEARNER_NUMBER = re.compile(r"^# Your turn: exercise (\d+)\b")
LOW_DPI = re.compile(r"dpi\s*[=:]\s*(\d+)")


def source(cell) -> str:
    return "".join(cell.get("source", ""))


def set_source(cell, text: str) -> None:
    cell["source"] = text.splitlines(keepends=True)


def exercise_section(cells: list) -> tuple[int, int] | None:
    """``(index of the '## Exercises' markdown, index of the next '## ' markdown or len)``."""
    start = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and source(c).lstrip().startswith("## Exercises")), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(cells)) if cells[i]["cell_type"] == "markdown"
                and source(cells[i]).lstrip().startswith("## ")), len(cells))
    return start, end


def exercise_numbers(cells: list, start: int) -> list[int]:
    return [int(n) for n in EXERCISE_ITEM.findall(source(cells[start]))]


def solution_owners(cells: list, start: int, end: int) -> dict[int, int]:
    """``{cell index: exercise number}`` for the solution cells of the section (and their markdown)."""
    owners, order = {}, 0
    for i in range(start + 1, end):
        cell = cells[i]
        if cell["cell_type"] == "code" and SOLUTION_TAG in cell_tags(cell):
            order += 1
            match = SOLUTION_NUMBER.match(source(cell).lstrip())
            previous = source(cells[i - 1]) if cells[i - 1]["cell_type"] == "markdown" else ""
            md = REFERENCE_MD.match(previous)
            n = int(match[1]) if match else int(md[1]) if md else order
            owners[i] = n
            if md and int(md[1]) == n:
                owners[i - 1] = n
    return owners


def collapse_solution(cell, n: int) -> None:
    meta = cell.setdefault("metadata", {})
    meta.setdefault("jupyter", {})["source_hidden"] = True
    meta["cellView"] = "form"
    lines = source(cell).splitlines(keepends=True)
    title = TITLE.format(n=n) + "\n"
    if lines and SOLUTION_NUMBER.match(lines[0].lstrip()):
        lines[0] = title
    else:
        lines.insert(0, title)
    set_source(cell, "".join(lines))


def learner_cell(n: int) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": f"learner-exercise-{n}",
            "metadata": {"tags": [LEARNER_TAG]}, "outputs": [], "source": [LEARNER_SOURCE.format(n=n)]}


def add_learner_cells(cells: list) -> list[str]:
    section = exercise_section(cells)
    if section is None:
        return []
    start, end = section
    numbers = exercise_numbers(cells, start)
    have = {int(m[1]) for c in cells[start:end] if (m := LEARNER_NUMBER.match(source(c)))}
    owners = solution_owners(cells, start, end)
    changes = []
    for n in sorted(set(numbers) - have, reverse=True):
        owned = [i for i, k in owners.items() if k == n]
        # before the solution of N, else before the first solution of a later exercise, else at the end
        later = [i for i, k in owners.items() if k > n]
        at = min(owned) if owned else min(later) if later else end
        cells.insert(at, learner_cell(n))
        changes.append(f"learner cell for exercise {n}")
    return changes


def collapse_solutions(cells: list) -> list[str]:
    section = exercise_section(cells)
    changes = []
    owners = solution_owners(cells, *section) if section else {}
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code" or SOLUTION_TAG not in cell_tags(cell):
            continue
        before = json.dumps(cell, sort_keys=True)
        collapse_solution(cell, owners.get(i, 0))
        if json.dumps(cell, sort_keys=True) != before:
            changes.append(f"solution cell {i} collapsed (JupyterLab + Colab)")
    return changes


def add_course_style(cells: list) -> list[str]:
    for cell in cells:
        text = source(cell)
        if cell["cell_type"] != "code" or "print_environment_report()" not in text:
            continue
        if "use_course_style()" in text:
            return []
        lines = text.splitlines(keepends=True)
        viz_import = next((k for k, line in enumerate(lines) if line.startswith("from mlcak_lib.viz import ") and "(" not in line), None)
        if viz_import is not None:
            lines[viz_import] = lines[viz_import].rstrip("\n") + ", use_course_style\n"
        else:
            last_import = max(k for k, line in enumerate(lines) if line.startswith(("import ", "from ")))
            lines.insert(last_import + 1, STYLE_IMPORT + "\n")
        call = next(k for k, line in enumerate(lines) if line.startswith("print_environment_report()"))
        lines.insert(call, STYLE_CALL + "\n")
        set_source(cell, "".join(lines))
        return ["use_course_style() added to the import cell"]
    return []


def low_dpi_warnings(cells: list) -> list[str]:
    found = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code" and "use_course_style" not in source(cell):
            found.extend(f"cell {i}: '{m[0]}' (figures need 110 dpi or more)" for m in LOW_DPI.finditer(source(cell)) if int(m[1]) < 110)
    return found


def process(nb: dict) -> list[str]:
    """Apply every step to a notebook dict in place; return what changed (empty: already done)."""
    cells = nb["cells"]
    changes = add_learner_cells(cells)
    changes += collapse_solutions(cells)
    stripped = strip_solution_outputs(nb)
    if stripped:
        changes.append(f"outputs of {stripped} solution cell(s) removed")
    changes += add_course_style(cells)
    return changes


def dumps(nb: dict) -> str:
    """nbformat's own layout (sorted keys, one-space indent, UTF-8), so untouched cells stay byte-identical."""
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/NN_*.ipynb")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook needs changes")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    pending = False
    for path in paths:
        nb = json.loads(path.read_text(encoding="utf-8"))
        changes = process(nb)
        for warning in low_dpi_warnings(nb["cells"]):
            print(f"{path.name}: warning: {warning}")
        if not changes:
            print(f"{path.name}: ok")
            continue
        pending = True
        print(f"{path.name}: " + ("would change: " if args.check else "changed: ") + "; ".join(changes))
        if not args.check:
            path.write_text(dumps(nb), encoding="utf-8")
    return 1 if pending and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
