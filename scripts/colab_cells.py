"""Write every notebook's Colab setup from the one canonical repository URL (issue 15).

    python scripts/colab_cells.py                    # rewrite notebooks/NN_*.ipynb in place
    python scripts/colab_cells.py --check            # change nothing; exit 1 and name the notebooks that differ
    python scripts/colab_cells.py path/to/NN_x.ipynb # only these notebooks

The URL is ``[project.urls] Repository`` in ``pyproject.toml`` (``mlcak_lib.config.repo_url``). In each
notebook it rewrites, and touches nothing else (outputs, metadata, execution counts and cell ids stay as
they are; a second run changes nothing):

* the Colab badge of the title cell: ``colab.research.google.com/github/<owner>/<repo>/blob/main/notebooks/<file>``;
* the setup code cell (the first code cell that mentions ``google.colab``) into :data:`SETUP_CODE`: on Colab a
  non-editable ``%pip install`` of the library from the repository, without the ``[dev]`` extras, keeping
  Colab's torch (pip leaves a satisfied requirement alone); no clone, no ``%cd``; then ``import mlcak_lib`` with
  an actionable message when it fails;
* the markdown cell before it into :data:`SETUP_MARKDOWN` (inserted, with a fixed cell id, where a notebook
  had none);
* reads of the committed results from a checkout (``RESULTS = (repo_root() or ...) / "results"``) into the
  package accessor ``mlcak_lib.config.results_dir()`` (the results ship as package data), and mentions of the
  old top-level ``results/`` folder in cell sources into ``mlcak_lib/data/results/``.

``tests/test_colab.py`` runs :func:`check` on the committed notebooks and the setup cells in a simulated Colab.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETUP_CELL_ID = "colab-setup"

SETUP_MARKDOWN = """### Setup
On Colab the next cell installs the course library from [the course repository]({url}) with pip: not editable, \
no extras, Colab's own PyTorch kept. The committed results, reference tables and checkpoints come with it as \
package data, so there is nothing to clone and no folder to change. Elsewhere it installs nothing and only checks \
that `mlcak_lib` imports (install the course first: README, Quickstart). If it prints a message, do what it says."""

SETUP_CODE = """# Colab only: install the course library (non-editable, no extras, Colab's torch kept); elsewhere nothing is installed
import importlib.util
import sys

if "google.colab" in sys.modules and importlib.util.find_spec("mlcak_lib") is None:
    %pip install -q "mlcak @ git+{url}"
    importlib.invalidate_caches()
try:
    import mlcak_lib
except ImportError:
    print("The course library mlcak_lib cannot be imported in this kernel. On Colab: Runtime > Restart session, "
          "then run this cell again. Elsewhere: install the course (in a checkout of {url} run "
          "`pip install -e .`, or `bash scripts/course.sh lab`), then restart the kernel.")"""

BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/[^/\s)]+/notebooks/[^\s)]+")
RESULTS_LINE = re.compile(r"^RESULTS = .*$", re.MULTILINE)
CONFIG_IMPORT = re.compile(r"^from mlcak_lib\.config import (.+)$", re.MULTILINE)
PACKAGE_IMPORT = re.compile(r"^from mlcak_lib import (.+)$", re.MULTILINE)
OLD_RESULTS_PATH = re.compile(r"(?<![\w/.-])results/")
RESULTS_COMMENT = "  # the committed outputs of the experiment runner (package data: no checkout needed)"


def canonical_url(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """``[project.urls] Repository`` of ``pyproject.toml``: ``https://github.com/<owner>/<repo>``."""
    text = pyproject.read_text(encoding="utf-8")
    section = re.search(r"^\[project\.urls\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    found = section and re.search(r'^Repository\s*=\s*"([^"]+)"', section.group(1), re.MULTILINE)
    if not found:
        raise SystemExit(f"{pyproject}: no Repository URL under [project.urls]")
    url = found.group(1).rstrip("/")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise SystemExit(f"{pyproject}: the Repository URL must be https://github.com/<owner>/<repo>, got {url}")
    return url


def badge_url(url: str, notebook: str) -> str:
    """The Colab badge link of ``notebook`` (a file name in ``notebooks/``) for the repository ``url``."""
    return f"https://colab.research.google.com/github/{url.removeprefix('https://github.com/')}/blob/main/notebooks/{notebook}"


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _set_source(cell: dict, text: str) -> bool:
    """Set a cell's source (as the notebook stores it: a list of lines); True when it changed."""
    if _source(cell) == text:
        return False
    cell["source"] = text.splitlines(keepends=True) if isinstance(cell.get("source"), list) else text
    return True


def setup_index(cells: list[dict]) -> int | None:
    """Index of the setup code cell: the first code cell that mentions ``google.colab``."""
    return next((i for i, c in enumerate(cells) if c["cell_type"] == "code" and "google.colab" in _source(c)), None)


def _results_reads(text: str, notebook_text: str) -> str:
    """Rewrite ``RESULTS = <checkout path>`` into the package accessor, fixing the cell's import."""
    if not RESULTS_LINE.search(text) or "results_dir()" in RESULTS_LINE.search(text).group(0):
        return text
    config_import = CONFIG_IMPORT.search(text)
    package_import = PACKAGE_IMPORT.search(text)
    if config_import and not config_import.group(1).startswith("("):
        names = [n.strip() for n in config_import.group(1).split(",")]
        others = RESULTS_LINE.sub("", notebook_text).replace(config_import.group(0), "")
        names = [n for n in names if n != "repo_root" or re.search(r"\brepo_root\b", others)]
        names = sorted(set(names) | {"results_dir"})
        text = text.replace(config_import.group(0), f"from mlcak_lib.config import {', '.join(names)}")
        call = "results_dir()"
    elif package_import and "config" in [n.strip() for n in package_import.group(1).split(",")]:
        call = "config.results_dir()"
    else:
        raise SystemExit("a RESULTS line without an import of mlcak_lib.config in its cell; fix it by hand")
    return RESULTS_LINE.sub(lambda m: f"RESULTS = {call}{RESULTS_COMMENT}", text, count=1)


def rewrite(nb: dict, name: str, url: str) -> bool:
    """Rewrite one notebook's Colab parts in place (``name``: its file name); True when anything changed."""
    cells = nb["cells"]
    changed = False
    i = setup_index(cells)
    if i is None:
        raise SystemExit(f"{name}: no setup cell (a code cell that mentions google.colab)")
    changed |= _set_source(cells[i], SETUP_CODE.format(url=url))
    md = SETUP_MARKDOWN.format(url=url)
    if i > 0 and cells[i - 1]["cell_type"] == "markdown" and _source(cells[i - 1]).startswith("### Setup"):
        changed |= _set_source(cells[i - 1], md)
    else:
        new = {"cell_type": "markdown", "metadata": {}, "source": md.splitlines(keepends=True)}
        if "id" in cells[i]:
            new = {"cell_type": "markdown", "id": SETUP_CELL_ID, "metadata": {}, "source": new["source"]}
        cells.insert(i, new)
        changed = True
    notebook_text = "\n".join(_source(c) for c in cells)
    for cell in cells:
        text = _source(cell)
        new_text = BADGE.sub(badge_url(url, name), text)
        if cell["cell_type"] == "code":
            new_text = _results_reads(new_text, notebook_text)
        new_text = OLD_RESULTS_PATH.sub("mlcak_lib/data/results/", new_text)
        changed |= _set_source(cell, new_text)
    return changed


def dumps(nb: dict) -> str:
    """The notebook as nbformat writes it (indent 1, sorted keys, UTF-8, final newline)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False, separators=(",", ": ")) + "\n"


def process(path: Path, url: str, write: bool) -> bool:
    """Rewrite (``write``) or only compare one notebook file; True when it differs from the canonical form."""
    original = path.read_text(encoding="utf-8")
    nb = json.loads(original)
    if not rewrite(nb, path.name, url):
        return False
    if write:
        path.write_text(dumps(nb), encoding="utf-8")
    return True


def notebooks(folder: Path = ROOT / "notebooks") -> list[Path]:
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def check(paths: list[Path] | None = None, url: str | None = None) -> list[str]:
    """Names of the notebooks whose Colab parts differ from what this script writes (empty: all canonical)."""
    url = url or canonical_url()
    return [p.name for p in (paths or notebooks()) if process(p, url, write=False)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", type=Path, help="notebook files (default: notebooks/NN_*.ipynb)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 when a notebook differs")
    args = p.parse_args(argv)
    url = canonical_url()
    paths = args.notebooks or notebooks()
    differ = [path for path in paths if process(path, url, write=not args.check)]
    for path in differ:
        print(f"{'differs' if args.check else 'rewrote'}: {path}")
    if args.check and differ:
        print(f"run: python scripts/colab_cells.py {' '.join(str(p) for p in differ)}")
    return 1 if args.check and differ else 0


if __name__ == "__main__":
    sys.exit(main())
