"""Handing freed memory back to the operating system."""

from __future__ import annotations

import ctypes


def return_free_memory() -> None:
    """Release Arrow's unused pool memory and glibc's free heap pages (``malloc_trim``).

    Both keep freed pages for reuse; after large tables are dropped that can be
    hundreds of MiB of resident memory nothing uses. Elsewhere than glibc the heap part
    is skipped (the memory is reused, not returned).
    """
    import pyarrow

    pyarrow.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
