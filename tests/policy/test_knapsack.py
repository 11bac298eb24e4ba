"""The multiple-choice knapsack against brute force on small instances."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from onnxrecede.policy.knapsack import InfeasibleError, Option, solve


def _brute(classes, budget):
    best, best_pick = -np.inf, None
    for pick in itertools.product(*[range(len(c)) for c in classes]):
        cost = sum(classes[i][j].cost for i, j in enumerate(pick))
        value = sum(classes[i][j].value for i, j in enumerate(pick))
        if cost <= budget and value > best:
            best, best_pick = value, pick
    return best, best_pick


@pytest.mark.parametrize("seed", range(40))
def test_matches_brute_force_on_integer_costs(seed):
    rng = np.random.default_rng(seed)
    classes = [
        [Option(float(rng.integers(0, 12)), float(rng.random())) for _ in range(rng.integers(1, 5))]
        for _ in range(rng.integers(1, 5))
    ]
    cheapest = sum(min(o.cost for o in c) for c in classes)
    budget = int(cheapest + rng.integers(0, 20))
    pick = solve(classes, budget, resolution=max(budget, 1))
    best, _ = _brute(classes, budget)
    assert sum(classes[i][j].cost for i, j in enumerate(pick)) <= budget
    assert sum(classes[i][j].value for i, j in enumerate(pick)) == pytest.approx(best)


@pytest.mark.parametrize("seed", range(20))
def test_real_costs_never_exceed_the_budget(seed):
    rng = np.random.default_rng(100 + seed)
    classes = [
        [Option(float(rng.random()), float(rng.random())) for _ in range(4)] for _ in range(4)
    ]
    budget = float(sum(min(o.cost for o in c) for c in classes) + rng.random())
    pick = solve(classes, budget, resolution=2000)
    assert sum(classes[i][j].cost for i, j in enumerate(pick)) <= budget
    best, _ = _brute(classes, budget)
    # rounding costs up can only lose options whose cost lies within one bin of the budget
    value = sum(classes[i][j].value for i, j in enumerate(pick))
    assert value <= best + 1e-12
    assert value >= _brute(classes, budget * (1 - 4 * 4 / 2000))[0] - 1e-12


def test_infeasible_budget():
    with pytest.raises(InfeasibleError):
        solve([[Option(5.0, 1.0)], [Option(3.0, 1.0)]], 7.0, resolution=7)
