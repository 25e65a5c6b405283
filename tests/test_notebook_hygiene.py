"""Committed notebooks are executed, small, clean and follow the course template.

Issue 15 adds: workshop-ready exercises (an empty learner cell per exercise, solutions collapsed in
JupyterLab and Colab with no committed output, one exercise per notebook that changes a setting
and reruns), figures at 110 dpi or more and no wider than a notebook column, check cells free of
timings and profiler FLOP counts, and numbers in prose that agree with the outputs
(``mlcak_lib.course.prose_drift``). ``scripts/workshop_cells.py`` makes the first part true.
"""

import base64
import copy
import importlib.util
import json
import re
from pathlib import Path

import pytest

from mlcak_lib.course import LEARNER_TAG, SOLUTION_TAG, prose_drift, prose_tags
from mlcak_lib.viz import COLUMN_PX, COURSE_DPI, MAX_FIGURE_INCHES, png_info

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ABS_PATH = re.compile(r"(?<![\w.:/~-])/(?:home|root|tmp|work|Users|usr|opt|mnt|content)/[\w.-]+")
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"
# A check cell compares facts no library version or machine changes: never a clock or a profiler.
TIMING_CODE = re.compile(r"perf_counter|process_time|monotonic|time\.time\(|timeit|%%?time\b|measure_latency|latency")
PROFILER_CODE = re.compile(r"flop_counter|FlopCounterMode|count_flops|get_total_flops|fvcore|\bthop\b|ptflops|"
                           r"torch\.profiler|profiler\s*=\s*True|gflops_profiler")
DURATION_TEXT = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?(?:ms|µs|us|ns|s|sec|secs|seconds|min|minutes)\b|\bit/s\b")
RERUN_WORDS = re.compile(r"\bre-?run\b", re.IGNORECASE)
NOTEBOOKS_WITH_PROSE_TAGS = ("04", "05", "06")  # their prose quotes the committed results


def _source(cell) -> str:
    return "".join(cell["source"])


def _exercise_section(nb) -> tuple[int, int]:
    cells = nb["cells"]
    start = next(i for i, c in enumerate(cells) if c["cell_type"] == "markdown" and _source(c).lstrip().startswith("## Exercises"))
    end = next((i for i in range(start + 1, len(cells)) if cells[i]["cell_type"] == "markdown"
                and _source(cells[i]).lstrip().startswith("## ")), len(cells))
    return start, end


def _tags(cell) -> list:
    return cell.get("metadata", {}).get("tags", [])


def _without_comments(code: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in code.splitlines())


def _output_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append("".join(out.get("text", "")))
        parts.append("".join(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def check_cell_problems(cell) -> list[str]:
    """Why a ``# NBVAL_CHECK_OUTPUT`` cell breaks the rule (empty: it carries only stable facts)."""
    code = _without_comments(_source(cell))
    problems = [f"calls a clock ({m[0]})" for m in [TIMING_CODE.search(code)] if m]
    problems += [f"uses a FLOP profiler ({m[0]})" for m in [PROFILER_CODE.search(code)] if m]
    problems += [f"prints a duration ({m[0]!r})" for m in [DURATION_TEXT.search(_output_text(cell))] if m]
    return problems


def _code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def test_notebooks_exist():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_in_order_without_errors_or_stderr(path):
    nb = json.loads(path.read_text())
    expected = 1  # one clean run: every cell executed in order; solutions ran too, only their outputs were stripped
    for cell in _code_cells(nb):
        if SOLUTION_TAG in _tags(cell):
            assert not cell["outputs"], f"solution outputs are committed in {path.name}: run scripts/workshop_cells.py"
        assert cell["execution_count"] is not None, "commit notebooks executed top to bottom"
        assert cell["execution_count"] == expected, "execution counts must come from one clean run"
        expected += 1
    for cell in _code_cells(nb):
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"stored error output in {path.name}"
            if out["output_type"] == "stream":
                assert out["name"] != "stderr", f"stderr stored in {path.name}: {''.join(out['text'])[:200]}"
            text = json.dumps(out.get("text", "")) + json.dumps(out.get("data", {}).get("text/plain", ""))
            assert not ABS_PATH.search(text), f"machine path in the output of {path.name}: {ABS_PATH.search(text)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_small_and_follows_template(path):
    assert path.stat().st_size < 3_000_000, "keep notebooks small"
    nb = json.loads(path.read_text())
    title = "".join(nb["cells"][0]["source"])
    assert re.match(rf"# {path.name[:2]} · ", title), "title cell must start with '# NN · Title'"
    assert "colab.research.google.com" in title, "title cell needs a Colab badge"
    text = "\n".join("".join(c["source"]) for c in nb["cells"])
    assert "Learning objectives" in text
    assert "NBVAL_CHECK_OUTPUT" in text, "a notebook needs at least one deterministic check cell"
    assert "sys.path" not in text, "import mlcak_lib as an installed package, no sys.path hacks"
    assert "## Exercises" in text and "## Summary" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_exercise_has_an_empty_learner_cell_before_its_collapsed_solution(path):
    nb = json.loads(path.read_text())
    start, end = _exercise_section(nb)
    numbers = [int(n) for n in re.findall(r"^(\d+)\.\s", _source(nb["cells"][start]), re.MULTILINE)]
    assert numbers == list(range(1, len(numbers) + 1)) and numbers, "## Exercises is a numbered list 1., 2., ..."
    section = nb["cells"][start + 1:end]
    learner = {}
    for offset, cell in enumerate(section):
        if LEARNER_TAG in _tags(cell):
            match = re.match(r"# Your turn: exercise (\d+)", _source(cell))
            assert match and cell["cell_type"] == "code", f"learner cell {_source(cell)!r}"
            assert all(line.strip().startswith("#") for line in _source(cell).splitlines() if line.strip()), \
                "a learner cell holds only its comment: the learner writes the code"
            learner[int(match[1])] = offset
    assert sorted(learner) == numbers, f"learner cells for exercises {sorted(learner)}, expected {numbers}"
    solutions = [(offset, cell) for offset, cell in enumerate(section) if SOLUTION_TAG in _tags(cell)]
    assert solutions, "reference solutions follow the exercises"
    for offset, cell in solutions:
        first = _source(cell).splitlines()[0]
        match = re.match(r"#@title Solution (\d+) ", first)
        assert match, f"a solution starts with '#@title Solution N ...' (Colab form view), not {first!r}"
        assert cell["metadata"].get("jupyter", {}).get("source_hidden") is True, "hidden in JupyterLab"
        assert cell["metadata"].get("cellView") == "form", "collapsed in Colab"
        assert not cell["outputs"], "no committed solution output"
        assert learner.get(int(match[1]), len(section)) < offset, f"learner cell of exercise {match[1]} comes before its solution"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_an_exercise_changes_a_setting_and_reruns(path):
    nb = json.loads(path.read_text())
    start, _ = _exercise_section(nb)
    assert RERUN_WORDS.search(_source(nb["cells"][start])), \
        "at least one exercise asks the learner to change a setting and rerun (say 'rerun' in it)"


def test_workshop_cells_script_has_nothing_left_to_do():
    spec = importlib.util.spec_from_file_location("workshop_cells", ROOT / "scripts" / "workshop_cells.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    pending = {p.name: script.process(copy.deepcopy(json.loads(p.read_text()))) for p in NOTEBOOKS}
    assert not any(pending.values()), f"run python scripts/workshop_cells.py: {pending}"


def _pngs(nb):
    for index, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" in data:
                yield index, base64.b64decode(data["image/png"]), out.get("metadata", {}).get("image/png", {})


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_are_sharp_and_fit_a_notebook_column(path):
    """Every PNG records its dpi (pHYs chunk, written by matplotlib) and is shown at most COLUMN_PX wide."""
    nb = json.loads(path.read_text())
    problems = []
    for index, png, meta in _pngs(nb):
        width, _, dpi = png_info(png)
        shown = meta.get("width", width)  # a 'retina' PNG is shown at its metadata width
        if dpi is None or dpi < COURSE_DPI:
            problems.append(f"cell {index}: {dpi} dpi (call mlcak_lib.viz.use_course_style(); no dpi= below {COURSE_DPI})")
        if shown > COLUMN_PX:
            problems.append(f"cell {index}: {shown} px wide > {COLUMN_PX} (figsize at most {MAX_FIGURE_INCHES} in wide)")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_check_cells_carry_no_timings_or_profiler_counts(path):
    nb = json.loads(path.read_text())
    problems = [f"cell {i}: {'; '.join(check_cell_problems(c))}" for i, c in enumerate(nb["cells"])
                if c["cell_type"] == "code" and _source(c).startswith(CHECK_MARK) and check_cell_problems(c)]
    assert not problems, "check cells must not depend on the machine or the torch version:\n" + "\n".join(problems)


@pytest.mark.parametrize("code, output, flagged", [
    ("t0 = time.perf_counter()\nprint(time.perf_counter() - t0)", "0.52\n", True),
    ("%time model(x)", "", True),
    ("print(cost.count_flops(model, 28))", "35900000\n", True),
    ("print(cost_table(build, profiler=True))", "", True),
    ("print('latency', cost.measure_latency(m, 28))", "", True),
    ("print(epochs)", "trained in 12.4 s\n", True),
    ("print(round(cost.architecture_flops(model, 28) / 1e6, 1))  # analytic: count_flops differs", "35.9\n", False),
    ("print(shape)", "(4, 49, 96) | 5 seeds | 49 tokens | 3 stages | 2 levels\n", False),
    ("print(grid)", "runs: 50 | resolutions: [28] | MFLOPs per image: {224: 40.2, 28: 35.9}\n", False),
])
def test_check_cell_rule_flags_clocks_and_profilers_only(code, output, flagged):
    cell = {"cell_type": "code", "source": CHECK_MARK + "\n" + code, "outputs": [{"output_type": "stream", "name": "stdout", "text": output}]}
    assert bool(check_cell_problems(cell)) == flagged


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_numbers_in_prose_agree_with_the_outputs(path):
    nb = json.loads(path.read_text())
    problems = prose_drift(nb)
    assert not problems, "tagged numbers in the markdown drifted from the outputs:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.name[:2] in NOTEBOOKS_WITH_PROSE_TAGS], ids=lambda p: p.name)
def test_result_notebooks_tag_the_numbers_their_prose_quotes(path):
    nb = json.loads(path.read_text())
    assert prose_tags(nb), "tag the numbers the prose quotes: <!--check:name-->0.797 and course.report('name', value)"
