"""The router recipe's config: every option of ``hoe train-router``, checked all at once, and what follows
from it alone (the router's default name, its first mixture, the scalarisation and its options)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hoe.dtypes import DTYPES
from hoe.errors import HoEError, bad_value
from hoe.preference import Preference
from hoe.scalarisation import SCALARISATIONS, Scalarisation, build_scalarisation
from hoe.validation import at_least, non_empty, not_both, one_of, positive, validate

REFERENCES = ("soup", "hoe-lora")
INITS = ("uniform", "hoe-lora")
RESUMABLE = {"steps", "checkpoint_every", "resume", "overwrite", "micro_batch", "out", "device"}
"""Config fields that may differ between a run and its resumption (they change no result beyond float noise)."""


@dataclass
class RouterConfig:
    """Everything ``train_router`` needs; field names are the CLI flags (``batch_size`` -> ``--batch-size``).

    Defaults follow the authors' router-expert PPO (METHOD.md §7) except the batch, sized for a CPU.
    """

    model: str  # the input bundle
    anchor: Preference  # the router's preference λ, e.g. "relevance=0.5,positivity=0.5,brevity=0"
    out: str  # the new bundle
    objective: list[str] | None = None  # specs named like the bundle's objectives (default: their names)
    prompts: str = "smol"
    split: str = "train"
    name: str | None = None  # of the new router (default router-<anchor>)
    steps: int = 100
    batch_size: int = 16  # global prompts per step, one response each
    seed: int = 0
    scalarisation: str = "tchebycheff"
    target_point: Preference | None = None  # z*; default from data
    target_margin: float = 0.1  # z*_i = best expert mean + margin · std of objective i
    calibration_prompts: int = 16
    reference: str = "soup"
    init: str | None = (
        None  # uniform (W = 0, b = 1) or hoe-lora (b = log of HoE-LoRA's weights); default: the reference's
    )
    reference_point: Preference | None = None  # the hypervolume scalarisation's r; default: evaluate's
    placement: str | None = None  # hoe place-routers' placement.json: --anchor auto takes its next pick
    lr: float = 1e-5
    value_lr: float | None = None  # default: lr
    ppo_epochs: int = 4
    minibatches: int | None = None  # optimizer steps per PPO epoch; default min(4, batch_size)
    micro_batch: int = 8  # rows per forward pass
    clip_range: float = 0.2
    value_clip: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    gae_lambda: float = 0.95
    init_kl_coef: float = 0.4
    adaptive_kl: bool = True
    kl_target: float = 1.0
    kl_horizon: int = 8000
    omd_horizon: int = 2000
    omd_step_size: float = 3.0
    max_grad_norm: float = 0.5
    max_new_tokens: int = 48
    temperature: float = 0.7
    gradient_checkpointing: bool = False
    checkpoint_every: int = 25
    resume: bool = False
    overwrite: bool = False
    device: str = "auto"
    dtype: str = "float32"  # the bundle is loaded and saved in it (routers and value heads train in float32)

    def __post_init__(self) -> None:
        if self.minibatches is None:  # 4 (the authors'), or one per prompt when the batch is smaller
            b = self.batch_size
            self.minibatches = min(4, b) if isinstance(b, int) and not isinstance(b, bool) and b > 0 else 4
        validate(self, _CHECKS)


def _in_unit(name: str) -> Any:
    def check(c: object) -> HoEError | None:
        v = getattr(c, name)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1
        return None if ok else bad_value(name, v, "Pass a number in [0, 1].")

    return check


def _at_most_batch(name: str, what: str) -> Any:
    def check(c: Any) -> HoEError | None:
        v, b = getattr(c, name), c.batch_size
        if isinstance(v, int) and isinstance(b, int) and v < b:
            return bad_value(name, v, f"Pass at least the batch size ({b}) {what}.")
        return None

    return check


def _value_lr(c: Any) -> HoEError | None:
    v = c.value_lr
    if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")):
        return None
    return bad_value("value_lr", v, "Pass a positive learning rate, or none for the router's.")


def _minibatches_fit(c: Any) -> HoEError | None:
    if isinstance(c.minibatches, int) and isinstance(c.batch_size, int) and c.minibatches > c.batch_size:
        return bad_value("minibatches", c.minibatches, f"Pass at most the batch size ({c.batch_size}).")
    return None


def _auto_needs_placement(c: Any) -> HoEError | None:
    if isinstance(c.anchor, str) and c.anchor.startswith("auto") and not c.placement:
        return bad_value(
            "anchor", c.anchor, "Pass --placement (hoe place-routers' placement.json) with auto."
        )
    return None


_CHECKS = [
    non_empty("model", "the bundle to add a router to"),
    non_empty("out", "the folder for the new bundle"),
    non_empty("anchor", "the router's preference, e.g. a=0.5,b=0.5, or auto with --placement"),
    _auto_needs_placement,
    *(
        positive(name, what)
        for name, what in [
            ("steps", "number of PPO steps"),
            ("batch_size", "number of prompts per step"),
            ("calibration_prompts", "number of prompts to measure the experts on"),
            ("lr", "learning rate, e.g. 1e-5"),
            ("ppo_epochs", "number of PPO epochs per step, e.g. 4"),
            ("minibatches", "number of optimizer steps per epoch"),
            ("micro_batch", "number of rows per forward pass"),
            ("clip_range", "PPO clip range, e.g. 0.2"),
            ("value_clip", "value clip range, e.g. 0.2"),
            ("kl_target", "target KL per response, e.g. 1"),
            ("kl_horizon", "KL controller horizon, e.g. 8000"),
            ("omd_step_size", "OMD step size, e.g. 3"),
            ("max_grad_norm", "gradient-norm clip, e.g. 0.5"),
            ("max_new_tokens", "response length budget, e.g. 48"),
            ("temperature", "sampling temperature, e.g. 0.7"),
            ("checkpoint_every", "number of steps between checkpoints"),
        ]
    ),
    *(at_least(n, 0, w) for n, w in [("vf_coef", "a value-loss weight"), ("init_kl_coef", "a KL weight")]),
    at_least("target_margin", 0, "a margin (in standard deviations)"),
    _in_unit("gamma"),
    _in_unit("gae_lambda"),
    _value_lr,
    _minibatches_fit,
    _at_most_batch("omd_horizon", "(the OMD rate is batch size / horizon, at most 1)"),
    one_of("scalarisation", SCALARISATIONS),  # the registry: later registrations count
    one_of("reference", list(REFERENCES)),
    one_of("init", [None, *INITS]),
    one_of("dtype", list(DTYPES)),
    not_both("resume", "overwrite"),
]


def scalarisation_options(config: RouterConfig, measured: dict[str, torch.Tensor | None]) -> dict:
    """The options of ``config.scalarisation`` that its factory accepts: ``measured`` (z*, the reference point,
    the LoRA-only baseline, by option name) and the OMD rate α = B / H and step size η."""
    offered = {**measured, "alpha": config.batch_size / config.omd_horizon, "step_size": config.omd_step_size}
    return {k: v for k, v in offered.items() if needs(config, k)}


def needs(config: RouterConfig, option: str) -> bool:
    """Whether ``config.scalarisation``'s factory takes ``option`` (``z_star``, ``ref_point``, ``baseline``...)."""
    return option in inspect.signature(SCALARISATIONS.lookup(config.scalarisation)).parameters


def needs_target(config: RouterConfig) -> bool:
    return needs(config, "z_star")


def router_init(config: RouterConfig) -> str:
    """``config.init``, or the one that matches the KL reference: hoe-lora for hoe-lora, else uniform."""
    return config.init or ("hoe-lora" if config.reference == "hoe-lora" else "uniform")


def make_scalarisation(config: RouterConfig, lam: torch.Tensor, measured: dict) -> Scalarisation:
    return build_scalarisation(config.scalarisation, lam, **scalarisation_options(config, measured))


def default_router_name(anchor: Sequence[float]) -> str:
    """``router-0.50-0.50``: a router named by its anchor λ (on the simplex), two decimals per objective. The
    one naming of routers, for ``train-router`` without ``--name`` and for ``hoe setup plan``."""
    return "router-" + "-".join(f"{a:.2f}" for a in anchor)


def router_name(config: RouterConfig, lam: torch.Tensor) -> str:
    """``config.name``, or the default name of the anchor ``lam``."""
    return config.name or default_router_name(lam.tolist())
