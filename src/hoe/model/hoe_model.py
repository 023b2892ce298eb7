"""``HoEModel``: any Hugging Face causal LM with its linear projections turned into HoE layers.

One model follows any preference λ at inference, in one forward pass per token (METHOD.md §3):
preference routing maps λ to convex weights w⁽¹⁾ over the expert anchors (no parameters), router experts turn
them into per-token mixtures w⁽²⁾(x) in every adapted module, and the LoRA experts realise them.

The preference is an argument of every call (``forward``, ``generate``): one λ for the batch or one per row,
as a tensor, a list or a ``{objective: weight}`` mapping; never state stored on the model. A call can instead
give the LoRA experts' weights w⁽²⁾ directly (``expert_weights``), e.g. the linear soup Σ_i λ_i B_i A_i of the
single-objective experts (:meth:`HoEModel.soup_weights`), which is the KL reference of router training.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hoe.bundle.specs import ExpertSpec, RouterSpec
from hoe.errors import ConfigError, ShapeMismatchError
from hoe.experts.targets import linear_modules
from hoe.io.adapters import LoraWeights
from hoe.model import decode
from hoe.model.layer import HoELinear
from hoe.model.preference_routing import PreferenceRouting
from hoe.model.router import mixture_bias, nearest_experts
from hoe.model.routing_state import RoutingContext, RoutingState
from hoe.preference import PreferenceLike, to_simplex, to_simplex_batch


class HoEModel(nn.Module):
    """A base causal LM + E frozen LoRA experts + R router experts + preference routing."""

    def __init__(
        self,
        base_model: nn.Module,
        objectives: Sequence[str],
        experts: Sequence[ExpertSpec],
        expert_weights: Sequence[dict[str, LoraWeights]],
        base_ref: str = "",
    ):
        super().__init__()
        if len(objectives) < 2:
            raise ConfigError(
                f"HoE needs at least 2 objectives, got {list(objectives)}.",
                field="objectives",
                value=list(objectives),
                fix="Pass one single-objective expert per objective.",
            )
        self.base_model = base_model
        self.objectives = list(objectives)
        self.experts = list(experts)
        self.routers: list[RouterSpec] = []
        self.base_ref = base_ref
        self.routing = RoutingState(len(self.experts))  # the call in progress, read by every layer
        self._call_lock = threading.RLock()  # one call at a time fills the routing state
        for p in base_model.parameters():
            p.requires_grad_(False)
        self.layers = self._wrap(expert_weights)
        self._update_routing()

    def _wrap(self, expert_weights: Sequence[dict[str, LoraWeights]]) -> dict[str, HoELinear]:
        """Replace every module some expert adapts by an HoE layer holding all experts."""
        base_linear = linear_modules(self.base_model)
        names = sorted({m for ws in expert_weights for m in ws})
        layers: dict[str, HoELinear] = {}
        for name in names:
            target = base_linear.get(name)
            per_expert = [ws.get(name) for ws in expert_weights]
            for spec, w in zip(self.experts, per_expert):
                _check_fits(spec.name, name, w, target)
            parent_name, _, leaf = name.rpartition(".")
            parent = self.base_model.get_submodule(parent_name)
            layers[name] = HoELinear(getattr(parent, leaf), per_expert, routing=self.routing)
            setattr(parent, leaf, layers[name])
        return layers

    # ----- preference routing -------------------------------------------------------------------------------
    def _update_routing(self) -> None:
        anchors = [e.anchor for e in self.experts] + [r.anchor for r in self.routers]
        priority = np.array([0] * len(self.experts) + [1] * len(self.routers))
        self.preference_routing = PreferenceRouting(np.array(anchors), priority)

    def routing_weights(
        self, preference: PreferenceLike | Sequence[PreferenceLike], batch_size: int | None = None
    ) -> torch.Tensor:
        """w⁽¹⁾ over the anchors (LoRA experts, then routers) for each preference row: (Bw, E + R)."""
        lam = to_simplex_batch(preference, self.objectives, batch_size)
        return self.preference_routing.batch_weights(lam)

    def routing_context(
        self, preference: PreferenceLike | Sequence[PreferenceLike], batch_size: int | None = None
    ) -> RoutingContext:
        """w⁽¹⁾ of a call at ``preference`` (one for the batch or one per row), split into LoRA-expert and
        router-expert weights (on the CPU: the layers copy what they need when the call starts)."""
        w1 = self.routing_weights(preference, batch_size).float()
        e = len(self.experts)
        return RoutingContext(lora=w1[:, :e], routers=w1[:, e:])

    def mixture_context(
        self, expert_weights: torch.Tensor | Sequence[float] | dict[str, float]
    ) -> RoutingContext:
        """Explicit LoRA-expert weights w⁽²⁾ and no routers: (E,) for the batch or (B, E) per row, or a mapping
        ``{expert name: weight}`` (absent experts 0). Weights are finite and >= 0; they need not sum to 1."""
        names = [e.name for e in self.experts]
        if isinstance(expert_weights, dict):
            unknown = sorted(set(expert_weights) - set(names))
            if unknown:
                raise ConfigError(
                    f"unknown experts {unknown}.",
                    field="expert_weights",
                    value=dict(expert_weights),
                    fix=f"Name some of {names}.",
                )
            expert_weights = [float(expert_weights.get(n, 0.0)) for n in names]
        w = torch.as_tensor(expert_weights, dtype=torch.float32)
        w = w[None] if w.dim() == 1 else w  # (Bw, E)
        if w.dim() != 2 or w.shape[1] != len(names) or not torch.isfinite(w).all() or (w < 0).any():
            raise ConfigError(
                f"got weights of shape {tuple(w.shape)}; expected {len(names)} finite weights >= 0 per row.",
                field="expert_weights",
                value=w.tolist(),
                fix=f"Give one weight per LoRA expert {names}.",
            )
        return RoutingContext(lora=w, routers=w.new_zeros(w.shape[0], len(self.routers)))

    def reached(self, preference: PreferenceLike) -> list[dict]:
        """Where ``preference`` goes: the LoRA experts and router experts preference routing gives weight,
        LoRA experts first, each ``{"kind", "name", "weight", "anchor"}`` (anchor by objective), a router
        also with ``"mixes"``, the LoRA experts it mixes per token. What ``GET /v1/route`` and the demo show."""
        weights = self.routing_weights(preference)[0].tolist()
        anchors = [("expert", e.name, e.anchor, None) for e in self.experts]
        anchors += [("router", r.name, r.anchor, list(r.experts)) for r in self.routers]
        return [
            {"kind": kind, "name": name, "weight": w, "anchor": dict(zip(self.objectives, anchor)),
             **({"mixes": mixes} if mixes is not None else {})}
            for (kind, name, anchor, mixes), w in zip(anchors, weights) if w > 1e-9
        ]  # fmt: skip

    def vertex_experts(self) -> list[int]:
        """For each objective i, the index of the first LoRA expert whose anchor is the vertex e_i."""
        found = []
        for i, objective in enumerate(self.objectives):
            hits = [k for k, e in enumerate(self.experts) if e.anchor[i] >= 1 - 1e-9]
            if not hits:
                raise ConfigError(
                    f"no LoRA expert has the anchor {objective}=1.",
                    field="experts",
                    value=[e.name for e in self.experts],
                    fix="Include one single-objective expert per objective.",
                )
            found.append(hits[0])
        return found

    def lora_only_weights(self, preference: PreferenceLike) -> torch.Tensor:
        """w⁽²⁾ of HoE without routers at λ: preference routing over the LoRA experts' anchors alone, (E,)
        (the ``hoe-lora`` method of ``hoe evaluate`` and the ``hoe-lora`` reference of router training)."""
        lam = to_simplex(preference, self.objectives)
        routing = PreferenceRouting(np.array([e.anchor for e in self.experts], dtype=np.float64))
        return routing.batch_weights(lam.to(torch.float64)[None])[0].float()

    def soup_weights(self, preference: PreferenceLike) -> torch.Tensor:
        """w⁽²⁾ of the linear soup Σ_i λ_i B_i A_i of the single-objective experts at λ (Rewarded Soups): (E,)."""
        lam = to_simplex(preference, self.objectives)
        w = torch.zeros(len(self.experts), dtype=torch.float32)
        for i, k in enumerate(self.vertex_experts()):
            w[k] += float(lam[i])
        return w

    # ----- calls ----------------------------------------------------------------------------------------------
    def _context(self, preference, expert_weights, args: tuple, kwargs: dict) -> RoutingContext:
        if expert_weights is not None:
            if preference is not None:
                raise ConfigError(
                    "conflicts with expert_weights.",
                    field="preference",
                    fix="Pass a preference or explicit expert weights, not both.",
                )
            return self.mixture_context(expert_weights)
        return self.routing_context(preference, _batch_size(args, kwargs))

    def forward(
        self,
        *args,
        preference: PreferenceLike | Sequence[PreferenceLike] | None = None,
        expert_weights: torch.Tensor | Sequence[float] | dict[str, float] | None = None,
        **kwargs,
    ):
        """The base model's forward (same arguments and output, ``.logits`` included) at ``preference``.

        ``preference`` is required unless ``expert_weights`` (see :meth:`mixture_context`) replaces routing;
        ``None`` raises :class:`~hoe.errors.PreferenceError` listing the objectives.
        """
        with self._call_lock, self.calling(self._context(preference, expert_weights, args, kwargs)):
            return self.base_model(*args, **kwargs)

    @torch.no_grad()
    def generate(
        self,
        *args,
        preference: PreferenceLike | Sequence[PreferenceLike] | None = None,
        expert_weights: torch.Tensor | Sequence[float] | dict[str, float] | None = None,
        compile=False,
        **kwargs,
    ):
        """``transformers`` generation (KV cache, sampling, beams...) at ``preference`` (or ``expert_weights``).

        ``compile=True`` decodes with a static KV cache and the decode step compiled whole
        (``torch.compile(fullgraph=True)``; on a GPU with CUDA graphs, ``mode="reduce-overhead"``): the same
        tokens as eager decoding, after a first call that compiles (once per batch shape and routing mode).
        A ``transformers.CompileConfig`` instead of True chooses the compilation (backend, mode).
        """
        with self._call_lock:  # the routing weights and the call are made with the same routers
            ctx = self._context(preference, expert_weights, args, kwargs).repeated(_expansion(kwargs))
            if not compile:
                with self.calling(ctx):
                    return self.base_model.generate(*args, **kwargs)
            kwargs = {**compiled_decoding(self.base_model, None if compile is True else compile), **kwargs}
            # one graph per mode, batch shape and number of rank rows reached: dynamo's default limit of 8
            # would fail a full graph after a few of them (a server sees many batch sizes), so this call allows
            # more (patched under the call lock: no other call sees or restores it meanwhile)
            limit = max(RECOMPILE_LIMIT, torch._dynamo.config.recompile_limit)
            with self.calling(ctx), torch._dynamo.config.patch(recompile_limit=limit):
                return self.base_model.generate(*args, **kwargs)

    @contextmanager
    def calling(self, ctx: RoutingContext, compact: bool = True) -> Iterator[RoutingContext]:
        """Make ``ctx`` the routing state's call for the duration of one call, every layer's buffers derived
        from it (calls from several threads take turns: the state holds one call at a time). ``compact``: keep
        only the rank rows of the experts the call can reach (:func:`hoe.model.decode.prepare`)."""
        with self._call_lock:
            outer, outer_compact = self.routing.call, self.routing.compact
            try:
                self._enter(ctx, compact)  # inside the try: a failure here leaves no call behind either
                yield ctx
            finally:
                if outer is None:
                    self.routing.leave()
                else:  # a nested call (checkpoint recomputation inside a call): restore the outer one
                    self._enter(outer, outer_compact)

    def _enter(self, ctx: RoutingContext, compact: bool) -> None:
        self.routing.enter(ctx, compact)
        for layer in self.layers.values():
            decode.prepare(layer)

    def weights_changed(self) -> None:
        """Say that the experts' or the routers' weights were edited in place (outside ``add_router``,
        ``routers_to``, loading, or a step of an optimizer given to :meth:`track`): the layers' per-call
        buffers, which copy them, are rewritten at the next call."""
        with self._call_lock:
            self.routing.changed()

    def track(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Rewrite the layers' per-call buffers after each step of ``optimizer`` and after each state loaded
        into it (a resumed run copies its parameters, then loads the optimizer's state). Returns it."""
        optimizer.register_step_post_hook(lambda *_: self.weights_changed())
        optimizer.register_load_state_dict_post_hook(lambda *_: self.weights_changed())
        return optimizer

    def merge_single_preference(self, enable: bool = True) -> None:
        """Opt-in, for users with the memory for a second copy of every adapted weight: a call with one λ
        and no router decodes on W + Σ_j g_j B_j A_j merged once per call, at exactly the base model's cost."""
        with self._call_lock:
            self.routing.merge = enable
            self.routing.changed()
            if not enable:
                for layer in self.layers.values():
                    decode.release_merged(layer)

    def activation_checkpointing(self, enable: bool = True) -> int:
        """Recompute each transformer block's activations in the backward pass (less memory, one more forward);
        the routing of each call survives the recomputation (:mod:`hoe.model.checkpointing`). Returns the
        number of checkpointed blocks."""
        from hoe.model import checkpointing

        if not enable:
            checkpointing.disable(self.base_model)
            return 0
        return checkpointing.enable(self)

    # ----- router experts -------------------------------------------------------------------------------------
    def add_router(
        self,
        name: str,
        anchor: PreferenceLike,
        experts: Sequence[str] | None = None,
        mixture: torch.Tensor | None = None,
    ) -> RouterSpec:
        """Add a router expert at ``anchor`` to every HoE layer: W = 0, and b = 1 (a uniform mixture), or
        b = log ``mixture`` when given ((E,) weights over the LoRA experts, e.g. HoE-LoRA's at the anchor:
        :func:`hoe.model.router.mixture_bias`), so that its first output is that mixture.

        ``experts``: the LoRA experts it mixes; default: the N nearest to its anchor (N objectives), together
        with every expert ``mixture`` gives weight to.
        """
        if name in {r.name for r in self.routers}:
            raise ConfigError(
                f"a router named {name!r} exists already.",
                field="router",
                value=name,
                fix="Give each router its own name.",
            )
        lam = to_simplex(anchor, self.objectives, "router")
        expert_names = [e.name for e in self.experts]
        if experts is None:
            active = nearest_experts(
                lam, torch.tensor([e.anchor for e in self.experts], dtype=torch.float64), len(self.objectives)
            )
        else:
            unknown = [x for x in experts if x not in expert_names]
            if unknown or not experts:
                raise ConfigError(
                    f"router {name!r} mixes unknown experts {unknown}."
                    if unknown
                    else f"router {name!r} mixes no experts.",
                    field="router",
                    value=list(experts),
                    fix=f"Name some of the LoRA experts {expert_names}.",
                )
            active = torch.tensor([n in experts for n in expert_names])
        bias = None
        if mixture is not None:
            if experts is None:
                active = active | (mixture.cpu() > 0)
            bias = mixture_bias(mixture.cpu(), active)
        spec = RouterSpec(name, tuple(lam.tolist()), tuple(n for n, a in zip(expert_names, active) if a))
        with self._call_lock:  # no call sees the new router half added
            self.routing.add_router(active)
            for layer in self.layers.values():
                layer.add_router(bias)
            self.routers.append(spec)
            self._update_routing()
        return spec

    def routers_to(self, dtype: torch.dtype) -> None:
        """Hold the routers' parameters in ``dtype`` (e.g. float32 to train them over a bf16 base; decoding
        still computes in the base's dtype). Call before making an optimizer: the parameters are new."""
        with self._call_lock:
            for layer in self.layers.values():
                layer.router_weight = nn.Parameter(layer.router_weight.detach().to(dtype))
                layer.router_bias = nn.Parameter(layer.router_bias.detach().to(dtype))
            self.routing.changed()

    def router_parameters(self) -> list[nn.Parameter]:
        """The only trainable parameters: every router's weight and bias in every HoE layer."""
        return [p for layer in self.layers.values() for p in (layer.router_weight, layer.router_bias)]

    # ----- persistence (the format is hoe.bundle.folder) ------------------------------------------------
    def save_pretrained(self, bundle_dir: str | Path, overwrite: bool = False) -> Path:
        from hoe.bundle.folder import save_bundle

        return save_bundle(self, bundle_dir, overwrite)

    @classmethod
    def from_pretrained(
        cls,
        bundle_dir: str | Path,
        base: str | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ) -> HoEModel:
        """Load a bundle folder; ``base`` replaces the base model stored in its manifest (e.g. after it moved).
        Everything is validated (:func:`hoe.bundle.folder.read_bundle`) before the model is made."""
        from hoe.bundle.folder import load_router_weights, read_bundle

        parts = read_bundle(bundle_dir, base, dtype)
        model = cls(parts.base_model, parts.objectives, parts.experts, parts.weights, parts.base_ref)
        for r in parts.routers:
            model.add_router(r.name, r.anchor, r.experts)
        if model.routers:
            load_router_weights(model, parts.routers_file)
        return model.to(device) if device is not None else model


def _check_fits(expert: str, module: str, w: LoraWeights | None, target: nn.Module | None) -> None:
    """An expert's factors must match the base model's linear module they adapt."""
    if w is None or (
        target is not None and (w.B.shape[0], w.A.shape[1]) == (target.out_features, target.in_features)
    ):
        return
    found = "no such linear module" if target is None else f"{target.out_features}x{target.in_features}"
    raise ShapeMismatchError(
        f"expert {expert!r} adapts {module} as {w.B.shape[0]}x{w.A.shape[1]} but the base model has {found}.",
        field="base",
        fix="The base model does not match its experts; pass the base model they were made from.",
    )


RECOMPILE_LIMIT = 64
"""Compilations of one decode step a compiled ``generate`` allows (each batch shape and routing mode is one)."""


def compiled_decoding(base_model: nn.Module, config=None) -> dict:
    """``generate`` options for a compiled decode step: a static KV cache and ``torch.compile(fullgraph=True)``
    (CUDA graphs on a GPU; plain inductor elsewhere, which ``transformers`` would otherwise not compile), or
    the given ``CompileConfig``."""
    from transformers import CompileConfig

    if config is None:
        cuda = next(base_model.parameters()).device.type == "cuda"
        config = CompileConfig(fullgraph=True, dynamic=False, mode="reduce-overhead" if cuda else "default")
    config._compile_all_devices = True  # transformers compiles on accelerators only unless told
    return {"cache_implementation": "static", "compile_config": config}


def _expansion(kwargs: dict) -> int:
    """How many rows ``generate`` makes of each input row: beams, or samples per prompt."""
    config = kwargs.get("generation_config")
    get = lambda k: kwargs.get(k, getattr(config, k, None)) or 1  # noqa: E731
    return int(get("num_beams")) if int(get("num_beams")) > 1 else int(get("num_return_sequences"))


def _batch_size(args: tuple, kwargs: dict) -> int | None:
    for t in (*args[:1], kwargs.get("input_ids"), kwargs.get("inputs_embeds")):
        if isinstance(t, torch.Tensor):
            return t.shape[0]
    return None
