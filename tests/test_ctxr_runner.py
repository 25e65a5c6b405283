"""Notebook 08's runner (mlcak_lib.ctxr_runner): a --tiny grid writes the CSV and the table; the variants come from
the one registry (mlcak_lib.ctxr.recipe.CTXR_VARIANTS)."""

import ast
from pathlib import Path

import pandas as pd
import pytest

from mlcak_lib import cache, ctxr_runner
from mlcak_lib.ctxr import recipe

VARIANTS = list(recipe.CTXR_VARIANTS)
#: Variant names that are also the objective's term names (losses.objective): a literal of these alone lists terms.
TERM_NAMES = frozenset({"contrastive", "pairwise", "relation"})


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ctxr")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLCAK_CACHE_DIR", str(folder / "cache"))
        args = ["--tiny", "--variants", recipe.REFERENCE, recipe.HEADLINE, "--seeds", "0", "1", "--out", str(folder),
                "--threads", "1", "--quiet"]
        assert ctxr_runner.main(args) == 0
    return folder


def test_tiny_run_writes_the_csv_and_the_table(tiny_grid):
    df = pd.read_csv(tiny_grid / "ctxr_default-tiny.csv")
    assert len(df) == 4 and set(df["variant"]) == {recipe.REFERENCE, recipe.HEADLINE}
    needed = {"variant", "seed", "fn_correction", "pairwise", "relation", "zs_macro_auroc", "R@1", "R@5", "R@10",
              "R@1|same", "R@10|same", "ft_macro_auroc", "val_zs_macro_auroc", "best_step", "config_hash", "cache_hit",
              "train_seconds", "wall_seconds", "git_rev", "ctxr_code", "expert_hash", "settings", "n_test"}
    assert needed <= set(df.columns)
    assert df["n_test"].eq(recipe.TINY_DATA.test).all() and df["expert_hash"].nunique() == 1
    md = (tiny_grid / "ctxr_default-tiny.md").read_text()
    assert "Seed-paired differences against " + recipe.REFERENCE in md and "95 %" in md
    assert f"{recipe.HEADLINE} minus {recipe.REFERENCE} on zero-shot macro AUROC" in md
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len({line.count("|") for line in table if "Δ" in line or "[" in line}) == 1  # no "|" inside a cell


def test_merge_joins_runs_and_a_later_row_wins(tiny_grid, tmp_path):
    df = pd.read_csv(tiny_grid / "ctxr_default-tiny.csv")
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    df.iloc[:2].to_csv(a, index=False)
    later = df.copy()
    later["wall_seconds"] = -1.0
    later.to_csv(b, index=False)
    assert ctxr_runner.main(["--merge", str(a), str(b), "--out", str(tmp_path), "--tag", "m", "--quiet"]) == 0
    merged = pd.read_csv(tmp_path / "ctxr_m.csv")
    assert len(merged) == 4 and merged["wall_seconds"].eq(-1.0).all()


def test_the_variants_registry_drives_the_runner():
    assert ctxr_runner.build_parser().parse_args([]).variants == VARIANTS
    with pytest.raises(SystemExit, match="choose from"):
        ctxr_runner.run_grid(["no-such-variant"], [0])
    assert "ctxr_runner" in cache.NOT_MODEL_CODE and "ctxr_runner" not in cache.MODEL_CODE


def test_no_literal_lists_of_variant_names_outside_the_registry():
    root = Path(ctxr_runner.__file__).parent
    files = [root / "ctxr_runner.py", *sorted((root / "ctxr").glob("*.py"))]
    files += sorted(Path(__file__).parent.glob("test_ctxr_*.py"))
    names = set(VARIANTS)
    for path in files:
        if path.name == "recipe.py" and path.parent.name == "ctxr":
            continue  # the registry itself
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            items = node.elts if isinstance(node, (ast.List, ast.Tuple, ast.Set)) else (
                [k for k in node.keys if k is not None] if isinstance(node, ast.Dict) else [])
            hits = {i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)} & names
            assert len(hits) < 2 or not hits - TERM_NAMES, f"{path.name}:{node.lineno} lists variants {sorted(hits)}: take them from CTXR_VARIANTS"
