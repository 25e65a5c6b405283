"""Course-wide settings read from one place (introduced in notebook 01).

Every setting follows the same precedence: an explicit function argument wins, then the
environment variable, then the built-in default.

========================  ======================  ==========================================
setting                   environment variable    default
========================  ======================  ==========================================
profile                   ``MLCAK_PROFILE``       ``"default"`` (CPU, minutes); or ``"full"``
model/data cache folder   ``MLCAK_CACHE_DIR``     ``~/.cache/mlcak``
dataset                   ``MLCAK_DATASET``       ``"synth"`` (the CT-derived simulator)
real-data root folder     ``MLCAK_DATA_ROOT``     ``~/data``
========================  ======================  ==========================================
"""

from __future__ import annotations

import os
from pathlib import Path

PROFILES: tuple[str, ...] = ("default", "full")
ENV_PROFILE = "MLCAK_PROFILE"
ENV_CACHE_DIR = "MLCAK_CACHE_DIR"
ENV_DATASET = "MLCAK_DATASET"
ENV_DATA_ROOT = "MLCAK_DATA_ROOT"


def get_profile(profile: str | None = None) -> str:
    """Return the active profile name: ``profile`` if given, else ``$MLCAK_PROFILE``, else 'default'."""
    name = profile if profile is not None else os.environ.get(ENV_PROFILE, "default")
    name = name.strip().lower()
    if name not in PROFILES:
        raise ValueError(
            f"Unknown profile {name!r}; choose one of {', '.join(PROFILES)} "
            f"(set it with the {ENV_PROFILE} environment variable or the profile= argument)."
        )
    return name


def cache_dir(path: str | os.PathLike | None = None, create: bool = True) -> Path:
    """Folder for cached models and generated data (argument, ``$MLCAK_CACHE_DIR``, ``~/.cache/mlcak``)."""
    if path is None:
        path = os.environ.get(ENV_CACHE_DIR) or Path.home() / ".cache" / "mlcak"
    folder = Path(path).expanduser()
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def get_dataset_name(name: str | None = None) -> str:
    """Name of the dataset the notebooks and the runner use (argument, ``$MLCAK_DATASET``, 'synth')."""
    value = name if name is not None else (os.environ.get(ENV_DATASET) or "synth")  # empty = unset
    return value.strip().lower()


def data_root(path: str | os.PathLike | None = None) -> Path:
    """Root folder of real datasets (argument, ``$MLCAK_DATA_ROOT``, ``~/data``)."""
    if path is None:
        path = os.environ.get(ENV_DATA_ROOT) or Path.home() / "data"
    return Path(path).expanduser()


def repo_root() -> Path | None:
    """The course repository root when the library is installed editable from a checkout, else None."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() and (here / "notebooks").is_dir() else None
