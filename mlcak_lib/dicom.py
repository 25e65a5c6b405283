"""Reading chest radiographs from DICOM files with pydicom (introduced in notebook 01).

:func:`read_dicom` turns a DICOM file into the course's image convention in four steps:

1. **stored values** -> ``pixel_array`` (pydicom decodes the transfer syntax);
2. **modality LUT**: ``RescaleSlope`` / ``RescaleIntercept`` (or a Modality LUT Sequence) map
   stored values to meaningful units -> :attr:`DicomImage.raw`;
3. **VOI LUT / windowing**: a VOI LUT Sequence if present, else the first
   ``WindowCenter`` / ``WindowWidth`` pair, else the full data range, mapped to [0, 1];
4. **MONOCHROME1 inversion**: in MONOCHROME1 the lowest value is displayed *white*, so the
   result is flipped (``1 - x``) to the course convention -> :attr:`DicomImage.pixels`.

Images inside the course are float32 in **[0, 1], bone bright**. Networks see them after one
fixed standardisation, :func:`normalize_for_network` (``(x - NETWORK_MEAN) / NETWORK_STD``),
applied inside the models, so datasets never need to know the network's statistics.

Anything that cannot become such an image raises :class:`DicomReadError` with a message that
names the file and the problem (not DICOM, no pixel data, no decoder for a compressed transfer
syntax, colour photometric interpretation, truncated or corrupt pixel data).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NETWORK_MEAN: float = 0.5
"""Mean subtracted from a [0, 1] bone-bright image before it enters a network."""
NETWORK_STD: float = 0.25
"""Standard deviation the centred image is divided by (maps [0, 1] to [-2, 2])."""

SUPPORTED_PHOTOMETRIC: tuple[str, ...] = ("MONOCHROME1", "MONOCHROME2")

# Tags reported alongside the pixels (keyword -> converted plain Python value). Identifying
# tags (names, IDs, dates of birth) are deliberately left out.
KEY_TAGS: tuple[str, ...] = (
    "Modality",
    "SOPClassUID",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "WindowCenter",
    "WindowWidth",
    "WindowCenterWidthExplanation",
    "VOILUTFunction",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "NominalScannedPixelSpacing",
    "ViewPosition",
    "PatientOrientation",
    "BodyPartExamined",
    "PatientSex",
    "PatientAge",
    "KVP",
    "DistanceSourceToDetector",
    "DistanceSourceToPatient",
    "CollimatorLeftVerticalEdge",
    "CollimatorRightVerticalEdge",
    "CollimatorUpperHorizontalEdge",
    "CollimatorLowerHorizontalEdge",
    "Manufacturer",
)

_SPACING_TAGS: tuple[str, ...] = ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing")


class DicomReadError(ValueError):
    """A file that cannot be read as a grayscale radiograph; the message names the file and why."""


@dataclass
class DicomImage:
    """A radiograph read from DICOM.

    Attributes:
        pixels: float32 ``(rows, columns)`` in [0, 1], bone bright (after modality LUT,
            windowing and MONOCHROME1 inversion).
        raw: float32 ``(rows, columns)`` after the modality LUT only (before windowing and
            inversion), in the file's own units.
        spacing_mm: ``(row spacing, column spacing)`` in millimetres, or None when the file has
            no valid spacing (missing or zero).
        spacing_source: the tag the spacing came from (``"PixelSpacing"``,
            ``"ImagerPixelSpacing"`` or ``"NominalScannedPixelSpacing"``), or None.
        tags: key DICOM attributes by keyword, as plain Python values (see ``KEY_TAGS``), plus
            ``TransferSyntaxUID`` (its name) and ``HasVOILUTSequence``.
        photometric: the file's PhotometricInterpretation.
        path: the file that was read.
    """

    pixels: np.ndarray
    raw: np.ndarray
    spacing_mm: tuple[float, float] | None
    spacing_source: str | None
    tags: dict[str, object] = field(default_factory=dict)
    photometric: str = "MONOCHROME2"
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of the image."""
        return tuple(self.pixels.shape)  # type: ignore[return-value]

    @property
    def size_mm(self) -> tuple[float, float] | None:
        """Physical ``(height, width)`` of the image in millimetres, when the spacing is known."""
        if self.spacing_mm is None:
            return None
        return (self.pixels.shape[0] * self.spacing_mm[0], self.pixels.shape[1] * self.spacing_mm[1])


# ----------------------------------------------------------------------------------------------
# windowing and normalisation
# ----------------------------------------------------------------------------------------------
def apply_window(
    raw: np.ndarray,
    center: float,
    width: float,
    invert: bool = False,
    function: str = "LINEAR",
) -> np.ndarray:
    """Map ``raw`` values to [0, 1] with a DICOM window (PS3.3 C.11.2.1.2).

    ``function`` is the VOILUTFunction: ``"LINEAR"`` (the default; DICOM's half-pixel
    convention), ``"LINEAR_EXACT"`` or ``"SIGMOID"``. ``invert=True`` flips the result
    (``1 - y``), which is what a MONOCHROME1 image needs to become bone bright.
    """
    x = np.asarray(raw, dtype=np.float64)
    center, width = float(center), float(width)
    function = (function or "LINEAR").upper()
    if function == "LINEAR":
        if width < 1:
            raise ValueError(f"a LINEAR window needs width >= 1, got {width}")
        y = (x - (center - 0.5)) / (width - 1) + 0.5 if width > 1 else (x > center - 0.5).astype(np.float64)
    elif function == "LINEAR_EXACT":
        if width <= 0:
            raise ValueError(f"a LINEAR_EXACT window needs width > 0, got {width}")
        y = (x - center) / width + 0.5
    elif function == "SIGMOID":
        if width <= 0:
            raise ValueError(f"a SIGMOID window needs width > 0, got {width}")
        y = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    else:
        raise ValueError(f"unknown VOI LUT function {function!r}; use LINEAR, LINEAR_EXACT or SIGMOID")
    y = np.clip(y, 0.0, 1.0)
    if invert:
        y = 1.0 - y
    return y.astype(np.float32)


def normalize_for_network(pixels):
    """Standardise a course image (float in [0, 1], bone bright) for a network.

    The course has ONE convention: images are float32 in [0, 1], bone bright; models apply
    ``(x - NETWORK_MEAN) / NETWORK_STD`` (0.5 and 0.25, so [0, 1] -> [-2, 2]) internally.
    Works on NumPy arrays (returns float32) and on torch tensors (returns a tensor).
    """
    if isinstance(pixels, np.ndarray) or np.isscalar(pixels):
        return ((np.asarray(pixels, dtype=np.float32) - NETWORK_MEAN) / NETWORK_STD).astype(np.float32)
    return (pixels - NETWORK_MEAN) / NETWORK_STD


def _rescale_to_unit(values: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - lo) / (hi - lo)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# tags
# ----------------------------------------------------------------------------------------------
def _plain(value) -> object:
    """Convert a pydicom element value to plain Python (str, int, float or tuple of them)."""
    from pydicom.multival import MultiValue
    from pydicom.valuerep import DSdecimal, DSfloat, IS, PersonName
    from pydicom.uid import UID

    if isinstance(value, (MultiValue, list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, UID):
        return value.name
    if isinstance(value, (DSfloat, DSdecimal)):
        return float(value)
    if isinstance(value, IS):
        return int(value)
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return value


def _tags(ds) -> dict[str, object]:
    tags: dict[str, object] = {}
    for keyword in KEY_TAGS:
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        tags[keyword] = _plain(value)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        tags["TransferSyntaxUID"] = meta.TransferSyntaxUID.name
    tags["HasVOILUTSequence"] = "VOILUTSequence" in ds
    return tags


def _as_list(value) -> list:
    """A DICOM value as a list: MultiValue/list/tuple as is, a single value wrapped."""
    from pydicom.multival import MultiValue

    return list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]


def _first_value(value) -> float:
    """The first of a possibly multi-valued numeric element (e.g. WindowCenter = [40, 400])."""
    return float(_as_list(value)[0])


def _spacing(ds) -> tuple[tuple[float, float] | None, str | None]:
    """First valid spacing among PixelSpacing (calibrated to the patient), ImagerPixelSpacing
    (at the detector) and NominalScannedPixelSpacing (digitised film). Zeros count as missing."""
    for keyword in _SPACING_TAGS:
        value = ds.get(keyword)
        if value is None:
            continue
        try:
            values = [float(v) for v in _as_list(value)]
        except (TypeError, ValueError):
            continue
        if len(values) == 1:
            values = values * 2
        if len(values) >= 2 and all(np.isfinite(v) and v > 0 for v in values[:2]):
            return (values[0], values[1]), keyword
    return None, None


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
def _voi_lut_to_unit(raw: np.ndarray, ds) -> np.ndarray:
    """Apply the first VOI LUT of the VOI LUT Sequence with pydicom and scale its output to [0, 1]."""
    from pydicom.pixels import apply_voi_lut

    item = ds.VOILUTSequence[0]
    # LUT entries are indexed by integer input values; round the modality output first
    out = apply_voi_lut(np.rint(raw).astype(np.int64), ds, index=0, prefer_lut=True).astype(np.float64)
    descriptor = [int(v) for v in item.LUTDescriptor]
    n_bits = descriptor[2] if len(descriptor) > 2 and descriptor[2] > 0 else None
    if n_bits:
        top = float(2**n_bits - 1)
        lut_max = float(np.max(np.asarray(item.LUTData)))
        if lut_max > top:  # some files declare 8 bits but store 16-bit entries
            top = float(2 ** int(np.ceil(np.log2(lut_max + 1))) - 1)
        return np.clip(out / top, 0.0, 1.0).astype(np.float32)
    return _rescale_to_unit(out)


def _decode(ds, name: str) -> np.ndarray:
    """``ds.pixel_array`` with pydicom's decoding errors rephrased as DicomReadError."""
    from pydicom.uid import UID

    meta = getattr(ds, "file_meta", None)
    uid = UID(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else None
    ts = f"{uid.name} ({uid})" if uid is not None else "an unknown transfer syntax"
    if uid is not None and uid.is_compressed:
        try:
            from pydicom.pixels import get_decoder

            decoder = get_decoder(uid)
        except NotImplementedError:
            raise DicomReadError(f"{name}: pydicom has no decoder at all for the transfer syntax {ts}.") from None
        if not decoder.is_available:
            missing = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
            raise DicomReadError(
                f"{name}: the pixel data is compressed with {ts} and no decoder for it is installed. "
                f"Install one of: {missing} (for example `pip install pylibjpeg pylibjpeg-libjpeg "
                f"pylibjpeg-openjpeg`), or convert the file to an uncompressed transfer syntax."
            )
    try:
        return ds.pixel_array
    except (RuntimeError, NotImplementedError, ValueError, TypeError, AttributeError, OSError, EOFError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if uid is not None and uid.is_compressed:
            raise DicomReadError(
                f"{name}: could not decode the pixel data compressed with {ts}; the data looks "
                f"corrupt or truncated, or the installed decoder cannot handle it ({first})."
            ) from None
        raise DicomReadError(
            f"{name}: the pixel data could not be read ({ts}); the file looks truncated or corrupt ({first})."
        ) from None


def read_dicom(path: str | os.PathLike, window: bool = True) -> DicomImage:
    """Read a grayscale radiograph; return pixels in [0, 1], bone bright, with spacing and key tags.

    ``window=True`` applies the file's VOI LUT Sequence, else its first WindowCenter/Width
    pair (multi-valued windows: the first is the default view), else the full data range.
    ``window=False`` always maps the full range of :attr:`DicomImage.raw` to [0, 1].
    MONOCHROME1 images are inverted in both cases. Raises :class:`DicomReadError`.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    path = Path(path)
    name = path.name
    if not path.is_file():
        raise DicomReadError(f"{name}: no such file ({path})")
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        raise DicomReadError(
            f"{name}: not a DICOM file (no 'DICM' preamble and no readable DICOM elements)."
        ) from None
    except (EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DicomReadError(f"{name}: the DICOM header is truncated or corrupt ({exc}).") from None

    pixel_keywords = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
    if not any(k in ds for k in pixel_keywords):
        if "Rows" not in ds and "SOPClassUID" not in ds and len(ds) == 0:
            raise DicomReadError(f"{name}: not a DICOM file (no DICOM elements could be read).")
        raise DicomReadError(
            f"{name}: the DICOM file has no pixel data (no PixelData element); it may be a "
            "structured report, a presentation state or a header-only file."
        )

    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if not photometric:
        raise DicomReadError(f"{name}: PhotometricInterpretation is missing; cannot tell how to display the pixels.")
    if photometric not in SUPPORTED_PHOTOMETRIC:
        raise DicomReadError(
            f"{name}: unsupported photometric interpretation {photometric!r} (samples per pixel "
            f"{ds.get('SamplesPerPixel', '?')}); a chest radiograph is grayscale, MONOCHROME1 or MONOCHROME2."
        )

    stored = _decode(ds, name)
    if stored.ndim != 2:
        raise DicomReadError(
            f"{name}: expected one 2-D grayscale frame, got pixel data of shape {stored.shape} "
            f"(NumberOfFrames={ds.get('NumberOfFrames', 1)})."
        )
    raw = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)

    invert = photometric == "MONOCHROME1"
    if window and "VOILUTSequence" in ds and len(ds.VOILUTSequence) > 0:
        pixels = _voi_lut_to_unit(raw, ds)
        if invert:
            pixels = 1.0 - pixels
    elif window and "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _first_value(ds.WindowCenter), _first_value(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        try:
            pixels = apply_window(raw, center, width, invert=False, function=function)
        except ValueError as exc:
            raise DicomReadError(f"{name}: invalid window (center {center}, width {width}): {exc}") from None
        if invert:
            pixels = 1.0 - pixels
    else:
        pixels = _rescale_to_unit(raw)
        if invert:
            pixels = 1.0 - pixels

    spacing, source = _spacing(ds)
    return DicomImage(
        pixels=np.ascontiguousarray(pixels, dtype=np.float32),
        raw=np.ascontiguousarray(raw, dtype=np.float32),
        spacing_mm=spacing,
        spacing_source=source,
        tags=_tags(ds),
        photometric=photometric,
        path=path,
    )


def rg1_path() -> Path:
    """Path of pydicom-data's RG1_UNCR.dcm (a real PA chest CR, MONOCHROME1), resolved offline."""
    from pydicom.data import get_testdata_file

    found = get_testdata_file("RG1_UNCR.dcm")
    if found is None:
        raise FileNotFoundError(
            "RG1_UNCR.dcm not found: install pydicom's test data with `pip install pydicom-data`."
        )
    return Path(found)
