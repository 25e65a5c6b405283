"""MedMNIST+ adapter: ChestMNIST and PneumoniaMNIST read straight from their npz files (notebook 03).

Files (``https://zenodo.org/records/10519652``, CC BY 4.0; or ``pip install medmnist`` and
``python -m medmnist download``), in ``root`` or ``root/medmnist``: ``{name}.npz`` (28 px) and
``{name}_{64,128,224}.npz``, each with ``{train,val,test}_images`` (uint8 ``[N, S, S]``) and
``{train,val,test}_labels``. The npz is read directly (medmnist's own class asserts the
official counts, which a subset would fail); only the requested split is loaded (the 224 px
ChestMNIST training images take about 3.9 GB of memory).

Targets:

* **ChestMNIST** (NIH ChestX-ray14, 14 labels): ``mlct`` = the 14 labels (``CHESTMNIST_CLASSES``);
  ``mcct`` = 1 (abnormal) when any label is set, 0 (normal) when none is -- NIH's "No Finding".
* **PneumoniaMNIST** (pediatric, binary): ``mlct`` = one class, ``Pneumonia``; ``mcct`` = pneumonia.
* No boxes: ``boxes`` is ``[0, 4]`` for every item (``has_boxes = False``); localization
  metrics (token maps, box hit rates) are unavailable on these datasets.

Resolutions: ``image`` comes from the file of size ``image_size`` (default: the largest file
present, ideally 224), and every low-resolution view (28 / 64 / 128 ...) is made from that
image with ``area_resize`` -- the course's one resize -- not taken from MedMNIST's own smaller
files, so all views of an item share one origin.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .. import config
from ..manifest import verify_file
from ..resize import check_resolutions
from .common import _TorchDataset, make_item, normalize_split
from .errors import DataFormatError, DataReport, DatasetNotFoundError, EmptySplitError

CHESTMNIST_CLASSES: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural thickening", "Hernia",
)
"""ChestMNIST label order (MedMNIST's ``INFO['chestmnist']['label']``)."""
PNEUMONIAMNIST_CLASSES: tuple[str, ...] = ("Pneumonia",)
MEDMNIST_NAMES: dict[str, tuple[str, ...]] = {"chestmnist": CHESTMNIST_CLASSES, "pneumoniamnist": PNEUMONIAMNIST_CLASSES}
MEDMNIST_SIZES: tuple[int, ...] = (28, 64, 128, 224)
HOW_TO_GET = (
    "Download the npz files from https://zenodo.org/records/10519652 (MedMNIST+, CC BY 4.0), "
    "or `pip install medmnist` then `python -m medmnist download`, and point MLCAK_DATA_ROOT "
    "(or root=) at the folder holding them."
)


def medmnist_file(name: str, size: int) -> str:
    """File name of one MedMNIST+ size: ``chestmnist.npz`` (28) or ``chestmnist_{size}.npz``."""
    return f"{name}.npz" if int(size) == 28 else f"{name}_{int(size)}.npz"


def find_medmnist(name: str, root: str | os.PathLike) -> tuple[Path, dict[int, Path]]:
    """The folder and ``{size: path}`` of the available files, or DatasetNotFoundError."""
    root = Path(root).expanduser()
    for base in (root, root / "medmnist", root / ".medmnist"):
        found = {s: base / medmnist_file(name, s) for s in MEDMNIST_SIZES if (base / medmnist_file(name, s)).is_file()}
        if found:
            return base, found
    expected = ", ".join(medmnist_file(name, s) for s in MEDMNIST_SIZES)
    raise DatasetNotFoundError(
        f"MedMNIST+ {name} not found under {root} (resolved from root= or MLCAK_DATA_ROOT; also looked in "
        f"{root / 'medmnist'}): expected one or more of {expected}. {HOW_TO_GET}"
    )


class MedMNISTDataset(_TorchDataset):
    """One split of ChestMNIST or PneumoniaMNIST as course items (no boxes; see the module docstring).

    ``expected`` optionally maps file names to ``(sha256, bytes)``; each file used is then checked
    with :func:`mlcak_lib.manifest.verify_file` before it is read (a mismatch raises ManifestError).
    """

    has_boxes = False

    def __init__(self, split: str, resolutions: Sequence[int] = (28,), root: str | os.PathLike | None = None, *,
                 name: str = "chestmnist", image_size: int | None = None, size: int | None = None,
                 expected: Mapping[str, tuple[str, int]] | None = None):
        name = name.strip().lower()
        if name not in MEDMNIST_NAMES:
            raise ValueError(f"unknown MedMNIST dataset {name!r}; supported: {', '.join(MEDMNIST_NAMES)}")
        self.dataset_name = name
        self.split = normalize_split(split)
        self.root = config.data_root(root)
        base, files = find_medmnist(name, self.root)
        if image_size is None:
            image_size = max(files)
        self.image_size = int(image_size)
        if self.image_size not in files:
            raise DatasetNotFoundError(
                f"MedMNIST+ {name}: image_size={self.image_size} needs {medmnist_file(name, self.image_size)} in {base}, "
                f"which is missing (found {', '.join(p.name for p in files.values())}). {HOW_TO_GET}")
        self.resolutions = check_resolutions(resolutions, self.image_size)
        self.class_names = MEDMNIST_NAMES[name]
        self.path = files[self.image_size]
        if expected and self.path.name in expected:
            sha, nbytes = expected[self.path.name]
            verify_file(self.path, sha, nbytes, f"{name}_{self.image_size}", fix=f"download {self.path.name} again ({HOW_TO_GET})")
        self.report = DataReport(dataset=f"{name} {self.split}")
        images, labels = self._load(size)
        bad = ~np.isfinite(images.reshape(len(images), -1)).all(axis=1) if images.dtype.kind == "f" else np.zeros(len(images), bool)
        for i in np.flatnonzero(bad):
            self.report.skip(f"{self.split}[{i}]", "NaN or infinite pixels")
        self._rows = np.flatnonzero(~bad)
        self.images, self.labels = images, labels
        if len(self._rows) == 0:
            raise EmptySplitError(f"{name}: the {self.split!r} split of {self.path.name} has no usable images.")
        self.report.warn()

    def _load(self, size):
        img_key, lab_key = f"{self.split}_images", f"{self.split}_labels"
        try:
            with np.load(self.path) as z:
                missing = [k for k in (img_key, lab_key) if k not in z.files]
                if missing:
                    raise DataFormatError(f"{self.path.name}: missing array(s) {', '.join(missing)}; "
                                          f"found {', '.join(z.files)}.")
                images, labels = z[img_key], z[lab_key]
        except DataFormatError:
            raise
        except Exception as exc:  # zipfile.BadZipFile, OSError, ValueError, EOFError ...
            raise DataFormatError(f"{self.path.name}: not a readable npz file, truncated or corrupt "
                                  f"({type(exc).__name__}: {exc}); download it again. {HOW_TO_GET}") from None
        if images.ndim == 4 and images.shape[-1] in (1, 3):
            images = images.mean(axis=-1) if images.shape[-1] == 3 else images[..., 0]
        s = self.image_size
        if images.ndim != 3 or images.shape[1:] != (s, s):
            raise DataFormatError(f"{self.path.name}: {img_key} has shape {images.shape}, expected [N, {s}, {s}].")
        labels = np.asarray(labels).reshape(len(labels), -1) if len(labels) else np.zeros((0, len(self.class_names)))
        if len(labels) != len(images) or labels.shape[1] != len(self.class_names):
            raise DataFormatError(f"{self.path.name}: {lab_key} has shape {labels.shape}, expected "
                                  f"[{len(images)}, {len(self.class_names)}].")
        if labels.size and not np.isin(labels, (0, 1)).all():
            raise DataFormatError(f"{self.path.name}: {lab_key} must hold 0 or 1.")
        if size is not None:
            images, labels = images[: int(size)], labels[: int(size)]
        return images, labels.astype(np.float32)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return self.report.skipped

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        img = self.images[self._rows[index]]
        img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else np.clip(img.astype(np.float32), 0, 1)
        mlct = self.labels[self._rows[index]]
        return make_item(img, self.resolutions, mlct, int(mlct.any()), np.zeros((0, 4)), np.zeros(0), np.zeros(0), index)

    def __repr__(self) -> str:
        return (f"MedMNISTDataset({self.dataset_name!r}, split={self.split!r}, n={len(self)}, "
                f"image_size={self.image_size}, resolutions={self.resolutions})")

