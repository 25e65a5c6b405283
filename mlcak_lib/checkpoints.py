"""Checkpoints committed inside the package: the teacher every notebook loads instead of training (notebook 04).

A model that takes longer to train than a notebook may run is trained offline
(``scripts/train_teacher.py``) and committed under ``mlcak_lib/data/checkpoints/<name>.pt``, so
that ``pip install`` from git brings it. Each file holds:

* ``state_dict`` -- the weights, floating-point tensors stored as float16 (half the size; the
  recorded metrics below are measured *after* that rounding, on the weights as loaded);
* ``hash`` -- the model's cache key (:func:`mlcak_lib.cache.config_hash` of its name, configuration
  and code fingerprint), the same key the user's model cache uses;
* ``config`` (JSON) and ``code_parts`` (source hash of each module of the fingerprint) -- what
  the key was made of, so that a refusal can say *what* changed;
* ``history``, ``train_seconds``, ``machine`` -- how it was trained;
* ``val_check`` -- a metric on a small validation batch that a test reproduces after loading.

:func:`mlcak_lib.cache.load_or_train` loads a committed checkpoint only when its ``hash`` equals
the key the code asks for. A stale one is refused with one line (:class:`StaleCheckpointWarning`)
naming what changed and how to rebuild it; it is never loaded silently. All committed
checkpoints together stay within :data:`MAX_TOTAL_MB` (tested).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

__all__ = ["CHECKPOINT_DIR", "MAX_TOTAL_MB", "REBUILD_COMMAND", "StaleCheckpointWarning", "atomic_save", "committed_path",
           "half_state_dict", "load_committed", "load_weights", "plain", "save_committed", "stale_reason", "total_size_mb"]

#: Where committed checkpoints live (package data).
CHECKPOINT_DIR = Path(__file__).resolve().parent / "data" / "checkpoints"
#: The budget of all committed checkpoints together (megabytes, 10**6 bytes).
MAX_TOTAL_MB = 25.0
#: How a stale committed checkpoint is rebuilt (named in the refusal).
REBUILD_COMMAND = "python scripts/train_teacher.py"


class StaleCheckpointWarning(UserWarning):
    """A committed checkpoint exists for this model but was made for another key: it is not loaded."""


def committed_path(name: str, folder: str | os.PathLike | None = None) -> Path:
    """``<folder>/<name>.pt`` (default folder :data:`CHECKPOINT_DIR`)."""
    return Path(folder or CHECKPOINT_DIR) / f"{name}.pt"


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def stale_reason(ckpt: Mapping[str, Any], config_dict: Mapping[str, Any], code_parts: Mapping[str, str]) -> str:
    """The settings and code modules in which a checkpoint's key differs from the one asked for.

    E.g. ``"train.lr 0.001 -> 0.002; code of synth"``; ``"the library version"`` when neither the
    settings nor the code modules differ.
    """
    old = _flatten(json.loads(ckpt.get("config", "{}")))
    new = _flatten(json.loads(json.dumps(dict(config_dict), sort_keys=True, default=str)))
    changes = [f"{k} {old.get(k, '(absent)')} -> {new.get(k, '(absent)')}" for k in sorted(set(old) | set(new))
               if old.get(k) != new.get(k)]
    old_code = ckpt.get("code_parts", {})
    modules = sorted(m for m in set(old_code) | set(code_parts) if old_code.get(m) != code_parts.get(m))
    if modules:
        changes.append("code of " + ", ".join(modules))
    return "; ".join(changes) or "the library version"


def plain(value: Any) -> Any:
    """``value`` as plain JSON types (NumPy / tensor scalars through ``float``): safe to load with ``weights_only``."""
    return json.loads(json.dumps(value, default=float))


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file, then rename: a concurrent reader never sees half a file."""
    path = Path(path)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def load_committed(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint dict of a committed file (weights as saved, float16)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def load_weights(model: nn.Module, ckpt: Mapping[str, Any]) -> nn.Module:
    """Load a committed checkpoint's weights into ``model`` (float16 tensors cast to the model's dtypes); eval mode."""
    own = model.state_dict()
    model.load_state_dict({k: v.to(own[k].dtype) if k in own else v for k, v in ckpt["state_dict"].items()})
    return model.eval()


def half_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with floating-point tensors as float16 (integers, e.g. BN counters, unchanged)."""
    return {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu())
            for k, v in model.state_dict().items()}


def save_committed(path: str | os.PathLike, model: nn.Module, *, name: str, hash: str, config_dict: Mapping[str, Any],
                   code_parts: Mapping[str, str], history: list, train_seconds: float,
                   extra: Mapping[str, Any] | None = None) -> Path:
    """Write a committed checkpoint (float16 weights; see the module docstring); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {"state_dict": half_state_dict(model), "name": name, "hash": hash,
            "config": json.dumps(dict(config_dict), sort_keys=True, default=str), "code_parts": dict(code_parts),
            "history": plain(history), "train_seconds": float(train_seconds), **plain(dict(extra or {}))}
    return atomic_save(ckpt, path)


def total_size_mb(folder: str | os.PathLike | None = None) -> float:
    """Size of all committed checkpoints together, in megabytes (10**6 bytes)."""
    folder = Path(folder or CHECKPOINT_DIR)
    return sum(p.stat().st_size for p in folder.glob("*.pt")) / 1e6 if folder.is_dir() else 0.0
