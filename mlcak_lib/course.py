"""Run the whole course headlessly: execute every notebook in order (the README's run command).

``python -m mlcak_lib.course run`` executes ``notebooks/NN_*.ipynb`` top to bottom in fresh
kernels, shows progress per cell, writes the executed copies to ``build/executed/`` (the
committed notebooks are left untouched) and prints a timing table. A notebook that raises,
or writes to stderr, fails the run; so does a cell that runs past ``--timeout`` seconds (a hung
kernel), with the notebook and cell named.

Conventions the runner keeps (issue 15):

* **Solutions carry no outputs.** Cells tagged ``solution`` still run (so CI checks them), but
  their outputs are removed from the executed copy (the execution counts stay)
  (:func:`strip_solution_outputs`), so the answer is not on screen next to the question.
  ``scripts/workshop_cells.py`` adds the learner cells (tag ``learner``) and collapses solutions
  for JupyterLab and Colab.
* **Kernels talk over IPC** (Unix sockets in a private temporary folder), so ipykernel's
  "Kernel is running over TCP without encryption" warning never reaches the terminal; where IPC
  is unavailable (Windows) they use TCP and that one line is dropped from the kernel's stderr,
  whose other lines are shown after the notebook.
* **Numbers in prose are tagged** (:func:`report`, :func:`prose_drift`): a markdown number written
  as ``<!--check:teacher_mcct-->0.797`` must agree, at the precision shown, with the output
  line that a code cell printed with ``report("teacher_mcct", value)``, i.e. ``...: 0.797
  [teacher_mcct]``. HTML comments are invisible in JupyterLab, Colab and GitHub, so the tag does
  not show; ``tests/test_notebook_hygiene.py`` fails on a tagged number that drifted from its
  output, on a tag that no output reports, and on a name reported twice with different values.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .config import repo_root
from .viz import HEADLESS_ENV


def notebook_paths(root: Path | None = None) -> list[Path]:
    """The course notebooks ``notebooks/NN_*.ipynb`` in order."""
    root = root or repo_root()
    if root is None:
        raise FileNotFoundError("The course notebooks live in a checkout of the repository; run this from one.")
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def stderr_outputs(nb) -> list[str]:
    """Texts of the stderr streams a notebook produced (a clean notebook has none)."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                found.append("".join(out.get("text", "")))
    return found


SOLUTION_TAG = "solution"
LEARNER_TAG = "learner"
# The one line ipykernel logs when its kernel listens on TCP (kept off the learner's terminal).
KERNEL_NOISE = re.compile(r"\[IPKernelApp\] WARNING \| Kernel is running over TCP without encryption")


def cell_tags(cell) -> list[str]:
    """The tags of a notebook cell (``metadata.tags``; a dict or an nbformat node)."""
    return list(cell.get("metadata", {}).get("tags", []))


def strip_solution_outputs(nb) -> int:
    """Remove the outputs of the cells tagged ``solution`` (their execution counts stay); return how many changed."""
    changed = 0
    for cell in nb["cells"]:
        if cell.get("cell_type") == "code" and SOLUTION_TAG in cell_tags(cell):
            if cell.get("outputs"):
                changed += 1
            cell["outputs"] = []  # the execution count stays: the cell ran, in order
    return changed


def ipc_available() -> bool:
    """Whether kernels can use IPC transport here (ZeroMQ's ipc:// needs Unix domain sockets)."""
    return os.name == "posix"


def _kernel_manager(kernel_name: str, socket_dir: str | None):
    """An async kernel manager on IPC sockets in ``socket_dir`` (TCP when ``socket_dir`` is None)."""
    from jupyter_client.manager import AsyncKernelManager

    if socket_dir is None:
        return AsyncKernelManager(kernel_name=kernel_name)
    # Socket paths must stay short (about 100 characters): the folder comes from mkdtemp.
    return AsyncKernelManager(kernel_name=kernel_name, transport="ipc", ip=os.path.join(socket_dir, "kernel"))


def _replay_kernel_stderr(log_path: Path) -> None:
    """Show what the kernel process wrote to its own stderr, without ipykernel's TCP warning."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return
    kept = [line for line in lines if line.strip() and not KERNEL_NOISE.search(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr)


def execute_notebook(path: Path, out_dir: Path, timeout: int = 600) -> float:
    """Execute one notebook in a fresh kernel (cwd = its folder); write it to ``out_dir``; return seconds.

    ``timeout`` is per cell: a cell that runs longer (a hung kernel) fails with the notebook and the
    cell named. Solution cells run, and their outputs are stripped from the written copy.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from tqdm.auto import tqdm

    nb = nbformat.read(path, as_version=4)
    n_code = sum(cell.cell_type == "code" for cell in nb.cells)
    bar = tqdm(total=n_code, desc=path.stem, unit="cell", leave=True)
    current = {"index": None}
    socket_dir = tempfile.mkdtemp(prefix="mlcak-kernel-") if ipc_available() else None
    log_dir = Path(tempfile.mkdtemp(prefix="mlcak-kernel-log-"))
    client = NotebookClient(
        nb,
        km=_kernel_manager("python3", socket_dir),
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_start=lambda **kw: current.update(index=kw["cell_index"]),
        on_cell_executed=lambda **kw: bar.update(1) if kw["cell"].cell_type == "code" else None,
    )
    start = time.perf_counter()
    try:
        with open(log_dir / "stderr.log", "w") as kernel_stderr:
            # headless: widget explorers draw their first view (viz.interact; nbclient can deadlock on interact)
            client.execute(stderr=kernel_stderr, env={**os.environ, HEADLESS_ENV: "1"})
    except CellTimeoutError:
        raise RuntimeError(f"{path.name}: cell {current['index']} ran longer than the per-cell timeout ({timeout} s); "
                           f"a hung kernel? Rerun with --only {path.name[:2]}, or raise --timeout") from None
    except DeadKernelError:
        raise RuntimeError(f"{path.name}: the kernel died in cell {current['index']} (out of memory?); "
                           f"rerun with --only {path.name[:2]}") from None
    finally:
        bar.close()
        _replay_kernel_stderr(log_dir / "stderr.log")
        shutil.rmtree(log_dir, ignore_errors=True)
        if socket_dir:
            shutil.rmtree(socket_dir, ignore_errors=True)
        errors = stderr_outputs(nb)
        strip_solution_outputs(nb)
        out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out_dir / path.name)
    seconds = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{path.name} wrote to stderr:\n" + "\n".join(e[:500] for e in errors))
    return seconds


# --- Numbers in prose, tagged and checked against the outputs ------------------------------------

_NAME = r"[A-Za-z_][\w.-]*"
_NUMBER = r"[+\-\u2212]?\d[\d,\u202f\u2009]*(?:\.\d+)?"
PROSE_TAG = re.compile(rf"<!--\s*check:(?P<name>{_NAME})\s*-->(?P<markup>[\s*_]*)(?P<number>{_NUMBER})")
REPORTED = re.compile(rf"(?P<number>{_NUMBER})\s*%?\s+\[(?P<name>{_NAME})\]\s*$")


def report(name: str, value: float, fmt: str = "{:.3f}", label: str | None = None) -> None:
    """Print ``label: value  [name]``: a number that the notebook's prose quotes as ``<!--check:name-->``.

    ``fmt`` formats the value in the units and at the precision the prose uses (a percentage as
    ``19`` with ``fmt="{:.0f}"``, not ``0.19``); ``label`` is the words shown before the value.
    """
    print(f"{label or name}: {fmt.format(value)}  [{name}]")


def _to_float(text: str) -> float:
    return float(text.replace("\u2212", "-").replace(",", "").replace("\u202f", "").replace("\u2009", ""))


def _decimals(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def prose_tags(nb) -> list[tuple[int, str, str]]:
    """``(cell index, name, number as written)`` for every ``<!--check:name-->number`` in markdown."""
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell.get("cell_type") == "markdown":
            source = "".join(cell.get("source", ""))
            found.extend((i, m["name"], m["number"]) for m in PROSE_TAG.finditer(source))
    return found


def reported_values(nb) -> dict[str, list[str]]:
    """``{name: [number as printed, ...]}`` from the output lines :func:`report` printed."""
    values: dict[str, list[str]] = {}
    for cell in nb["cells"]:
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            text = "".join(out.get("text", "")) if out.get("output_type") == "stream" else "".join(out.get("data", {}).get("text/plain", ""))
            for line in text.splitlines():
                match = REPORTED.search(line)
                if match:
                    values.setdefault(match["name"], []).append(match["number"])
    return values


def prose_drift(nb) -> list[str]:
    """Problems between tagged prose numbers and reported outputs (empty when they agree).

    A tagged number must equal its reported value rounded to the decimals the prose shows
    (``0.80`` agrees with ``0.797``; ``0.79`` does not); every tag needs a reported value, and a
    name reported twice must carry one value.
    """
    reported = reported_values(nb)
    problems = [f"'{name}' is reported with different values: {', '.join(v)}" for name, v in reported.items()
                if len({_to_float(x) for x in v}) > 1]
    for index, name, written in prose_tags(nb):
        if name not in reported:
            problems.append(f"cell {index}: '{name}' ({written}) is tagged but no output reports it")
            continue
        value, shown = _to_float(reported[name][0]), _to_float(written)
        if abs(value - shown) > 0.5 * 10 ** -_decimals(written) + 1e-9:
            problems.append(f"cell {index}: prose says {name} = {written}, the output says {reported[name][0]}")
    return problems


def run_course(out_dir: Path | None = None, only: list[str] | None = None, timeout: int = 600) -> dict[str, float]:
    """Execute the notebooks in order; return {notebook: seconds}."""
    root = repo_root()
    paths = notebook_paths(root)
    if only:
        paths = [p for p in paths if any(p.name.startswith(prefix) for prefix in only)]
        if not paths:
            raise ValueError(f"No notebook starts with {only}")
    out_dir = Path(out_dir) if out_dir else root / "build" / "executed"
    timings: dict[str, float] = {}
    for path in paths:
        timings[path.name] = execute_notebook(path, out_dir, timeout)
    total = sum(timings.values())
    print("\nnotebook                                  seconds")
    for name, seconds in timings.items():
        print(f"{name:<40}{seconds:>9.1f}")
    print(f"{'total':<40}{total:>9.1f}")
    try:
        shown = out_dir.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = out_dir
    print(f"\nExecuted notebooks written to {shown}/")
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlcak_lib.course", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute every notebook in order")
    run.add_argument("--out", type=Path, default=None, help="folder for executed notebooks (default build/executed)")
    run.add_argument("--only", nargs="*", help="run only notebooks whose names start with these prefixes, e.g. 01 02")
    run.add_argument("--timeout", type=int, default=600,
                     help="seconds allowed per cell (the slowest course cell takes about 2 minutes; a hung kernel fails after this)")
    args = parser.parse_args(argv)
    if args.command == "run":
        try:
            run_course(args.out, args.only, args.timeout)
        except Exception as exc:  # a readable one-line failure for the terminal
            print(f"course run failed: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
