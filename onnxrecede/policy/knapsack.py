"""Multiple-choice knapsack: one option per class, most value within a cost budget.

Costs are rounded *up* to multiples of ``budget / resolution``, so a returned choice never
exceeds the budget; with integer costs and ``resolution == budget`` the answer is exact. The
dynamic programme is O(classes x options x resolution), vectorised over the budget axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RESOLUTION = 4000


@dataclass(frozen=True)
class Option:
    cost: float
    value: float


class InfeasibleError(ValueError):
    """Even the cheapest option of every class exceeds the budget."""


def solve(
    classes: Sequence[Sequence[Option]], budget: float, resolution: int = DEFAULT_RESOLUTION
) -> list[int]:
    """Index of the chosen option per class: the most total value with total cost <= budget."""
    if budget < 0:
        raise InfeasibleError(f"negative budget {budget}")
    unit = budget / resolution if budget > 0 else 1.0
    cap = resolution if budget > 0 else 0
    best = np.zeros(cap + 1)
    choices: list[np.ndarray] = []
    for options in classes:
        if not options:
            raise ValueError("a class without options")
        new = np.full(cap + 1, -math.inf)
        pick = np.full(cap + 1, -1, dtype=np.int32)
        for j, opt in enumerate(options):
            c = max(0, math.ceil(opt.cost / unit - 1e-9)) if opt.cost > 0 else 0
            if c > cap:
                continue
            shifted = np.full(cap + 1, -math.inf)
            shifted[c:] = best[: cap + 1 - c] + opt.value
            better = shifted > new
            new[better] = shifted[better]
            pick[better] = j
        best = new
        choices.append(pick)
    if not np.isfinite(best[cap]):
        raise InfeasibleError("no choice fits the budget")
    return _backtrack(classes, choices, cap, unit)


def _backtrack(
    classes: Sequence[Sequence[Option]], choices: list[np.ndarray], cap: int, unit: float
) -> list[int]:
    out = [0] * len(classes)
    b = cap
    for i in range(len(classes) - 1, -1, -1):
        j = int(choices[i][b])
        out[i] = j
        cost = classes[i][j].cost
        b -= max(0, math.ceil(cost / unit - 1e-9)) if cost > 0 else 0
    return out
