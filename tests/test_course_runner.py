"""mlcak_lib.course: the headless runner keeps the terminal clean, strips solutions, checks prose numbers."""

from pathlib import Path

import nbformat
import pytest

from mlcak_lib import course


def _notebook(path: Path, cells: list) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = cells
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _tiny(tmp_path: Path) -> Path:
    return _notebook(tmp_path / "nbs" / "01_tiny.ipynb", [
        nbformat.v4.new_code_cell("print('hello')"),
        nbformat.v4.new_code_cell("# Your turn: exercise 1\n", metadata={"tags": ["learner"]}),
        nbformat.v4.new_code_cell("print('the answer is 42')", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("from mlcak_lib.course import report\nreport('share', 0.7971, label='a share')"),
    ])


@pytest.mark.parametrize("ipc", [True, False], ids=["ipc", "tcp-filtered"])
def test_kernel_warning_never_reaches_the_terminal(tmp_path, capfd, monkeypatch, ipc):
    if ipc and not course.ipc_available():
        pytest.skip("no IPC transport on this platform")
    monkeypatch.setattr(course, "ipc_available", lambda: ipc)
    course.execute_notebook(_tiny(tmp_path), tmp_path / "out", timeout=120)
    captured = capfd.readouterr()
    assert "[IPKernelApp] WARNING" not in captured.err + captured.out
    nb = nbformat.read(tmp_path / "out" / "01_tiny.ipynb", as_version=4)
    first, learner, solution, reported = nb.cells
    assert first.outputs[0]["text"] == "hello\n" and first.execution_count == 1
    assert learner.execution_count == 2 and not learner.outputs
    assert solution.outputs == [] and solution.execution_count == 3, "solution outputs are stripped, the count stays"
    assert reported.execution_count == 4 and reported.outputs[0]["text"] == "a share: 0.797  [share]\n"
    assert not list((tmp_path / "nbs").glob("kernel*")), "no IPC sockets left beside the notebook"


def test_a_hung_cell_fails_with_the_notebook_and_cell_named(tmp_path):
    path = _notebook(tmp_path / "02_hang.ipynb", [nbformat.v4.new_code_cell("x = 1"),
                                                  nbformat.v4.new_code_cell("import time\ntime.sleep(30)")])
    with pytest.raises(RuntimeError, match=r"02_hang.ipynb: cell 1 ran longer than the per-cell timeout \(2 s\)"):
        course.execute_notebook(path, tmp_path / "out", timeout=2)
    assert (tmp_path / "out" / "02_hang.ipynb").exists(), "the partial run is written for inspection"


def test_kernel_stderr_replay_drops_only_the_tcp_warning(tmp_path, capsys):
    log = tmp_path / "stderr.log"
    log.write_text("[IPKernelApp] WARNING | Kernel is running over TCP without encryption. All communication ...\n"
                   "Segmentation fault in some library\n")
    course._replay_kernel_stderr(log)
    assert capsys.readouterr().err == "Segmentation fault in some library\n"


def test_strip_solution_outputs():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("1", metadata={"tags": ["solution"]}), nbformat.v4.new_code_cell("2")]
    for i, cell in enumerate(nb.cells, start=1):
        cell.execution_count = i
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{i}\n")]
    assert course.strip_solution_outputs(nb) == 1
    assert nb.cells[0].outputs == [] and nb.cells[0].execution_count == 1
    assert nb.cells[1].execution_count == 2 and nb.cells[1].outputs
    assert course.strip_solution_outputs(nb) == 0, "idempotent"


def _prose_notebook(markdown: str, printed: str) -> dict:
    return {"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": markdown},
        {"cell_type": "code", "metadata": {}, "source": "", "execution_count": 1,
         "outputs": [{"output_type": "stream", "name": "stdout", "text": printed}]},
    ]}


def test_report_prints_a_line_that_prose_drift_reads(capsys):
    course.report("teacher_mcct", 0.79714, label="teacher MCCT AUROC")
    course.report("gap_recovered", 19.2, fmt="{:.0f}", label="gap recovered (%)")
    printed = capsys.readouterr().out
    assert printed == "teacher MCCT AUROC: 0.797  [teacher_mcct]\ngap recovered (%): 19  [gap_recovered]\n"
    nb = _prose_notebook("The teacher scores <!--check:teacher_mcct-->0.797 and recovers <!--check:gap_recovered-->19 %.", printed)
    assert course.reported_values(nb) == {"teacher_mcct": ["0.797"], "gap_recovered": ["19"]}
    assert course.prose_drift(nb) == []


@pytest.mark.parametrize("markdown, printed, problem", [
    ("MCCT <!--check:t-->0.80", "t: 0.797  [t]\n", None),                       # rounded in the prose: agrees
    ("MCCT **<!--check:t-->0.797**", "t: 0.797  [t]\n", None),                   # bold markup allowed
    ("gain <!--check:d-->−0.024", "d: -0.024  [d]\n", None),                      # typographic minus
    ("films <!--check:n-->9,000", "n: 9000  [n]\n", None),                        # thousands separator
    ("MCCT <!--check:t-->0.79", "t: 0.797  [t]\n", "prose says t = 0.79"),
    ("MCCT <!--check:t-->0.797", "t: 0.658  [t]\n", "prose says t = 0.797, the output says 0.658"),
    ("MCCT <!--check:t-->0.797", "nothing here\n", "no output reports it"),
    ("", "t: 0.797  [t]\nt: 0.801  [t]\n", "reported with different values"),
])
def test_prose_drift_flags_numbers_that_differ(markdown, printed, problem):
    problems = course.prose_drift(_prose_notebook(markdown, printed))
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0]
