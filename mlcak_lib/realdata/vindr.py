"""VinDr-CXR adapter: PhysioNet and Kaggle VinBigData layouts -> course items (notebook 03).

Layouts (found under ``root`` or one of ``vindr-cxr/``, ``vindr-cxr/1.0.0/``,
``physionet.org/files/vindr-cxr/1.0.0/``, ``vinbigdata-chest-xray-abnormalities-detection/``,
``vinbigdata/``, ``vindr/`` below it):

* **PhysioNet** (``https://physionet.org/content/vindr-cxr/``, credentialed):
  ``train/<image_id>.dicom``, ``test/<image_id>.dicom``,
  ``annotations/annotations_{train,test}.csv`` (``image_id, rad_id, class_name, x_min, y_min,
  x_max, y_max``; "No finding" rows have empty boxes) and, optionally,
  ``annotations/image_labels_{train,test}.csv`` (``image_id, rad_id`` + 22 local and 6 global
  0/1 columns; the test file has consensus rows without ``rad_id`` and spells "Other disease").
  Splits: ``train`` / ``val`` = seeded split of the official training set
  (``val_fraction``, default 0.1); ``test`` = the official test set (consensus labels).
* **Kaggle VinBigData** (``https://www.kaggle.com/competitions/vinbigdata-chest-xray-abnormalities-detection``):
  ``train.csv`` (``image_id, class_name, class_id, rad_id, x_min, ...``: 14 classes + "No
  finding") and ``train/<image_id>.dicom`` -- or a resized PNG/JPEG folder (``image_dir=``)
  with a size table (``size_table=``, default ``train_meta.csv`` beside ``train.csv`` when
  present; columns ``image_id`` + ``dim0, dim1`` or ``height, width`` or ``rows, columns``: the
  ORIGINAL size, used to scale the boxes; without it a PNG is taken to be at original size).
  The competition's test labels were never released, so ``train`` / ``val`` / ``test`` are a
  seeded split of ``train.csv`` (``val_fraction``, ``test_fraction``, default 0.1 each).

Reader fusion (three radiologists per training image; their identity is never exposed):

* a table without a ``rad_id`` column holds consensus labels (PhysioNet test): the image then
  has one reader, "consensus";
* a reader's positive set = the classes of their annotation rows ("No finding" excluded) plus
  the 1-columns of their ``image_labels`` row (PhysioNet);
* ``threshold = min(min_readers, number of readers of that image)``; ``min_readers`` defaults
  to **2** (a 2-of-3 majority for training images; the single consensus reader of a test image);
* ``mlct[k] = 1`` when at least ``threshold`` readers marked a class mapped to ``k``;
* ``mcct = 1`` (abnormal) when at least ``threshold`` readers marked *anything* (local or global
  label, including classes outside the chosen class set); otherwise 0 ("No finding");
* boxes (``box_fusion="cluster"``, default): for each positive class, boxes from different
  readers are grouped greedily (a box joins the group whose mean box it overlaps with IoU >=
  ``box_iou``, default 0.4 -- the competition's matching IoU -- and that has no box of its
  reader yet); groups drawn by at least ``threshold`` readers are kept as their mean box.
  ``box_fusion="all"`` keeps every box of every positive class instead.

Targets: ``mlct`` over ``classes`` (default the 14 VinBigData local classes,
``VINBIGDATA_CLASSES``; ``"synth"`` = the simulator's classes, in its order, so one model fits
both; a list of known names picks a subset; a dict ``{source name: course name}`` maps and
merges), boxes in pixels of the ``image_size`` image (each image's own
Rows/Columns), ``box_mm`` = longer box side in mm from PixelSpacing (NaN when absent; the
simulator's convention), and with ``token_grid=g`` also ``token_map`` ``[C, g, g]``
(:func:`mlcak_lib.tokens.boxes_to_token_map`), as the simulator does.
Images come from the preprocessed cache when present (``python -m mlcak_lib.realdata.preprocess
--dataset vindr --root ...``), otherwise from the DICOM files.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .. import config
from ..synth.config import SynthConfig
from .common import (ImageFileDataset, Record, drop_invalid_table_boxes, normalize_name, normalize_split, read_table,
                     seeded_split)
from .errors import DataFormatError, DataQualityWarning, DataReport, DatasetNotFoundError

VINBIGDATA_CLASSES: tuple[str, ...] = (
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Consolidation", "ILD",
    "Infiltration", "Lung Opacity", "Nodule/Mass", "Other lesion", "Pleural effusion",
    "Pleural thickening", "Pneumothorax", "Pulmonary fibrosis",
)
"""The 14 local classes of the Kaggle VinBigData release, in ``class_id`` order (the default ``mlct``)."""
PHYSIONET_LOCAL: tuple[str, ...] = VINBIGDATA_CLASSES + (
    "Clavicle fracture", "Edema", "Emphysema", "Enlarged PA", "Lung cavity", "Lung cyst",
    "Mediastinal shift", "Rib fracture",
)
"""The 22 local labels of the PhysioNet release."""
PHYSIONET_GLOBAL: tuple[str, ...] = ("COPD", "Lung tumor", "Pneumonia", "Tuberculosis", "Other diseases")
"""The global labels besides "No finding" (the test CSV spells the last one "Other disease")."""
NO_FINDING = "No finding"
ALIASES: dict[str, str] = {"other disease": "other diseases", "other lesions": "other lesion"}
DEFAULT_MIN_READERS = 2
DEFAULT_BOX_IOU = 0.4
SEARCH_SUBDIRS: tuple[str, ...] = (
    ".", "vindr-cxr", "vindr-cxr/1.0.0", "physionet.org/files/vindr-cxr/1.0.0",
    "vinbigdata-chest-xray-abnormalities-detection", "vinbigdata", "vindr",
)
HOW_TO_GET = (
    "VinDr-CXR needs credentialed access: PhysioNet https://physionet.org/content/vindr-cxr/ "
    "(DICOM + annotations/), or the Kaggle VinBigData competition "
    "https://www.kaggle.com/competitions/vinbigdata-chest-xray-abnormalities-detection "
    "(train.csv + train/); point MLCAK_DATA_ROOT (or root=) at the folder that holds them."
)
IMAGE_SUFFIXES: tuple[str, ...] = (".dicom", ".dcm", ".png", ".jpg", ".jpeg")
_RESERVED = {"image_id", "rad_id", "class_name", "class_id", "x_min", "y_min", "x_max", "y_max"}


def _canon(name: object) -> str:
    n = normalize_name(name)
    return ALIASES.get(n, n)


def find_vindr(root: str | os.PathLike) -> tuple[str, Path]:
    """``("physionet" | "kaggle", folder)`` of the VinDr-CXR copy under ``root``, or DatasetNotFoundError."""
    root = Path(root).expanduser()
    for sub in SEARCH_SUBDIRS:
        base = (root / sub) if sub != "." else root
        if (base / "annotations" / "annotations_train.csv").is_file():
            return "physionet", base
        if (base / "train.csv").is_file():
            return "kaggle", base
    raise DatasetNotFoundError(
        f"VinDr-CXR not found under {root} (resolved from root= or MLCAK_DATA_ROOT): expected "
        "annotations/annotations_train.csv + train/<image_id>.dicom (PhysioNet layout) or "
        "train.csv + train/ (Kaggle VinBigData layout) in it or in one of its subfolders "
        f"{', '.join(s for s in SEARCH_SUBDIRS if s != '.')}. {HOW_TO_GET}"
    )


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def cluster_boxes(boxes: Sequence[tuple[str, np.ndarray]], min_readers: int, iou: float = DEFAULT_BOX_IOU) -> list[np.ndarray]:
    """Fuse one class's ``(reader, box)`` pairs: greedy IoU groups, one box per reader per group,
    groups with at least ``min_readers`` distinct readers kept as their mean box (input order)."""
    groups: list[tuple[set, list]] = []
    for reader, box in boxes:
        box = np.asarray(box, dtype=np.float64)
        best, best_iou = None, iou
        for g in groups:
            if reader in g[0]:
                continue
            v = _iou(np.mean(g[1], axis=0), box)
            if v >= best_iou:
                best, best_iou = g, v
        if best is None:
            groups.append(({reader}, [box]))
        else:
            best[0].add(reader)
            best[1].append(box)
    return [np.mean(g[1], axis=0) for g in groups if len(g[0]) >= min_readers]


def fuse_image(rows: Sequence[tuple[str, str, np.ndarray | None]], label_rows: Sequence[tuple[str, set]],
               targets: Mapping[str, int], num_classes: int, min_readers: int = DEFAULT_MIN_READERS,
               box_iou: float = DEFAULT_BOX_IOU, box_fusion: str = "cluster"):
    """Fuse the readers of one image (the documented rule; see the module docstring).

    ``rows``: ``(reader, canonical class name, box or None)`` from the annotation table;
    ``label_rows``: ``(reader, set of canonical positive names)`` from an image-label table;
    ``targets``: canonical source name -> class index. Returns ``(mlct, mcct, boxes, labels)``.
    """
    positives: dict[str, set] = {}
    for reader, cls, _ in rows:
        positives.setdefault(reader, set())
        if cls != _canon(NO_FINDING):
            positives[reader].add(cls)
    for reader, names in label_rows:
        positives.setdefault(reader, set()).update(n for n in names if n != _canon(NO_FINDING))
    n_readers = len(positives)
    threshold = max(1, min(int(min_readers), n_readers))
    mlct = np.zeros(num_classes, dtype=np.float32)
    for k in range(num_classes):
        votes = sum(1 for names in positives.values() if any(targets.get(n) == k for n in names))
        mlct[k] = float(votes >= threshold) if n_readers else 0.0
    mcct = int(sum(1 for names in positives.values() if names) >= threshold) if n_readers else 0
    boxes, labels = [], []
    for k in np.flatnonzero(mlct):
        cand = [(r, b) for r, c, b in rows if b is not None and targets.get(c) == k]
        fused = [b for _, b in cand] if box_fusion == "all" else cluster_boxes(cand, threshold, box_iou)
        boxes.extend(fused)
        labels.extend([int(k)] * len(fused))
    boxes_arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return mlct, mcct, boxes_arr, np.asarray(labels, dtype=np.int64)


def _class_targets(classes, known: Sequence[str]) -> tuple[tuple[str, ...], dict[str, int]]:
    known_c = {_canon(n): n for n in known}
    if classes is None:
        classes = VINBIGDATA_CLASSES
    elif isinstance(classes, str) and classes == "synth":  # the simulator's classes (VinDr names)
        classes = SynthConfig().classes
    pairs = list(classes.items()) if isinstance(classes, Mapping) else [(c, c) for c in classes]
    unknown = [s for s, _ in pairs if _canon(s) not in known_c]
    if unknown:
        raise DataFormatError(
            f"VinDr-CXR: unknown class name(s) in classes=: {', '.join(map(str, unknown))}; "
            f"known: {', '.join(known)}."
        )
    names: list[str] = []
    targets: dict[str, int] = {}
    for src, dst in pairs:
        if dst not in names:
            names.append(dst)
        targets[_canon(src)] = names.index(dst)
    return tuple(names), targets


class VinDrCXRDataset(ImageFileDataset):
    """One split of VinDr-CXR as course items (see the module docstring for layouts and fusion).

    ``dataset.class_names`` orders ``mlct``; ``dataset.skipped`` / ``dataset.report`` list what was
    left out; ``dataset.layout`` is ``"physionet"`` or ``"kaggle"``.
    """

    dataset_name = "VinDr-CXR"
    has_boxes = True

    def __init__(self, split: str, resolutions: Sequence[int] = (28,), root: str | os.PathLike | None = None, *,
                 classes: Sequence[str] | Mapping[str, str] | None = None,
                 min_readers: int = DEFAULT_MIN_READERS, box_iou: float = DEFAULT_BOX_IOU,
                 box_fusion: str = "cluster", val_fraction: float = 0.1, test_fraction: float = 0.1,
                 seed: int = 0, image_size: int = 224, square: str = "pad", size: int | None = None,
                 use_cache: bool = True, scan: bool = False, on_invalid_box: str = "skip", token_grid: int | None = None,
                 image_dir: str | os.PathLike | None = None, size_table: str | os.PathLike | None = None,
                 use_image_labels: bool = True):
        if box_fusion not in ("cluster", "all"):
            raise ValueError(f"box_fusion must be 'cluster' or 'all', got {box_fusion!r}")
        if int(min_readers) < 1:
            raise ValueError(f"min_readers must be >= 1, got {min_readers}")
        split = normalize_split(split)
        self.token_grid = token_grid
        self.root = config.data_root(root)
        self.layout, self.base = find_vindr(self.root)
        self.min_readers, self.box_iou, self.box_fusion = int(min_readers), float(box_iou), box_fusion
        report = DataReport(dataset=f"VinDr-CXR {split}")
        known = PHYSIONET_LOCAL + PHYSIONET_GLOBAL if self.layout == "physionet" else VINBIGDATA_CLASSES
        self.class_names, self._targets = _class_targets(classes, known)
        known_all = {_canon(n) for n in known} | {_canon(NO_FINDING)}

        if self.layout == "physionet":
            official = "test" if split == "test" else "train"
            ann_path = self.base / "annotations" / f"annotations_{official}.csv"
            if not ann_path.is_file():
                raise DatasetNotFoundError(f"VinDr-CXR (PhysioNet layout) in {self.base}: {ann_path.name} is missing "
                                           f"from annotations/. {HOW_TO_GET}")
            lab_path = self.base / "annotations" / f"image_labels_{official}.csv"
            lab_path = lab_path if use_image_labels and lab_path.is_file() else None
            img_dir = Path(image_dir) if image_dir is not None else self.base / official
            fractions = {"train": 1.0 - val_fraction, "val": val_fraction} if official == "train" else None
        else:
            ann_path, lab_path, official = self.base / "train.csv", None, "train"
            img_dir = Path(image_dir) if image_dir is not None else self.base / "train"
            fractions = {"train": 1.0 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}
        if not img_dir.is_dir():
            raise DatasetNotFoundError(
                f"VinDr-CXR ({self.layout} layout): image folder {img_dir} is missing (expected "
                f"{img_dir.name}/<image_id>.dicom beside {ann_path.name}). {HOW_TO_GET}")

        rows_by_id, label_rows_by_id = self._read_tables(ann_path, lab_path, known_all)
        ids = sorted(set(rows_by_id) | set(label_rows_by_id))
        if fractions is not None:
            assign = seeded_split(ids, fractions, seed)
            ids = [i for i in ids if assign[i] == split]
        files = {}
        for entry in os.scandir(img_dir):
            stem, suffix = os.path.splitext(entry.name)
            if suffix.lower() in IMAGE_SUFFIXES and stem not in files:
                files[stem] = Path(entry.path)
        frames = self._size_table(size_table, files) if self.layout == "kaggle" else {}

        records = []
        for image_id in ids:
            mlct, mcct, boxes, labels = fuse_image(
                rows_by_id.get(image_id, []), label_rows_by_id.get(image_id, []), self._targets,
                len(self.class_names), self.min_readers, self.box_iou, self.box_fusion)
            path = files.get(image_id, img_dir / f"{image_id}.dicom")
            records.append(Record(image_id, path, mlct, mcct, boxes, labels, frames.get(image_id)))
        drop_invalid_table_boxes(records, on_invalid_box, report, "VinDr-CXR")
        dir_hash = hashlib.sha1(str(img_dir.resolve()).encode()).hexdigest()[:10]
        cache_folder = (config.cache_dir(create=False) / "vindr" / f"{self.layout}-{dir_hash}"
                        / f"{int(image_size)}-{square}" / img_dir.name)
        self._setup(records, split, resolutions, image_size, square, cache_folder, use_cache, scan,
                     on_invalid_box, size, report)

    def _read_tables(self, ann_path: Path, lab_path: Path | None, known_all: set):
        df = read_table(ann_path, ["image_id", "class_name", "x_min", "y_min", "x_max", "y_max"], "VinDr-CXR")
        classes = df["class_name"].map(_canon)
        unknown = sorted(set(df["class_name"][~classes.isin(known_all)].astype(str)))
        if unknown:
            raise DataFormatError(
                f"VinDr-CXR {ann_path.name}: unknown class name(s) {', '.join(unknown[:10])}"
                f"{' ...' if len(unknown) > 10 else ''}; expected the {self.layout} classes "
                f"({', '.join(sorted(known_all))}).")
        rcol = next((c for c in df.columns if normalize_name(c) == "rad_id"), None)
        lab = read_table(lab_path, ["image_id"], "VinDr-CXR") if lab_path is not None else None
        lab_rcol = None if lab is None else next((c for c in lab.columns if normalize_name(c) == "rad_id"), None)
        # a table without rad_id holds consensus labels: then the whole image has one (consensus) reader
        consensus = rcol is None or (lab is not None and lab_rcol is None)
        readers = (["consensus"] * len(df) if consensus else df[rcol].fillna("consensus").astype(str).tolist())
        coords = df[["x_min", "y_min", "x_max", "y_max"]].apply(np_numeric).to_numpy(np.float64)
        no_box = {_canon(NO_FINDING)} | {_canon(g) for g in PHYSIONET_GLOBAL}
        rows_by_id: dict[str, list] = {}
        for i, (image_id, cls) in enumerate(zip(df["image_id"].astype(str), classes)):
            reader = readers[i]
            box = None
            if cls not in no_box:
                box = coords[i]  # NaN coordinates are reported by drop_invalid_table_boxes
            rows_by_id.setdefault(image_id, []).append((reader, cls, box))
        label_rows_by_id: dict[str, list] = {}
        if lab is not None:
            label_cols = [c for c in lab.columns if c != "image_id" and c != lab_rcol]
            unknown = [c for c in label_cols if _canon(c) not in known_all]
            if unknown:
                raise DataFormatError(
                    f"VinDr-CXR {lab_path.name}: unknown label column(s) {', '.join(map(str, unknown))}; expected "
                    f"the 28 PhysioNet labels ({', '.join(PHYSIONET_LOCAL + PHYSIONET_GLOBAL)}, {NO_FINDING}); "
                    "pass use_image_labels=False to ignore this file.")
            values = lab[label_cols].apply(np_numeric).fillna(0).to_numpy()
            if values.size and not np.isin(values, (0, 1)).all():
                raise DataFormatError(f"VinDr-CXR {lab_path.name}: label columns must hold 0 or 1.")
            canon = [_canon(c) for c in label_cols]
            rids = ["consensus"] * len(lab) if consensus else lab[lab_rcol].fillna("consensus").astype(str).tolist()
            for image_id, reader, row in zip(lab["image_id"].astype(str), rids, values):
                names = {canon[j] for j in np.flatnonzero(row == 1)}
                label_rows_by_id.setdefault(image_id, []).append((reader, names))
        return rows_by_id, label_rows_by_id

    def _size_table(self, size_table, files: dict) -> dict:
        path = Path(size_table) if size_table is not None else self.base / "train_meta.csv"
        is_raster = any(p.suffix.lower() not in (".dicom", ".dcm") for p in list(files.values())[:50])
        if not path.is_file():
            if size_table is not None:
                raise DatasetNotFoundError(f"VinDr-CXR: size table {path} not found.")
            if is_raster:
                warnings.warn("VinDr-CXR: PNG/JPEG images without a size table (train_meta.csv with image_id, "
                              "dim0, dim1); boxes are assumed to be in the pixels of the image files.",
                              DataQualityWarning, stacklevel=3)
            return {}
        import pandas as pd

        df = pd.read_csv(path)
        cols = {normalize_name(c): c for c in df.columns}
        for h, w in (("dim0", "dim1"), ("height", "width"), ("rows", "columns"), ("original_height", "original_width")):
            if "image_id" in cols and h in cols and w in cols:
                return {str(i): (int(a), int(b)) for i, a, b in zip(df[cols["image_id"]], df[cols[h]], df[cols[w]])}
        raise DataFormatError(f"VinDr-CXR size table {path.name}: needs image_id and dim0, dim1 (or height, width; "
                              f"or rows, columns) holding the original size; found {', '.join(map(str, df.columns))}.")


def np_numeric(series):
    """A pandas column as floats (blank or non-numeric -> NaN)."""
    import pandas as pd

    return pd.to_numeric(series, errors="coerce")
