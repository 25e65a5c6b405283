"""Shared machinery of the real-data adapters (notebook 03): names, tables, splits, image files, items,
the conversion cache and the dataset class. Where pixels and boxes go on the square is
:mod:`mlcak_lib.realdata.geometry`.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from ..dicom import DicomReadError, read_dicom
from ..resize import area_resize, check_resolutions
from ..tokens import _check_grid, boxes_to_token_map
from .errors import CorruptImageError, DataFormatError, DataReport, EmptySplitError
from .geometry import SQUARE_MODES, Geometry, apply_geometry, box_size_mm, scale_boxes, square_geometry

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_ALIASES: dict[str, str] = {
    "train": "train", "training": "train", "tr": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test", "holdout": "test",
}
DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom", ".dic")
RASTER_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
COLOUR_TOLERANCE: float = 0.02
"""An RGB file counts as grayscale when its channels differ by at most this much on average
(JPEG compression leaves small differences); above it the image is genuinely colour."""
INVALID_BOX_POLICIES: tuple[str, ...] = ("skip", "raise")

__all__ = [
    "Geometry", "square_geometry", "apply_geometry", "scale_boxes", "read_image_file",
    "make_item", "seeded_split", "normalize_name", "normalize_split", "read_table",
]


# ----------------------------------------------------------------------------------------------
# names and tables
# ----------------------------------------------------------------------------------------------
def normalize_name(name: object) -> str:
    """Case- and whitespace-insensitive form of a class or column name (``" Lung  opacity"`` -> ``"lung opacity"``)."""
    return " ".join(str(name).split()).casefold()


def normalize_split(split: str) -> str:
    """``train`` / ``val`` / ``test`` from a split name or a common alias (``valid``, ``validation``...)."""
    key = normalize_name(split)
    if key not in SPLIT_ALIASES:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return SPLIT_ALIASES[key]


def read_table(path: Path, required: Sequence[str], what: str):
    """Read a CSV with pandas; columns are matched case-insensitively and renamed to ``required``.

    Raises :class:`DataFormatError` naming the file when it can not be parsed or lacks a column.
    """
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataFormatError(f"{what} {path}: could not be read as CSV ({first}).") from None
    lookup = {normalize_name(c): c for c in df.columns}
    missing = [c for c in required if normalize_name(c) not in lookup]
    if missing:
        raise DataFormatError(
            f"{what} {path.name}: missing column(s) {', '.join(missing)}; "
            f"found {', '.join(map(str, df.columns)) or 'none'}; required {', '.join(required)}."
        )
    return df.rename(columns={lookup[normalize_name(c)]: c for c in required})


def seeded_split(keys: Iterable[str], fractions: Mapping[str, float], seed: int = 0) -> dict[str, str]:
    """Assign each key to a split: a seeded permutation of the sorted keys, cut by ``fractions``.

    Deterministic for a given key set and seed. Every split with a positive fraction gets at
    least one key when there are enough keys; the first split takes the rounding remainder.
    """
    keys = sorted(set(map(str, keys)))
    names = list(fractions)
    fr = np.array([float(fractions[n]) for n in names], dtype=np.float64)
    if (fr < 0).any() or fr.sum() <= 0:
        raise ValueError(f"split fractions must be >= 0 with a positive sum, got {dict(fractions)}")
    fr = fr / fr.sum()
    n = len(keys)
    counts = [0] * len(names)
    for j in range(1, len(names)):
        counts[j] = int(round(fr[j] * n))
        if fr[j] > 0 and counts[j] == 0 and n >= len(names):
            counts[j] = 1
    counts[0] = max(0, n - sum(counts[1:]))
    order = np.random.default_rng(seed).permutation(n)
    out: dict[str, str] = {}
    start = 0
    for name, count in zip(names, counts):
        for idx in order[start : start + count]:
            out[keys[idx]] = name
        start += count
    return out


# ----------------------------------------------------------------------------------------------
# image files
# ----------------------------------------------------------------------------------------------
def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    if path.suffix.lower() in RASTER_SUFFIXES:
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
        return head[128:132] == b"DICM"
    except OSError:
        return False


def read_image_file(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Read a DICOM, PNG or JPEG radiograph as float32 ``[H, W]`` in [0, 1] plus spacing (mm) or None.

    DICOM goes through :func:`mlcak_lib.dicom.read_dicom` (modality LUT, window, MONOCHROME1
    inversion). PNG/JPEG are taken as stored, bone bright: 8-bit / 255, 16-bit / 65535; an RGB
    file whose channels agree (within ``COLOUR_TOLERANCE``) is averaged to gray, a genuinely
    colour one raises. Raises :class:`CorruptImageError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CorruptImageError(f"{path.name}: image file missing ({path})")
    spacing = None
    if _is_dicom(path):
        try:
            dimg = read_dicom(path)
        except DicomReadError as exc:
            raise CorruptImageError(str(exc)) from None
        pixels, spacing = dimg.pixels, dimg.spacing_mm
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                im.load()
                mode = im.mode
                if mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                    mode = im.mode
                arr = np.asarray(im)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise CorruptImageError(f"{path.name}: not a readable image, truncated or corrupt ({exc}).") from None
        if arr.dtype == np.uint8:
            arr = arr.astype(np.float32) / 255.0
        elif arr.dtype == bool:
            arr = arr.astype(np.float32)
        elif np.issubdtype(arr.dtype, np.integer):
            top = 65535.0 if arr.max(initial=0) <= 65535 else float(arr.max())
            arr = arr.astype(np.float32) / top
        else:
            arr = arr.astype(np.float32)
        if arr.ndim == 3:
            if arr.shape[2] in (2, 4):  # drop alpha
                arr = arr[..., :-1]
            if arr.shape[2] == 3:
                diff = max(float(np.mean(np.abs(arr[..., 0] - arr[..., 1]))),
                           float(np.mean(np.abs(arr[..., 1] - arr[..., 2]))))
                if diff > COLOUR_TOLERANCE:
                    raise CorruptImageError(
                        f"{path.name}: a colour image (RGB channels differ by {diff:.3f} on average); "
                        "the course needs grayscale radiographs (RGB files with equal channels are fine)."
                    )
            arr = arr.mean(axis=2)
        pixels = arr
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim != 2 or min(pixels.shape) < 1:
        raise CorruptImageError(f"{path.name}: expected a 2-D image, got shape {pixels.shape}")
    if not np.isfinite(pixels).all():
        raise CorruptImageError(f"{path.name}: {int((~np.isfinite(pixels)).sum())} pixel(s) are NaN or infinite")
    if float(pixels.min()) < 0.0 or float(pixels.max()) > 1.0:
        lo, hi = float(pixels.min()), float(pixels.max())
        pixels = (pixels - lo) / (hi - lo) if hi > lo else np.zeros_like(pixels)
    return np.ascontiguousarray(pixels, dtype=np.float32), spacing


# ----------------------------------------------------------------------------------------------
# items
# ----------------------------------------------------------------------------------------------
def make_item(image: np.ndarray, resolutions: Sequence[int], mlct, mcct: int, boxes, box_labels,
              box_mm, index: int) -> dict:
    """A dataset item following the sample contract (see CONTRIBUTING.md)."""
    arr = np.ascontiguousarray(image, dtype=np.float32)
    img = torch.from_numpy(arr.copy())[None]
    lowres = {int(r): torch.from_numpy(np.ascontiguousarray(area_resize(arr, int(r)), dtype=np.float32))[None]
              for r in resolutions}
    return {
        "image": img,
        "lowres": lowres,
        "mlct": torch.as_tensor(np.asarray(mlct, dtype=np.float32)),
        "mcct": torch.tensor(int(mcct), dtype=torch.int64),
        "boxes": torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)),
        "box_labels": torch.as_tensor(np.asarray(box_labels, dtype=np.int64).reshape(-1)),
        "box_mm": torch.as_tensor(np.asarray(box_mm, dtype=np.float32).reshape(-1)),
        "index": int(index),
    }


# ----------------------------------------------------------------------------------------------
# cache (written by ``python -m mlcak_lib.realdata.preprocess``)
# ----------------------------------------------------------------------------------------------
def cache_key(key: str) -> str:
    """A file-name-safe form of an image key (readable when possible, hashed otherwise)."""
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", key) and not key.startswith("."):
        return key
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", key)[-60:].lstrip(".") + "-" + digest


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and ``os.replace`` (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_cache_entry(path: Path, image: np.ndarray, file_hw: tuple[int, int],
                      spacing: tuple[float, float] | None) -> None:
    """Store one converted image: uint16 ``[S, S]`` + the file's ``(H, W)`` + spacing (NaN if unknown)."""
    import io

    buf = io.BytesIO()
    q = np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)
    sp = np.array(spacing if spacing is not None else (np.nan, np.nan), dtype=np.float64)
    np.savez(buf, image=q, file_hw=np.array(file_hw, dtype=np.int64), spacing=sp)
    atomic_write_bytes(path, buf.getvalue())


def read_cache_entry(path: Path) -> tuple[np.ndarray, tuple[int, int], tuple[float, float] | None]:
    with np.load(path) as z:
        image = z["image"].astype(np.float32) / 65535.0
        hw = tuple(int(v) for v in z["file_hw"])
        sp = z["spacing"]
    spacing = None if not np.isfinite(sp).all() else (float(sp[0]), float(sp[1]))
    return image, hw, spacing  # type: ignore[return-value]


def failure_marker(entry: Path) -> Path:
    return entry.with_name(entry.name[: -len(".npz")] + ".failed.txt")


# ----------------------------------------------------------------------------------------------
# the shared dataset class
# ----------------------------------------------------------------------------------------------
@dataclass
class Record:
    """One image of a split: file, fused labels and boxes in the pixels of ``box_frame_hw`` (or the file), and a
    fallback pixel spacing for files without one."""

    key: str
    path: Path
    mlct: np.ndarray
    mcct: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    box_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    box_frame_hw: tuple[int, int] | None = None
    spacing_mm: tuple[float, float] | None = None
    """Pixel spacing ``(row, column)`` in mm of the file, used only when the file carries none (PNG/JPEG)."""


try:  # torch is a course dependency; the guard keeps this module importable for docs tools
    from torch.utils.data import Dataset as _TorchDataset
except ImportError:  # pragma: no cover
    _TorchDataset = object  # type: ignore[misc,assignment]


class ImageFileDataset(_TorchDataset):
    """Base of the file-backed adapters (VinDr-CXR, folder): records -> contract items, with cache.

    Subclasses build ``records`` and call :meth:`_setup`. Items are read from the preprocessed
    cache when an entry exists (``use_cache=True``), else decoded from the file.
    """

    dataset_name = "files"
    has_boxes = True
    class_names: tuple[str, ...] = ()

    def _setup(self, records: list[Record], split: str, resolutions, image_size: int, square: str,
               cache_folder: Path | None, use_cache: bool, scan: bool, on_invalid_box: str,
               size: int | None, report: DataReport) -> None:
        if square not in SQUARE_MODES:
            raise ValueError(f"square must be one of {', '.join(SQUARE_MODES)}, got {square!r}")
        if on_invalid_box not in INVALID_BOX_POLICIES:
            raise ValueError(f"on_invalid_box must be one of {INVALID_BOX_POLICIES}, got {on_invalid_box!r}")
        self.split = split
        self.image_size = int(image_size)
        if getattr(self, "token_grid", None) is not None:
            _check_grid(self.image_size, self.token_grid)
        self.resolutions = check_resolutions(resolutions, self.image_size)
        self.square = square
        self.cache_folder = cache_folder
        self.use_cache = use_cache
        self.on_invalid_box = on_invalid_box
        self.report = report
        self._box_checked: set[str] = set()
        kept = []
        for rec in records:
            entry = self._entry(rec)
            if not rec.path.is_file() and not (entry is not None and entry.is_file()):
                report.skip(rec.key, f"image file missing ({rec.path.name})")
                continue
            if entry is not None and not entry.is_file() and failure_marker(entry).is_file():
                reason = failure_marker(entry).read_text().strip() or "failed during preprocessing"
                report.skip(rec.key, reason)
                continue
            kept.append(rec)
        if size is not None:
            kept = kept[: int(size)]
        if scan:
            good = []
            for rec in kept:
                try:
                    self._load(rec)
                    good.append(rec)
                except CorruptImageError as exc:
                    report.skip(rec.key, str(exc))
            kept = good
        self.records = kept
        if not kept:
            raise EmptySplitError(
                f"{self.dataset_name}: the {split!r} split has no usable images"
                + (f" ({len(report.skipped)} skipped: {report.skipped[0][1]})" if report.skipped else "")
                + "."
            )
        report.warn()

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``(image key, reason)`` of every image left out of this split."""
        return self.report.skipped

    def __len__(self) -> int:
        return len(self.records)

    def _entry(self, rec: Record) -> Path | None:
        if self.cache_folder is None or not getattr(self, "use_cache", True):
            return None
        return self.cache_folder / f"{cache_key(rec.key)}.npz"

    def convert(self, rec: Record) -> tuple[np.ndarray, tuple[int, int], tuple[float, float] | None]:
        """Decode ``rec``'s file into the ``[image_size]^2`` square (no cache involved)."""
        pixels, spacing = read_image_file(rec.path)
        geom = square_geometry(*pixels.shape, self.image_size, self.square)
        return apply_geometry(pixels, geom), pixels.shape, spacing

    def _load(self, rec: Record):
        entry = self._entry(rec)
        if entry is not None and entry.is_file():
            return read_cache_entry(entry)
        return self.convert(rec)

    def _boxes(self, rec: Record, file_hw: tuple[int, int], spacing):
        geom = square_geometry(*file_hw, self.image_size, self.square)
        boxes = np.asarray(rec.boxes, dtype=np.float64).reshape(-1, 4)
        if rec.box_frame_hw is not None and tuple(rec.box_frame_hw) != tuple(file_hw):
            fy, fx = file_hw[0] / rec.box_frame_hw[0], file_hw[1] / rec.box_frame_hw[1]
            boxes = boxes * np.array([fx, fy, fx, fy])
            if spacing is not None:
                spacing = (spacing[0] / fy, spacing[1] / fx)
        out, valid, reasons, clipped = scale_boxes(boxes, geom)
        first_time = rec.key not in self._box_checked
        self._box_checked.add(rec.key)
        for j in np.flatnonzero(~valid):
            if self.on_invalid_box == "raise":
                raise DataFormatError(f"{self.dataset_name} image {rec.key}: {reasons[j]}")
            if first_time:
                self.report.drop_box(rec.key, reasons[j])
        if first_time:
            self.report.boxes_clipped += int(clipped.sum())
        out = out[valid]
        return out, np.asarray(rec.box_labels, dtype=np.int64)[valid], box_size_mm(out, geom, spacing)

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        rec = self.records[index]
        image, file_hw, spacing = self._load(rec)
        if spacing is None:  # PNG/JPEG (or a DICOM without PixelSpacing): the spacing the user gave, if any
            spacing = rec.spacing_mm
        boxes, labels, mm = self._boxes(rec, file_hw, spacing)
        item = make_item(image, self.resolutions, rec.mlct, rec.mcct, boxes, labels, mm, index)
        if getattr(self, "token_grid", None) is not None:
            item["token_map"] = torch.from_numpy(boxes_to_token_map(
                boxes, labels, self.image_size, self.token_grid, len(self.class_names)))
        return item

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(split={self.split!r}, n={len(self)}, classes={len(self.class_names)}, "
                f"image_size={self.image_size}, resolutions={self.resolutions})")



def drop_invalid_table_boxes(records: list[Record], on_invalid_box: str, report: DataReport, what: str) -> None:
    """Table-level box check at construction: NaN coordinates or ``x_max <= x_min`` / ``y_max <= y_min``.

    With ``on_invalid_box="raise"`` the first one raises :class:`DataFormatError`; with ``"skip"``
    each is removed from its record and listed in ``report.boxes_dropped``.
    """
    for rec in records:
        b = np.asarray(rec.boxes, dtype=np.float64).reshape(-1, 4)
        if len(b) == 0:
            continue
        finite = np.isfinite(b).all(axis=1)
        ordered = np.zeros(len(b), dtype=bool)
        ordered[finite] = (b[finite, 2] > b[finite, 0]) & (b[finite, 3] > b[finite, 1])
        bad = ~(finite & ordered)
        for j in np.flatnonzero(bad):
            reason = ("a box coordinate is missing or not a number" if not finite[j] else
                      f"x_max <= x_min or y_max <= y_min ({', '.join(f'{v:g}' for v in b[j])})")
            if on_invalid_box == "raise":
                raise DataFormatError(f"{what} image {rec.key}: {reason} (pass on_invalid_box='skip' to drop such boxes).")
            report.drop_box(rec.key, reason)
        if bad.any():
            rec.boxes = b[~bad]
            rec.box_labels = np.asarray(rec.box_labels, dtype=np.int64)[~bad]
