"""Evaluation of multi-objective models over a preference grid (BENCH.md §1-§2).

``metrics`` (hypervolume, controllability, Tchebycheff, bootstrap), ``paired`` (seeded reward matrices),
``mixtures`` (fixed LoRA mixtures), the baselines ``rewarded_soups`` and ``mod``, ``methods`` (every compared
method behind one interface), ``models`` (what they load), ``sweep`` (the resumable loop over points),
``summary`` and ``report`` (the numbers, tables and plot), and ``evaluate`` (``hoe evaluate``).
"""
