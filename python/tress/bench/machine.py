"""A description of the machine and software a benchmark ran on."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import sys
from typing import Any


def _cpu_model() -> str | None:
    """The CPU model name from /proc/cpuinfo (Linux), else platform's."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def _affinity() -> list[int] | None:
    """The CPUs this process may run on, where the OS tells."""
    getter = getattr(os, "sched_getaffinity", None)
    if getter is None:
        return None
    try:
        return sorted(getter(0))
    except OSError:
        return None


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def tress_version() -> str | None:
    """tress's version, without importing its extension module."""
    module = sys.modules.get("tress")
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    try:
        return importlib.metadata.version("tress")
    except importlib.metadata.PackageNotFoundError:
        return None


def tress_location() -> str | None:
    """Where the ``tress`` package running this command lives."""
    module = sys.modules.get("tress")
    paths = getattr(module, "__path__", None)
    return list(paths)[0] if paths else None


def compact_cpus(cpus: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    ranges: list[str] = []
    start = prev = None
    for cpu in sorted(cpus):
        if prev is not None and cpu == prev + 1:
            prev = cpu
            continue
        if start is not None:
            ranges.append(f"{start}-{prev}" if prev != start else f"{start}")
        start = prev = cpu
    if start is not None:
        ranges.append(f"{start}-{prev}" if prev != start else f"{start}")
    return ",".join(ranges)


def machine_info() -> dict[str, Any]:
    """Machine, OS, Python and tress details, JSON-serialisable."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": _affinity(),
        "cpu_model": _cpu_model(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "load_average": _load_average(),
        "python_implementation": platform.python_implementation(),
        "python_version": platform.python_version(),
        "python_build": " ".join(platform.python_build()),
        "python_compiler": platform.python_compiler(),
        "gil_enabled": getattr(sys, "_is_gil_enabled", lambda: True)(),
        "executable": sys.executable,
        "tress_version": tress_version(),
        "tress_location": tress_location(),
    }
