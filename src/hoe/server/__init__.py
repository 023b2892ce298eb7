"""``hoe serve``: one HoE model in memory, any trade-off per request, over an OpenAI-compatible API."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from hoe.server.protocol import ApiError, Limits


def load(model: str | Path, name: str | None = None, limits: Limits | None = None, api_key: str | None = None,
         device: str = "auto", scores: bool = True):  # fmt: skip
    """The FastAPI app serving the bundle ``model`` (see :mod:`hoe.server.app`) and its engine."""
    from hoe.devices import resolve_device
    from hoe.generation.text import eos_token_ids, load_tokenizer
    from hoe.model.hoe_model import HoEModel
    from hoe.server.app import Served, create_app
    from hoe.server.engine import Engine

    limits = limits or Limits()
    hoe = HoEModel.from_pretrained(model, device=resolve_device(device)).eval()
    tokenizer = load_tokenizer(hoe.base_ref)
    m = len(hoe.objectives)
    served = Served(
        name=name or Path(model).resolve().name,
        objectives=list(hoe.objectives),
        default_preference=torch.full((m,), 1.0 / m, dtype=torch.float64),
        anchors={
            "experts": [{"name": e.name, "anchor": dict(zip(hoe.objectives, e.anchor))} for e in hoe.experts],
            "routers": [{"name": r.name, "anchor": dict(zip(hoe.objectives, r.anchor))} for r in hoe.routers],
        },
        engine=Engine(hoe, tokenizer, limits, eos_token_ids(hoe.base_ref, tokenizer)),
        tokenizer=tokenizer,
        limits=limits,
        api_key=api_key,
        scorers=_scorers(hoe.objectives, tokenizer) if scores else None,
    )
    return create_app(served), served


def serve(model: str | Path, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          name: str | None = None, limits: Limits | None = None, device: str = "auto") -> None:  # fmt: skip
    """``hoe serve``: serve the bundle ``model`` on ``host:port`` until interrupted (uvicorn)."""
    import uvicorn

    app, _ = load(model, name, limits, api_key, device)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _scorers(objectives: list[str], tokenizer):
    """The bundle's objectives as built-in scorers, or None when they do not load here (e.g. offline)."""
    from hoe.errors import HoEError
    from hoe.objectives import ObjectiveContext, build_objectives

    try:
        return build_objectives(objectives, ObjectiveContext(tokenizer=tokenizer))
    except (HoEError, OSError, ImportError) as e:
        logging.getLogger("hoe.server").warning("no scores in the playground: %s", e)
        return None


__all__ = ["ApiError", "Limits", "load", "serve"]
