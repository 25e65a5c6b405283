"""Shared machinery of the real-data adapters (notebook 03): geometry, boxes, files, cache, splits.

Geometry (the same for every adapter, ``square=`` argument):

* ``"pad"`` (default): pad the shorter side with black (0) to a centred square, then resize.
  Nothing is cut off and nothing is distorted, so every box survives and the
  cardiothoracic ratio is kept (a stretched heart would fake or hide cardiomegaly).
* ``"crop"``: keep the central square (``resize.center_crop_square``); boxes are clipped to it
  and a box entirely outside it is dropped (counted).
* ``"stretch"``: resize height and width independently (distorts anatomy; for comparison).

Downsampling always uses :func:`mlcak_lib.resize.area_resize`; an image smaller than the target
(e.g. a 64 px MedMNIST file asked for 224) is upsampled bilinearly, which adds no detail.
Boxes follow the same affine map, ``x' = (x + offset_x) * scale_x``, computed from each
image's own size.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..resize import area_resize, center_crop_square
from .errors import CorruptImageError, DataFormatError, DataReport, EmptySplitError

SQUARE_MODES: tuple[str, ...] = ("pad", "crop", "stretch")
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
# geometry
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Geometry:
    """Affine map from an ``in_hw`` image to the ``size`` square: ``x' = (x + ox) * sx``, ``y' = (y + oy) * sy``."""

    in_hw: tuple[int, int]
    size: int
    mode: str
    ox: float
    oy: float
    sx: float
    sy: float


def square_geometry(height: int, width: int, size: int, mode: str = "pad") -> Geometry:
    """The :class:`Geometry` that ``apply_geometry`` uses for an image of ``height x width``."""
    if mode not in SQUARE_MODES:
        raise ValueError(f"square must be one of {', '.join(SQUARE_MODES)}, got {mode!r}")
    h, w = int(height), int(width)
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {h}x{w}")
    if mode == "stretch":
        return Geometry((h, w), size, mode, 0.0, 0.0, size / w, size / h)
    side = max(h, w) if mode == "pad" else min(h, w)
    ox, oy = (side - w) // 2, (side - h) // 2  # pad: >= 0 ; crop: <= 0 (as -left, -top)
    if mode == "crop":
        ox, oy = -((w - side) // 2), -((h - side) // 2)
    return Geometry((h, w), size, mode, float(ox), float(oy), size / side, size / side)


def _resize_to(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[0] >= size and image.shape[1] >= size:
        return area_resize(image, size).astype(np.float32)
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


def apply_geometry(pixels: np.ndarray, geom: Geometry) -> np.ndarray:
    """Make the float32 ``[size, size]`` image: pad / crop / stretch, then ``area_resize``."""
    h, w = pixels.shape
    if (h, w) != geom.in_hw:
        raise ValueError(f"geometry made for {geom.in_hw}, image is {(h, w)}")
    if geom.mode == "pad":
        side = max(h, w)
        canvas = np.zeros((side, side), dtype=np.float32)
        canvas[int(geom.oy) : int(geom.oy) + h, int(geom.ox) : int(geom.ox) + w] = pixels
        pixels = canvas
    elif geom.mode == "crop":
        pixels = center_crop_square(pixels)
    return np.clip(_resize_to(pixels, geom.size), 0.0, 1.0).astype(np.float32)


def scale_boxes(boxes: np.ndarray, geom: Geometry) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
    """Map boxes ``[N, 4]`` (``x0, y0, x1, y1`` in pixels of the ``in_hw`` image) to the square.

    Returns ``(out, valid, reasons, clipped)``: ``out`` ``[N, 4]`` float32 in pixels of the
    ``size`` image (NaN rows where invalid), ``valid`` bool ``[N]``, ``reasons`` (None or why a
    box is invalid) and ``clipped`` bool ``[N]`` (a valid box that had to be clipped). A box is
    invalid when a coordinate is not finite, when ``x1 <= x0`` or ``y1 <= y0``, or when nothing
    of it lies inside the image (or inside the central crop).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(b)
    h, w = geom.in_hw
    out = np.full((n, 4), np.nan, dtype=np.float32)
    valid = np.zeros(n, dtype=bool)
    clipped = np.zeros(n, dtype=bool)
    reasons: list = [None] * n
    for i, (x0, y0, x1, y1) in enumerate(b):
        if not np.isfinite([x0, y0, x1, y1]).all():
            reasons[i] = "a box coordinate is missing or not a number"
            continue
        if x1 <= x0 or y1 <= y0:
            reasons[i] = f"x_max <= x_min or y_max <= y_min ({x0:g}, {y0:g}, {x1:g}, {y1:g})"
            continue
        c = np.array([max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))])
        if c[2] <= c[0] or c[3] <= c[1]:
            reasons[i] = f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies entirely outside the {w}x{h} image"
            continue
        was_clipped = not np.allclose(c, [x0, y0, x1, y1])
        t = np.array([(c[0] + geom.ox) * geom.sx, (c[1] + geom.oy) * geom.sy,
                      (c[2] + geom.ox) * geom.sx, (c[3] + geom.oy) * geom.sy])
        s = float(geom.size)
        if t[2] <= 0 or t[0] >= s or t[3] <= 0 or t[1] >= s:  # bounds, not extents: rounding can't drop a box
            reasons[i] = "box lies entirely outside the central square crop"
            continue
        tc = np.clip(t, 0.0, s)
        was_clipped = was_clipped or not np.allclose(tc, t)
        out[i], valid[i], clipped[i] = tc, True, was_clipped
        for lo, hi in ((0, 2), (1, 3)):  # a tiny extent can round to zero when scaled: keep it positive
            if out[i, hi] <= out[i, lo]:
                if out[i, lo] < s:
                    out[i, hi] = np.nextafter(out[i, lo], np.float32(s))
                else:
                    out[i, lo] = np.nextafter(out[i, hi], np.float32(0))
    return out, valid, reasons, clipped


def box_size_mm(boxes_out: np.ndarray, geom: Geometry, spacing_mm: tuple[float, float] | None) -> np.ndarray:
    """Longer side of each (scaled) box in millimetres, from the original ``(row, column)`` spacing; NaN if unknown."""
    boxes_out = np.asarray(boxes_out, dtype=np.float64).reshape(-1, 4)
    if spacing_mm is None or len(boxes_out) == 0:
        return np.full(len(boxes_out), np.nan, dtype=np.float32)
    w_mm = (boxes_out[:, 2] - boxes_out[:, 0]) / geom.sx * float(spacing_mm[1])
    h_mm = (boxes_out[:, 3] - boxes_out[:, 1]) / geom.sy * float(spacing_mm[0])
    return np.maximum(w_mm, h_mm).astype(np.float32)


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
        from ..dicom import DicomReadError, read_dicom

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
def check_resolutions(resolutions: Sequence[int], image_size: int) -> tuple[int, ...]:
    """Validate the requested low resolutions (positive, at most the image size)."""
    if isinstance(resolutions, (int, np.integer)):
        resolutions = (int(resolutions),)
    res = tuple(int(r) for r in resolutions)
    bad = [r for r in res if r <= 0 or r > image_size]
    if bad:
        raise ValueError(f"resolutions must lie in 1..{image_size} (the image size), got {bad}")
    return res


def make_item(image: np.ndarray, resolutions: Sequence[int], mlct, mcct: int, boxes, box_labels,
              box_mm, index: int) -> dict:
    """A dataset item following the sample contract (see CONTRIBUTING.md)."""
    import torch

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
    """One image of a split: file, fused labels and boxes in the pixels of ``box_frame_hw`` (or the file)."""

    key: str
    path: Path
    mlct: np.ndarray
    mcct: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    box_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    box_frame_hw: tuple[int, int] | None = None


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
            from ..tokens import _check_grid

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
        boxes, labels, mm = self._boxes(rec, file_hw, spacing)
        item = make_item(image, self.resolutions, rec.mlct, rec.mcct, boxes, labels, mm, index)
        if getattr(self, "token_grid", None) is not None:
            import torch

            from ..tokens import boxes_to_token_map

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
