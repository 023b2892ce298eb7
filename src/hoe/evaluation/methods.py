"""Methods compared on one protocol (BENCH.md §1): each answers prompts at a preference λ with given seeds.

Every method decodes the same way (:func:`hoe.generation.text.sample_ids`: chat template, ``max_new_tokens``,
``temperature``, the per-row seeded inverse-CDF sampler), so on the same prompt and seed two methods draw the
same uniforms (common random numbers) and differ only where their next-token distributions do.

==========  =================================================================================  ===========
name        the model at λ                                                                     passes/token
==========  =================================================================================  ===========
hoe         the bundle: LoRA experts + router experts + preference routing (METHOD.md §3)      1
hoe-lora    the bundle without its routers: preference routing over the LoRA experts' anchors  1
soup        the linear soup Σ_i λ_i B_i A_i of the single-objective LoRA experts (Eq. 3)       1
rs          Rewarded Soups θ₀ + Σ_i λ_i τ_i with the tuned models' full task vectors           1
mod         MOD, softmax(Σ_i λ_i log π_i / T) over the tuned models with λ_i > 0               #{λ_i > 0}
base        the base model θ₀ (one point: it ignores λ)                                        1
experts     each tuned model on its own (one point per objective, at its vertex e_i)           1
==========  =================================================================================  ===========

``rs``, ``mod`` and ``experts`` use one model per objective, θ(e_i) (:mod:`hoe.evaluation.models`), so at a
vertex they are the same model and give identical responses. Adding a method is one class registered in
:data:`METHODS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from hoe.evaluation.mixtures import FixedMixture
from hoe.evaluation.mod import mod_sample_ids
from hoe.evaluation.models import Models
from hoe.generation.text import prepare_batch, sample_ids
from hoe.registry import Registry


@dataclass(frozen=True)
class Decoding:
    """How every method decodes: the chat template, the token budget and the sampling temperature (0: greedy)."""

    chat: bool = True
    max_new_tokens: int = 48
    temperature: float = 0.7


@dataclass
class Responses:
    texts: list[str]
    tokens: int  # new tokens generated, each row up to and including its EOS


def response_lengths(new_ids: torch.Tensor, eos_ids: Sequence[int]) -> torch.Tensor:
    """Tokens each row generated: up to and including its first EOS, else all T: (B, T) -> (B,)."""
    is_eos = torch.isin(new_ids, torch.tensor(list(eos_ids), dtype=new_ids.dtype, device=new_ids.device))
    first = torch.where(is_eos.any(-1), is_eos.int().argmax(-1) + 1, new_ids.shape[1])  # (B,)
    return first.cpu()


class Method:
    """Answers prompts at a preference λ (m,) with one seed per prompt.

    ``kind``: ``grid`` (a point per λ of the grid), ``constant`` (one point; λ is ignored) or ``vertices`` (a
    point per objective, at e_i). ``needs``: the kinds of :class:`Models` it loads. ``depends``: what its
    numbers depend on besides the prompts and decoding (``experts``: the bundle's LoRA experts and anchors,
    ``routers``: its router experts, ``base``, ``tuned``).
    """

    kind: ClassVar[str] = "grid"
    needs: ClassVar[frozenset[str]] = frozenset()
    depends: ClassVar[tuple[str, ...]] = ()

    def __init__(self, models: Models, tokenizer, decoding: Decoding, eos_ids: Sequence[int]):
        self.models, self.tokenizer, self.decoding, self.eos_ids = models, tokenizer, decoding, list(eos_ids)

    def points(self, grid: torch.Tensor) -> list[tuple[str, torch.Tensor | None]]:
        """(label, λ) of each point the method is evaluated at; λ None for a method that ignores it."""
        return [(preference_label(lam), lam) for lam in grid]

    def prepare(self, lam: torch.Tensor | None) -> None:
        """What λ needs before decoding (loading the model, merging the weights); :meth:`generate` does it
        too when needed (once per λ), so calling it first only keeps its time out of the decoding's."""
        self.sizing_model(lam)

    def forward_passes_per_token(self, lam: torch.Tensor | None) -> int:
        return 1

    def computes(self, lam: torch.Tensor | None) -> tuple | None:
        """What the point at λ computes, when another method can compute exactly the same (the same model
        weights through the same code, hence with the same seeds the same responses); None otherwise.

        ``("lora", w)``: the bundle with fixed LoRA-expert weights w (float32 values), no router;
        ``("tuned", λ)``: the tuned models merged at λ (RS; at a vertex, the tuned model itself). The sweep
        copies a point whose value, and settings key, equal those of a point it already has.
        """
        return None

    def generate(self, prompts: Sequence[str], lam: torch.Tensor | None, seeds: Sequence[int]) -> Responses:
        """One response per prompt at λ, prompt i sampled with ``seeds[i]`` (chat template, the decoding of
        every method), and the number of new tokens."""
        d = self.decoding
        batch = prepare_batch(
            self.sizing_model(lam), self.tokenizer, prompts, d.chat, d.max_new_tokens, None
        )  # None: evaluate offers no truncation, so its error does not suggest one
        new_ids = self.sample(batch, lam, seeds)
        texts = self.tokenizer.batch_decode(new_ids, skip_special_tokens=True)
        return Responses(texts, int(response_lengths(new_ids, self.eos_ids).sum()))

    def sizing_model(self, lam: torch.Tensor | None) -> torch.nn.Module:
        """The model whose device and context length the batch is prepared for."""
        raise NotImplementedError

    def sample(self, batch, lam: torch.Tensor | None, seeds: Sequence[int]) -> torch.Tensor:
        """New token ids (B, T) at λ."""
        raise NotImplementedError

    def _sample_with(self, model, batch, seeds, preference=None) -> torch.Tensor:
        d = self.decoding
        return sample_ids(model, self.tokenizer, batch, preference, d.max_new_tokens, d.temperature, seeds)


METHODS: Registry[type[Method]] = Registry("methods")
"""Method names -> :class:`Method` subclasses."""


def _lora(weights: torch.Tensor) -> tuple:
    """The ``computes`` value of the bundle run with fixed LoRA-expert weights (as float32, what the layers
    use; see :meth:`HoEModel.mixture_context`)."""
    return ("lora", tuple(weights.float().tolist()))


def preference_label(lam: torch.Tensor) -> str:
    """A point's file-safe label: ``0.5000-0.2500-0.2500``."""
    return "-".join(f"{float(x):.4f}" for x in lam)


class _BundleMethod(Method):
    needs = frozenset({"bundle"})
    depends = ("experts", "base")  # without routers: attaching or retraining them keeps these points

    def sizing_model(self, lam):
        return self.models.bundle()


@METHODS.register("hoe")
class HoE(_BundleMethod):
    depends = ("experts", "routers", "base")

    def computes(self, lam):
        bundle = self.models.bundle()
        w = bundle.routing_weights(lam)[0]  # (E + R,) over the LoRA experts, then the routers
        e = len(bundle.experts)
        return None if (w[e:] > 0).any() else _lora(w[:e])

    def sample(self, batch, lam, seeds):
        return self._sample_with(self.models.bundle(), batch, seeds, preference=lam)


@METHODS.register("hoe-lora")
class HoELoRA(_BundleMethod):
    def computes(self, lam):
        return _lora(self.models.bundle().lora_only_weights(lam))

    def sample(self, batch, lam, seeds):
        bundle = self.models.bundle()
        return self._sample_with(FixedMixture(bundle, bundle.lora_only_weights(lam)), batch, seeds)


@METHODS.register("soup")
class LinearSoup(_BundleMethod):
    def computes(self, lam):
        return _lora(self.models.bundle().soup_weights(lam))

    def sample(self, batch, lam, seeds):
        bundle = self.models.bundle()
        return self._sample_with(FixedMixture(bundle, bundle.soup_weights(lam)), batch, seeds)


@METHODS.register("rs")
class RewardedSoups(Method):
    needs = frozenset({"working"})
    depends = ("base", "tuned")

    def computes(self, lam):
        return ("tuned", tuple(float(x) for x in lam))

    def prepare(self, lam):
        self.models.working(lam.tolist())

    def sizing_model(self, lam):
        return self.models.working(lam.tolist())

    def sample(self, batch, lam, seeds):
        return self._sample_with(self.models.working(lam.tolist()), batch, seeds)


@METHODS.register("experts")
class Experts(RewardedSoups):
    kind = "vertices"

    def points(self, grid):
        m = len(self.models.objectives)
        return [(o, torch.eye(m, dtype=torch.float64)[i]) for i, o in enumerate(self.models.objectives)]


@METHODS.register("mod")
class MOD(Method):
    needs = frozenset({"vertex"})
    depends = ("base", "tuned")

    def forward_passes_per_token(self, lam):
        return int((lam > 0).sum())

    def computes(self, lam):  # one model with λ_i > 0 is sampled on its own (hoe.evaluation.mod)
        return ("tuned", tuple(float(x) for x in lam)) if int((lam > 0).sum()) == 1 else None

    def prepare(self, lam):
        for i in torch.nonzero(lam > 0).flatten().tolist():
            self.models.vertex(i)

    def sizing_model(self, lam):
        return self.models.vertex(int(torch.nonzero(lam > 0)[0]))

    def sample(self, batch, lam, seeds):
        models = [(float(w), self.models.vertex(i)) for i, w in enumerate(lam.tolist()) if w > 0]
        d = self.decoding
        return mod_sample_ids(models, self.tokenizer, batch, d.max_new_tokens, d.temperature, seeds)


@METHODS.register("base")
class Base(Method):
    kind = "constant"
    needs = frozenset({"base"})
    depends = ("base",)

    def points(self, grid):
        return [("base", None)]

    def sizing_model(self, lam):
        return self.models.base()

    def sample(self, batch, lam, seeds):
        return self._sample_with(self.models.base(), batch, seeds)
