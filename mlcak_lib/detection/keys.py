"""The code part of a detector's cache key (notebook 07).

The detection package is listed in ``cache.NOT_MODEL_CODE``, not in ``cache.MODEL_CODE``: ``MODEL_CODE``'s
source enters every model's key, and ``cache.TEACHER_CODE`` is derived from it, so naming the package there
would invalidate the committed ViT teacher and every cached student whenever a detection file changes.
A detector's key takes :func:`detection_fingerprint` instead (pass it as ``code`` to
:func:`mlcak_lib.cache.load_or_train`): the source of this package and of every package module it imports.
"""

from __future__ import annotations

import functools

from .. import __version__
from ..cache import source_hash

#: The package and the modules of ``mlcak_lib`` it imports (tests check the list is closed under imports).
DETECTION_CODE: tuple[str, ...] = ("detection", "dicom", "metrics", "resize", "splits")


@functools.lru_cache(maxsize=1)
def detection_fingerprint() -> str:
    """Library version + :func:`~mlcak_lib.cache.source_hash` of :data:`DETECTION_CODE`, once per process."""
    return f"{__version__}+det+{source_hash(*DETECTION_CODE)}"
