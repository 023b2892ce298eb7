"""``hoe serve``: an OpenAI-compatible HTTP API over an HoE bundle where every request carries its own λ.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions`` (both with ``stream``: server-sent events),
``GET /v1/models``, ``GET /v1/objectives``, ``POST /v1/scores`` (the bundle's objectives on a response, for
the playground), ``GET /health`` and the playground at ``/``. Errors use the OpenAI shape with ``param``
naming the field. With an API key every route but ``/health`` needs ``Authorization: Bearer KEY``.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources

import anyio
import torch
from fastapi import FastAPI
from fastapi import Request as HttpRequest  # a module-level name: FastAPI resolves the annotations by it
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hoe.server.engine import Engine, Job
from hoe.server.protocol import ApiError, Limits, check_text, parse


@dataclass
class Served:
    """What the app serves: the model's name, its objectives and anchors, the engine, optional scorers."""

    name: str
    objectives: list[str]
    default_preference: torch.Tensor
    anchors: dict = field(default_factory=dict)  # {"experts": [...], "routers": [...]}
    engine: Engine | None = None
    tokenizer: object = None
    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None
    scorers: list | None = None  # the bundle's objectives, when they load offline


def route_of(served: Served, text: str | None) -> dict:
    """The reached anchors at ``text`` (``a=0.5,b=0.5`` or ``0.5,0.5``; default the served default), weights > 0
    only, LoRA experts before routers; a router lists the experts it mixes per token."""
    from hoe.errors import HoEError
    from hoe.preference import to_simplex

    try:
        lam = served.default_preference if text is None else to_simplex(text, served.objectives, "preference")
    except HoEError as e:
        raise ApiError.of(e, "preference") from None
    reached = served.engine.model.reached(lam)
    return {"preference": dict(zip(served.objectives, lam.tolist())), "reached": reached}


def create_app(served: Served):

    limits = served.limits

    @asynccontextmanager
    async def lifespan(_):
        # every waiting request holds a worker thread (anyio's default pool has 40): room for all of them
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = max(limiter.total_tokens, limits.max_concurrent + 16)
        yield

    app = FastAPI(title="hoe", docs_url=None, redoc_url=None, lifespan=lifespan)
    score_lock = threading.Lock()  # scorers (tokenizers, models) are not safe to call from two threads

    @app.exception_handler(ApiError)
    async def api_error(_, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_, e: StarletteHTTPException):  # unknown routes and methods, in the OpenAI shape
        return JSONResponse(ApiError(e.status_code, str(e.detail), None, "not_found" if e.status_code == 404
                                     else "http_error").body(), status_code=e.status_code)  # fmt: skip

    @app.exception_handler(Exception)
    async def server_error(_, e: Exception):  # the server keeps serving
        return JSONResponse(ApiError(500, f"Internal error: {e}", None, "server_error", "server_error").body(),
                            status_code=500)  # fmt: skip

    app.add_middleware(Guard, api_key=served.api_key, limits=limits)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": served.name, "object": "model", "created": 0,
                                            "owned_by": "hoe"}]}  # fmt: skip

    @app.get("/v1/objectives")
    async def objectives():
        default = dict(zip(served.objectives, served.default_preference.tolist()))
        return {"objectives": served.objectives, "default_preference": default, **served.anchors,
                "scores": served.scorers is not None, "max_tokens": limits.max_tokens}  # fmt: skip

    @app.get("/v1/route")
    async def route(preference: str | None = None):
        """Where ``preference`` goes: the LoRA experts and router experts preference routing reaches, with
        their weights (what the playground shows beside the answers)."""
        return route_of(served, preference)

    @app.get("/", response_class=HTMLResponse)
    async def playground():
        return resources.files("hoe.server").joinpath("playground.html").read_text(encoding="utf-8")

    @app.post("/v1/scores")
    async def scores(request: HttpRequest):
        body = await _json(request, limits)
        if served.scorers is None:
            raise ApiError(404, "This server has no scorers for its objectives.", None, "no_scorers")
        prompt, response = body.get("prompt"), body.get("response")
        for name, value in (("prompt", prompt), ("response", response)):
            if not isinstance(value, str):
                raise ApiError(400, f"{name} must be a string.", name, "invalid_value")
            check_text(value, name)
        from hoe.objectives import score_matrix

        def score():
            with score_lock:
                return score_matrix(served.scorers, [prompt], [response])

        values = await anyio.to_thread.run_sync(score)
        return {"scores": dict(zip(served.objectives, values[0].tolist()))}

    async def complete(request: HttpRequest, kind: str):
        body = await _json(request, limits)
        req = parse(body, kind, served.objectives, served.default_preference, served.tokenizer, limits,
                    [served.name])  # fmt: skip
        job = served.engine.submit(req)
        if req.stream:
            return StreamingResponse(_events(job, served, limits), media_type="text/event-stream")
        await anyio.to_thread.run_sync(job.wait, limits.timeout_s)
        return _response(job, served)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: HttpRequest):
        return await complete(request, "chat")

    @app.post("/v1/completions")
    async def completions(request: HttpRequest):
        return await complete(request, "completion")

    return app


async def _json(request, limits: Limits) -> dict:
    raw = await request.body()
    if len(raw) > limits.max_body_bytes:
        raise _too_large(limits)
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, f"The body is not valid JSON ({e}).", None, "invalid_json") from None
    except RecursionError:
        raise ApiError(400, "The body is nested too deeply.", None, "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", None, "invalid_json")
    return body


class Guard:
    """The API key (every route but ``/health``) and the declared body size, checked before a route runs.

    A plain ASGI middleware, not ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware`` sits between
    a streaming response and the client, so a client that went away was not seen and its rows went on
    decoding for nobody. Here the response talks to the server directly, and a disconnect cancels the
    stream (whose ``finally`` cancels the job)."""

    def __init__(self, app, api_key: str | None, limits: Limits):
        self.app, self.api_key, self.limits = app, api_key, limits

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            error = self._error(scope)
            if error is not None:
                response = JSONResponse(error.body(), status_code=error.status, headers=error.headers)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _error(self, scope) -> ApiError | None:
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        if self.api_key and scope.get("path") != "/health":
            given = headers.get("authorization", b"")
            if not secrets.compare_digest(given, f"Bearer {self.api_key}".encode()):
                return ApiError(401, "Missing or wrong API key (Authorization: Bearer KEY).", None,
                                "invalid_api_key", "authentication_error")  # fmt: skip
        length = headers.get("content-length", b"").decode("latin-1")
        if length.isdigit() and int(length) > self.limits.max_body_bytes:
            return _too_large(self.limits)
        return None


def _too_large(limits: Limits) -> ApiError:
    return ApiError(
        413, f"The request body exceeds {limits.max_body_bytes} bytes.", None, "request_too_large"
    )


def _usage(job: Job) -> dict:
    return {"prompt_tokens": job.prompt_tokens, "completion_tokens": job.completion_tokens,
            "total_tokens": job.prompt_tokens + job.completion_tokens}  # fmt: skip


def _base(job: Job, served: Served, obj: str) -> dict:
    prefix = "chatcmpl" if job.request.kind == "chat" else "cmpl"
    return {"id": f"{prefix}-{job.id}", "object": obj, "created": int(time.time()), "model": served.name,
            "preference": dict(zip(served.objectives, job.request.preference.tolist()))}  # fmt: skip


def _choice_preference(job: Job, index: int, served: Served) -> dict:
    """A comparison's choice names its own λ (``preferences``); other choices share the response's."""
    if job.request.compare is None:
        return {}
    return {"preference": dict(zip(served.objectives, job.request.preference_of(index).tolist()))}


def _response(job: Job, served: Served) -> dict:
    chat = job.request.kind == "chat"
    out = _base(job, served, "chat.completion" if chat else "text_completion")
    out["choices"] = [
        {"index": c.index, "finish_reason": c.finish_reason,
         **({"message": {"role": "assistant", "content": c.text}} if chat else {"text": c.text, "logprobs": None}),
         **_choice_preference(job, c.index, served)}
        for c in job.choices
    ]  # fmt: skip
    out["usage"] = _usage(job)
    return out


async def _events(job: Job, served: Served, limits: Limits):
    """Server-sent events: a role chunk (chat), text deltas, then, once every choice is done, a finish chunk
    per choice (the last one with the usage), a usage-only chunk if ``stream_options.include_usage``, and
    [DONE]. A client that goes away cancels the job (its rows stop decoding)."""
    chat = job.request.kind == "chat"
    obj = "chat.completion.chunk" if chat else "text_completion"

    def chunk(index: int, text: str | None = None, finish: str | None = None, role: bool = False, usage=None):
        if chat:
            delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
            choice = {"index": index, "delta": delta, "finish_reason": finish}
        else:
            choice = {"index": index, "text": text or "", "finish_reason": finish, "logprobs": None}
        choice |= _choice_preference(job, index, served)  # a comparison's choice names its λ
        return _sse({**_base(job, served, obj), "choices": [choice], **({"usage": usage} if usage else {})})

    finished: dict[int, str] = {}
    try:
        if chat:
            for c in job.choices:
                yield chunk(c.index, role=True)
        events = job.stream(limits.timeout_s)
        while True:
            event = await anyio.to_thread.run_sync(next, events, None)
            if event is None:
                break
            kind, index, payload = event
            if kind == "delta":
                yield chunk(index, text=payload)
            elif kind == "finish":
                finished[index] = payload
            elif kind == "error":
                yield _sse(payload.body())
                break
            else:  # done
                last = len(job.choices) - 1
                for c in job.choices:
                    reason = finished.get(c.index, c.finish_reason or "length")
                    yield chunk(c.index, finish=reason, usage=_usage(job) if c.index == last else None)
                if job.request.include_usage:
                    yield _sse({**_base(job, served, obj), "choices": [], "usage": _usage(job)})
                break
        yield "data: [DONE]\n\n"
    finally:
        job.cancelled = True  # a no-op once done; stops its rows if the client left early


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"
