"""One switch for the course's data: the simulator or a real dataset (notebooks 01 and 04).

Every dataset name resolves to a concrete dataset, never to "whatever the environment says
later": :func:`resolve_dataset` reads the ``name`` argument, else ``MLCAK_DATASET``, else
``synth``, once, and everything downstream receives that name.

==================  ============================================================  =================
name                dataset                                                       boxes
==================  ============================================================  =================
``synth``           :class:`mlcak_lib.datasets.SynthCXRDataset` (the simulator)   yes
``vindr``           VinDr-CXR, PhysioNet or Kaggle layout                         yes (fused)
``chestmnist``      MedMNIST+ ChestMNIST (14 NIH labels)                           no
``pneumoniamnist``  MedMNIST+ PneumoniaMNIST (binary)                             no
``folder``          your own images + ``labels.csv`` (+ ``boxes.csv``)            optional
==================  ============================================================  =================

* :func:`make_dataset` -- one split as a torch dataset following the sample contract. Real data
  is read from ``root`` or ``MLCAK_DATA_ROOT``. A ``root`` given without a dataset name is never
  silently ignored: the layout is inferred from the folder (:func:`infer_dataset`) or a one-line
  error says what to set. A real dataset that is not found raises :class:`DatasetNotFoundError`
  saying what is missing, where it looked and how to get the data.
* :func:`get_splits` -- the splits as :class:`mlcak_lib.splits.InMemorySplit` with the requested
  resolutions, memoised in the process (cache layer 4 of :mod:`mlcak_lib.cache`).
* :func:`data_description` -- the one description of a dataset's splits that enters the cache
  keys of every model trained on it (:mod:`mlcak_lib.recipes`).
* :func:`dataset_class_names`, :func:`dataset_has_boxes` -- what a dataset offers, asked before
  any training.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import config
from .cache import adapter_fingerprint, stable_hash
from .datasets import SPLIT_SIZES, SynthCXRDataset
from .realdata.errors import DatasetNotFoundError
from .realdata.folder import FolderDataset, find_folder_csv
from .realdata.medmnist import MedMNISTDataset, find_medmnist
from .realdata.vindr import VinDrCXRDataset, find_vindr
from .splits import InMemorySplit, materialize, with_views
from .synth import SynthConfig

DATASET_NAMES: tuple[str, ...] = ("synth", "vindr", "chestmnist", "pneumoniamnist", "folder")
MEDMNIST_NAMES: tuple[str, ...] = ("chestmnist", "pneumoniamnist")

#: Simulator settings (``SynthConfig`` keyword overrides) of the course's data per profile. Both profiles use
#: the simulator's defaults (issue 12): five patients split by patient (``PATIENT_SPLITS["by_patient"]``: the
#: test patient is never seen in training) with the full anatomical variation. Until then the default profile
#: fixed one anatomy (``anatomy=0``), which made "abnormal" mean "differs from the one film" and gave the
#: teacher one attention map for every image; the measured learnability on unseen patients is in
#: ``mlcak_lib/data/results/learnability.md`` (``scripts/learnability.py``).
SYNTH_SETTINGS: dict[str, dict[str, Any]] = {"default": {}, "full": {}}

_SPLIT_MEMO: dict[str, InMemorySplit] = {}

__all__ = [
    "DATASET_NAMES", "DatasetNotFoundError", "SYNTH_SETTINGS", "resolve_dataset", "infer_dataset", "make_dataset",
    "synth_config", "dataset_class_names", "dataset_has_boxes", "data_description", "get_splits",
]


def resolve_dataset(name: str | None = None) -> str:
    """The concrete dataset name: ``name``, else ``$MLCAK_DATASET``, else ``"synth"``; ``ValueError`` if unknown."""
    resolved = config.get_dataset_name(name)
    if resolved not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {resolved!r} (from the name= argument or {config.ENV_DATASET}); "
                         f"choose one of {', '.join(DATASET_NAMES)}")
    return resolved


def infer_dataset(root: str | os.PathLike) -> str:
    """The real dataset whose layout the folder ``root`` holds (VinDr-CXR, MedMNIST+ npz, or a ``labels.csv``).

    Raises :class:`DatasetNotFoundError` in one line when no layout is recognised.
    """
    folder = Path(root).expanduser()
    probes = [("vindr", lambda: find_vindr(folder)), ("folder", lambda: find_folder_csv(folder))]
    probes += [(name, lambda name=name: find_medmnist(name, folder)) for name in MEDMNIST_NAMES]
    found = []
    for name, probe in probes:
        try:
            probe()
        except (DatasetNotFoundError, FileNotFoundError, OSError):
            continue
        found.append(name)
    if len(found) != 1:
        what = "no known layout" if not found else f"several layouts ({', '.join(found)})"
        raise DatasetNotFoundError(
            f"root={str(root)!r} was given without a dataset name and holds {what}: pass name= "
            f"(one of {', '.join(DATASET_NAMES[1:])}) or set {config.ENV_DATASET}; the simulator ('synth') takes no root")
    return found[0]


def synth_config(profile: str | None = None, **overrides: Any) -> SynthConfig:
    """The ``SynthConfig`` of the course's data for a profile (:data:`SYNTH_SETTINGS`, then ``overrides``)."""
    return SynthConfig(**{**SYNTH_SETTINGS[config.get_profile(profile)], **overrides})


def make_dataset(split: str, resolutions: Sequence[int] = (28,), name: str | None = None,
                 root: str | os.PathLike | None = None, profile: str | None = None, **kw: Any):
    """The ``split`` of the selected dataset, yielding items that follow the sample contract.

    ``name``: argument, else ``MLCAK_DATASET``, else ``synth``; with ``root`` given and no name at
    all, the layout of ``root`` decides (:func:`infer_dataset`). ``root``: argument, else
    ``MLCAK_DATA_ROOT``, else ``~/data``; the simulator takes none. ``profile`` goes to the
    simulator (real datasets have no profile-dependent settings; pass ``size=`` to use a subset).
    """
    if name is None and root is not None and not os.environ.get(config.ENV_DATASET):
        name = infer_dataset(root)
    name = resolve_dataset(name)
    if name == "synth":
        if root is not None:
            raise ValueError(f"the simulator ('synth') reads no data folder, but root={str(root)!r} was given: "
                             f"pass name= for a real dataset (one of {', '.join(DATASET_NAMES[1:])})")
        return SynthCXRDataset(split, resolutions=resolutions, profile=profile, **kw)
    config.get_profile(profile)  # validates the name even though real data ignores it
    root = config.data_root(root)
    if name == "vindr":
        return VinDrCXRDataset(split, resolutions, root, **kw)
    if name in MEDMNIST_NAMES:
        return MedMNISTDataset(split, resolutions, root, name=name, **kw)
    return FolderDataset(split, resolutions, root, **kw)


def dataset_class_names(dataset: str | None = None, profile: str | None = None) -> list[str]:
    """The MLCT class names of a dataset (the simulator's for the profile, or a real dataset's training split)."""
    name = resolve_dataset(dataset)
    if name == "synth":
        return list(synth_config(profile).classes)
    return list(make_dataset("train", resolutions=(), name=name).class_names)


def dataset_has_boxes(dataset: str | None = None) -> bool:
    """Whether a dataset carries lesion boxes (the local task needs them), asked of its training
    split without reading images (``has_boxes`` of the adapter)."""
    name = resolve_dataset(dataset)
    if name == "synth":
        return True
    return bool(getattr(make_dataset("train", resolutions=(), name=name), "has_boxes", False))


def data_description(dataset: str | None = None, profile: str | None = None, seed: int = 0,
                     sizes: Mapping[str, int] | None = None) -> dict[str, Any]:
    """What identifies a dataset's splits in the cache keys of the models trained on them.

    Simulator: profile, seed, split sizes, the generator's settings and their hash. Real data:
    name, data folder, seed, split sizes (``"all"`` unless capped) and a hash of the adapters'
    source (``realdata``, ``dicom``, ``dataswitch``), so a changed adapter means retrained models.
    Low resolutions are always ``area_resize`` views of the dataset's own images.
    """
    name = resolve_dataset(dataset)
    profile = config.get_profile(profile)
    views = "area_resize(image, r)"
    if name == "synth":
        sim = synth_config(profile)
        return {"dataset": name, "profile": profile, "seed": int(seed), "sizes": _split_sizes(name, profile, sizes),
                "synth_config": sim.to_dict(), "synth_hash": sim.config_hash(), "views": views}
    return {"dataset": name, "root": str(config.data_root()), "seed": int(seed),
            "sizes": _split_sizes(name, profile, sizes), "adapter_code": adapter_fingerprint(),
            "views": views}


def _split_sizes(name: str, profile: str, sizes: Mapping[str, int] | None) -> dict[str, int] | str:
    given = {k: int(v) for k, v in (sizes or {}).items()}
    if name == "synth":
        return {**SPLIT_SIZES[profile], **given}
    return given or "all"


def get_splits(
    resolutions: Sequence[int] = (224,),
    profile: str | None = None,
    seed: int = 0,
    splits: Sequence[str] = ("train", "val", "test"),
    sizes: Mapping[str, int] | None = None,
    dataset: str | None = None,
) -> dict[str, InMemorySplit]:
    """The splits of a dataset as :class:`~mlcak_lib.splits.InMemorySplit` holding ``resolutions``.

    Each split is read once at the dataset's own image size (the simulator through its on-disk
    cache, so a notebook run after another skips generation) and memoised within the Python
    process: asking again, or for another resolution of the same split, reuses the tensors in
    memory (low resolutions are area-resized from the full-size images). ``sizes`` overrides the
    number of images per split, e.g. ``{"train": 500}``. ``dataset``: the switch (argument, else
    ``MLCAK_DATASET``, else ``synth``).
    """
    name = resolve_dataset(dataset)
    profile = config.get_profile(profile)
    desc = data_description(name, profile, seed, sizes)
    wanted = sorted({int(r) for r in resolutions})
    out = {}
    for split in splits:
        key = stable_hash([desc, split], digits=16)
        if key not in _SPLIT_MEMO:
            _SPLIT_MEMO[key] = _read_split(name, profile, seed, split, desc["sizes"])
        full = _SPLIT_MEMO[key]
        top = max(full.images)
        if wanted and wanted[-1] > top:
            hint = (f"; for MedMNIST+ put {name}_224.npz (the 224-px file) into the data folder"
                    if name in MEDMNIST_NAMES else "")
            raise ValueError(f"dataset {name!r} holds {top}-px images, but {wanted[-1]} px were asked "
                             f"(the teacher needs 224 px){hint}")
        out[split] = with_views(full, wanted)
    return out


def _read_split(name: str, profile: str, seed: int, split: str, sizes: Mapping[str, int] | str) -> InMemorySplit:
    size = sizes.get(split) if isinstance(sizes, Mapping) else None
    if name == "synth":
        ds = SynthCXRDataset(split, resolutions=(), profile=profile, size=size, seed=seed, config=synth_config(profile),
                             cache=True)
    else:
        ds = make_dataset(split, resolutions=(), name=name, **({"size": int(size)} if size is not None else {}))
        if len(ds) == 0:
            raise ValueError(f"dataset {name!r}: the {split!r} split is empty (data folder {config.data_root()})")
    return materialize(ds, [int(ds.image_size)], name=split)
