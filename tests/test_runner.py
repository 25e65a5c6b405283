"""The experiment runner (mlcak_lib.runner): a tiny grid end to end, caching, summaries, user errors."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mlcak_lib import runner

TINY_ARGS = ["--tiny", "--quiet", "--resolutions", "28", "--seeds", "0", "--variants", "baseline", "mlcak"]


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    assert runner.main([*TINY_ARGS, "--out", str(out)]) == 0
    return out


def test_tiny_grid_writes_tidy_csv_figure_and_table(tiny_grid):
    csv = tiny_grid / "grid_default-tiny.csv"
    assert csv.exists() and (tiny_grid / "grid_default-tiny.png").stat().st_size > 1000
    df = pd.read_csv(csv)
    assert len(df) == 1 + 2  # teacher + variants x seeds
    teacher = df[df["variant"] == "teacher"]
    assert len(teacher) == 1 and teacher["resolution"].iloc[0] == 224
    students = df[df["run"] == "student"]
    assert sorted(students["variant"].unique()) == ["baseline", "mlcak"]
    assert set(students["seed"]) == {0} and set(students["resolution"]) == {28}
    for col in ("mcct_auroc", "mlct_macro_auroc", "teacher_mcct_auroc", "teacher_mlct_macro_auroc", "config_hash", "data_hash",
                "git_rev", "git_dirty", "cpu_model", "cpu_cores", "torch_threads", "device", "wall_seconds",
                "auroc_size[< 10 mm]", "auroc_size[>= 20 mm]"):
        assert col in df.columns, col
    assert any(c.startswith("auroc[") for c in df.columns)
    # localization of every model (attention rollout; no local head in these variants)
    assert df["loc_rollout_pointing[all]"].between(0, 1).all() and "loc_rollout_mass_in_box[< 10 mm]" in df.columns
    assert not any(c.startswith("loc_local_") for c in df.columns)
    values = df["mcct_auroc"].to_numpy(dtype=float)
    assert np.all((values >= 0) & (values <= 1))
    assert students["config_hash"].nunique() == 2  # every run has its own configuration
    assert (students["teacher_mcct_auroc"] == teacher["mcct_auroc"].iloc[0]).all()
    md = (tiny_grid / "grid_default-tiny.md").read_text()
    assert "| mlcak | 28 | 1 |" in md and "gap" in md.lower()


def test_rerun_uses_the_cache(tiny_grid):
    df = runner.run_grid("default", ["mlcak"], [28], [0], out=None, tiny=True, progress=False)
    assert bool(df[df["run"] == "student"]["cache_hit"].all())
    old = pd.read_csv(tiny_grid / "grid_default-tiny.csv")
    same = old[(old["variant"] == "mlcak") & (old["seed"] == 0)]
    assert float(same["mcct_auroc"].iloc[0]) == pytest.approx(float(df["mcct_auroc"].iloc[1]), abs=1e-5)


def test_summarize_gap_recovered(tiny_grid):
    df = pd.read_csv(tiny_grid / "grid_default-tiny.csv")
    students = df[df["run"] == "student"].copy()
    students["seed"] = 1  # a second seed with shifted scores
    students["mcct_auroc"] = students["mcct_auroc"] + 0.02
    table = runner.summarize(pd.concat([df, students]))
    assert list(table["variant"]) == ["teacher", "baseline", "mlcak"]
    base = table[table["variant"] == "baseline"]
    assert base["n_seeds"].iloc[0] == 2 and base["mcct_auroc_std"].iloc[0] == pytest.approx(0.02 / np.sqrt(2), abs=1e-6)
    gap = base["gap_mcct_auroc"].iloc[0]
    assert np.isnan(gap) or gap == pytest.approx(0.0)
    assert runner.gap_recovered(0.8, 0.7, 0.9) == pytest.approx(0.5)
    assert np.isnan(runner.gap_recovered(0.8, 0.9, 0.85))
    assert "± " in runner.markdown_table(table)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--variants", "fitnet"], "Unknown variant 'fitnet'"),
        (["--resolutions", "30"], "cannot serve the teacher's 7x7 token grid"),
        (["--resolutions", "42"], "cannot serve the teacher's 7x7 token grid"),
        (["--resolutions", "448"], "below the teacher"),
        (["--epochs", "0"], "--epochs must be at least 1"),
    ],
)
def test_user_errors_are_one_line(capsys, tmp_path, args, message):
    assert runner.main(["--quiet", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_load_only_without_cached_teacher(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCAK_CACHE_DIR", str(tmp_path / "empty-cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "mlcak_lib.runner", *TINY_ARGS, "--teacher-mode", "load-only", "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "no cached teacher" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
