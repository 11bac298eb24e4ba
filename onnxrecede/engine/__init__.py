"""Channel-pruning engine: analysis, plan, rewrite, verification."""
