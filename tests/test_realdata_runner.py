"""Real data end to end: the runner's tiny grid and notebook 04's data section on fixture data of
every layout (VinDr-CXR PhysioNet, VinDr-CXR Kaggle, MedMNIST+ npz, folder + CSV), chosen by the
one switch (``MLCAK_DATASET`` + ``MLCAK_DATA_ROOT``)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fixtures_realdata import make_folder, make_kaggle, make_medmnist, make_physionet
from mlcak_lib import dataswitch, runner

NOTEBOOK_04 = Path(__file__).resolve().parents[1] / "notebooks" / "04_teacher_training.ipynb"

LAYOUTS = {
    # label: (switch value, fixture writer, has boxes)
    "vindr-physionet": ("vindr", make_physionet, True),
    "vindr-kaggle": ("vindr", make_kaggle, True),
    "medmnist-npz": ("chestmnist", lambda root: make_medmnist(root, "chestmnist", sizes=(28, 224)), False),
    "folder-csv": ("folder", make_folder, True),
}


@pytest.fixture(params=list(LAYOUTS))
def layout(request, tmp_path, monkeypatch):
    name, make, boxes = LAYOUTS[request.param]
    root = make(tmp_path / request.param)
    monkeypatch.setenv("MLCAK_DATASET", name)
    monkeypatch.setenv("MLCAK_DATA_ROOT", str(root))
    monkeypatch.setenv("MLCAK_CACHE_DIR", str(tmp_path / "cache"))
    dataswitch._SPLIT_MEMO.clear()
    return name, boxes, tmp_path


def test_runner_tiny_grid_on_real_data(layout):
    name, boxes, tmp = layout
    variants = ["baseline", "mlcak"] + (["multitask"] if boxes else [])
    out = tmp / "results"
    assert runner.main(["--tiny", "--quiet", "--resolutions", "28", "--seeds", "0", "--variants", *variants,
                        "--out", str(out)]) == 0
    df = pd.read_csv(out / "grid_default-tiny.csv")
    assert list(df["variant"]) == ["teacher", *variants]
    assert set(df["dataset"]) == {name} and (df["n_train"] > 0).all()
    assert df["config_hash"].nunique() == len(df)
    values = df["mcct_auroc"].dropna().to_numpy()
    assert np.all((values >= 0) & (values <= 1))
    loc_cols = [c for c in df.columns if c.startswith("loc_")]
    assert bool(loc_cols) == boxes  # localization metrics exactly when the data has boxes
    if boxes:
        assert "loc_local_token_auroc[all]" in df.columns
        assert df.loc[df["variant"] == "multitask", "loc_local_token_auroc[all]"].notna().all()
    assert (out / "grid_default-tiny.png").stat().st_size > 1000
    # cached models carry the dataset in their file names
    models = tmp / "cache" / "models"
    for _, row in df.iterrows():
        stem = (f"teacher-{name}-default" if row["run"] == "teacher"
                else f"student-{name}-default-{row['variant']}-r{row['resolution']}")
        assert (models / f"{stem}-{row['config_hash']}.pt").is_file(), stem
    assert len(list(models.glob("*.pt"))) == len(df)


def _run_on_medmnist(tmp_path, monkeypatch, capsys, sizes, *variants):
    """The runner's tiny grid on MedMNIST+ fixture files of ``sizes``: (exit status, stderr)."""
    root = make_medmnist(tmp_path / "mm", "chestmnist", sizes=sizes)
    monkeypatch.setenv("MLCAK_DATA_ROOT", str(root))
    monkeypatch.setenv("MLCAK_CACHE_DIR", str(tmp_path / "cache"))
    dataswitch._SPLIT_MEMO.clear()
    rc = runner.main(["--tiny", "--quiet", "--dataset", "chestmnist", "--resolutions", "28", "--seeds", "0",
                      "--variants", *variants, "--out", str(tmp_path / "out")])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("variants", [["multitask"], ["baseline", "mlcak", "mlcak-mt"]])
def test_runner_rejects_the_local_task_without_boxes(tmp_path, monkeypatch, capsys, variants):
    rc, err = _run_on_medmnist(tmp_path, monkeypatch, capsys, (28, 224), *variants)
    assert rc == 2 and "has no lesion boxes" in err and variants[-1] in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    # every request is checked before any work: no teacher, no student, no output
    models = tmp_path / "cache" / "models"
    assert not models.exists() or not any(models.iterdir())
    assert not (tmp_path / "out").exists()


def test_runner_says_which_file_medmnist_lacks(tmp_path, monkeypatch, capsys):
    rc, err = _run_on_medmnist(tmp_path, monkeypatch, capsys, (28, 64), "baseline")  # no 224 px file: no teacher
    assert rc == 1 and "64-px images" in err and "chestmnist_224.npz" in err and "Traceback" not in err


def _section_code(nb_path: Path, heading: str) -> list[str]:
    """The notebook's import cell and the code cells of the section that starts with ``heading``."""
    cells = json.loads(nb_path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    imports = next("".join(c["source"]) for c in code if "from mlcak_lib" in "".join(c["source"]))
    out, inside = [imports], False
    for c in cells:
        src = "".join(c["source"])
        if c["cell_type"] == "markdown" and src.startswith("## "):
            inside = src.startswith(heading)
        elif inside and c["cell_type"] == "code":
            out.append(src)
    return out


def test_notebook_04_data_section_runs_with_the_switch_set(layout, capsys):
    name, _, _ = layout
    cells = _section_code(NOTEBOOK_04, "## 1 · The data")
    assert len(cells) >= 3 and any("get_splits" in c for c in cells)
    namespace: dict = {}
    for src in cells:
        exec(compile(src, "notebook-04", "exec"), namespace)  # noqa: S102 - the notebook's own code
    printed = capsys.readouterr().out
    assert f"dataset: {name}" in printed and "split sizes:" in printed
    assert namespace["tr"].images[224].shape[1:] == (1, 224, 224)
    assert namespace["names"] == dataswitch.dataset_class_names(name)
