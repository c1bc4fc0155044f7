"""Performance: `fpt bench` (bench) against a rebuild of the original 2021 training step (original)."""
