"""Text in, text out: batched generation with an HoE model at a preference.

Every input is checked before any work: the options (:func:`check_generation_options`), the prompts (a
non-empty list of strings, none that encodes to no tokens) and their length: a prompt whose tokens plus
``max_new_tokens`` exceed the model's context is refused, naming the limit, unless ``truncate=True`` asks to
keep its last tokens.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from pathlib import Path

import torch

from hoe.devices import module_device
from hoe.errors import ConfigError, HoEError, bad_value, raise_all
from hoe.generation.sampling import RowSampler
from hoe.preference import PreferenceLike

SANE_CONTEXT = 10_000_000
"""A tokenizer's ``model_max_length`` above this is transformers' "unknown" placeholder, not a limit."""


def load_tokenizer(ref: str):
    """The tokenizer of a base model reference, padded on the left for generation."""
    from hoe.backbones import load_tokenizer as load

    tokenizer = load(ref, "base")
    tokenizer.padding_side = "left"  # decoder-only: generated tokens must follow the prompt directly
    return tokenizer


def generate(
    model: str | Path,
    prompts: Sequence[str],
    preference: PreferenceLike | Sequence[PreferenceLike],
    base: str | None = None,
    chat: bool = False,
    max_new_tokens: int = 48,
    temperature: float = 0.7,
    seed: int | Sequence[int] | None = 0,
    truncate: bool = False,
    device: str = "auto",
) -> list[str]:
    """``hoe generate``: load the bundle folder ``model`` (on ``base`` instead of its stored base model if
    given) and return one response per prompt at ``preference`` (see :func:`generate_text`).

    What can be checked without the model (preference, options, device) is checked before it loads.
    """
    from hoe.bundle.folder import read_manifest
    from hoe.devices import resolve_device
    from hoe.model.hoe_model import HoEModel
    from hoe.preference import to_simplex_batch

    to_simplex_batch(preference, read_manifest(Path(model))["objectives"], len(prompts))
    check_generation_options(max_new_tokens, temperature)
    if seed is not None:
        _row_seeds(seed, len(prompts))  # checked before the model loads
    hoe_model = HoEModel.from_pretrained(model, base=base, device=resolve_device(device))
    tokenizer = load_tokenizer(hoe_model.base_ref)
    return generate_text(
        hoe_model, tokenizer, prompts, preference, chat, max_new_tokens, temperature, seed, truncate
    )


def generate_text(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    preference: PreferenceLike | Sequence[PreferenceLike] | None,
    chat: bool = False,
    max_new_tokens: int = 48,
    temperature: float = 0.7,
    seed: int | Sequence[int] | None = 0,
    truncate: bool = False,
) -> list[str]:
    """Generate one response per prompt. ``temperature`` 0 decodes greedily; ``chat`` applies the chat template.

    ``model`` is an :class:`~hoe.model.hoe_model.HoEModel` (then ``preference`` is required) or any causal LM
    (``preference=None``).

    Sampling is seeded per row (:mod:`hoe.generation.sampling`): ``seed`` is one seed per prompt, or an int ``s``
    that gives prompt i the seed ``s + i``. A prompt's response then depends on its seed, not on its batch.
    ``seed=None`` samples from torch's global generator as it stands.

    A prompt longer than the context (its tokens + ``max_new_tokens`` > :func:`context_length`) raises
    :class:`ConfigError`; with ``truncate=True`` only its last tokens are kept, so that it fits.
    """
    check_generation_options(max_new_tokens, temperature)
    check_prompts(prompts)
    seeds = None if seed is None else _row_seeds(seed, len(prompts))
    batch = prepare_batch(model, tokenizer, prompts, chat, max_new_tokens, truncate)
    new_ids = sample_ids(model, tokenizer, batch, preference, max_new_tokens, temperature, seeds)
    return tokenizer.batch_decode(new_ids, skip_special_tokens=True)


def prepare_batch(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    chat: bool,
    max_new_tokens: int,
    truncate: bool | None,
):
    """The left-padded batch of ``prompts`` (chat template if ``chat``), fitted to the model's context
    (:func:`fit_context`), on the model's device."""
    batch = encode_prompts(tokenizer, prompts, chat)
    batch = fit_context(batch, context_length(model, tokenizer), max_new_tokens, chat, truncate)
    return batch.to(module_device(model))


def sample_ids(
    model: torch.nn.Module,
    tokenizer,
    batch,
    preference: PreferenceLike | Sequence[PreferenceLike] | None,
    max_new_tokens: int,
    temperature: float,
    seeds: Sequence[int] | None,
    processors: Sequence = (),
) -> torch.Tensor:
    """The new token ids (B, T <= max_new_tokens) that ``model`` generates after ``batch`` (from
    :func:`prepare_batch`); a row that ended early is padded with ``pad_token_id``.

    ``processors`` (``transformers`` logits processors) rewrite the next-token scores before the token is
    picked: greedily with ``temperature`` 0, else by the per-row seeded sampler (which runs last), or from
    torch's global generator when ``seeds`` is None.
    """
    chain = list(processors)
    if temperature <= 0:
        sampling: dict = {"do_sample": False}
    elif seeds is None:
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
    else:  # greedy over the one token the sampler leaves finite
        sampling = {"do_sample": False}
        chain.append(RowSampler(seeds, temperature))
    if chain:
        sampling["logits_processor"] = chain
    if preference is not None or hasattr(model, "objectives"):  # a model with objectives (an HoEModel)
        sampling["preference"] = preference  # refuses None, naming them
    out = model.generate(
        **batch,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        **sampling,
    )
    return out[:, batch["input_ids"].shape[1] :]


def check_generation_options(max_new_tokens: int, temperature: float) -> None:
    """``max_new_tokens`` an int >= 1 and ``temperature`` a finite number >= 0; all problems at once."""
    errors: list[HoEError | None] = []
    if not (_is_int(max_new_tokens) and max_new_tokens >= 1):
        errors.append(bad_value("max_new_tokens", max_new_tokens, "Pass a whole number of tokens >= 1."))
    if not (_is_finite(temperature) and temperature >= 0):
        errors.append(
            bad_value("temperature", temperature, "Pass a finite number >= 0 (0 decodes greedily).")
        )
    raise_all(errors)


def _is_int(x: object) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_finite(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def check_prompts(prompts: Sequence[str]) -> None:
    """A non-empty list of strings (a lone string would be read as one prompt per character)."""
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise bad_value("prompts", _short(prompts), "Pass a list of strings, one per prompt.")
    if not prompts:
        raise ConfigError("no prompts.", field="prompts", value=[], fix="Pass at least one prompt.")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise ConfigError(
                f"prompt {i} is not a string (got {type(p).__name__}).",
                field="prompts",
                value=p,
                fix="Pass text.",
            )


def encode_prompts(tokenizer, prompts: Sequence[str], chat: bool):
    """Left-padded input ids of ``prompts`` (:func:`pad_left`); with ``chat``, each is one user turn of the
    tokenizer's chat template followed by the generation prompt (the template adds its own special tokens)."""
    if chat:
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            for p in prompts
        ]
    else:
        texts = list(prompts)
    ids = tokenizer(texts, add_special_tokens=not chat).input_ids
    return pad_left(ids, tokenizer.pad_token_id)


def pad_left(ids: Sequence[Sequence[int]], pad_token_id: int):
    """The batch of token lists ``ids``, padded on the left with ``pad_token_id`` to the longest: a
    ``BatchEncoding`` of ``input_ids`` and ``attention_mask`` (1 on tokens, 0 on padding), both (B, P) int64.

    Left, because in a decoder-only model the generated tokens must follow each prompt directly.
    """
    from transformers import BatchEncoding

    width = max((len(row) for row in ids), default=0)
    input_ids = [[pad_token_id] * (width - len(row)) + list(row) for row in ids]
    mask = [[0] * (width - len(row)) + [1] * len(row) for row in ids]
    return BatchEncoding(
        {
            "input_ids": torch.tensor(input_ids, dtype=torch.long).reshape(len(ids), width),
            "attention_mask": torch.tensor(mask, dtype=torch.long).reshape(len(ids), width),
        }
    )


def context_length(model: torch.nn.Module, tokenizer) -> int | None:
    """Most tokens the model attends to: its config's ``max_position_embeddings`` (``n_positions`` for GPT-2),
    or the tokenizer's ``model_max_length`` when that is smaller and a real limit; None if neither is known."""
    config = getattr(getattr(model, "base_model", model), "config", None) or getattr(model, "config", None)
    limits = [getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    known = [int(n) for n in limits if isinstance(n, int) and 0 < n < SANE_CONTEXT]
    return min(known) if known else None


def fit_context(batch, limit: int | None, max_new_tokens: int, chat: bool, truncate: bool | None):
    """Refuse (or, with ``truncate``, cut to their last tokens) prompts that leave no room for the new tokens.
    ``truncate=None``: refuse, and do not suggest truncation (the caller offers none, e.g. ``hoe evaluate``).

    ``batch`` is left-padded, so its last ``keep`` columns hold every row's last ``keep`` tokens.
    """
    lengths = batch["attention_mask"].sum(-1).tolist()  # (B,) tokens per prompt
    _check_not_empty(lengths, chat)
    if limit is None:
        return batch
    if max_new_tokens >= limit:
        raise bad_value(
            "max_new_tokens", max_new_tokens, f"The model's context holds {limit} tokens; ask for fewer."
        )
    keep = limit - max_new_tokens
    too_long = [i for i, n in enumerate(lengths) if n > keep]
    if not too_long:
        return batch
    if not truncate:
        i = too_long[0]
        raise ConfigError(
            f"prompt {i} has {lengths[i]} tokens; with {max_new_tokens} new tokens that exceeds the model's "
            f"context of {limit} tokens.",
            field="prompts",
            value=f"<{lengths[i]} tokens>",
            fix=f"Shorten it to at most {keep} tokens, "
            + (
                "or ask for fewer new tokens."
                if truncate is None
                else "or allow truncation (keeps its last tokens)."
            ),
        )
    return type(batch)({k: v[:, -keep:] for k, v in batch.items()})


def _check_not_empty(lengths: list[int], chat: bool) -> None:
    """A prompt of no tokens gives the model nothing to continue (and breaks generation)."""
    if 0 in lengths:
        fix = (
            "Pass some text."
            if chat
            else "Pass some text, or use the chat template (it adds the turn markers)."
        )
        raise ConfigError(
            f"prompt {lengths.index(0)} is empty (it encodes to no tokens).",
            field="prompts",
            value="",
            fix=fix,
        )


MAX_SEED = 2**63 - 1
"""The largest seed of a row: torch's generators take 64-bit seeds, and the server's ``seed`` has this bound."""


def _row_seeds(seed: int | Sequence[int], n: int) -> list[int]:
    if _is_int(seed):
        if not 0 <= int(seed) <= MAX_SEED - max(n - 1, 0):  # prompt i gets seed + i
            raise bad_value(
                "seed",
                seed,
                f"Pass a whole number from 0 to 2**63 - 1 - {max(n - 1, 0)} (prompt i uses seed + i).",
            )
        return [int(seed) + i for i in range(n)]
    if isinstance(seed, (str, bytes, bool)) or not hasattr(seed, "__iter__"):
        raise bad_value("seed", seed, "Pass an int, one int per prompt, or None.")
    try:
        seeds = [_whole(s) for s in seed]
    except TypeError:
        raise bad_value("seed", list(seed), "Seeds must be whole numbers.") from None
    if any(not 0 <= s <= MAX_SEED for s in seeds):
        raise bad_value("seed", _short(seeds), "Pass whole numbers from 0 to 2**63 - 1.")
    if len(seeds) != n:
        raise ConfigError(
            f"{len(seeds)} seeds for {n} prompts.",
            field="seed",
            value=seeds,
            fix="Pass one per prompt, or one int.",
        )
    return seeds


def _whole(s: object) -> int:
    """An int, a NumPy integer or an integer 0-d tensor as an int; anything else (bools too) -> TypeError."""
    if isinstance(s, bool):
        raise TypeError(s)
    return operator.index(s)


def _short(x: object) -> object:
    text = repr(x)
    return x if len(text) <= 80 else text[:77] + "..."


def eos_token_ids(base_ref: str, tokenizer) -> list[int]:
    """Every token id that ends a response: the tokenizer's EOS and the base model's generation config's."""
    from transformers import GenerationConfig

    from hoe.io.resolve import resolve_model_dir

    ids = {tokenizer.eos_token_id} - {None}
    try:
        eos = GenerationConfig.from_pretrained(str(resolve_model_dir(base_ref, "model"))).eos_token_id
    except OSError:  # no generation_config.json
        eos = None
    ids |= set(eos if isinstance(eos, list) else [eos]) - {None}
    return sorted(ids)
