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

The training code reaches real data through three functions used by
:func:`mlcak_lib.train.get_splits`, :func:`~mlcak_lib.train.get_teacher` and
:func:`~mlcak_lib.train.data_config` when the switch names a real dataset:
:func:`real_splits` (in-memory splits with the requested views), :func:`real_class_names` and
:func:`real_data_config` (what enters the cache keys of models trained on it, including a hash of
the adapters' source, so a changed adapter means retrained models).
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, MutableMapping, Sequence

from . import config
from .realdata.errors import DatasetNotFoundError

DATASET_NAMES: tuple[str, ...] = ("synth", "vindr", "chestmnist", "pneumoniamnist", "folder")

__all__ = ["DATASET_NAMES", "DatasetNotFoundError", "make_dataset", "real_splits", "real_class_names", "real_data_config"]


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


def _size_kw(split: str, sizes: Mapping[str, int] | None) -> dict[str, int]:
    return {"size": int(sizes[split])} if sizes and split in sizes else {}


def real_splits(name: str, resolutions: Sequence[int], splits: Sequence[str] = ("train", "val", "test"),
                sizes: Mapping[str, int] | None = None, seed: int = 0,
                memo: MutableMapping[str, Any] | None = None) -> dict[str, Any]:
    """The splits of real dataset ``name`` as :class:`mlcak_lib.train.InMemorySplit` with ``resolutions``.

    Each split is read once (``materialize``) at the adapter's image size and memoised in
    ``memo`` (the training code passes its own); low resolutions are area-resized from it. A
    resolution above the adapter's image size is an error that says which file to get.
    ``sizes`` caps the number of images per split (``size=`` of the adapter).
    """
    from .train import materialize, with_views

    memo = {} if memo is None else memo
    root = str(config.data_root())
    out = {}
    for split in splits:
        kw = _size_kw(split, sizes)
        key = json.dumps(["real", name, root, split, kw.get("size"), seed])
        if key not in memo:
            ds = make_dataset(split, resolutions=(), name=name, **kw)
            if len(ds) == 0:
                raise ValueError(f"dataset {name!r}: the {split!r} split is empty (data folder {root})")
            memo[key] = materialize(ds, [int(ds.image_size)], name=split)
        full = memo[key]
        top = max(full.images)
        if max(int(r) for r in resolutions) > top:
            hint = (f"; for MedMNIST+ put {name}_224.npz (the 224-px file) into the data folder"
                    if name in ("chestmnist", "pneumoniamnist") else "")
            raise ValueError(f"dataset {name!r} holds {top}-px images, but {max(resolutions)} px were asked "
                             f"(the teacher needs 224 px){hint}")
        out[split] = with_views(full, resolutions)
    return out


def real_class_names(name: str) -> list[str]:
    """The MLCT class names of real dataset ``name`` (from its training split)."""
    return list(make_dataset("train", resolutions=(), name=name).class_names)


def real_data_config(name: str, sizes: Mapping[str, int] | None = None, seed: int = 0) -> dict[str, Any]:
    """What identifies models trained on real dataset ``name``: name, data folder, split sizes,
    seed and a hash of the adapters' source (``realdata``, ``dicom``, ``dataswitch``)."""
    from .train import source_hash

    return {"dataset": name, "root": str(config.data_root()), "seed": int(seed),
            "sizes": {k: int(v) for k, v in (sizes or {}).items()} or "all",
            "adapter_code": source_hash("realdata", "dicom", "dataswitch")}
