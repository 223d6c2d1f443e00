"""What the modules take from the running interpreter's version: the
stdlib's behaviour that changed between the CPython versions tress
supports (3.11, 3.12, 3.13), in one place. Each module follows the
interpreter it runs in, as the stdlib module it replaces does."""

import itertools
import os
import sys

__all__ = ["check_chunksize", "cpu_count"]

#: The CPUs this process may use (3.13: ``os.process_cpu_count()``, which
#: the stdlib's pools count from 3.13 on; before, ``os.cpu_count()``).
cpu_count = getattr(os, "process_cpu_count", os.cpu_count)


def check_chunksize(chunksize):
    """Raises what ``ProcessPoolExecutor.map`` of the running version
    raises for a ``chunksize`` (at least 1) that is not an integer: chunks
    are cut by ``itertools.batched`` from 3.13 on (TypeError), by
    ``itertools.islice`` before (ValueError)."""
    if sys.version_info >= (3, 13):
        itertools.batched((), chunksize)
    else:
        itertools.islice((), chunksize)
