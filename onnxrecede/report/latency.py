"""The lines ``prune`` prints for a latency target: predicted against measured."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def format_latency(target: float, lat: Mapping[str, Any]) -> list[str]:
    where = f"{lat.get('provider')} ({lat.get('device')}), batch {lat.get('batch')}"
    lines = [
        f"target latency: at most {target:g} of the original on {where}; predicted "
        f"{lat['predicted_fraction']:.3f} ({lat['predicted_ms']:.3f} ms), importance kept "
        f"{100 * lat['importance_kept']:.1f}%"
    ]
    if lat.get("measured_ms") is not None:
        lines.append(
            f"  measured once: {lat['measured_ms']:.3f} ms vs {lat['measured_reference_ms']:.3f} ms "
            f"for the original = {lat['measured_fraction']:.3f} ({lat['measured_speedup']:.2f}x)"
        )
    elif lat.get("not_measured_because"):
        lines.append(f"  not measured: {lat['not_measured_because']}")
    return lines
