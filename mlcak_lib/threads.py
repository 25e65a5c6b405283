"""Thread control for the small NumPy matrix products of the simulator and the resize (notebook 02).

With torch imported, a multi-threaded OpenBLAS competes with torch's OpenMP threads for the same
cores; for the course's tiny products (224 x 28) that was measured 30-200x slower than one
thread on a 2-core machine. These products run on one BLAS thread; torch keeps its own threads.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def single_thread_blas():
    """Context manager: NumPy's BLAS uses one thread inside the block."""
    return _blas_controller().limit(limits=1, user_api="blas")
