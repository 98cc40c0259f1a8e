"""One BLAS thread while the decision analyses run (threadpoolctl, via scikit-learn).

The analyses solve many small dense systems (bootstrap refits, the wild bootstrap's
per-cluster bases, subgroup logits); a multi-threaded OpenBLAS gains nothing on
them and spin-waits on a busy machine. Measured on the sample company (2 cores,
load ~6): event studies 2.5-2.8 s -> 0.5 s, subgroup effects 1.0-1.5 s -> 0.5 s,
trade-off 5.0-8.8 s -> 3.7-4.5 s.
"""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def single_threaded_blas():
    """Context manager (and decorator) limiting BLAS/LAPACK to one thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
