"""Run the whole course headlessly: execute every notebook in order (the README's run command).

``python -m mlcak_lib.course run`` executes ``notebooks/NN_*.ipynb`` top to bottom in fresh
kernels, shows progress per cell, writes the executed copies to ``build/executed/`` (the
committed notebooks are left untouched) and prints a timing table. A notebook that raises,
or writes to stderr, fails the run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .config import repo_root


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


def execute_notebook(path: Path, out_dir: Path, timeout: int = 900) -> float:
    """Execute one notebook in a fresh kernel (cwd = its folder); write it to ``out_dir``; return seconds."""
    import nbformat
    from nbclient import NotebookClient
    from tqdm.auto import tqdm

    nb = nbformat.read(path, as_version=4)
    n_code = sum(cell.cell_type == "code" for cell in nb.cells)
    bar = tqdm(total=n_code, desc=path.stem, unit="cell", leave=True)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_executed=lambda **kw: bar.update(1) if kw["cell"].cell_type == "code" else None,
    )
    start = time.perf_counter()
    try:
        client.execute()
    finally:
        bar.close()
        out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out_dir / path.name)
    seconds = time.perf_counter() - start
    errors = stderr_outputs(nb)
    if errors:
        raise RuntimeError(f"{path.name} wrote to stderr:\n" + "\n".join(e[:500] for e in errors))
    return seconds


def run_course(out_dir: Path | None = None, only: list[str] | None = None, timeout: int = 900) -> dict[str, float]:
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
    run.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
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
