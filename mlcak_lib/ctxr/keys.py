"""The code part of notebook 08's cache keys (issue 17): CT encoders and text encoders trained here.

Like ``detection.keys``: the package is listed in ``cache.NOT_MODEL_CODE``, never in ``cache.MODEL_CODE``,
whose source enters every ViT's key (and ``cache.TEACHER_CODE``, the committed teacher's), so editing a file
here never stales the teacher or the students. A CT-X-ray model's key takes :func:`ctxr_fingerprint`
instead (pass it as ``code`` to :func:`mlcak_lib.cache.load_or_train`): the source of this package, of
the simulator it reads its lesion classes from (``cache.SIMULATOR_CODE``, closed under imports and with
the lesion-size table) and of any package module it imports (tests check the list is closed).
"""

from __future__ import annotations

import functools

from .. import __version__
from ..cache import SIMULATOR_CODE, source_hash

#: The package and the modules of ``mlcak_lib`` its models depend on (``metrics``: the AUROC that selects a
#: checkpoint on the validation split). Extend it when the package imports more: ``tests/test_ctxr_retrieval.py``
#: fails until it is closed. The X-ray expert enters a CT model's key by its own hash (the teacher's key), not here.
CTXR_CODE: tuple[str, ...] = ("ctxr", "metrics", *SIMULATOR_CODE)


@functools.lru_cache(maxsize=1)
def ctxr_fingerprint() -> str:
    """Library version + :func:`~mlcak_lib.cache.source_hash` of :data:`CTXR_CODE`, once per process."""
    return f"{__version__}+ctxr+{source_hash(*CTXR_CODE)}"
