"""The one cache story of the course: what is kept, under which key, and what invalidates it (notebook 04).

Five layers keep work from being done twice. Every key is built with this module's helpers.

1. **Trained models** (:func:`load_or_train`): ``<cache>/models/<name>-<hash>.pt`` with
   ``hash = config_hash(name, config)`` over the name, the configuration dict (data description,
   architecture, training settings, objective, seed) and :func:`code_fingerprint` (the source of
   every module in :data:`MODEL_CODE`). Invalidated by any change of either. Names carry the
   dataset: ``teacher-<dataset>-<profile>``, ``student-<dataset>-<profile>-<variant>-r<px>``.
2. **Simulated images** (``datasets.SynthCXRDataset``): ``<cache>/synth/<key>/`` (float16 images +
   labels) with key = ``SynthConfig.config_hash()`` (with ``patients`` set, it covers the patient assets'
   checksums too) + :func:`simulator_fingerprint` (the source
   of :data:`SIMULATOR_CODE` and the reference table it reads) + split, seed and size. Editing the simulator can never serve stale
   images.
3. **Converted real images** (``mlcak-preprocess``, ``realdata.common``): one ``.npz`` per image
   under ``<cache>/<dataset>/<folder hash>/<size>-<square>/``, keyed by the image folder and the
   geometry. Delete the folder after changing the adapters' conversion code. Models trained on
   real data carry :func:`source_hash` of ``realdata``, ``dicom`` and ``dataswitch`` in their data
   description, so they are retrained then.
4. **In-memory splits** (``dataswitch.get_splits``): a dict inside the Python process keyed by the
   full data description, split and size; never stale, gone when the process ends.
5. **Teacher outputs** (``distill.shared_teacher_cache``): a small dict inside the process keyed by
   the teacher, the image tensor and the attention blocks, checked against a checksum of the
   teacher's weights.

Committed files that steer training but are *data*, not code (``data/tuned_weights.json``), enter the
keys through the configuration dict (the weights a variant uses), so retuning one weight retrains
only the students that use it.

:data:`MODEL_CODE` is an allow-list: a module that can change a trained model must be named there,
and ``tests/test_cache.py`` fails when a module of the package is in neither list, so a new module
forces the decision.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from . import __version__, checkpoints
from .config import cache_dir

#: Modules (or subpackages) whose source can change a model trained on the simulator: the data path
#: (with the reference table the simulator sizes its lesions from), the models and their input
#: normalisation (``dicom.NETWORK_MEAN``/``NETWORK_STD``), the objectives and the training loop.
#: Their content enters every model's cache key.
MODEL_CODE: tuple[str, ...] = (
    "attention", "attention_kd", "augment", "datasets", "dataswitch", "dicom", "distill", "guidance", "local_task", "metrics",
    "models", "recipes", "reference", "resize", "splits", "synth", "teacher_cache", "tokens", "train", "variants",
    "data/vindr_cxr_class_stats_derived.csv",
)
#: Modules that cannot change a trained model: presentation, settings, evaluation, the runner and the
#: real-data adapters (whose source enters real-data keys through :func:`source_hash` instead); and the
#: detection package, whose models take their own key (``detection.keys.detection_fingerprint``).
NOT_MODEL_CODE: tuple[str, ...] = (
    "__init__", "cache", "checkpoints", "config", "cost", "course", "envinfo", "localization", "manifest", "realdata", "realism",
    "resolution_loss", "results", "runner", "stats", "threads", "viz",
    # notebook 07's detectors: keyed by their own fingerprint (detection.keys), so the ViT teacher and students stay valid;
    # their runner reads, trains through detection.recipe and writes tables, so it changes no detector either
    "detection", "detection_runner", "detection_viz",
    # notebook 08's CT and report encoders: keyed by their own fingerprint (ctxr.keys), for the same reason; their
    # runner loads the committed teacher, trains through ctxr.recipe and writes tables
    "ctxr", "ctxr_runner", "ctxr_viz",
    # the two runners' shared command line (it trains nothing itself)
    "runner_cli",
)
#: What the simulator's disk cache (layer 2) depends on besides its settings.
SIMULATOR_CODE: tuple[str, ...] = ("synth", "resize", "tokens", "datasets", "reference",
                                   "data/vindr_cxr_class_stats_derived.csv")

_ROOT = Path(__file__).resolve().parent


def _module_files(name: str) -> list[Path]:
    target = _ROOT / name
    if target.is_file():  # a data file named with its suffix
        return [target]
    if target.is_dir():
        return sorted(target.rglob("*.py"))
    path = target.with_suffix(".py")
    if not path.is_file():
        raise ValueError(f"mlcak_lib has no module or package {name!r}")
    return [path]


def source_hash(*names: str) -> str:
    """10-hex-digit hash of the source of ``mlcak_lib`` modules or subpackages (e.g. ``"dicom"``, ``"realdata"``)
    or of package data files named with their suffix (``"data/....csv"``)."""
    h = hashlib.sha256()
    for name in names:
        for path in _module_files(name):
            h.update(path.relative_to(_ROOT).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:10]


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Library version + :func:`source_hash` of :data:`MODEL_CODE`: part of every model's cache key.

    Computed once per Python process (the code that runs is the code that was imported), so a file
    edited while a notebook runs does not change the cache key halfway through the notebook.
    """
    return f"{__version__}+{source_hash(*MODEL_CODE)}"


#: The code that can change the *teacher* (:data:`MODEL_CODE` without the students' distillation and
#: variants, and without ``recipes``, whose teacher settings all enter the teacher's configuration dict):
#: the teacher's key, and so its committed checkpoint, stays valid while the students' code changes.
TEACHER_CODE: tuple[str, ...] = tuple(m for m in MODEL_CODE
                                      if m not in ("attention_kd", "distill", "recipes", "teacher_cache", "variants"))


def code_parts(names: tuple[str, ...] = TEACHER_CODE) -> dict[str, str]:
    """``{module: source_hash(module)}``: what a code fingerprint is made of (a committed checkpoint keeps it,
    so a refusal can name the module that changed)."""
    return {name: source_hash(name) for name in names}


@functools.lru_cache(maxsize=1)
def teacher_fingerprint() -> str:
    """:func:`source_hash` of :data:`TEACHER_CODE` (once per process): the code part of the teacher's key."""
    return "teacher+" + source_hash(*TEACHER_CODE)


#: The real-data path: its source enters the data description of models trained on real data.
ADAPTER_CODE: tuple[str, ...] = ("realdata", "dicom", "dataswitch")


@functools.lru_cache(maxsize=1)
def adapter_fingerprint() -> str:
    """:func:`source_hash` of :data:`ADAPTER_CODE`, once per process (it is asked for on every ``get_splits``)."""
    return source_hash(*ADAPTER_CODE)


@functools.lru_cache(maxsize=1)
def simulator_fingerprint() -> str:
    """:func:`source_hash` of :data:`SIMULATOR_CODE`: part of the simulator's disk-cache key (layer 2)."""
    return source_hash(*SIMULATOR_CODE)


def stable_hash(payload: Any, digits: int = 12) -> str:
    """Hex digest of a JSON-able payload (sorted keys; non-JSON values through ``str``)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:digits]


def config_hash(name: str, config_dict: Mapping[str, Any], code: str | None = None) -> str:
    """12-hex-digit hash of ``name``, the configuration and the code fingerprint (``code``, default :func:`code_fingerprint`)."""
    return stable_hash({"name": name, "config": config_dict, "code": code if code is not None else code_fingerprint()})


class CacheMiss(FileNotFoundError):
    """:func:`load_or_train` with ``load_only=True`` found no cached model."""


def load_or_train(
    name: str,
    config_dict: Mapping[str, Any],
    build_fn: Callable[[], nn.Module],
    train_fn: Callable[[nn.Module], list[dict[str, Any]]],
    cache_folder: str | os.PathLike | None = None,
    load_only: bool = False,
    code: str | None = None,
    committed: str | os.PathLike | None = None,
    code_names: tuple[str, ...] = TEACHER_CODE,
    rebuild: str = checkpoints.REBUILD_COMMAND,
) -> tuple[nn.Module, list[dict[str, Any]], dict[str, Any]]:
    """Return a trained model from a committed checkpoint or the cache (layer 1), or build, train and cache it.

    ``config_dict`` must describe everything that determines the trained weights (data, model,
    training, seed); together with ``name`` and :func:`code_fingerprint` it is hashed into the
    file name ``models/<name>-<hash>.pt`` under :func:`mlcak_lib.config.cache_dir` (or
    ``cache_folder``). ``build_fn()`` returns a fresh untrained model; ``train_fn(model)`` trains it
    in place and returns its history.

    Returns ``(model, history, info)`` with the model in eval mode and ``info`` =
    ``{"cache_hit": bool, "path": "models/<name>-<hash>.pt" (relative to the cache folder),
    "hash": str, "train_seconds": float}``. ``load_only=True`` never trains: a cache miss raises
    :class:`CacheMiss` (a ``FileNotFoundError``) naming the missing file.

    ``code`` replaces :func:`code_fingerprint` in the key (the teacher uses :func:`teacher_fingerprint`).
    ``committed``: the path of a checkpoint committed in the package (:mod:`mlcak_lib.checkpoints`); it
    is loaded when its key equals this one (``info["committed"] = True``, ``info["path"]`` =
    ``"package:<file name>"``), and otherwise refused with a :class:`~mlcak_lib.checkpoints.StaleCheckpointWarning`
    that names what changed (``code_names``: the modules ``code`` was made of) and how to rebuild it
    (``rebuild``), after which the cache or training takes over.
    """
    h = config_hash(name, config_dict, code)
    if committed is not None and Path(committed).exists():
        ckpt = checkpoints.load_committed(committed)
        if ckpt.get("hash") == h:
            model = checkpoints.load_weights(build_fn(), ckpt)
            info = {"cache_hit": True, "committed": True, "path": f"package:{Path(committed).name}", "hash": h,
                    "train_seconds": ckpt.get("train_seconds", float("nan"))}
            return model, ckpt["history"], info
        reason = checkpoints.stale_reason(ckpt, config_dict, code_parts(code_names))
        warnings.warn(checkpoints.StaleCheckpointWarning(
            f"committed checkpoint {Path(committed).name} is stale and was not loaded (changed: {reason}); "
            f"rebuild it with `{rebuild}`"
            f"{' (load_only: not trained here)' if load_only else ' (training it here instead)'}"), stacklevel=2)
    folder = cache_dir(cache_folder) / "models"
    folder.mkdir(parents=True, exist_ok=True)
    filename = f"{name}-{h}.pt"
    path = folder / filename
    model = build_fn()
    if path.exists():
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["state_dict"])
        model.eval()
        info = {"cache_hit": True, "path": f"models/{filename}", "hash": h, "train_seconds": ckpt.get("train_seconds", float("nan"))}
        return model, ckpt["history"], info
    if load_only:
        raise CacheMiss(f"no cached model models/{filename} in the cache folder (load_only=True): train it first")
    start = time.perf_counter()
    history = train_fn(model)
    seconds = time.perf_counter() - start
    history = checkpoints.plain(history)  # plain Python types: safe to load with weights_only
    ckpt = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "history": history,
        "config": json.dumps(dict(config_dict), sort_keys=True, default=str),
        "name": name,
        "hash": h,
        "train_seconds": seconds,
    }
    checkpoints.atomic_save(ckpt, path)
    model.eval()
    return model, history, {"cache_hit": False, "path": f"models/{filename}", "hash": h, "train_seconds": seconds}
