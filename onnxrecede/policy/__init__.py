"""Choosing the plan: computed thresholds (auto, MAC/param targets) and the speedup search."""
