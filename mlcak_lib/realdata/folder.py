"""Your own data: a folder of images plus a CSV (notebook 03).

Layout: ``root/labels.csv`` (or ``root`` pointing at the CSV itself, or ``csv=``), optional
``root/boxes.csv`` (or ``boxes_csv=``); image paths are relative to the CSV's folder (absolute
paths work too).

``labels.csv`` columns (names are case-insensitive):

=================  ============================================================================
column             meaning
=================  ============================================================================
``path``           image file: PNG, JPEG (8 or 16 bit, grayscale, or RGB with equal channels --
                   a genuinely colour image is an error) or DICOM (``.dcm``/``.dicom``, read with
                   ``mlcak_lib.dicom.read_dicom``: windowed, MONOCHROME1 inverted). PNG/JPEG
                   must already be bone bright. Any size.
``split``          optional: ``train`` / ``val`` / ``test`` (also ``valid``, ``validation``,
                   ``dev``, ``testing``). Without it: a seeded split, ``fractions`` (default
                   0.8 / 0.1 / 0.1, ``seed`` 0).
finding columns    one 0/1 column per local finding (``mlct``, in column order); empty = 0;
                   any other value (e.g. -1 "uncertain") is an error. By default every column
                   other than path/split/normal/abnormal/labels/patient_id/id/image_id/
                   pixel_spacing_mm whose values are all -1, 0, 1 or empty;
                   ``finding_cols=[...]`` names them explicitly.
``labels``         optional alternative: findings separated by ``|`` (NIH style, ``"Effusion|Nodule"``);
                   ``No finding`` or empty = none.
``abnormal``       optional 0/1 global state (``mcct``); or ``normal`` (``mcct = 1 - normal``).
                   Without either: ``mcct = 1`` when any finding is set. With only this column
                   (no findings), ``mlct`` has one class, ``Abnormal`` (= ``mcct``).
=================  ============================================================================

Optional ``pixel_spacing_mm`` column: millimetres per pixel of that file, ``0.14`` (square pixels)
or ``0.14\\0.15`` (row\\column, as DICOM's PixelSpacing); empty = unknown (see *Lesion sizes*).

``boxes.csv`` columns: ``path, class_name, x_min, y_min, x_max, y_max`` in pixels of the
ORIGINAL image (``path`` as in ``labels.csv``; ``class_name`` must be a finding; a box also
sets its finding in ``mlct``). Without finding columns, the finding classes are the box class
names (sorted).

Geometry: ``square="pad"`` (default; pad to a centred square with black), ``"crop"`` (central
square) or ``"stretch"``, then ``area_resize`` to ``image_size`` (224); see
:mod:`mlcak_lib.realdata.common`. Boxes follow the same map.

*Lesion sizes* (``box_mm``, the longer box side in mm; the ``< 10 mm`` ... columns of the results) need
the file's pixel spacing. A DICOM's own PixelSpacing always wins; a file without one (PNG/JPEG) takes
its row's ``pixel_spacing_mm`` cell, else the folder-wide ``pixel_spacing_mm=`` argument, else
``$MLCAK_PIXEL_SPACING_MM`` (:func:`mlcak_lib.config.pixel_spacing_mm`), else ``box_mm`` is NaN and
the size columns read n/a. Bad values (not a number, zero, negative) raise.

Rows whose image is missing are skipped and reported (``dataset.skipped``); convert large folders once with
``python -m mlcak_lib.realdata.preprocess --dataset folder --root ...``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import config
from .common import (ImageFileDataset, Record, drop_invalid_table_boxes, normalize_name, normalize_split, read_table,
                     seeded_split)
from .errors import DataFormatError, DataReport, DatasetNotFoundError

DEFAULT_CSV = "labels.csv"
DEFAULT_BOXES_CSV = "boxes.csv"
SPACING_COLUMN = "pixel_spacing_mm"
RESERVED_COLUMNS: tuple[str, ...] = ("path", "split", "normal", "abnormal", "labels", "patient_id", "id", "image_id",
                                     SPACING_COLUMN)
NO_FINDING_NAMES: tuple[str, ...] = ("", "no finding", "no findings", "normal", "none")
HOW_TO_GET = (
    "Make a folder with your images and a labels.csv (columns: path, optional split, 0/1 finding "
    "columns and/or abnormal or normal, optional boxes.csv with path, class_name, x_min, y_min, "
    "x_max, y_max); see docs/own_data.md in the course repository."
)


def find_folder_csv(root: str | os.PathLike, csv: str | os.PathLike | None = None) -> Path:
    """The labels CSV: ``csv`` if given, ``root`` when it is a CSV file, else ``root/labels.csv``."""
    root = Path(root).expanduser()
    if csv is not None:
        path = Path(csv).expanduser()
        path = path if path.is_absolute() or path.is_file() else root / path
    else:
        path = root if root.suffix.lower() == ".csv" else root / DEFAULT_CSV
    if not path.is_file():
        raise DatasetNotFoundError(
            f"Image folder dataset not found: no labels CSV at {path} (resolved from root= or "
            f"MLCAK_DATA_ROOT = {root}). {HOW_TO_GET}")
    return path


class FolderDataset(ImageFileDataset):
    """One split of a folder of images described by a CSV (conventions in the module docstring)."""

    dataset_name = "folder"

    def __init__(self, split: str, resolutions: Sequence[int] = (28,), root: str | os.PathLike | None = None, *,
                 csv: str | os.PathLike | None = None, boxes_csv: str | os.PathLike | None = None,
                 finding_cols: Sequence[str] | None = None, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                 seed: int = 0, image_size: int = 224, square: str = "pad", size: int | None = None,
                 use_cache: bool = True, scan: bool = False, on_invalid_box: str = "skip", token_grid: int | None = None,
                 pixel_spacing_mm: float | str | tuple[float, float] | None = None):
        split = normalize_split(split)
        #: spacing (mm) of files that carry none, for every row without its own pixel_spacing_mm cell
        self.pixel_spacing_mm = config.pixel_spacing_mm(pixel_spacing_mm)
        self.token_grid = token_grid
        self.root = config.data_root(root)
        self.csv_path = find_folder_csv(self.root, csv)
        folder = self.csv_path.parent
        report = DataReport(dataset=f"folder {split}")
        df = read_table(self.csv_path, ["path"], "labels CSV")
        cols = {normalize_name(c): c for c in df.columns}
        df["path"] = df["path"].astype(str).str.strip()
        if df["path"].duplicated().any():
            dup = df["path"][df["path"].duplicated()].iloc[0]
            raise DataFormatError(f"labels CSV {self.csv_path.name}: path {dup!r} appears more than once.")

        # finding classes
        if finding_cols is not None:
            missing = [c for c in finding_cols if normalize_name(c) not in cols]
            if missing:
                raise DataFormatError(f"labels CSV {self.csv_path.name}: finding column(s) {', '.join(missing)} "
                                      f"not found; columns are {', '.join(map(str, df.columns))}.")
            fcols = [cols[normalize_name(c)] for c in finding_cols]
        else:
            fcols = [c for c in df.columns if normalize_name(c) not in RESERVED_COLUMNS and _is_binary(df[c])]
        values = {c: _parse01(df[c], str(c), self.csv_path, empty=0.0) for c in fcols}
        names = [str(c) for c in fcols]
        pipe_sets = None
        if "labels" in cols:
            pipe_sets = [
                {n.strip() for n in str(x).split("|") if normalize_name(n) not in NO_FINDING_NAMES}
                if isinstance(x, str) else set() for x in df[cols["labels"]]]
            for s in pipe_sets:
                for n in sorted(s):
                    if normalize_name(n) not in {normalize_name(m) for m in names}:
                        names.append(n)

        # boxes
        boxes_by_path: dict[str, list] = {}
        bpath = Path(boxes_csv).expanduser() if boxes_csv is not None else folder / DEFAULT_BOXES_CSV
        if boxes_csv is not None and not bpath.is_absolute() and not bpath.is_file():
            bpath = folder / bpath
        if boxes_csv is not None and not bpath.is_file():
            raise DatasetNotFoundError(f"boxes CSV {bpath} not found. {HOW_TO_GET}")
        if bpath.is_file():
            bdf = read_table(bpath, ["path", "class_name", "x_min", "y_min", "x_max", "y_max"], "boxes CSV")
            if not names:
                names = sorted({str(c).strip() for c in bdf["class_name"]})
            index = {normalize_name(n): k for k, n in enumerate(names)}
            unknown = sorted({str(c) for c in bdf["class_name"] if normalize_name(c) not in index})
            if unknown:
                raise DataFormatError(f"boxes CSV {bpath.name}: unknown class name(s) {', '.join(unknown)}; "
                                      f"findings are {', '.join(names)}.")
            known_paths = set(df["path"])
            coords = bdf[["x_min", "y_min", "x_max", "y_max"]].apply(_numeric).to_numpy(np.float64)
            for p, c, xy in zip(bdf["path"].astype(str).str.strip(), bdf["class_name"], coords):
                if p not in known_paths:
                    report.drop_box(p, "box for an image that labels.csv does not list")
                    continue
                boxes_by_path.setdefault(p, []).append((index[normalize_name(c)], xy))
        spacings = _spacings(df[cols[SPACING_COLUMN]], self.csv_path) if SPACING_COLUMN in cols else None
        # global state
        if "abnormal" in cols:
            glob = _parse01(df[cols["abnormal"]], "abnormal", self.csv_path, empty=None).astype(np.int64)
        elif "normal" in cols:
            glob = 1 - _parse01(df[cols["normal"]], "normal", self.csv_path, empty=None).astype(np.int64)
        else:
            glob = None
        only_global = not names and glob is not None
        if only_global:  # MCCT-only data: one finding, "Abnormal", equal to mcct
            names = ["Abnormal"]
        if not names:
            raise DataFormatError(
                f"labels CSV {self.csv_path.name}: no label columns: no 0/1 finding columns, no labels column, "
                f"no abnormal/normal column and no boxes CSV; columns are {', '.join(map(str, df.columns))}. {HOW_TO_GET}")
        self.class_names = tuple(names)
        index = {normalize_name(n): k for k, n in enumerate(names)}

        # split
        if "split" in cols:
            try:
                splits = [normalize_split(s) for s in df[cols["split"]].astype(str)]
            except ValueError as exc:
                raise DataFormatError(f"labels CSV {self.csv_path.name}: {exc}") from None
        else:
            fr = dict(zip(("train", "val", "test"), fractions))
            assign = seeded_split(df["path"], fr, seed)
            splits = [assign[p] for p in df["path"]]

        records = []
        for i, p in enumerate(df["path"]):
            if splits[i] != split:
                continue
            mlct = np.zeros(len(names), np.float32)
            for k, c in enumerate(fcols):
                mlct[k] = values[c][i]
            if pipe_sets is not None:
                for n in pipe_sets[i]:
                    mlct[index[normalize_name(n)]] = 1.0
            bl = boxes_by_path.get(p, [])
            for k, _ in bl:
                mlct[k] = 1.0
            mcct = int(glob[i]) if glob is not None else int(mlct.any())
            if only_global:
                mlct[0] = float(mcct)
            path = Path(p) if Path(p).is_absolute() else folder / p
            spacing = spacings[i] if spacings is not None and spacings[i] is not None else self.pixel_spacing_mm
            records.append(Record(p, path, mlct, mcct,
                                  np.array([xy for _, xy in bl], np.float64).reshape(-1, 4),
                                  np.array([k for k, _ in bl], np.int64), spacing_mm=spacing))
        drop_invalid_table_boxes(records, on_invalid_box, report, "folder")
        self.has_boxes = bool(boxes_by_path)
        digest = hashlib.sha1(str(self.csv_path.resolve()).encode()).hexdigest()[:10]
        cache_folder = config.cache_dir(create=False) / "folder" / digest / f"{int(image_size)}-{square}"
        self._setup(records, split, resolutions, image_size, square, cache_folder, use_cache, scan,
                    on_invalid_box, size, report)


def _numeric(series):
    import pandas as pd

    return pd.to_numeric(series, errors="coerce")


def _spacings(series, path: Path) -> list[tuple[float, float] | None]:
    """The ``pixel_spacing_mm`` column, one ``(row, column)`` spacing or None (empty cell) per row."""
    out = []
    for row, value in enumerate(series, start=2):
        try:
            out.append(config.parse_pixel_spacing(value, f"labels CSV {path.name}, column {SPACING_COLUMN}, row {row}"))
        except ValueError as exc:
            raise DataFormatError(str(exc)) from None
    return out


def _is_binary(series) -> bool:
    """Auto-detected finding column: every non-empty value is a number in {-1, 0, 1} (-1 then errors)."""
    text = series.astype(str).str.strip()
    filled = series.notna() & (text != "")
    v = _numeric(series)
    if (v.isna() & filled).any() or not filled.any():
        return False
    return bool(v[filled].isin((-1, 0, 1)).all())


def _parse01(series, name: str, path: Path, empty: float | None) -> np.ndarray:
    """A 0/1 column as float32; empty cells become ``empty`` (or raise when ``empty`` is None)."""
    text = series.astype(str).str.strip()
    blank = series.isna() | (text == "")
    v = _numeric(series)
    bad = ~blank & ~v.isin((0, 1))
    if bad.any() or (empty is None and blank.any()):
        example = "an empty cell" if not bad.any() else repr(series[bad].iloc[0])
        raise DataFormatError(
            f"labels CSV {path.name}: column {name!r} must hold 0 or 1{' or be empty' if empty is not None else ''}, "
            f"found {example} (row {int(np.flatnonzero((bad | (blank if empty is None else bad)).to_numpy())[0]) + 2}); "
            "map uncertain labels (-1) to 0 or 1 first.")
    return v.fillna(0.0 if empty is None else empty).to_numpy(np.float32)
