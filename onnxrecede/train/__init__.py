"""Training side (needs the [train] extra: torch)."""
