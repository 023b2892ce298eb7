"""Conventions used everywhere in `hoe`, stated once.

* **Objectives are maximised.** A reward or score is better when larger (a cost is negated first).
* **A preference λ lies on the probability simplex**: λ_i >= 0 and Σ λ_i = 1, one weight per objective, in
  the order of the bundle's objective names. Inputs with a positive sum that are not normalised are divided by
  their sum (see :func:`hoe.preference.to_simplex`).
* **Reward matrices are ``n x m``**: n samples (rows) by m objectives (columns).
* **A rank is an int >= 1 or an energy fraction in (0, 1]**: the smallest k whose top-k singular values keep
  at least that fraction of the squared Frobenius norm.
* **Weight deltas are ``(out_features, in_features)``**, as ``nn.Linear.weight``; GPT-2 ``Conv1D`` weights,
  stored ``(in, out)``, are transposed on read and on write.
* **LoRA factors**: ``delta = B @ A`` with ``A: (r, in)`` and ``B: (out, r)``. `hoe` writes adapters with
  ``lora_alpha == r`` so PEFT's scaling is 1 and ``B @ A`` *is* the delta.
"""

from __future__ import annotations

Rank = int | float
"""An int >= 1 (a fixed rank) or a float in (0, 1] (an energy fraction)."""
