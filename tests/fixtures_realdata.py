"""Tiny real-data layouts the realdata tests write themselves (no patient data anywhere).

Every image is a dark background with one bright square (``SQUARE``), so a test can check that a
box scaled to the 224 image lands on the bright region. DICOMs are written with pydicom
(ExplicitVRLittleEndian, MONOCHROME1 and MONOCHROME2, 64x80 and 96x96 pixels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mlcak_lib.realdata.vindr import NO_FINDING, PHYSIONET_GLOBAL, PHYSIONET_LOCAL

# image_id -> (rows, cols, photometric, bright square (x0, y0, x1, y1) in original pixels)
IMAGES = {
    "img_a": (64, 80, "MONOCHROME2", (40, 10, 60, 30)),
    "img_b": (96, 96, "MONOCHROME1", (20, 50, 50, 80)),
    "img_c": (64, 80, "MONOCHROME2", (5, 5, 15, 15)),
    "img_d": (96, 96, "MONOCHROME1", (60, 10, 90, 40)),
    "img_e": (80, 64, "MONOCHROME2", (10, 40, 40, 70)),
    "img_f": (64, 80, "MONOCHROME1", (30, 30, 50, 50)),
}
TEST_IMAGES = {
    "tst_a": (96, 96, "MONOCHROME2", (10, 10, 40, 40)),
    "tst_b": (64, 80, "MONOCHROME1", (50, 20, 70, 40)),
}
SPACING = (0.5, 0.4)  # (row, column) mm


def square_image(rows: int, cols: int, square, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    img = np.full((rows, cols), low, dtype=np.float64)
    x0, y0, x1, y1 = square
    img[y0:y1, x0:x1] = high
    return img


def write_dicom(path: Path, rows: int, cols: int, photometric: str, square, spacing=SPACING) -> Path:
    """A 12-bit DICOM whose *displayed* image is dark with a bright ``square``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    shown = square_image(rows, cols, square, 0.1, 0.9)
    stored = (1.0 - shown if photometric == "MONOCHROME1" else shown) * 4000
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if spacing is not None:
        ds.PixelSpacing = [f"{spacing[0]:g}", f"{spacing[1]:g}"]
    ds.PixelData = stored.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def jitter(box, d):
    return tuple(v + d for v in box)


# annotation rows (image_id, rad_id, class_name, box or None)
def physionet_train_rows():
    a, b = IMAGES["img_a"][3], IMAGES["img_b"][3]
    d, e, f = IMAGES["img_d"][3], IMAGES["img_e"][3], IMAGES["img_f"][3]
    return [
        # img_a: Nodule/Mass by 3 readers (R3 somewhere else), Aortic enlargement by R3 only
        ("img_a", "R1", "Nodule/Mass", a), ("img_a", "R2", "Nodule/Mass", jitter(a, 1)),
        ("img_a", "R3", "Nodule/Mass", (0, 50, 6, 60)), ("img_a", "R3", "Aortic enlargement", (20, 20, 30, 30)),
        # img_b: Pleural effusion by all three, boxes over the square
        ("img_b", "R1", "Pleural effusion", b), ("img_b", "R2", "Pleural effusion", jitter(b, -1)),
        ("img_b", "R3", "Pleural effusion", jitter(b, 2)),
        # img_c: normal
        ("img_c", "R1", NO_FINDING, None), ("img_c", "R2", NO_FINDING, None), ("img_c", "R3", NO_FINDING, None),
        # img_d: Pneumothorax by one reader only -> normal
        ("img_d", "R1", "Pneumothorax", d), ("img_d", "R2", NO_FINDING, None), ("img_d", "R3", NO_FINDING, None),
        # img_e: Cardiomegaly by R1 and R2, Rib fracture (PhysioNet-only class) by R1 and R2
        ("img_e", "R1", "Cardiomegaly", e), ("img_e", "R2", "Cardiomegaly", jitter(e, 1)),
        ("img_e", "R1", "Rib fracture", (1, 1, 5, 5)), ("img_e", "R2", "Rib fracture", (1, 1, 5, 5)),
        ("img_e", "R3", NO_FINDING, None),
        # img_f: normal
        ("img_f", "R4", NO_FINDING, None), ("img_f", "R5", NO_FINDING, None), ("img_f", "R6", NO_FINDING, None),
    ]


def _annotation_frame(rows, with_rad=True, class_id=False):
    out = []
    for image_id, rad, cls, box in rows:
        row = {"image_id": image_id}
        if with_rad:
            row["rad_id"] = rad
        row["class_name"] = cls
        if class_id:
            from mlcak_lib.realdata.vindr import VINBIGDATA_CLASSES

            row["class_id"] = VINBIGDATA_CLASSES.index(cls) if cls in VINBIGDATA_CLASSES else 14
        box = box if box is not None else (np.nan,) * 4
        row.update(dict(zip(("x_min", "y_min", "x_max", "y_max"), box)))
        out.append(row)
    return pd.DataFrame(out)


LABEL_COLUMNS = list(PHYSIONET_LOCAL) + list(PHYSIONET_GLOBAL) + [NO_FINDING]


def _labels_frame(rows, test=False):
    records = {}
    for image_id, rad, cls, _ in rows:
        key = (image_id, None if test else rad)
        rec = records.setdefault(key, {c: 0 for c in LABEL_COLUMNS})
        rec[cls] = 1
    out = []
    for (image_id, rad), rec in records.items():
        row = {"image_id": image_id}
        if not test:
            row["rad_ID"] = rad
        row.update(rec)
        out.append(row)
    df = pd.DataFrame(out)
    if test:
        df = df.rename(columns={"Other diseases": "Other disease"})
    return df


def make_physionet(root: Path, labels: bool = True) -> Path:
    """PhysioNet layout under ``root`` (6 training images, 2 test images, 3 readers, No finding rows)."""
    for image_id, (r, c, ph, sq) in IMAGES.items():
        write_dicom(root / "train" / f"{image_id}.dicom", r, c, ph, sq)
    for image_id, (r, c, ph, sq) in TEST_IMAGES.items():
        write_dicom(root / "test" / f"{image_id}.dicom", r, c, ph, sq)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    train = physionet_train_rows()
    test = [("tst_a", None, "Nodule/Mass", TEST_IMAGES["tst_a"][3]), ("tst_b", None, NO_FINDING, None)]
    _annotation_frame(train).to_csv(root / "annotations" / "annotations_train.csv", index=False)
    _annotation_frame(test, with_rad=False).to_csv(root / "annotations" / "annotations_test.csv", index=False)
    if labels:
        lab = _labels_frame(train)
        # img_f: no box, but two readers tick the global label Tuberculosis -> abnormal (mcct 1)
        sel = (lab.image_id == "img_f") & lab.rad_ID.isin(["R4", "R5"])
        lab.loc[sel, "Tuberculosis"], lab.loc[sel, NO_FINDING] = 1, 0
        lab.to_csv(root / "annotations" / "image_labels_train.csv", index=False)
        tl = _labels_frame(test, test=True)
        tl.loc[tl.image_id == "tst_a", "Other disease"] = 1
        tl.to_csv(root / "annotations" / "image_labels_test.csv", index=False)
    return root


def kaggle_rows():
    return [r for r in physionet_train_rows() if r[2] != "Rib fracture"]


def make_kaggle(root: Path, png_size: int | None = None) -> Path:
    """Kaggle VinBigData layout: train.csv + train/*.dicom, or resized PNGs + train_meta.csv."""
    from PIL import Image

    meta = []
    for image_id, (r, c, ph, sq) in IMAGES.items():
        if png_size is None:
            write_dicom(root / "train" / f"{image_id}.dicom", r, c, ph, sq)
        else:
            img = square_image(r, c, sq, 0.1, 0.9)
            ys = (np.arange(png_size) + 0.5) * r / png_size
            xs = (np.arange(png_size) + 0.5) * c / png_size
            small = img[ys.astype(int)[:, None], xs.astype(int)[None, :]]  # nearest: keeps the square sharp
            (root / "train").mkdir(parents=True, exist_ok=True)
            Image.fromarray((small * 255).round().astype(np.uint8), mode="L").save(root / "train" / f"{image_id}.png")
            meta.append({"image_id": image_id, "dim0": r, "dim1": c})
    _annotation_frame(kaggle_rows(), class_id=True).to_csv(root / "train.csv", index=False)
    if meta:
        pd.DataFrame(meta).to_csv(root / "train_meta.csv", index=False)
    return root


def make_medmnist(root: Path, name: str = "chestmnist", sizes=(28, 64), n=(6, 3, 4)) -> Path:
    """Tiny MedMNIST+ npz files; the 64 px images are a bright square, the 28 px ones noise."""
    rng = np.random.default_rng(0)
    n_classes = 14 if name == "chestmnist" else 1
    root.mkdir(parents=True, exist_ok=True)
    labels = {s: rng.integers(0, 2, size=(k, n_classes)).astype(np.uint8) for s, k in zip(("train", "val", "test"), n)}
    labels["train"][0] = 0  # one normal image for sure
    for size in sizes:
        arrays = {}
        for split, k in zip(("train", "val", "test"), n):
            img = np.full((k, size, size), 20, np.uint8)
            img[:, size // 4 : size // 2, size // 4 : size // 2] = 230
            arrays[f"{split}_images"] = img
            arrays[f"{split}_labels"] = labels[split]
        fname = f"{name}.npz" if size == 28 else f"{name}_{size}.npz"
        np.savez_compressed(root / fname, **arrays)
    return root


def make_folder(root: Path) -> Path:
    """labels.csv + boxes.csv + images: gray PNG, RGB-stored gray PNG, JPEG, 16-bit PNG, DICOM."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    (root / "imgs").mkdir(exist_ok=True)
    sq = (30, 20, 60, 50)
    gray = (square_image(70, 90, sq, 0.1, 0.9) * 255).round().astype(np.uint8)
    Image.fromarray(gray, mode="L").save(root / "imgs" / "gray.png")
    Image.fromarray(np.stack([gray] * 3, -1), mode="RGB").save(root / "imgs" / "rgbgray.png")
    Image.fromarray(np.stack([gray] * 3, -1), mode="RGB").save(root / "imgs" / "photo.jpg", quality=90)
    Image.fromarray((square_image(90, 70, (10, 30, 40, 60), 0.1, 0.9) * 65535).astype(np.uint16)).save(root / "imgs" / "deep.png")
    write_dicom(root / "imgs" / "scan.dcm", 96, 96, "MONOCHROME1", (20, 50, 50, 80))
    Image.fromarray(gray, mode="L").save(root / "imgs" / "normal1.png")
    labels = pd.DataFrame([
        {"path": "imgs/gray.png", "split": "train", "abnormal": 1, "Nodule": 1, "Effusion": 0},
        {"path": "imgs/rgbgray.png", "split": "train", "abnormal": 1, "Nodule": 1, "Effusion": 0},
        {"path": "imgs/photo.jpg", "split": "val", "abnormal": 1, "Nodule": 0, "Effusion": 1},
        {"path": "imgs/deep.png", "split": "train", "abnormal": 1, "Nodule": 0, "Effusion": 1},
        {"path": "imgs/scan.dcm", "split": "test", "abnormal": 1, "Nodule": 0, "Effusion": 1},
        {"path": "imgs/normal1.png", "split": "train", "abnormal": 0, "Nodule": 0, "Effusion": ""},
    ])
    labels.to_csv(root / "labels.csv", index=False)
    boxes = pd.DataFrame([
        {"path": "imgs/gray.png", "class_name": "Nodule", "x_min": 30, "y_min": 20, "x_max": 60, "y_max": 50},
        {"path": "imgs/rgbgray.png", "class_name": "nodule", "x_min": 30, "y_min": 20, "x_max": 60, "y_max": 50},
        {"path": "imgs/photo.jpg", "class_name": "Effusion", "x_min": 30, "y_min": 20, "x_max": 60, "y_max": 50},
        {"path": "imgs/deep.png", "class_name": "Effusion", "x_min": 10, "y_min": 30, "x_max": 40, "y_max": 60},
        {"path": "imgs/scan.dcm", "class_name": "Effusion", "x_min": 20, "y_min": 50, "x_max": 50, "y_max": 80},
    ])
    boxes.to_csv(root / "boxes.csv", index=False)
    return root


def check_item(item: dict, resolutions, num_classes: int, image_size: int = 224, index: int | None = None) -> None:
    """Assert the sample contract of CONTRIBUTING.md."""
    assert set(item) == {"image", "lowres", "mlct", "mcct", "boxes", "box_labels", "box_mm", "index"}
    img = item["image"]
    assert isinstance(img, torch.Tensor) and img.dtype == torch.float32 and img.shape == (1, image_size, image_size)
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0 and torch.isfinite(img).all()
    assert sorted(item["lowres"]) == sorted(resolutions)
    for r, low in item["lowres"].items():
        assert low.dtype == torch.float32 and low.shape == (1, r, r)
        assert abs(float(low.mean()) - float(img.mean())) < 1e-4  # area_resize keeps the mean
    assert item["mlct"].dtype == torch.float32 and item["mlct"].shape == (num_classes,)
    assert set(item["mlct"].unique().tolist()) <= {0.0, 1.0}
    assert item["mcct"].dtype == torch.int64 and item["mcct"].shape == () and int(item["mcct"]) in (0, 1)
    k = item["boxes"].shape[0]
    assert item["boxes"].dtype == torch.float32 and item["boxes"].shape == (k, 4)
    assert item["box_labels"].dtype == torch.int64 and item["box_labels"].shape == (k,)
    assert item["box_mm"].dtype == torch.float32 and item["box_mm"].shape == (k,)
    if k:
        b = item["boxes"]
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert float(b.min()) >= 0 and float(b.max()) <= image_size
        assert ((item["box_labels"] >= 0) & (item["box_labels"] < num_classes)).all()
        assert (item["mlct"][item["box_labels"]] == 1).all()
    assert isinstance(item["index"], int)
    if index is not None:
        assert item["index"] == index


def box_contrast(item: dict, j: int = 0, margin: float = 3.0) -> tuple[float, float]:
    """Mean of the image inside box j (shrunk by ``margin`` px) and in a ring just outside it."""
    img = item["image"][0].numpy()
    x0, y0, x1, y1 = item["boxes"][j].tolist()
    inner = img[int(np.ceil(y0 + margin)) : int(y1 - margin), int(np.ceil(x0 + margin)) : int(x1 - margin)]
    mask = np.zeros_like(img, bool)
    mask[max(0, int(y0 - 3 * margin)) : int(y1 + 3 * margin), max(0, int(x0 - 3 * margin)) : int(x1 + 3 * margin)] = True
    mask[int(y0 - margin) if y0 > margin else 0 : int(y1 + margin) + 1, int(x0 - margin) if x0 > margin else 0 : int(x1 + margin) + 1] = False
    return float(inner.mean()), float(img[mask].mean())


@pytest.fixture
def cache_tmp(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("MLCAK_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def physionet_root(tmp_path):
    return make_physionet(tmp_path / "vindr")


@pytest.fixture
def kaggle_root(tmp_path):
    return make_kaggle(tmp_path / "vinbig")


@pytest.fixture
def folder_root(tmp_path):
    return make_folder(tmp_path / "own")


@pytest.fixture
def medmnist_root(tmp_path):
    root = make_medmnist(tmp_path / "mm", "chestmnist")
    make_medmnist(root, "pneumoniamnist")
    return root
