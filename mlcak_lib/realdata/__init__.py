"""Real chest X-ray datasets behind the course's sample contract (notebook 03).

* :class:`VinDrCXRDataset` -- VinDr-CXR, PhysioNet or Kaggle VinBigData layout, three readers fused;
* :class:`MedMNISTDataset` -- ChestMNIST / PneumoniaMNIST from MedMNIST+ npz files (no boxes);
* :class:`FolderDataset` -- your own folder of PNG / JPEG / DICOM images plus a CSV.

Pick one through :func:`mlcak_lib.dataswitch.make_dataset` (``MLCAK_DATASET``, ``MLCAK_DATA_ROOT``).
Every item follows the sample contract in CONTRIBUTING.md; what an adapter skips, clips or drops
is listed in ``dataset.report`` (policy in :mod:`mlcak_lib.realdata.errors`). Convert DICOM
folders once with ``python -m mlcak_lib.realdata.preprocess``.
"""

from .errors import (
    CorruptImageError, DataFormatError, DataQualityWarning, DataReport, DatasetNotFoundError, EmptySplitError,
)
from .folder import FolderDataset
from .medmnist import CHESTMNIST_CLASSES, PNEUMONIAMNIST_CLASSES, MedMNISTDataset
from .vindr import VINBIGDATA_CLASSES, VinDrCXRDataset, fuse_image

__all__ = [
    "CHESTMNIST_CLASSES", "PNEUMONIAMNIST_CLASSES", "VINBIGDATA_CLASSES",
    "CorruptImageError", "DataFormatError", "DataQualityWarning", "DataReport", "DatasetNotFoundError",
    "EmptySplitError", "FolderDataset", "MedMNISTDataset", "VinDrCXRDataset", "fuse_image",
]
