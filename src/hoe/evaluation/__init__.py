"""Evaluation of multi-objective models over a preference grid (BENCH.md §1): metrics, and later sweeps."""
