"""Errors, warnings and the data-quality report shared by the real-data adapters (notebook 03).

Policy (the same for every adapter):

* **Missing dataset** (root, CSV or image folder absent) -> :class:`DatasetNotFoundError`, one
  message saying what is missing, where it looked and how to obtain the data.
* **Malformed tables** (missing columns, unknown class names, labels outside {0, 1}, unknown
  split names, an empty split) -> :class:`DataFormatError` naming the file, the problem and
  the accepted values. These are mistakes to fix, so they are never skipped.
* **Bad images** (missing file, truncated or corrupt DICOM, NaN pixels, a genuinely colour
  image) found while the dataset is built (``scan=True`` or a preprocessed cache) are
  **skipped and reported**: ``dataset.skipped`` lists ``(image key, reason)`` and one
  :class:`DataQualityWarning` summarises them. Found later, inside ``dataset[i]``, they raise
  :class:`CorruptImageError` naming the file (an item can not be skipped after the index
  has been handed out).
* **Bad boxes**: a box partly outside the image is clipped to it (counted in
  ``report.boxes_clipped``); a box with a NaN coordinate, ``x_max <= x_min`` or
  ``y_max <= y_min``, or lying entirely outside the image is dropped (listed in
  ``report.boxes_dropped``) -- or raises :class:`DataFormatError` with ``on_invalid_box="raise"``.
  The image keeps its labels: a reader did mark the finding.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field


class DatasetNotFoundError(FileNotFoundError):
    """The selected real dataset is not where the course looked; the message says what to do."""

    def __str__(self) -> str:  # FileNotFoundError would print "[Errno ...]" noise otherwise
        return str(self.args[0]) if self.args else ""


class DataFormatError(ValueError):
    """A table or annotation that does not follow the documented conventions."""


class EmptySplitError(DataFormatError):
    """A split with no usable items."""


class CorruptImageError(ValueError):
    """An image file that can not become a course image (names the file and the reason)."""


class DataQualityWarning(UserWarning):
    """One-line summary of skipped images and clipped or dropped boxes."""


@dataclass
class DataReport:
    """What an adapter skipped, clipped or dropped; nothing is dropped without an entry here."""

    dataset: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    boxes_clipped: int = 0
    boxes_dropped: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, key: str, reason: str) -> None:
        self.skipped.append((str(key), reason))

    def drop_box(self, key: str, reason: str) -> None:
        self.boxes_dropped.append((str(key), reason))

    @property
    def clean(self) -> bool:
        return not (self.skipped or self.boxes_clipped or self.boxes_dropped)

    def summary(self) -> str:
        """One line: counts of skipped images, clipped boxes and dropped boxes, with examples."""
        parts = []
        if self.skipped:
            key, reason = self.skipped[0]
            parts.append(f"{len(self.skipped)} image(s) skipped (e.g. {key}: {reason})")
        if self.boxes_clipped:
            parts.append(f"{self.boxes_clipped} box(es) clipped to the image")
        if self.boxes_dropped:
            key, reason = self.boxes_dropped[0]
            parts.append(f"{len(self.boxes_dropped)} box(es) dropped (e.g. {key}: {reason})")
        text = "; ".join(parts) if parts else "no images skipped, no boxes clipped or dropped"
        return f"{self.dataset}: {text}" + ("; see dataset.report" if parts else "")

    def warn(self) -> None:
        """Emit the summary as one DataQualityWarning when anything was skipped, clipped or dropped."""
        if not self.clean:
            warnings.warn(self.summary(), DataQualityWarning, stacklevel=3)
