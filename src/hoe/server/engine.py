"""The serving engine: requests that arrive together are decoded together, one λ and one seed per row.

A worker thread takes the waiting requests (up to ``Limits.max_batch_rows`` rows, waiting at most
``Limits.batch_wait_s`` for more once one is there) and decodes them in one ``HoEModel.generate`` call: each
choice is a row with its own preference, seed, temperature and top-p (:class:`hoe.generation.sampling.RowSampler`)
and its own token budget and stop strings (:class:`_RowStops`, which also streams each row's new text). A
row's tokens then depend only on its own request: the same as serving it alone (tested exactly in float32;
in bf16 the batch can change the rounding of a row, since the matmul shapes and the layers' fast path —
one λ alone, a λ per row together — differ, so a near-tie may then decode another way).
"""

from __future__ import annotations

import itertools
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from transformers import StoppingCriteria

from hoe.server.protocol import ApiError, Limits, Request

log = logging.getLogger("hoe.server")
_SEEDS = random.SystemRandom()


@dataclass
class Choice:
    index: int
    text: str = ""
    tokens: int = 0
    finish_reason: str | None = None
    sent: int = 0  # characters of text already streamed


@dataclass
class Job:
    """One request in the engine; its events (``("delta", index, text)``, ``("done", None, None)``,
    ``("error", None, ApiError)``) arrive on ``events``."""

    request: Request
    id: str
    prompt_tokens: int = 0
    choices: list[Choice] = field(default_factory=list)
    events: queue.Queue = field(default_factory=queue.Queue)
    cancelled: bool = False
    started: float = field(default_factory=time.perf_counter)

    @property
    def completion_tokens(self) -> int:
        return sum(c.tokens for c in self.choices)

    def wait(self, timeout: float) -> None:
        """Block until the job is done (raises its error, or a 504 ApiError after ``timeout`` seconds)."""
        for kind, _, payload in self.stream(timeout):
            if kind == "error":
                raise payload

    def stream(self, timeout: float) -> Iterator[tuple]:
        """The job's events until it is done; a 504 error event if ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.cancelled = True
                yield ("error", None, ApiError(504, f"The request took longer than {timeout:g} s.", None,
                                               "timeout", "timeout_error"))  # fmt: skip
                return
            yield event
            if event[0] in ("done", "error"):
                return


class Engine:
    """Admits requests (429 beyond ``limits.max_concurrent``), batches and decodes them on one thread."""

    def __init__(self, model, tokenizer, limits: Limits, eos_ids: Sequence[int]):
        self.model, self.tokenizer, self.limits = model, tokenizer, limits
        self.eos_ids = set(eos_ids)
        self._waiting: queue.Queue[Job] = queue.Queue()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self.batch_rows: deque[int] = deque(maxlen=10_000)  # rows of the recent batches (tests, benchmark)
        self._worker = threading.Thread(target=self._run, name="hoe-serve-engine", daemon=True)
        self._worker.start()

    def submit(self, request: Request) -> Job:
        with self._lock:
            if self._in_flight >= self.limits.max_concurrent:
                raise ApiError(429, f"The server holds {self.limits.max_concurrent} requests; retry shortly.",
                               None, "rate_limit_exceeded", "rate_limit_error", {"Retry-After": "1"})  # fmt: skip
            self._in_flight += 1
        job = Job(request, f"{next(self._ids):06d}")
        job.choices = [Choice(k) for k in range(request.n)]
        self._waiting.put(job)
        return job

    def close(self) -> None:
        self._stop.set()

    # ----- the worker ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._waiting.get(timeout=0.1)
            except queue.Empty:
                continue
            batch, rows = [first], first.request.n
            deadline = time.monotonic() + self.limits.batch_wait_s
            while rows < self.limits.max_batch_rows:
                try:
                    job = self._waiting.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if rows + job.request.n > self.limits.max_batch_rows:
                    self._waiting.put(job)  # the next batch's (order among waiting jobs may change)
                    break
                batch.append(job)
                rows += job.request.n
            live = [j for j in batch if not j.cancelled]
            self.batch_rows.append(sum(j.request.n for j in live))
            self._decode(live)
            for job in batch:
                self._finish(job)

    def _decode(self, batch: list[Job]) -> None:
        """Decode ``batch``; if it fails, decode each of its requests alone, so that a request that fails
        fails alone and its neighbours get what they get alone (a stream that sent text already cannot start
        again: it gets the error; a response not yet sent is made again from the start)."""
        if not batch:
            return
        try:
            decode_batch(self.model, self.tokenizer, batch, self.eos_ids)
            return
        except Exception as e:  # a failed batch fails only the requests that fail alone, never the server
            if len(batch) == 1:
                self._fail(batch[0], e)
                return
            log.warning("a batch of %d requests failed (%s); decoding them one by one", len(batch), _brief(e))
            first = e
        for job in batch:
            if job.cancelled:
                continue
            if job.request.stream and any(c.sent for c in job.choices):
                self._fail(job, first)  # its client has part of a text already: it cannot start again
                continue
            job.choices = [Choice(k) for k in range(job.request.n)]
            try:
                decode_batch(self.model, self.tokenizer, [job], self.eos_ids)
            except Exception as e:
                self._fail(job, e)

    @staticmethod
    def _fail(job: Job, e: Exception) -> None:
        if isinstance(e, ApiError):
            job.events.put(("error", None, e))
            return
        log.error("decoding request %s failed: %s", job.id, _brief(e))
        job.events.put(
            ("error", None, ApiError(500, "Decoding failed.", None, "server_error", "server_error"))
        )

    def _finish(self, job: Job) -> None:
        with self._lock:
            self._in_flight -= 1
        job.events.put(("done", None, None))
        lam = ",".join(f"{x:.3f}" for x in job.request.preference.tolist())
        log.info("request %s preference=%s prompt_tokens=%d completion_tokens=%d latency=%.3fs", job.id, lam,
                 job.prompt_tokens, job.completion_tokens, time.perf_counter() - job.started)  # fmt: skip


def _brief(e: Exception) -> str:
    """An exception's type and the start of its message, for the log (never a client's prompt text)."""
    return f"{type(e).__name__}: {str(e)[:200]}"


def decode_batch(model, tokenizer, batch: list[Job], eos_ids: set[int]) -> None:
    """Decode every choice of ``batch`` in one ``generate`` call; fill each job's choices, stream deltas.

    A row's prompt is the request's ``prompt_ids``, tokenised once when it was parsed; rows are padded and
    placed as everywhere else (:func:`hoe.generation.text.pad_left`).
    """
    from hoe.devices import module_device
    from hoe.generation.sampling import RowSampler
    from hoe.generation.text import pad_left

    rows = [(job, choice) for job in batch for choice in job.choices]
    for job in batch:
        job.prompt_tokens = len(job.request.prompt_ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos_ids), 0)
    prompts = pad_left([job.request.prompt_ids for job, _ in rows], pad).to(module_device(model))
    drawn = {
        id(job): _SEEDS.randrange(2**63) for job in batch
    }  # a request without a seed: one drawn per request
    seeds = [
        job.request.seed_of(choice.index) if job.request.seed is not None
        else drawn[id(job)] + (0 if job.request.compare is not None else choice.index)  # a comparison: one seed
        for job, choice in rows
    ]  # fmt: skip
    sampler = RowSampler(seeds, [j.request.temperature for j, _ in rows], [j.request.top_p for j, _ in rows])
    stops = _RowStops(rows, tokenizer, prompts["input_ids"].shape[1], eos_ids)
    model.generate(
        **prompts,
        preference=torch.stack([job.request.preference_of(choice.index) for job, choice in rows]),
        max_new_tokens=max(job.request.max_tokens for job, _ in rows),
        do_sample=False,
        logits_processor=[sampler],
        stopping_criteria=[stops],
        pad_token_id=pad,
    )
    stops.finish()


class _RowStops(StoppingCriteria):
    """``transformers`` stopping criterion, row by row: a row is done at its EOS, its ``max_tokens`` or its
    first stop string (whose text is cut off); it streams each row's new text to its job as it goes."""

    def __init__(self, rows: list, tokenizer, prompt_width: int, eos_ids: set[int]):
        super().__init__()
        self.rows, self.tokenizer, self.start, self.eos = rows, tokenizer, prompt_width, eos_ids
        self.done = [False] * len(rows)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        new = input_ids[:, self.start :].tolist()
        for b, (job, choice) in enumerate(self.rows):
            if self.done[b]:
                continue
            if job.cancelled:
                self.done[b] = True
                continue
            ids = new[b]
            eos = bool(ids) and ids[-1] in self.eos
            choice.tokens = len(ids)
            text = self.tokenizer.decode(ids[:-1] if eos else ids, skip_special_tokens=True)
            cut = _first_stop(text, job.request.stop)
            if cut is not None:
                text, choice.finish_reason = text[:cut], "stop"
            elif eos:
                choice.finish_reason = "stop"
            elif len(ids) >= job.request.max_tokens:
                choice.finish_reason = "length"
            choice.text = text
            self.done[b] = choice.finish_reason is not None
            self._send(job, choice, final=self.done[b])
        return torch.tensor(self.done, device=input_ids.device)

    def finish(self) -> None:
        """Rows that generate ended without a reason (its overall budget): they ran out of tokens."""
        for b, (job, choice) in enumerate(self.rows):
            if not self.done[b] and not job.cancelled:
                choice.finish_reason = choice.finish_reason or "length"
                self._send(job, choice, final=True)

    @staticmethod
    def _send(job: Job, choice: Choice, final: bool) -> None:
        text = choice.text
        if not final:  # hold back what may be the start of a stop string or of a multi-byte character
            hold = max((len(s) - 1 for s in job.request.stop), default=0)
            text = text[: max(choice.sent, len(text) - hold)].rstrip("\ufffd")
        if len(text) > choice.sent:
            job.events.put(("delta", choice.index, text[choice.sent :]))
            choice.sent = len(text)
        if final:
            job.events.put(("finish", choice.index, choice.finish_reason))


def _first_stop(text: str, stops: list[str]) -> int | None:
    hits = [i for s in stops if (i := text.find(s)) >= 0]
    return min(hits) if hits else None
