"""Committed notebooks are executed, small, clean and follow the course template."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ABS_PATH = re.compile(r"(?<![\w.:/~-])/(?:home|root|tmp|work|Users|usr|opt|mnt|content)/[\w.-]+")


def _code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def test_notebooks_exist():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_in_order_without_errors_or_stderr(path):
    nb = json.loads(path.read_text())
    counts = [c["execution_count"] for c in _code_cells(nb)]
    assert None not in counts, "commit notebooks executed top to bottom"
    assert counts == list(range(1, len(counts) + 1)), "execution counts must come from one clean run"
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
