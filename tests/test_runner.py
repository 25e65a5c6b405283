"""The experiment runner (mlcak_lib.runner): a tiny grid end to end, caching, summaries, user errors."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mlcak_lib import config, results, runner
from mlcak_lib.runner import GridSpec, RunnerError
from mlcak_lib.variants import get_variant

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
    # localization of every model (attention rollout); local-head maps only for the teacher, which learns the
    # local task (issue 13): these student variants have no local head
    assert df["loc_rollout_pointing[all]"].between(0, 1).all() and "loc_rollout_mass_in_box[< 10 mm]" in df.columns
    local_cols = [c for c in df.columns if c.startswith("loc_local_")]
    assert local_cols and df.loc[df["run"] == "student", local_cols].isna().all().all()
    assert df.loc[df["run"] == "teacher", local_cols].notna().any().any()
    values = df["mcct_auroc"].to_numpy(dtype=float)
    assert np.all((values >= 0) & (values <= 1))
    assert students["config_hash"].nunique() == 2  # every run has its own configuration
    assert (students["teacher_mcct_auroc"] == teacher["mcct_auroc"].iloc[0]).all()
    assert set(df["dataset"]) == {"synth"} and set(df["profile"]) == {"default"}
    md = (tiny_grid / "grid_default-tiny.md").read_text()
    assert "| mlcak | 28 | 1 |" in md and "gap" in md.lower()


def test_csv_holds_only_the_weights_that_act(tiny_grid):
    df = pd.read_csv(tiny_grid / "grid_default-tiny.csv").set_index("variant")
    mlcak = get_variant("mlcak", "default").active_weights()
    assert sorted(mlcak) == ["alpha", "beta", "gamma", "levels"]
    for weight, value in mlcak.items():
        assert df.loc["mlcak", weight] == pytest.approx(value)
        assert np.isnan(df.loc["baseline", weight]) and np.isnan(df.loc["teacher", weight])  # labels only
    assert "temperature" not in df.columns and "lambda_local" not in df.columns  # no variant here uses them


def test_cached_files_carry_the_dataset(tiny_grid):
    df = pd.read_csv(tiny_grid / "grid_default-tiny.csv")
    models = config.cache_dir() / "models"
    for _, row in df.iterrows():
        stem = ("teacher-synth-default" if row["run"] == "teacher"
                else f"student-synth-default-{row['variant']}-r{row['resolution']}")
        assert (models / f"{stem}-{row['config_hash']}.pt").is_file(), stem


def test_rerun_uses_the_cache(tiny_grid):
    df = runner.run_grid(GridSpec("default", ["mlcak"], [28], [0], tiny=True), out=None, progress=False)
    assert bool(df[df["run"] == "student"]["cache_hit"].all())
    old = pd.read_csv(tiny_grid / "grid_default-tiny.csv")
    same = old[(old["variant"] == "mlcak") & (old["seed"] == 0)]
    assert float(same["mcct_auroc"].iloc[0]) == pytest.approx(float(df["mcct_auroc"].iloc[1]), abs=1e-5)


def test_summarize_gap_recovered(tiny_grid):
    df = pd.read_csv(tiny_grid / "grid_default-tiny.csv")
    students = df[df["run"] == "student"].copy()
    students["seed"] = 1  # a second seed with shifted scores
    students["mcct_auroc"] = students["mcct_auroc"] + 0.02
    table = results.summarize_grid(pd.concat([df, students]))
    assert list(table["variant"]) == ["teacher", "baseline", "mlcak"]
    base = table[table["variant"] == "baseline"]
    assert base["n_seeds"].iloc[0] == 2 and base["mcct_auroc_std"].iloc[0] == pytest.approx(0.02 / np.sqrt(2), abs=1e-6)
    gap = base["gap_mcct_auroc"].iloc[0]
    assert np.isnan(gap) or gap == pytest.approx(0.0)
    assert results.gap_recovered(0.8, 0.7, 0.9) == pytest.approx(0.5)
    assert np.isnan(results.gap_recovered(0.8, 0.9, 0.85))
    assert "± " in results.markdown_table(table)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--variants", "fitnet"], "Unknown variant 'fitnet'"),
        (["--resolutions", "30"], "cannot serve the teacher's 7x7 token grid"),
        (["--resolutions", "42"], "cannot serve the teacher's 7x7 token grid"),
        (["--resolutions", "448"], "below the teacher"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--dataset", "mnist"], "unknown dataset 'mnist'"),
        (["--profile", "fast"], "Unknown profile 'fast'"),
        (["--variants", "baseline", "fitnet"], "Unknown variant 'fitnet'"),
        (["--resolutions", "28", "30"], "cannot serve the teacher's 7x7 token grid"),
        (["--students", "huge"], "unknown student architecture 'huge'"),
        (["--students", "small", "--variants", "mlcak", "--weights", "levels=4"], "the small student has 2 blocks"),
        (["--weights", "levels"], "NAME=VALUE"),
        (["--train-films", "0"], "--train-films must be a positive number"),
        (["--weights", "attn_loss=l1"], "unknown attn_loss 'l1'"),
    ],
)
def test_user_errors_are_one_line(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("MLCAK_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert runner.main(["--quiet", "--tiny", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
    assert not (tmp_path / "cache" / "models").exists()  # checked before any training


def test_grid_spec_check_resolves_every_request():
    spec = GridSpec(None, ["MLCAK", "baseline", "mlcak"], [56, 28, 28], (1,), "SYNTH").check()
    assert spec.profile == "default" and spec.dataset == "synth"
    assert spec.variants == ["mlcak", "baseline"] and spec.resolutions == [28, 56] and spec.seeds == [1]
    assert spec.sizes is None and spec.default_tag() == "default"
    tiny = GridSpec("default", ["mlcak"], [28], [0], tiny=True, epochs=3, weights={"gamma": 5.0}).check()
    assert tiny.sizes == runner.TINY["sizes"] and tiny.default_tag() == "default-tiny"
    assert tiny.student_config().epochs == runner.TINY["epochs"] and tiny.teacher_config().epochs == runner.TINY["epochs"]
    assert tiny.variant("mlcak").gamma == 5.0 and tiny.variant("output-kd").gamma == 0
    assert GridSpec("default", epochs=3).check().student_config().epochs == 3
    assert GridSpec("default").check().teacher_config() is None  # the profile's own teacher settings
    more = GridSpec("default", train_films=9000).check()
    assert more.sizes == {"train": 9000} and more.teacher_sizes is None and more.default_tag() == "default-n9000"
    for bad, message in [(dict(teacher_mode="reuse"), "unknown teacher mode"), (dict(seeds=[]), "at least one seed"),
                         (dict(dataset="mnist"), "unknown dataset")]:
        with pytest.raises(RunnerError, match=message):
            GridSpec("default", **bad).check()


def test_check_student_resolutions():
    assert runner.check_student_resolutions([112, 28, 28]) == [112, 28]
    with pytest.raises(RunnerError, match="below the teacher"):
        runner.check_student_resolutions([224])
    with pytest.raises(RunnerError, match="cannot serve"):
        runner.check_student_resolutions([35])


def test_load_only_without_cached_teacher(tmp_path, monkeypatch):
    monkeypatch.setenv("MLCAK_CACHE_DIR", str(tmp_path / "empty-cache"))
    proc = subprocess.run(
        [sys.executable, "-m", "mlcak_lib.runner", *TINY_ARGS, "--teacher-mode", "load-only", "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "no cached teacher" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_grid_spec_check_rejects_unknown_weights():
    with pytest.raises(RunnerError, match="unknown weight"):
        GridSpec("default", ["mlcak"], [28], [0], tiny=True, weights={"gama": 5.0}).check()


def test_students_curves_cost_and_paired_report(tmp_path):
    """Two architectures x two seeds: the CSV names the student, the curves hold every epoch, the cost table every
    model, and the report pairs each variant with the baseline of the same architecture."""
    out = tmp_path / "r"
    assert runner.main(["--tiny", "--quiet", "--resolutions", "28", "--seeds", "0", "1", "--variants", "baseline", "mlcak",
                        "--students", "standard", "small", "--weights", "attn_loss=kl", "attn_rows=cls",
                        "--out", str(out)]) == 0
    df = pd.read_csv(out / "grid_default-tiny.csv")
    students = df[df["run"] == "student"]
    assert len(students) == 2 * 2 * 2 and set(students["student"]) == {"standard", "small"}
    small, standard = (students[students["student"] == a] for a in ("small", "standard"))
    assert small["mflops"].max() < 0.5 * standard["mflops"].min() and small["params"].max() < standard["params"].min()
    mlcak = students[students["variant"] == "mlcak"]
    assert set(mlcak["attn_loss"]) == {"kl"} and set(mlcak["attn_rows"]) == {"cls"}
    curves = pd.read_csv(out / "curves_default-tiny.csv")
    assert len(curves) == students["epochs"].sum() and {"val_score", "train_loss", "epoch"} <= set(curves.columns)
    cost = pd.read_csv(out / "cost_default-tiny.csv")
    assert list(cost["model"]) == ["teacher", "student (standard)", "student (small)"]
    assert (cost["latency_ms"] > 0).all() and cost["mflops"].iloc[0] > cost["mflops"].iloc[1] > cost["mflops"].iloc[2]
    paired = pd.read_csv(out / "paired_default-tiny.csv")
    assert set(paired["model"]) == {"mlcak", "mlcak (small)"} and set(paired["n"]) == {2}
    row = paired[(paired["model"] == "mlcak") & (paired["metric"] == "mcct_auroc")].iloc[0]
    by_seed = standard.pivot(index="seed", columns="variant", values="mcct_auroc")
    assert row["diff"] == pytest.approx(float((by_seed["mlcak"] - by_seed["baseline"]).mean()), abs=1e-5)
    md = (out / "grid_default-tiny.md").read_text()
    assert "Seed-paired differences" in md and "| mlcak (small) | 28 |" in md
    fig = results.plot_curves(curves, ["baseline", "mlcak"], 28)
    assert len(fig.axes[0].lines) == 2 * 2 * 2  # a curve and a kept-epoch dot per run
    table = results.summarize_grid(df)
    fig = results.plot_cost_accuracy(table, cost)
    assert fig.axes[0].get_xscale() == "log" and len(fig.axes[0].containers) == 3  # teacher, baseline, mlcak


def test_merge_grids_run_side_by_side(tmp_path):
    """Two parts (different seeds) merge into one grid with one teacher row, the curves of both and a report;
    a run in both parts is refused."""
    common = ["--tiny", "--quiet", "--resolutions", "28", "--variants", "baseline", "mlcak"]
    assert runner.main([*common, "--seeds", "0", "--tag", "p0", "--out", str(tmp_path)]) == 0
    assert runner.main([*common, "--seeds", "1", "--tag", "p1", "--out", str(tmp_path)]) == 0
    parts = [str(tmp_path / "grid_p0.csv"), str(tmp_path / "grid_p1.csv")]
    assert runner.main(["--quiet", "--merge", *parts, "--tag", "both", "--out", str(tmp_path)]) == 0
    merged = pd.read_csv(tmp_path / "grid_both.csv")
    assert (merged["run"] == "teacher").sum() == 1 and len(merged) == 1 + 4
    assert set(pd.read_csv(tmp_path / "curves_both.csv")["seed"]) == {0, 1}
    assert (tmp_path / "cost_both.csv").is_file() and "Seed-paired" in (tmp_path / "grid_both.md").read_text()
    with pytest.raises(RunnerError, match="in more than one part"):
        runner.merge_grids([parts[0], parts[0]], tmp_path, "twice")
