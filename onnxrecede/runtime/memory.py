"""Memory estimates before large allocations: a size read from a file or given on the command
line is checked against the memory the machine has free, so that a bad value is refused with one
clear message instead of a ``MemoryError`` (or the kernel's OOM killer) later."""

from __future__ import annotations

import os

from onnxrecede.errors import InputError


def available_bytes() -> int:
    """Memory available to new allocations: Linux's MemAvailable, else the physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return 1 << 62  # unknown: no limit


def format_bytes(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def check_allocation(nbytes: int, what: str, fix: str) -> None:
    """Refuse (:class:`InputError`) ``what`` when its ``nbytes`` exceed the available memory."""
    limit = available_bytes()
    if nbytes > limit:
        raise InputError(
            f"{what} would take {format_bytes(nbytes)}, more than the {format_bytes(limit)} of memory "
            f"available; {fix}"
        )
