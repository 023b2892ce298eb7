"""Where models run: ``auto`` (the GPU when torch sees one, else the CPU) or any ``torch.device`` string."""

from __future__ import annotations

import torch

from hoe.errors import ConfigError


def resolve_device(name: str, field: str = "device") -> torch.device:
    """``"auto"`` -> ``cuda`` if available else ``cpu``; ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(
            f"{name!r} is not a device.", field=field, value=name, fix="Pass auto, cpu, cuda or cuda:N."
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"got {name!r} but torch sees no CUDA GPU here.", field=field, value=name, fix="Pass cpu or auto."
        )
    return device


def module_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's input embeddings (where its input ids must go)."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    return embeddings.weight.device if embeddings is not None else next(model.parameters()).device
