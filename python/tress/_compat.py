"""What the modules take from the running interpreter's version: the
stdlib's behaviour that changed between the CPython versions tress
supports (3.11, 3.12, 3.13), in one place. Each module follows the
interpreter it runs in, as the stdlib module it replaces does."""

import os

__all__ = ["cpu_count"]

#: The CPUs this process may use (3.13: ``os.process_cpu_count()``, which
#: the stdlib's pools count from 3.13 on; before, ``os.cpu_count()``).
cpu_count = getattr(os, "process_cpu_count", os.cpu_count)
