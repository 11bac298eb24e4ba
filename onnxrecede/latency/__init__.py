"""Latency tables and latency budgets: what each prunable group's kept count costs in time.

- :mod:`~onnxrecede.latency.units`: the ops whose cost depends on a group's kept count;
- :mod:`~onnxrecede.latency.extract`: one such op (with its fused followers) as a small model
  at given kept counts;
- :mod:`~onnxrecede.latency.measure` / :mod:`~onnxrecede.latency.cache`: timing and the cache;
- :mod:`~onnxrecede.latency.table`: the table file (``onnxrecede latency``);
- :mod:`~onnxrecede.policy.knapsack` and :mod:`~onnxrecede.policy.latency`: the kept counts
  that keep the most importance within a latency budget (``prune --target-latency``).
"""
