"""Environment report and provenance for notebooks, bug reports and the runner's CSV (introduced in notebook 01)."""

from __future__ import annotations

import importlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from .config import get_profile, repo_root

_PACKAGES = ("mlcak_lib", "numpy", "torch", "torchvision", "timm", "pydicom", "sklearn", "matplotlib")


def _version(name: str) -> str:
    try:
        module = importlib.import_module(name)
    except ImportError:
        return "not installed"
    return str(getattr(module, "__version__", "unknown"))


def environment_report(profile: str | None = None) -> dict[str, str]:
    """Versions, device, profile and thread count as a flat dict of strings."""
    import torch

    report = {"python": platform.python_version(), "platform": platform.platform(terse=True)}
    report.update({name: _version(name) for name in _PACKAGES})
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = "mps"
    else:
        device = "cpu"
    report["device"] = device
    report["torch threads"] = str(torch.get_num_threads())
    report["cpu cores"] = str(os.cpu_count())
    report["profile"] = get_profile(profile)
    return report


def print_environment_report(profile: str | None = None) -> None:
    """Print :func:`environment_report` as an aligned two-column table."""
    report = environment_report(profile)
    width = max(len(key) for key in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")


def default_device() -> "torch.device":  # noqa: F821 - torch imported lazily
    """The device the course trains on: CUDA when present, else CPU (MPS is skipped: attention hooks differ)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def git_revision(root: str | os.PathLike | None = None) -> tuple[str, bool | None]:
    """``(short hash, dirty)`` of the checkout holding the library (``("unknown", None)`` outside git)."""
    where = Path(root) if root else (repo_root() or Path.cwd())
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown", None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                capture_output=True, text=True, timeout=10)
        return rev.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return "unknown", None


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def hardware() -> dict[str, Any]:
    """CPU model, cores, torch threads and device of this process (the runner's provenance columns)."""
    import torch

    device = default_device()
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    return {"cpu_model": cpu_model(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": name}
