"""What an export keeps of a bundle at λ: preference routing over its LoRA experts alone (HoE without routers,
the ``hoe-lora`` of ``hoe evaluate``), read from the manifest without loading any weights."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from hoe.errors import HoEWarning
from hoe.model.preference_routing import PreferenceRouting


def _anchors(items: list[dict], objectives: list[str]) -> np.ndarray:
    return np.array([[float(i["anchor"].get(o, 0.0)) for o in objectives] for i in items], dtype=np.float64)


def lora_only_weights(manifest: dict, lam: torch.Tensor) -> np.ndarray:
    """w over the manifest's LoRA experts that preference routing gives λ (m,) without routers: (E,)."""
    routing = PreferenceRouting(_anchors(manifest["experts"], manifest["objectives"]))
    return routing.weights(lam.numpy())


def warn_if_routed(manifest: dict, lam: torch.Tensor, what: str) -> None:
    """Warn when λ would reach a router expert (the routing of the bundle: routers win shared anchors), which
    ``what`` (the export's form) cannot hold."""
    experts, routers = manifest["experts"], manifest.get("routers", [])
    if not routers:
        return
    anchors = _anchors(experts + routers, manifest["objectives"])
    priority = np.array([0] * len(experts) + [1] * len(routers))
    w = PreferenceRouting(anchors, priority).weights(lam.numpy())[len(experts) :]
    used = [r["name"] for r, x in zip(routers, w) if x > 0]
    if used:
        warnings.warn(
            f"the router experts {used} would mix the LoRA experts token by token at this preference; {what} "
            "cannot, so the export routes the preference over the LoRA experts alone (HoE without routers). "
            "Serve the bundle with `hoe serve` to keep token-level routing.",
            HoEWarning,
            stacklevel=3,
        )
