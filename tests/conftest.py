"""Test-session settings shared by the unit tests and nbval.

Every test run (and every notebook kernel nbval starts, which inherits this environment) uses a
fresh cache folder, so two runs in a row do the same work and no state leaks between them.
"""

import os
import shutil
import tempfile

import matplotlib

matplotlib.use("Agg")


def pytest_configure(config):
    if "MLCAK_TEST_KEEP_CACHE" not in os.environ:
        os.environ["MLCAK_CACHE_DIR"] = tempfile.mkdtemp(prefix="mlcak-test-cache-")
    os.environ.setdefault("MLCAK_PROFILE", "default")
    os.environ.pop("MLCAK_DATASET", None)  # the course's own data unless a test sets the switch itself
    os.environ.pop("MLCAK_PIXEL_SPACING_MM", None)  # PNG/JPEG lesion sizes unknown unless a test gives a spacing
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    os.environ["MLCAK_HEADLESS"] = "1"  # nbval's kernels: widget explorers draw their first view (viz.interact)


def pytest_unconfigure(config):
    folder = os.environ.get("MLCAK_CACHE_DIR", "")
    if "MLCAK_TEST_KEEP_CACHE" not in os.environ and "mlcak-test-cache-" in folder:
        shutil.rmtree(folder, ignore_errors=True)
