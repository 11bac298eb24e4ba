"""The measurement cache: one JSON file of latencies keyed by signature and machine.

A key joins the unit's signature (:mod:`onnxrecede.latency.extract`), the provider, the
onnxruntime version, the device name, the thread count and the timing settings, so a second
model with the same layers on the same machine measures nothing again. The default file is
``$XDG_CACHE_HOME/onnxrecede/latency-cache.json`` (``~/.cache/...``); it is written atomically.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from onnxrecede.io.outputs import atomic_write_text

logger = logging.getLogger(__name__)

FORMAT = "onnxrecede.latency-cache"
VERSION = 1


def default_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "onnxrecede" / "latency-cache.json"


class LatencyCache:
    """Milliseconds per key; ``hits`` and ``misses`` count the lookups of this run."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, float] = {}
        self.hits = 0
        self.misses = 0
        self._dirty = False
        if path is not None and path.is_file():
            self.entries = _read(path)

    def get(self, key: str) -> float | None:
        ms = self.entries.get(key)
        if ms is None:
            self.misses += 1
        else:
            self.hits += 1
        return ms

    def put(self, key: str, ms: float) -> None:
        self.entries[key] = ms
        self._dirty = True

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"format": FORMAT, "version": VERSION, "entries": self.entries}
        atomic_write_text(self.path, json.dumps(doc, sort_keys=True) + "\n")
        self._dirty = False


def _read(path: Path) -> dict[str, float]:
    try:
        doc: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        logger.warning("latency cache %s unreadable (%s); starting a new one", path, e)
        return {}
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        logger.warning("latency cache %s has another format; starting a new one", path)
        return {}
    entries = doc.get("entries", {})
    return {str(k): float(v) for k, v in entries.items() if isinstance(v, (int, float))}


def cache_key(signature: str, machine: dict[str, Any]) -> str:
    """The signature joined with what makes a measurement machine-specific."""
    parts = [signature] + [
        str(machine.get(k))
        for k in ("provider", "onnxruntime_version", "device", "threads", "timing")
    ]
    return "|".join(parts)
