"""Colab, end to end (issue 15): one canonical repository URL, and every notebook's setup in a simulated Colab.

The URL lives in ``pyproject.toml`` (``[project.urls] Repository``); ``scripts/colab_cells.py`` writes every
notebook's setup cell from it, and the tests below check that every Colab badge and install line uses it.

``test_simulated_colab`` installs the course the way a learner on Colab does and runs the setup and import
cells of every notebook there:

* **What is installed.** A snapshot of the working tree (tracked files and untracked files git does not
  ignore, as they are now: what would be pushed if it were committed) is committed into a scratch git
  repository in ``tmp_path``. A git ``url.<snapshot>.insteadOf`` rule in a scratch ``$HOME/.gitconfig`` sends
  the notebooks' own ``%pip install "mlcak @ git+https://github.com/..."`` there, so the cell runs unchanged
  and pip really installs from a local ``git+file://`` clone.
* **Colab's preinstalled packages.** A fresh virtual environment sees the packages of the running one
  (torch, timm, numpy, IPython, pip, setuptools, ...) through a ``.pth`` line naming a folder of symbolic links
  to them, without the course itself (its editable finder, its ``.pth`` files and its ``dist-info`` are left
  out), so ``mlcak_lib`` is not importable before the install and pip finds every dependency satisfied:
  nothing is downloaded (``PIP_NO_INDEX``, no build isolation) and torch must stay where it was.
* **Colab.** A stand-in ``google.colab`` package is imported first; cells run in an IPython
  ``InteractiveShell`` (``%pip`` works) from a working folder outside the checkout (Colab's ``/content``).
  Every shell command the cells run is recorded. The first notebook's setup cell installs the course; the
  others find it installed, as after Colab's "Restart session" (all setup cells are the same text, checked).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import colab_cells  # noqa: E402  (scripts/ is not a package: the script that writes the setup cells)

NOTEBOOKS = colab_cells.notebooks()
URL = colab_cells.canonical_url()
INSTALL = f'%pip install -q "mlcak @ git+{URL}"'


def _code(nb: dict) -> list[str]:
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_canonical_url_in_one_place():
    from mlcak_lib import config

    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", URL)
    assert config.repo_url() == URL
    for path in [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *NOTEBOOKS]:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".ipynb":
            text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"])
        for found in re.findall(r"https://github\.com/[\w.-]+/mlcak\b[\w.-]*", text):
            assert found.removesuffix(".git") == URL, f"{path.name}: {found} is not the canonical {URL}"
        for found in re.findall(r"git\+([^\s\"'`)]+)", text):
            assert found == URL, f"{path.name} installs from {found}, not the canonical {URL}"


def test_every_colab_badge_uses_the_canonical_url():
    badges = {path.name: re.findall(r"https://colab\.research\.google\.com/github/[^\s)\"]+", path.read_text(encoding="utf-8"))
              for path in [ROOT / "README.md", *NOTEBOOKS]}
    readme = badges.pop("README.md")
    assert sorted(readme) == sorted(colab_cells.badge_url(URL, p.name) for p in NOTEBOOKS), "one README badge per notebook"
    for path in NOTEBOOKS:
        title = "".join(_load(path)["cells"][0]["source"])
        assert colab_cells.badge_url(URL, path.name) in title, f"{path.name}: the title cell's badge"
        assert set(badges[path.name]) == {colab_cells.badge_url(URL, path.name)}, path.name


def test_setup_cells_are_canonical():
    """Every notebook's setup is what ``scripts/colab_cells.py`` writes (run it when this fails)."""
    differ = colab_cells.check(NOTEBOOKS, URL)
    assert not differ, f"run `python scripts/colab_cells.py` (differ: {', '.join(differ)})"


def test_install_lines():
    """Only the canonical non-editable install, only on Colab: no clone, no ``-e``, no ``[dev]``, no ``%cd``."""
    for path in NOTEBOOKS:
        code = "\n".join(_code(_load(path)))
        commands = [line.strip() for line in code.splitlines() if line.strip().startswith(("%", "!"))]
        installs = [line for line in commands if "pip" in line]
        assert installs == [INSTALL], f"{path.name}: {installs}"
        assert not [line for line in commands if re.match(r"[%!]\s*(cd|git)\b", line)], f"{path.name}: {commands}"
        assert "git clone" not in code and "[dev]" not in code, path.name


def test_setup_cell_template_says_what_to_do():
    assert "Runtime > Restart session" in colab_cells.SETUP_CODE and "pip install -e ." in colab_cells.SETUP_CODE
    assert colab_cells.SETUP_CODE.count("%pip install") == 1 and "sys.path" not in colab_cells.SETUP_CODE


def test_results_ship_with_the_package():
    """What the notebooks read lives in the package: results (package data), no checkout-relative paths."""
    from mlcak_lib import config

    results = config.results_dir()
    assert results.is_relative_to(ROOT / "mlcak_lib") and (results / "grid_default.csv").is_file()
    assert config.output_dir() == results, "in a checkout the runner and the scripts write the committed folder"
    assert not (ROOT / "results").exists() or not any((ROOT / "results").iterdir()), \
        "committed results belong in mlcak_lib/data/results (package data)"
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"data/results/*"' in text
    for path in NOTEBOOKS:
        code = "\n".join(_code(_load(path)))
        assert "repo_root" not in code and 'Path.cwd().parent' not in code, f"{path.name} reads from a checkout"


DRIVER = textwrap.dedent('''
    """Runs in the fresh venv: the setup and import cells of each notebook in a (simulated) Colab kernel."""
    import importlib.util, json, os, re, sys
    from importlib.resources import files
    from pathlib import Path

    import google.colab  # noqa: F401  the stand-in: Colab's kernel has it imported
    from IPython.core.interactiveshell import InteractiveShell

    job = json.loads(Path(sys.argv[1]).read_text())
    report = {"before": importlib.util.find_spec("mlcak_lib") is not None, "notebooks": {}}
    shell = InteractiveShell.instance()
    commands = []
    system = shell.system
    shell.system = lambda cmd: (commands.append(cmd), system(cmd))[1]
    for name, cells, code in job["notebooks"]:
        shell.reset(new_session=False)
        start, ran = os.getcwd(), []
        for src in cells:
            result = shell.run_cell(src, store_history=False)
            ran.append(None if result.success else repr(result.error_before_exec or result.error_in_exec))
        ns = shell.user_ns
        reads = []
        for expr in re.findall(r'RESULTS / f?"[^"]+"', code) + re.findall(r'files\\("mlcak_lib"\\)(?: / "[^"]+")+', code):
            try:
                reads.append([expr, Path(eval(expr, {"files": files, **ns})).is_file()])
            except Exception as exc:  # reported, the test fails on it
                reads.append([expr, repr(exc)])
        report["notebooks"][name] = {"cells": ran, "commands": commands[:], "cwd_kept": os.getcwd() == start,
                                     "reads": reads, "results": str(ns.get("RESULTS", ""))}
        commands.clear()
    import mlcak_lib, torch
    from mlcak_lib import config
    from mlcak_lib.manifest import verify_manifest
    from mlcak_lib.synth.patients import PATIENTS, verify_patient
    pkg = Path(mlcak_lib.__file__).parent
    try:  # the simulator checks its assets against the manifest: it must ship with the package
        report["assets"] = {s.id: s.status for s in verify_manifest()}
        report["patients"] = [str(verify_patient(p)) for p in PATIENTS]
    except Exception as exc:  # reported, the test fails on it
        report["assets"] = repr(exc)
    report.update(mlcak_lib=str(pkg), torch=torch.__file__, repo_root=str(config.repo_root()),
                  results_dir=str(config.results_dir()), url=config.repo_url(),
                  data={rel: (pkg / rel).stat().st_size if (pkg / rel).is_file() else None for rel in job["data"]})
    Path(sys.argv[2]).write_text(json.dumps(report))
''')


def _snapshot(dest: Path) -> Path:
    """The working tree's tracked and untracked-not-ignored files, committed into a scratch repository."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_symlink():  # as git stores it (the packaged manifest links to the root file)
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(src), dest / rel)
        elif src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot of the working tree"]):
        subprocess.run(git + cmd, cwd=dest, check=True, capture_output=True)
    return dest


def _colab_packages(dest: Path) -> Path:
    """Symbolic links to the running environment's packages, without the course's own install."""
    dest.mkdir()
    folders = dict.fromkeys(Path(p) for p in [*site.getsitepackages(), sysconfig.get_paths()["purelib"]])
    for folder in filter(Path.is_dir, folders):
        for entry in folder.iterdir():
            name = entry.name
            if (name.startswith(("__editable__", "mlcak", "_mlcak")) or name.endswith((".pth", ".egg-link"))
                    or name == "__pycache__" or (dest / name).exists()):
                continue
            (dest / name).symlink_to(entry)
    return dest


@pytest.mark.skipif(os.name == "nt", reason="the simulated Colab is a Linux/macOS virtual environment")
def test_simulated_colab(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed: cannot make the git+file:// clone the simulated Colab installs from")
    venv = tmp_path / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a virtual environment (python3-venv missing?): {made.stderr.strip()[-200:]}")
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "colab_preinstalled.pth").write_text(f"{_colab_packages(tmp_path / 'preinstalled')}\n")
    fake = tmp_path / "fake" / "google" / "colab"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('"""Stand-in for Colab\'s google.colab module (tests/test_colab.py)."""\n')
    snapshot = _snapshot(tmp_path / "snapshot")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f'[url "{snapshot.as_uri()}"]\n\tinsteadOf = {URL}\n')
    content = tmp_path / "content"  # Colab's working folder, outside any checkout
    content.mkdir()

    notebooks, setups = [], set()
    for path in NOTEBOOKS:
        cells = _code(_load(path))
        i = next(k for k, src in enumerate(cells) if "google.colab" in src)
        setups.add(cells[i])
        assert "print_environment_report()" in cells[i + 1], f"{path.name}: the imports cell follows the setup cell"
        notebooks.append([path.name, cells[i:i + 2], "\n".join(cells)])
    assert len(setups) == 1, "every notebook has the same setup cell"
    data = subprocess.run(["git", "ls-files", "mlcak_lib/data"], cwd=snapshot, check=True, capture_output=True,
                          text=True).stdout.split()
    data = [rel.removeprefix("mlcak_lib/") for rel in data]
    (tmp_path / "job.json").write_text(json.dumps({"notebooks": notebooks, "data": data}))
    (tmp_path / "driver.py").write_text(DRIVER)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV", "GIT_", "MLCAK_"))}
    env.update(HOME=str(home), PYTHONPATH=str(tmp_path / "fake"), PYTHONNOUSERSITE="1", IPYTHONDIR=str(home / "ipython"),
               MPLBACKEND="Agg", MPLCONFIGDIR=str(home / "mpl"), MLCAK_CACHE_DIR=str(home / "mlcak-cache"),
               PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0", PIP_CACHE_DIR=str(home / "pip-cache"),
               PIP_DISABLE_PIP_VERSION_CHECK="1", OMP_NUM_THREADS="1")
    run = subprocess.run([str(python), str(tmp_path / "driver.py"), str(tmp_path / "job.json"), str(tmp_path / "report.json")],
                         cwd=content, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())

    assert not report["before"], "mlcak_lib must not be importable in the fresh environment before the install"
    installed = Path(report["mlcak_lib"])
    assert installed.is_relative_to(venv) and not installed.is_relative_to(ROOT), installed
    assert report["repo_root"] == "None" and Path(report["results_dir"]).is_relative_to(installed)
    assert report["url"] == URL, "the installed metadata carries the canonical URL"
    assert isinstance(report["assets"], dict), f"the installed package cannot verify its data: {report['assets']}"
    local = {k: v for k, v in report["assets"].items() if v != "skipped"}
    assert local and set(local.values()) == {"ok"}, local
    assert all(Path(p).is_relative_to(installed) for p in report["patients"]), report["patients"]
    assert not Path(report["torch"]).is_relative_to(venv), "Colab's torch is kept, not reinstalled"
    assert not list(Path(purelib).glob("torch*")), "pip installed torch into the fresh environment"
    for rel in data:
        assert report["data"][rel] == (snapshot / "mlcak_lib" / rel).stat().st_size, f"{rel} does not ship"
    first = True
    for name, got in report["notebooks"].items():
        assert got["cells"] == [None, None], f"{name}: {got['cells']}\n{run.stdout[-3000:]}"
        assert got["cwd_kept"], f"{name} changed the working folder"
        python_pip = f"{python} -m pip install -q \"mlcak @ git+{URL}\""
        assert got["commands"] == ([python_pip] if first else []), f"{name} ran {got['commands']}"
        first = False
        assert all(ok is True for _, ok in got["reads"]), f"{name}: unreadable {got['reads']}"
        if got["results"]:
            assert Path(got["results"]).is_relative_to(installed), f"{name} reads results from {got['results']}"
    assert "cannot be imported" not in run.stdout
