"""Environment report for notebooks and bug reports (introduced in notebook 01)."""

from __future__ import annotations

import importlib
import os
import platform

from .config import get_profile

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
