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
pixel spacing (PNG/JPEG)  ``MLCAK_PIXEL_SPACING_MM``  unset: lesion sizes in mm unknown
========================  ======================  ==========================================

Where things are, for a checkout and an installed package alike: :func:`results_dir` (the committed
outputs of the experiment runner and the studies, package data), :func:`output_dir` (where the runner
and the scripts write by default) and :func:`repo_url` (the one canonical repository URL, from
``pyproject.toml``'s ``[project.urls]``).
"""

from __future__ import annotations

import os
import re
from importlib import metadata
from pathlib import Path

PROFILES: tuple[str, ...] = ("default", "full")
ENV_PROFILE = "MLCAK_PROFILE"
ENV_CACHE_DIR = "MLCAK_CACHE_DIR"
ENV_DATASET = "MLCAK_DATASET"
ENV_DATA_ROOT = "MLCAK_DATA_ROOT"
ENV_PIXEL_SPACING = "MLCAK_PIXEL_SPACING_MM"


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


def parse_pixel_spacing(value: object, source: str) -> tuple[float, float] | None:
    """``(row, column)`` pixel spacing in mm from ``"0.14"`` (square pixels) or ``"0.14\\0.15"`` / ``"0.14 0.15"``
    (row, column, as DICOM's PixelSpacing); a number or a ``(row, column)`` pair works too. Empty or None -> None
    (unknown).

    Raises ``ValueError`` naming ``source`` for anything else: text that is not one or two numbers, or a
    value that is not a finite number above 0.
    """
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        parts = [str(v) for v in value]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        parts = [] if value != value else [str(value)]  # NaN (an empty CSV cell) = unknown
    else:
        parts = str(value).replace("\\", " ").split()
    if not parts:
        return None
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or not all(0.0 < v < float("inf") for v in numbers):
        raise ValueError(f"{source}: pixel spacing must be a positive number of millimetres per pixel, or two "
                         f"(row\\column, as DICOM's PixelSpacing), e.g. 0.14 or 0.14\\0.14; got {value!r}")
    return (numbers[0], numbers[-1])


def pixel_spacing_mm(value: object = None) -> tuple[float, float] | None:
    """Pixel spacing (mm, ``(row, column)``) of image files that carry none, such as PNG/JPEG (argument,
    ``$MLCAK_PIXEL_SPACING_MM``, else None = unknown); see :func:`parse_pixel_spacing` for the accepted forms."""
    if value is not None:
        return parse_pixel_spacing(value, "pixel_spacing_mm")
    return parse_pixel_spacing(os.environ.get(ENV_PIXEL_SPACING), ENV_PIXEL_SPACING)


def repo_root() -> Path | None:
    """The course repository root when the library is installed editable from a checkout, else None."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() and (here / "notebooks").is_dir() else None


def results_dir() -> Path:
    """The committed results (``mlcak_lib/data/results``: grids, curves, cost and tuning tables, studies).

    Package data, so ``pip install`` brings them: notebooks read them without a checkout or a ``%cd``."""
    return Path(__file__).resolve().parent / "data" / "results"


def output_dir() -> Path:
    """Default output folder of the runner and the scripts: :func:`results_dir` in a checkout (the files are
    committed from there), else ``./results`` (never into an installed package)."""
    return results_dir() if repo_root() is not None else Path("results")


#: The distribution name (``pyproject.toml``'s ``[project] name``) and its ``[project.urls]`` key of the repository.
DISTRIBUTION = "mlcak"
URL_KEY = "Repository"


def repo_url() -> str:
    """The course repository's canonical URL (``[project.urls] Repository`` in ``pyproject.toml``).

    Read from the checkout's ``pyproject.toml`` when there is one (it is the source), else from the
    installed distribution's metadata (``Project-URL: Repository, ...``)."""
    root = repo_root()
    if root is not None:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
        urls = re.search(r"^\[project\.urls\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
        found = urls and re.search(rf'^{URL_KEY}\s*=\s*"([^"]+)"', urls.group(1), re.MULTILINE)
        if found:
            return found.group(1)
    for entry in metadata.metadata(DISTRIBUTION).get_all("Project-URL") or []:
        key, _, url = entry.partition(",")
        if key.strip() == URL_KEY:
            return url.strip()
    raise LookupError(f"no {URL_KEY} URL in the {DISTRIBUTION} metadata (pyproject.toml [project.urls])")
