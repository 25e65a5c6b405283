"""One switch for the course's data: the simulator or a real dataset (notebook 03).

``make_dataset(split, resolutions)`` returns the dataset named by the ``name`` argument or
``MLCAK_DATASET`` (default ``synth``), reading real data from ``root`` or ``MLCAK_DATA_ROOT``:

==================  ============================================================  =================
name                dataset                                                       boxes
==================  ============================================================  =================
``synth``           :class:`mlcak_lib.datasets.SynthCXRDataset` (the simulator)   yes
``vindr``           VinDr-CXR, PhysioNet or Kaggle layout                         yes (fused)
``chestmnist``      MedMNIST+ ChestMNIST (14 NIH labels)                           no
``pneumoniamnist``  MedMNIST+ PneumoniaMNIST (binary)                             no
``folder``          your own images + ``labels.csv`` (+ ``boxes.csv``)            optional
==================  ============================================================  =================

A real dataset that is not found raises :class:`DatasetNotFoundError` saying what is missing,
where it looked and how to get the data. Extra keyword arguments go to the adapter.
"""

from __future__ import annotations

import os
from typing import Sequence

from . import config
from .realdata.errors import DatasetNotFoundError

DATASET_NAMES: tuple[str, ...] = ("synth", "vindr", "chestmnist", "pneumoniamnist", "folder")

__all__ = ["DATASET_NAMES", "DatasetNotFoundError", "make_dataset"]


def make_dataset(split: str, resolutions: Sequence[int] = (28,), name: str | None = None,
                 root: str | os.PathLike | None = None, profile: str | None = None, **kw):
    """The ``split`` of the selected dataset, yielding items that follow the sample contract.

    ``name``: argument, else ``MLCAK_DATASET``, else ``synth``. ``root``: argument, else
    ``MLCAK_DATA_ROOT``, else ``~/data`` (ignored by ``synth``). ``profile`` goes to the simulator
    (real datasets have no profile-dependent settings; pass ``size=`` to use a subset).
    """
    name = config.get_dataset_name(name)
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r} (from the name= argument or {config.ENV_DATASET}); "
                         f"choose one of {', '.join(DATASET_NAMES)}")
    if name == "synth":
        from .datasets import SynthCXRDataset

        return SynthCXRDataset(split, resolutions=resolutions, profile=profile, **kw)
    config.get_profile(profile)  # validates the name even though real data ignores it
    root = config.data_root(root)
    if name == "vindr":
        from .realdata.vindr import VinDrCXRDataset

        return VinDrCXRDataset(split, resolutions, root, **kw)
    if name in ("chestmnist", "pneumoniamnist"):
        from .realdata.medmnist import MedMNISTDataset

        return MedMNISTDataset(split, resolutions, root, name=name, **kw)
    from .realdata.folder import FolderDataset

    return FolderDataset(split, resolutions, root, **kw)
