"""scripts/workshop_cells.py and scripts/notebook_timings.py on small hand-made notebooks (issue 15)."""

import copy
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


workshop_cells = _load("workshop_cells")
notebook_timings = _load("notebook_timings")


def _md(text, id_):
    return {"cell_type": "markdown", "id": id_, "metadata": {}, "source": text.splitlines(keepends=True)}


def _code(text, id_, tags=None, output="x\n", count=1, execution=None):
    meta = {"tags": tags} if tags else {}
    if execution:
        meta["execution"] = execution
    return {"cell_type": "code", "id": id_, "metadata": meta, "execution_count": count, "source": text.splitlines(keepends=True),
            "outputs": [{"output_type": "stream", "name": "stdout", "text": [output]}]}


def _notebook(reference_markdown: bool):
    cells = [
        _md("# 01 · T\n", "t"),
        _code("# NBVAL_IGNORE_OUTPUT\nimport numpy as np\nfrom mlcak_lib.viz import show_radiograph\n\nprint_environment_report()\n", "imp"),
        _code("# NBVAL_CHECK_OUTPUT\nprint(1)\n", "chk", count=2),
        _md("## Exercises\n\n1. **One.** Do it.\n2. **Two.** Change `n` and rerun.\n   More text 3. here.\n", "ex"),
    ]
    if reference_markdown:
        cells += [_md("Reference solution 1:\n", "r1"), _code("a = 1\nprint(a)\n", "s1", ["solution"], count=3),
                  _md("Reference solution 2:\n", "r2"), _code("b = 2\n", "s2", ["solution"], count=4)]
    else:
        cells += [_code("# Solution 1\na = 1\n", "s1", ["solution"], count=3), _code("# Solution 2\nb = 2\n", "s2", ["solution"], count=4)]
    cells.append(_md("## Summary\n", "sum"))
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


@pytest.mark.parametrize("reference_markdown", [False, True])
def test_workshop_cells_adds_learner_cells_collapses_solutions_and_is_idempotent(reference_markdown):
    nb = _notebook(reference_markdown)
    untouched = {c["id"]: copy.deepcopy(c) for c in nb["cells"] if c["id"] in ("t", "chk", "ex", "sum", "r1", "r2")}
    assert workshop_cells.process(nb)
    ids = [c["id"] for c in nb["cells"]]
    first = "r1" if reference_markdown else "s1"
    second = "r2" if reference_markdown else "s2"
    assert ids.index("learner-exercise-1") == ids.index(first) - 1
    assert ids.index("learner-exercise-2") == ids.index(second) - 1
    learner = nb["cells"][ids.index("learner-exercise-1")]
    assert learner["source"] == ["# Your turn: exercise 1\n"] and learner["metadata"]["tags"] == ["learner"]
    for n, sid in ((1, "s1"), (2, "s2")):
        cell = nb["cells"][ids.index(sid)]
        assert cell["source"][0] == f"#@title Solution {n} (run to check, double-click to show the code)\n"
        assert "# Solution" not in "".join(cell["source"]), "the old first line is replaced, not kept"
        assert cell["metadata"]["cellView"] == "form" and cell["metadata"]["jupyter"]["source_hidden"] is True
        assert cell["outputs"] == []
    imports = "".join(nb["cells"][ids.index("imp")]["source"])
    assert "from mlcak_lib.viz import show_radiograph, use_course_style\n" in imports
    assert imports.index("use_course_style()") < imports.index("print_environment_report()")
    for id_, cell in untouched.items():
        assert nb["cells"][ids.index(id_)] == cell, f"cell {id_} must stay as it was"
    again = copy.deepcopy(nb)
    assert workshop_cells.process(again) == [] and again == nb


def test_workshop_cells_check_mode_leaves_files_alone(tmp_path, capsys):
    path = tmp_path / "01_x.ipynb"
    path.write_text(workshop_cells.dumps(_notebook(False)), encoding="utf-8")
    before = path.read_bytes()
    assert workshop_cells.main(["--check", str(path)]) == 1 and path.read_bytes() == before
    assert workshop_cells.main([str(path)]) == 0 and path.read_bytes() != before
    assert workshop_cells.main(["--check", str(path)]) == 0
    assert "01_x.ipynb: ok" in capsys.readouterr().out


def test_workshop_cells_warns_about_low_dpi():
    cells = [_code("fig, ax = plt.subplots(figsize=(4, 3), dpi=72)\n", "c")]
    assert workshop_cells.low_dpi_warnings(cells) == ["cell 0: 'dpi=72' (figures need 110 dpi or more)"]


def test_notebook_timings_from_cell_timestamps(tmp_path):
    def stamps(start, end):
        return {"iopub.execute_input": f"2026-01-01T00:00:{start:06.3f}Z", "shell.execute_reply": f"2026-01-01T00:00:{end:06.3f}Z"}

    nb = {"cells": [_md("# t\n", "t"), _code("a\n", "a", execution=stamps(1, 2.5)), _code("b\n", "b", execution=stamps(3, 9)),
                    _code("c\n", "c")], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "01_x.ipynb"
    path.write_text(json.dumps(nb))
    assert notebook_timings.notebook_timing(path) == {"notebook": "01_x.ipynb", "cells_s": 7.5, "wall_s": 8.0, "slowest_cell": 2,
                                                      "slowest_s": 6.0, "timed_cells": 2, "code_cells": 3}
