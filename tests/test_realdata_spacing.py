"""Pixel spacing for PNG/JPEG folders (issue 15): without one, lesion sizes in mm (``box_mm``) are unknown;
with ``MLCAK_PIXEL_SPACING_MM``, the ``pixel_spacing_mm=`` argument or a ``pixel_spacing_mm`` column they
are computed. A DICOM's own PixelSpacing always wins; bad values raise with a clear message."""

import numpy as np
import pandas as pd
import pytest
import torch

from fixtures_realdata import cache_tmp, folder_root  # noqa: F401  (pytest fixtures)
from mlcak_lib import config, dataswitch
from mlcak_lib.realdata import DataFormatError, FolderDataset
from mlcak_lib.realdata.preprocess import preprocess

# make_folder: gray.png / rgbgray.png (train) and photo.jpg (val) carry a 30 x 30 px box; scan.dcm (test) is a
# DICOM with PixelSpacing 0.5 (rows) x 0.4 (columns) mm and a 30 x 30 px box
BOX_PX = 30.0


@pytest.fixture(autouse=True)
def no_spacing_env(monkeypatch):
    monkeypatch.delenv(config.ENV_PIXEL_SPACING, raising=False)


def _mm(ds) -> dict[str, np.ndarray]:
    return {rec.key: ds[i]["box_mm"].numpy() for i, rec in enumerate(ds.records)}


def test_png_jpeg_sizes_unknown_without_a_spacing(folder_root):
    train = _mm(FolderDataset("train", (28,), folder_root))
    assert np.isnan(train["imgs/gray.png"]).all() and len(train["imgs/gray.png"]) == 1
    assert np.isnan(_mm(FolderDataset("val", (28,), folder_root))["imgs/photo.jpg"]).all()


def test_environment_variable_gives_png_and_jpeg_sizes(folder_root, monkeypatch):
    monkeypatch.setenv(config.ENV_PIXEL_SPACING, "0.2")
    train = _mm(FolderDataset("train", (28,), folder_root))
    assert train["imgs/gray.png"] == pytest.approx([BOX_PX * 0.2], abs=1e-3)
    assert train["imgs/rgbgray.png"] == pytest.approx([BOX_PX * 0.2], abs=1e-3)
    assert _mm(FolderDataset("val", (28,), folder_root))["imgs/photo.jpg"] == pytest.approx([6.0], abs=1e-3)
    # row\column spacing, as DICOM writes it: the longer side in mm (30 px x 0.5 mm per column)
    monkeypatch.setenv(config.ENV_PIXEL_SPACING, "0.2\\0.5")
    assert _mm(FolderDataset("train", (28,), folder_root))["imgs/gray.png"] == pytest.approx([15.0], abs=1e-3)


def test_dicom_spacing_wins_over_the_setting(folder_root, monkeypatch):
    monkeypatch.setenv(config.ENV_PIXEL_SPACING, "0.2")
    mm = _mm(FolderDataset("test", (28,), folder_root))["imgs/scan.dcm"]
    assert mm == pytest.approx([BOX_PX * 0.5], abs=1e-3)  # the header's 0.5 x 0.4 mm, not 0.2


def test_argument_and_column_precedence(folder_root, monkeypatch):
    monkeypatch.setenv(config.ENV_PIXEL_SPACING, "0.2")
    ds = FolderDataset("train", (28,), folder_root, pixel_spacing_mm=0.1)  # the argument beats the variable
    assert ds.pixel_spacing_mm == (0.1, 0.1)
    assert _mm(ds)["imgs/gray.png"] == pytest.approx([3.0], abs=1e-3)
    df = pd.read_csv(folder_root / "labels.csv")
    df["pixel_spacing_mm"] = ["0.3", "", "", "1", "", ""]  # gray.png 0.3; rgbgray.png empty -> argument
    df.to_csv(folder_root / "spaced.csv", index=False)
    ds = FolderDataset("train", (28,), folder_root, csv="spaced.csv", pixel_spacing_mm=0.1)
    assert ds.class_names == ("Nodule", "Effusion")  # a column of 1s is not mistaken for a finding
    mm = _mm(ds)
    assert mm["imgs/gray.png"] == pytest.approx([9.0], abs=1e-3)
    assert mm["imgs/rgbgray.png"] == pytest.approx([3.0], abs=1e-3)
    assert mm["imgs/deep.png"] == pytest.approx([30.0], abs=1e-3)  # 1 mm per pixel, from the column


@pytest.mark.parametrize("value", ["abc", "0", "-0.1", "nan", "inf", "0,14", "0.1 0.2 0.3"])
def test_bad_environment_value_is_a_clear_error(folder_root, monkeypatch, value):
    monkeypatch.setenv(config.ENV_PIXEL_SPACING, value)
    with pytest.raises(ValueError, match="MLCAK_PIXEL_SPACING_MM: pixel spacing must be a positive number"):
        FolderDataset("train", (28,), folder_root)


@pytest.mark.parametrize("value", [0, -1.5, "x"])
def test_bad_argument_is_a_clear_error(folder_root, value):
    with pytest.raises(ValueError, match="pixel_spacing_mm: pixel spacing must be a positive number"):
        FolderDataset("train", (28,), folder_root, pixel_spacing_mm=value)


@pytest.mark.parametrize("value", ["zero", "-0.2", "0"])
def test_bad_column_value_names_file_column_and_row(folder_root, value):
    df = pd.read_csv(folder_root / "labels.csv")
    df["pixel_spacing_mm"] = ["0.2", "0.2", value, "0.2", "0.2", "0.2"]
    df.to_csv(folder_root / "bad.csv", index=False)
    with pytest.raises(DataFormatError, match=r"labels CSV bad\.csv, column pixel_spacing_mm, row 4: pixel spacing"):
        FolderDataset("train", (28,), folder_root, csv="bad.csv")


def test_parse_pixel_spacing_forms():
    assert config.parse_pixel_spacing("0.14", "x") == (0.14, 0.14)
    assert config.parse_pixel_spacing(" 0.14\\0.15 ", "x") == (0.14, 0.15)
    assert config.parse_pixel_spacing("0.14 0.15", "x") == (0.14, 0.15)
    assert config.parse_pixel_spacing((0.1, 0.2), "x") == (0.1, 0.2)
    assert config.parse_pixel_spacing(0.5, "x") == (0.5, 0.5)
    for unknown in (None, "", "  ", float("nan")):
        assert config.parse_pixel_spacing(unknown, "x") is None


def test_spacing_applies_to_preprocessed_images_and_splits(folder_root, cache_tmp, monkeypatch):
    """The cache stores the file's own spacing (none for PNG); the setting is applied when items are read,
    so a spacing given after preprocessing still counts, and it reaches the splits the runner evaluates."""
    rep = preprocess("folder", folder_root, sizes=(224,), progress=False)
    assert rep.converted == 6 and not rep.failed
    monkeypatch.setenv(config.ENV_PIXEL_SPACING, "0.2")
    ds = FolderDataset("train", (28,), folder_root)
    assert ds._entry(ds.records[0]).is_file()  # read from the cache
    assert _mm(ds)["imgs/gray.png"] == pytest.approx([6.0], abs=1e-3)
    monkeypatch.setenv("MLCAK_DATA_ROOT", str(folder_root))
    dataswitch._SPLIT_MEMO.clear()
    try:
        split = dataswitch.get_splits((28,), dataset="folder", splits=("train",))["train"]
        sizes = torch.cat([m.reshape(-1) for m in split.box_mm])
        assert len(sizes) and torch.isfinite(sizes).all()
    finally:
        dataswitch._SPLIT_MEMO.clear()
