"""What a measurement ran on, and the process's memory.

:func:`machine_info` is the ``"machine"`` object of every result document
(CPU model, cores, Python, platform, load average); :func:`environment_info` adds the
time and :func:`overdrive.build_info`. The memory helpers read Linux's
``/proc/self/status`` and fall back to :func:`resource.getrusage` elsewhere.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import build_info

__all__ = [
    "cpu_model",
    "environment_info",
    "machine_info",
    "peak_rss_bytes",
    "reset_peak_rss",
    "rss_bytes",
    "utc_now",
]

_STATUS = Path("/proc/self/status")


def utc_now() -> str:
    """The current time as ISO 8601 UTC, e.g. ``2026-12-03T17:11:18Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@lru_cache(maxsize=1)
def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``'s ``model name``), or None if unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model", "Hardware"):
                    return value.strip() or None
    except OSError:
        pass
    return platform.processor() or None


def _usable_cpus() -> int | None:
    if hasattr(os, "sched_getaffinity"):
        try:
            return len(os.sched_getaffinity(0))
        except OSError:
            return None
    return os.cpu_count()


def _mem_total_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on.

    Keys: ``python``, ``implementation``, ``platform``, ``machine``, ``cpus``
    (``os.cpu_count()``), ``cpus_usable`` (this process's CPU affinity),
    ``cpu_model``, ``memory_bytes`` (``MemTotal``), ``load_avg`` (1, 5 and 15
    minute load averages when measured, or None), ``gil_enabled``.
    """
    gil = getattr(sys, "_is_gil_enabled", None)
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cpus_usable": _usable_cpus(),
        "cpu_model": cpu_model(),
        "memory_bytes": _mem_total_bytes(),
        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "gil_enabled": bool(gil()) if callable(gil) else True,
    }


def environment_info() -> dict[str, Any]:
    """``{"created", "build", "machine"}``: the header of every result document."""
    return {"created": utc_now(), "build": build_info(), "machine": machine_info()}


def _status_kib(field: str) -> int | None:
    try:
        with open(_STATUS, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _ru_maxrss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def rss_bytes() -> int | None:
    """This process's resident set size now (``VmRSS``), or None where unknown."""
    return _status_kib("VmRSS:")


def peak_rss_bytes() -> int | None:
    """This process's peak resident set size (``VmHWM``, else ``ru_maxrss``).

    The peak since the process started, or since the last successful
    :func:`reset_peak_rss`.
    """
    peak = _status_kib("VmHWM:")
    return peak if peak is not None else _ru_maxrss_bytes()


def reset_peak_rss() -> bool:
    """Reset :func:`peak_rss_bytes` to the current RSS (Linux >= 4.0, writing
    ``5`` to ``/proc/self/clear_refs``). False when the kernel does not allow it:
    then the peak stays the process's lifetime high-water mark."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True
