"""The OpenAI-compatible request bodies ``hoe serve`` accepts, parsed into one :class:`Request` each.

Fields (those of the OpenAI API that apply to a local causal LM, plus ``preference``):
``model``, ``messages`` (chat) or ``prompt`` (completions), ``max_tokens`` (``max_completion_tokens`` too),
``temperature`` (0 greedy), ``top_p``, ``seed``, ``n``, ``stop``, ``stream``, ``preference``, or ``preferences``
(a list: one choice per preference, all at ``seed``, to compare them)
(``{objective: weight}`` or a list in objective order; omitted: the server's default). Anything wrong raises
:class:`ApiError` with the OpenAI error shape's ``param`` naming the field; library errors keep their
``field`` (e.g. a bad ``preference``) and are worded without CLI flags.
"""

from __future__ import annotations

import math
import numbers
import secrets
from dataclasses import dataclass, field

import torch

from hoe.errors import HoEError


class ApiError(Exception):
    """An HTTP error in the OpenAI shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error", headers: dict[str, str] | None = None):  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    @classmethod
    def of(cls, e: HoEError, param: str | None = None) -> ApiError:
        """A library error as a 400 naming its field (``param`` overrides, e.g. a field the server renamed)."""
        return cls(400, e.message, param or e.field, code="invalid_value")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for and what the server holds at once."""

    max_tokens: int = 256  # new tokens per choice
    max_prompt_tokens: int = 2048
    max_n: int = 8
    max_concurrent: int = 64  # requests in flight or waiting; more get 429
    max_body_bytes: int = 1_000_000
    timeout_s: float = 120.0
    max_batch_rows: int = 32  # rows decoded together
    batch_wait_s: float = 0.01  # how long the batcher waits for more requests to arrive


@dataclass
class Request:
    """One parsed request: its text prompt, λ and decoding; ``n`` choices, choice k seeded ``seed + k``."""

    kind: str  # "chat" or "completion"
    model: str
    prompt: str  # the prompt as text (the chat template already applied for chat)
    prompt_ids: list[int]  # its tokens, made once here: what the engine decodes from
    preference: torch.Tensor  # (m,) on the simplex
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    n: int
    stop: list[str]
    stream: bool
    include_usage: bool = False  # stream_options.include_usage: a last chunk with the usage only
    raw_preference: object = field(default=None, repr=False)
    compare: torch.Tensor | None = None  # (n, m): ``preferences``, one λ per choice, all at ``seed``

    def preference_of(self, choice: int) -> torch.Tensor:
        """Choice ``choice``'s λ: its own with ``preferences``, else the request's."""
        return self.preference if self.compare is None else self.compare[choice]

    def seed_of(self, choice: int) -> int | None:
        """Choice ``choice``'s seed: ``seed + choice``, or ``seed`` for every choice of a comparison (the
        answers then differ only by their λ)."""
        if self.seed is None or self.compare is not None:
            return self.seed
        return self.seed + choice


def parse(body: object, kind: str, names: list[str], default_preference: torch.Tensor, tokenizer,
          limits: Limits, model_names: list[str]) -> Request:  # fmt: skip
    """``body`` (decoded JSON) of a ``/v1/chat/completions`` (``kind="chat"``) or ``/v1/completions`` request."""
    from hoe.preference import to_simplex

    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", None, "invalid_json")
    model = body.get("model", model_names[0])
    if model not in model_names:
        raise ApiError(404, f"The model {model!r} does not exist; this server has {model_names}.", "model",
                       "model_not_found")  # fmt: skip
    if kind == "chat":
        prompt, prompt_ids = _chat_prompt(body, tokenizer)
    else:
        prompt = _completion_prompt(body)
        prompt_ids = tokenizer(prompt, add_special_tokens=True).input_ids
    raw = body.get("preference")
    try:
        preference = default_preference if raw is None else to_simplex(raw, names, "preference")
    except HoEError as e:
        raise ApiError.of(e, "preference") from None
    except RecursionError:  # a preference nested thousands deep
        raise ApiError(400, "preference must be an object or a list of numbers.", "preference",
                       "invalid_value") from None  # fmt: skip
    compare = _preferences(body, names, limits)
    if compare is not None:
        preference = compare[0]
        if body.get("n") not in (None, len(compare)):
            raise ApiError(400, f"n must be the number of preferences ({len(compare)}) or left out.", "n",
                           "invalid_value")  # fmt: skip
    n = len(compare) if compare is not None else _int(body, "n", 1, 1, limits.max_n)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    max_tokens = _int({name: max_tokens}, name, min(16 if kind == "completion" else limits.max_tokens,
                                                    limits.max_tokens), 1, limits.max_tokens)  # fmt: skip
    temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p <= 0:
        raise ApiError(400, "top_p must be > 0 and <= 1.", "top_p", "invalid_value")
    seed = body.get("seed")
    if seed is not None and not (_whole(seed) and 0 <= seed <= 2**63 - 1 - n):  # choice k uses seed + k
        raise ApiError(400, f"seed must be an integer from 0 to 2**63 - 1 - n, got {seed!r}.", "seed",
                       "invalid_value")  # fmt: skip
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, f"stream must be true or false, got {stream!r}.", "stream", "invalid_value")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "stream_options must be an object.", "stream_options", "invalid_value")
    include_usage = bool(options.get("include_usage", False))
    n_tokens = len(prompt_ids)
    if n_tokens > limits.max_prompt_tokens:
        raise ApiError(400, f"The prompt has {n_tokens} tokens; this server takes at most "
                       f"{limits.max_prompt_tokens}.", "messages" if kind == "chat" else "prompt",
                       "context_length_exceeded")  # fmt: skip
    return Request(kind, model, prompt, prompt_ids, preference, max_tokens, temperature, top_p,
                   None if seed is None else int(seed), n, _stop(body), stream, include_usage, raw,
                   compare)  # fmt: skip


def _preferences(body: dict, names: list[str], limits: Limits) -> torch.Tensor | None:
    """``preferences``: a list of 1 to ``max_n`` preferences, one choice each (the playground's comparison);
    not together with ``preference``."""
    from hoe.preference import to_simplex

    raw = body.get("preferences")
    if raw is None:
        return None
    if body.get("preference") is not None:
        raise ApiError(400, "Pass preference or preferences, not both.", "preferences", "invalid_value")
    if not isinstance(raw, list) or not 1 <= len(raw) <= limits.max_n:
        raise ApiError(400, f"preferences must be a list of 1 to {limits.max_n} preferences.", "preferences",
                       "invalid_value")  # fmt: skip
    rows = []
    for i, item in enumerate(raw):
        try:
            rows.append(to_simplex(item, names, f"preferences[{i}]"))
        except HoEError as e:
            raise ApiError.of(e) from None
        except RecursionError:
            raise ApiError(400, "a preference must be an object or a list of numbers.", f"preferences[{i}]",
                           "invalid_value") from None  # fmt: skip
    return torch.stack(rows)


def _chat_prompt(body: dict, tokenizer) -> tuple[str, list[int]]:
    """The chat template applied to the messages, as text and tokens. Message text is text: a special-token
    string in it (``<|im_end|>``) is tokenised as plain characters, never as the special token, so a client
    cannot end its turn or open a system turn (:func:`template_ids`)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(
            400, "messages must be a non-empty list of {role, content}.", "messages", "invalid_value"
        )
    clean = []
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)):
            raise ApiError(
                400, f"messages[{i}] needs a role and a content.", f"messages[{i}]", "invalid_value"
            )
        content = m.get("content", "")
        if isinstance(content, list):  # the parts form: text parts only
            content = "".join(_text_part(p, f"messages[{i}].content[{j}]") for j, p in enumerate(content))
        if not isinstance(content, str):
            raise ApiError(
                400, f"messages[{i}].content must be text.", f"messages[{i}].content", "invalid_value"
            )
        check_text(content, f"messages[{i}].content")
        if m["role"] not in ROLES:  # the template writes the role as is: it must not carry special tokens
            raise ApiError(400, f"messages[{i}].role must be one of {list(ROLES)}, got {m['role'][:40]!r}.",
                           f"messages[{i}].role", "invalid_value")  # fmt: skip
        clean.append({"role": m["role"], "content": content})
    if not getattr(tokenizer, "chat_template", None):
        text = "".join(f"{m['role']}: {m['content']}\n" for m in clean) + "assistant: "
        return text, tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids
    try:
        return template_ids(tokenizer, clean)
    except ApiError:
        raise
    except Exception as e:  # the template's own checks (roles, order): the client's input
        raise ApiError(
            400, f"The chat template refused these messages: {e}", "messages", "invalid_value"
        ) from None


def template_ids(tokenizer, messages: list[dict]) -> tuple[str, list[int]]:
    """``apply_chat_template`` as (text, ids) where the messages' contents never become special tokens.

    When no content holds a special-token string the whole text is tokenised as usual (so nothing changes
    for ordinary text). Otherwise the template is rendered with a placeholder per content, its own text is
    tokenised with special tokens and each content with ``split_special_tokens=True``, and the pieces are
    joined in order.
    """
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    specials = [
        s
        for s in getattr(tokenizer, "all_special_tokens", [])
        + list(getattr(tokenizer, "added_tokens_encoder", {}))
        if s
    ]
    if not any(s in m["content"] for m in messages for s in specials):
        return text, tokenizer(text, add_special_tokens=False).input_ids
    marks = [f"\u2063hoe-{secrets.token_hex(8)}-{i}\u2063" for i in range(len(messages))]
    rendered = tokenizer.apply_chat_template(
        [{**m, "content": mark} for m, mark in zip(messages, marks)],
        tokenize=False,
        add_generation_prompt=True,
    )
    ids: list[int] = []
    rest = rendered
    for m, mark in zip(messages, marks):
        head, found, rest = rest.partition(mark)
        if not found or rendered.count(mark) != 1:  # a template that drops, repeats or rewrites the content
            raise ApiError(400, "The chat template changes message text, so special tokens in it cannot be kept "
                           "plain; remove them from the content.", "messages", "invalid_value")  # fmt: skip
        ids += tokenizer(head, add_special_tokens=False).input_ids
        ids += tokenizer(m["content"], add_special_tokens=False, split_special_tokens=True).input_ids
    ids += tokenizer(rest, add_special_tokens=False).input_ids
    return text, ids


ROLES = ("system", "user", "assistant", "tool", "developer")
"""The message roles of the OpenAI API."""


def _text_part(part: object, param: str) -> str:
    """One part of the parts form of a message's content: ``{"type": "text", "text": STRING}``."""
    if not (
        isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str)
    ):
        raise ApiError(400, f"{param} must be a text part: {{\"type\": \"text\", \"text\": \"...\"}}.", param,
                       "invalid_value")  # fmt: skip
    return part["text"]


def check_text(text: str, param: str) -> str:
    """Text a client sent must be valid Unicode (a lone surrogate such as ``"\\ud800"`` decodes from JSON but
    breaks every tokenizer): 400 naming ``param`` otherwise."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"{param} holds a lone surrogate (not valid Unicode text).", param,
                       "invalid_value") from None  # fmt: skip
    return text


def _completion_prompt(body: dict) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise ApiError(
            400, "prompt must be a non-empty string (one prompt per request).", "prompt", "invalid_value"
        )
    return check_text(prompt, "prompt")


def _stop(body: dict) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not (isinstance(stops, list) and len(stops) <= 4 and all(isinstance(s, str) and s for s in stops)):
        raise ApiError(
            400, "stop must be a string or a list of up to 4 non-empty strings.", "stop", "invalid_value"
        )
    return [check_text(s, "stop") for s in stops]


def _whole(x: object) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _int(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if not _whole(value) or not low <= value <= high:
        raise ApiError(
            400, f"{name} must be an integer from {low} to {high}, got {value!r}.", name, "invalid_value"
        )
    return int(value)


def _number(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    try:  # an int beyond float range (10**400) overflows in isfinite
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    except OverflowError:
        ok = False
    if not ok or not low <= value <= high:
        raise ApiError(
            400, f"{name} must be a number from {low:g} to {high:g}, got {value!r}.", name, "invalid_value"
        )
    return float(value)
