"""`pocketguard serve`: an HTTP moderation server (FastAPI + uvicorn) for apps that call a guard over the network.

Endpoints (docs/serving.md has the details and the category table):
- `POST /v1/moderations` — OpenAI moderation shape: `{"input": str | [str]}` in, `results[]` out, with OpenAI's
  category names mapped from S1–S14 (codes with no OpenAI equivalent under `pocketguard/<code>`).
- `POST /v1/guard` — native: `{"messages": [...], "role": ..., "policy": {...}, "category_scores": bool}` in,
  pocketguard's `Verdict` out.
- `WS /v1/guard/stream` — streaming response moderation: send `{"messages": [...up to the user's turn]}`, then
  `{"chunk": "..."}` per piece of the agent's reply as it is generated; each chunk is answered with the
  verdict on the reply so far (`guard.stream`, incremental KV). The first unsafe (or error) verdict is sent
  with `"stopped": true` and the socket is closed: stop showing the reply.
- `GET /health`, `GET /metrics` (Prometheus).

How a request is served: the body is read with a byte limit (413) *before* any parsing, decoded as strict
UTF-8 and JSON (400), validated (422), and each text becomes one queue item. One batching task collects up
to `max_batch` items (waiting up to `batch_wait_ms` for more to arrive) and runs `guard.moderate_batch` on a
single worker thread, so concurrent requests share forward passes and the guard's policy-prefix cache.
The queue is bounded (429), each request has a deadline (504), and a verdict the guard could not make is an
HTTP error (500) — never a result that says `flagged: false`.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import math
import sys
import threading
import time
import uuid
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from .conversation import Conversation, ConversationError
from .guard import Guard, Verdict
from .policy import Policy, PolicyError

log = logging.getLogger("pocketguard.server")

# --------------------------------------------------------------------------------------------- OpenAI mapping
OPENAI_CATEGORIES: tuple[str, ...] = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
    "violence/graphic",
)
# OpenAI category <- the S-codes that set it (any of them; score = the max of theirs). A parent category
# includes its sub-categories' codes (illicit/violent implies illicit, sexual/minors implies sexual).
# Sub-categories that need a distinction the MLCommons taxonomy does not make (intent vs instructions,
# graphic, harassment vs hate) are never set; their parent is. docs/serving.md has the table and reasoning.
OPENAI_FROM_CODES: dict[str, tuple[str, ...]] = {
    "harassment": (),
    "harassment/threatening": (),
    "hate": ("S10",),
    "hate/threatening": (),  # see OPENAI_FROM_ALL_CODES
    "illicit": ("S1", "S2", "S3", "S9"),
    "illicit/violent": ("S1", "S3", "S9"),
    "self-harm": ("S11",),
    "self-harm/intent": (),
    "self-harm/instructions": (),
    "sexual": ("S4", "S12"),
    "sexual/minors": ("S4",),
    "violence": ("S1",),
    "violence/graphic": (),
}
# OpenAI category <- S-codes that must *all* be flagged (score = the min of theirs): hate that also threatens
# violence. The inverse of the evaluation adapter's mapping (docs/evaluation.md: H2 -> S10 + S1).
OPENAI_FROM_ALL_CODES: dict[str, tuple[str, ...]] = {"hate/threatening": ("S10", "S1")}
_MAPPED_CODES = frozenset(c for table in (OPENAI_FROM_CODES, OPENAI_FROM_ALL_CODES) for codes in table.values() for c in codes)
POCKETGUARD_KEY = "pocketguard/{code}"  # codes with no OpenAI equivalent (S5–S8, S13, S14, custom codes)


def openai_result(verdict: Verdict, policy: Policy) -> dict:
    """One OpenAI moderation result from a safe/unsafe verdict (error verdicts never get here)."""
    if verdict.status not in ("safe", "unsafe"):
        raise ValueError("an error verdict cannot become a moderation result")
    flagged_codes = set(verdict.categories)
    scores = verdict.category_scores or {}
    categories: dict[str, bool] = {}
    category_scores: dict[str, float] = {}
    for name in OPENAI_CATEGORIES:
        if name in OPENAI_FROM_ALL_CODES:
            codes = list(OPENAI_FROM_ALL_CODES[name])
            usable = all(c in policy for c in codes)
            categories[name] = usable and all(c in flagged_codes for c in codes)
            category_scores[name] = min(float(scores.get(c, 0.0)) for c in codes) if usable else 0.0
            continue
        codes = [c for c in OPENAI_FROM_CODES[name] if c in policy]
        categories[name] = any(c in flagged_codes for c in codes)
        category_scores[name] = max((float(scores.get(c, 0.0)) for c in codes), default=0.0)
    for code in policy.codes:
        if code not in _MAPPED_CODES:
            key = POCKETGUARD_KEY.format(code=code)
            categories[key] = code in flagged_codes
            category_scores[key] = float(scores.get(code, 0.0))
    return {
        "flagged": verdict.flagged,
        "categories": categories,
        "category_scores": category_scores,
        "category_applied_input_types": {name: ["text"] for name in categories},
        "pocketguard": {
            "status": verdict.status,
            "categories": list(verdict.categories),
            "category_names": list(verdict.category_names),
            "p_unsafe": verdict.p_unsafe,
        },
    }


# --------------------------------------------------------------------------------------------- config & errors
@dataclass
class ServerConfig:
    model_name: str = "pocketguard"
    max_batch: int = 32  # items (texts) per packed pass: a pass pays per real token, so fuller is cheaper
    batch_wait_ms: float = 5.0  # how long the batcher waits for a batch to fill
    max_queue: int = 256  # items waiting; more gets 429
    request_timeout_s: float = 30.0  # body read + queue wait + judging; then 504 (408 while reading the body)
    max_body_bytes: int = 1 << 20  # 413 above this, checked before parsing
    max_items: int = 32  # inputs per /v1/moderations request
    max_messages: int = 64  # messages per /v1/guard conversation
    max_chars: int = 32_768  # characters per text (per input, per message)
    allow_custom_policy: bool = True  # /v1/guard may send its own policy
    max_policy_categories: int = 64
    max_policy_chars: int = 16_384  # total characters of names and descriptions in a request policy
    policy_cache_size: int = 64  # parsed request policies kept (the guard keeps 16 prefix KV caches)
    max_streams: int = 16  # open /v1/guard/stream sockets (each holds a KV cache of the guard's context)

    def __post_init__(self):
        for name in ("max_batch", "max_queue", "max_body_bytes", "max_items", "max_messages", "max_chars",
                     "max_policy_categories", "max_policy_chars", "policy_cache_size", "max_streams"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.batch_wait_ms < 0 or self.request_timeout_s <= 0:
            raise ValueError("batch_wait_ms must be >= 0 and request_timeout_s > 0")


class ApiError(Exception):
    """An HTTP error with an OpenAI-style JSON body: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.extra = status, message, type_, param, extra or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.status}}
        return JSONResponse(body | self.extra, status_code=self.status)


def _error(status: int, message: str, type_: str) -> JSONResponse:
    return ApiError(status, message, type_).response()


# --------------------------------------------------------------------------------------------- metrics
class Metrics:
    """Per-app registry, so several apps (tests) never collide on prometheus_client's global one."""

    ENDPOINTS = ("/v1/moderations", "/v1/guard", "/health", "/metrics")

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("pocketguard_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("pocketguard_request_latency_seconds", "Request latency by endpoint", ["endpoint"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=r)
        self.batch_size = Histogram("pocketguard_batch_size", "Items per guard forward batch",
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128), registry=r)
        self.batch_latency = Histogram("pocketguard_batch_latency_seconds", "Time to judge one batch",
                                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.queue_depth = Gauge("pocketguard_queue_depth", "Items waiting for the guard", registry=r)
        self.verdicts = Counter("pocketguard_verdicts", "Verdicts by status", ["status"], registry=r)
        self.rejected = Counter("pocketguard_rejected", "Requests refused before judging, by reason", ["reason"],
                                registry=r)

    def endpoint(self, path: str) -> str:
        return path if path in self.ENDPOINTS else "other"  # unknown paths never become label values


class MetricsMiddleware:
    """Pure ASGI middleware: counts every response (including 404s and errors) and times it."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        endpoint = self.metrics.endpoint(scope.get("path", ""))
        t0, status = time.perf_counter(), [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------- batching
@dataclass
class _Item:
    conv: Conversation
    policy: Policy | None
    scores: bool
    future: asyncio.Future
    enqueued: float  # loop time

    @property
    def key(self) -> Policy | None:
        """Items batch together when they share the policy (one `moderate_batch` call): user and agent turns
        share a packed pass, and category scores cost one extra pass for the whole batch when any item wants
        them (the others' verdicts are the same either way; they are sent without scores)."""
        return self.policy


class Batcher:
    """An asyncio queue in front of one worker thread that runs `guard.moderate_batch` on up to `max_batch` items.

    While the worker is busy, new requests accumulate, so the next batch is naturally larger under load.
    A batch holds items of one policy — one `moderate_batch` call, packed passes over the items' real tokens;
    items of other policies keep their places for the next batch.
    """

    def __init__(self, guard: Guard, config: ServerConfig, metrics: Metrics):
        self.guard, self.config, self.metrics = guard, config, metrics
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._pending: deque[_Item] = deque()
        self._arrived: asyncio.Event | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batches = 0
        metrics.queue_depth.set_function(lambda: len(self._pending))

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def depth(self) -> int:
        return len(self._pending)

    def ensure_started(self) -> None:
        """Start (or restart) the batching task on the running loop. Lazy, so in-process ASGI clients without
        lifespan events work too, and a loop change (a new TestClient) gets a fresh task."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self.alive:
            return
        if self._loop is loop and self._task is not None and self._task.done() and not self._task.cancelled():
            log.error("batcher stopped unexpectedly (%r); restarting", self._task.exception())
        self._loop = loop
        self._pending = deque()
        self._arrived = asyncio.Event()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pocketguard-guard")
        self._task = loop.create_task(self._run(), name="pocketguard-batcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        while self._pending:
            item = self._pending.popleft()
            if not item.future.done():
                item.future.set_exception(ApiError(503, "the server is shutting down", "server_shutting_down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def submit(self, convs: list[Conversation], policy: Policy | None, scores: bool, timeout: float) -> list[Verdict]:
        """Queue the conversations and wait (up to `timeout` s) for their verdicts, in order."""
        self.ensure_started()
        if len(self._pending) + len(convs) > self.config.max_queue:
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(429, f"the guard's queue is full ({len(self._pending)} of {self.config.max_queue} items "
                                f"waiting); retry later", "rate_limit_exceeded")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in convs]
        now = loop.time()
        self._pending.extend(_Item(c, policy, scores, f, now) for c, f in zip(convs, futures))
        self._arrived.set()
        try:
            return list(await asyncio.wait_for(asyncio.gather(*futures), timeout))
        except asyncio.TimeoutError:
            self.metrics.rejected.labels("timeout").inc()
            raise ApiError(504, f"the guard did not answer within {self.config.request_timeout_s:g} s", "timeout") from None
        finally:
            for f in futures:  # a timed-out item still queued is skipped by the batcher
                if not f.done():
                    f.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self.config.batch_wait_ms / 1000
        while True:
            while not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            # Wait for a fuller batch, but never keep the oldest item more than `batch_wait_ms` (items that
            # queued while the worker was busy have waited already).
            deadline = self._pending[0].enqueued + wait
            while len(self._pending) < self.config.max_batch:
                left = deadline - loop.time()
                if left <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except asyncio.TimeoutError:
                    break
            items = self._take()
            if not items:
                continue
            try:
                verdicts = await loop.run_in_executor(self._executor, self._judge, items)
            except Exception as e:  # _judge catches guard errors; this is the executor itself failing
                log.exception("guard worker failed")
                verdicts = [Verdict.failure(f"guard worker failed: {type(e).__name__}: {e}") for _ in items]
            for it, v in zip(items, verdicts):
                if not it.future.done():
                    it.future.set_result(v)

    def _take(self) -> list[_Item]:
        """Up to `max_batch` live items sharing the oldest live item's key (`_Item.key`), oldest first;
        the rest keep their places. Items whose request already timed out are dropped here."""
        batch: list[_Item] = []
        skipped: list[_Item] = []
        key = None
        while self._pending and len(batch) < self.config.max_batch:
            it = self._pending.popleft()
            if it.future.done():
                continue
            if key is None:
                key = it.key
            (batch if it.key == key else skipped).append(it)
        self._pending.extendleft(reversed(skipped))
        return batch

    def _judge(self, items: list[_Item]) -> list[Verdict]:
        """Runs on the worker thread. A batch that raises is retried item by item, so one bad item cannot take
        the others down with it; an item that still raises gets an `error` verdict."""
        t0 = time.perf_counter()
        convs, policy, scores = [it.conv for it in items], items[0].policy, any(it.scores for it in items)
        try:
            verdicts = self.guard.moderate_batch(convs, policy=policy, category_scores=scores, batch_size=len(convs))
        except Exception as e:
            log.exception("guard batch of %d failed", len(convs))
            if len(convs) == 1:
                verdicts = [Verdict.failure(f"the guard failed: {type(e).__name__}: {e}", role=convs[0].judged)]
            else:
                verdicts = [self._judge([it])[0] for it in items]
                return verdicts
        for it, v in zip(items, verdicts):
            if not it.scores:
                v.category_scores = None
        self.batches += 1
        self.metrics.batch_size.observe(len(convs))
        self.metrics.batch_latency.observe(time.perf_counter() - t0)
        out = [_fail_closed(v) for v in verdicts]
        for v in out:
            self.metrics.verdicts.labels(v.status).inc()
        return out


def _finite(x: Any) -> bool:
    return x is None or (isinstance(x, (int, float)) and math.isfinite(x))


def _fail_closed(v: Verdict) -> Verdict:
    """A verdict whose numbers are not finite came from a broken model: it is an error, whatever it says."""
    if v.status == "error":
        return v
    if v.p_unsafe is None or not _finite(v.p_unsafe) or not all(_finite(s) for s in (v.category_scores or {}).values()):
        return Verdict(status="error", role=v.role, answer=v.answer, prompt_tokens=v.prompt_tokens,
                       error=f"the model produced non-finite scores (p_unsafe={v.p_unsafe}); no verdict")
    return v


# --------------------------------------------------------------------------------------------- request parsing
async def read_json(request: Request, config: ServerConfig) -> Any:
    """The body as JSON, with the byte limit enforced before parsing (and while reading, without trusting
    Content-Length), strict UTF-8, and clear errors."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise ApiError(400, "Content-Length is not a number") from None
        if n > config.max_body_bytes:
            raise ApiError(413, f"request body is {n} bytes; the limit is {config.max_body_bytes}", "request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > config.max_body_bytes:
            raise ApiError(413, f"request body exceeds the limit of {config.max_body_bytes} bytes", "request_too_large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ApiError(400, "request body is empty; send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ApiError(400, f"request body is not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ApiError(400, f"request body is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (RecursionError, ValueError) as e:  # absurd nesting, 5000-digit numbers
        raise ApiError(400, f"request body is not acceptable JSON: {type(e).__name__}") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"request body must be a JSON object, got {_json_type(data)}")
    return data


def _json_type(x: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(x), type(x).__name__)


def check_text(text: str, where: str, config: ServerConfig) -> None:
    if len(text) > config.max_chars:
        raise ApiError(422, f"{where} has {len(text)} characters; the limit is {config.max_chars}", param=where)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ApiError(422, f"{where} contains an unpaired surrogate ({text[e.start]!r}) and is not valid Unicode",
                       param=where) from None
    if not text.strip():
        raise ApiError(422, f"{where} is empty; there is nothing to judge", param=where)


def parse_moderation_inputs(data: dict, config: ServerConfig) -> list[str]:
    """`input`: a string, a list of strings (one result each) or a list of OpenAI text parts (one result)."""
    if "input" not in data:
        raise ApiError(422, "missing required field 'input' (a string or a list of strings)", param="input")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(422, f"'model' must be a string, got {_json_type(model)}", param="model")
    raw = data["input"]
    if isinstance(raw, str):
        texts = [raw]
    elif isinstance(raw, list):
        if not raw:
            raise ApiError(422, "'input' is an empty list; send at least one string", param="input")
        if len(raw) > config.max_items:
            raise ApiError(422, f"'input' has {len(raw)} items; the limit is {config.max_items} per request", param="input")
        if all(isinstance(x, dict) for x in raw):  # multimodal-style parts: text only, joined into one input
            parts = []
            for i, p in enumerate(raw):
                if p.get("type") != "text" or not isinstance(p.get("text"), str):
                    raise ApiError(422, f"input[{i}]: only {{\"type\": \"text\", \"text\": ...}} parts can be judged "
                                        f"(got type {p.get('type')!r})", param=f"input[{i}]")
                parts.append(p["text"])
            texts = ["\n".join(parts)]
        else:
            for i, x in enumerate(raw):
                if not isinstance(x, str):
                    raise ApiError(422, f"input[{i}] must be a string, got {_json_type(x)}", param=f"input[{i}]")
            texts = list(raw)
    else:
        raise ApiError(422, f"'input' must be a string or a list of strings, got {_json_type(raw)}", param="input")
    for i, t in enumerate(texts):
        check_text(t, "input" if isinstance(raw, str) else f"input[{i}]", config)
    return texts


GUARD_FIELDS = {"messages", "role", "policy", "category_scores"}


@dataclass
class GuardRequest:
    conv: Conversation
    policy: Policy | None
    category_scores: bool


class PolicyCache:
    """Parsed request policies by canonical JSON, with their validation done once."""

    def __init__(self, size: int):
        self.size, self._d, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key: str) -> Policy | None:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        return None

    def put(self, key: str, policy: Policy) -> None:
        with self._lock:
            self._d[key] = policy
            while len(self._d) > self.size:
                self._d.popitem(last=False)


def parse_policy(raw: Any, guard: Guard, config: ServerConfig, cache: PolicyCache) -> Policy:
    if not config.allow_custom_policy:
        raise ApiError(403, "this server does not accept per-request policies (started with --no-custom-policy)",
                       "permission_denied", param="policy")
    if not isinstance(raw, dict):
        raise ApiError(422, f"'policy' must be an object (see docs/policy.md), got {_json_type(raw)}", param="policy")
    key = json.dumps(raw, sort_keys=True, ensure_ascii=True)
    cached = cache.get(key)
    if cached is not None:
        return cached
    try:
        policy = Policy.from_dict(raw, source="policy")
    except PolicyError as e:
        raise ApiError(422, f"invalid policy: {e}", param="policy") from None
    except (TypeError, AttributeError, KeyError, ValueError) as e:
        raise ApiError(422, f"invalid policy: wrong types ({type(e).__name__}: {e})", param="policy") from None
    if len(policy) > config.max_policy_categories:
        raise ApiError(422, f"policy has {len(policy)} categories; the limit is {config.max_policy_categories}",
                       param="policy")
    chars = sum(len(c.name) + len(c.description) for c in policy.categories)
    if chars > config.max_policy_chars:
        raise ApiError(422, f"policy text is {chars} characters; the limit is {config.max_policy_chars}", param="policy")
    for c in policy.categories:
        check_text(c.name + c.description, f"policy category {c.code}", config)
    # The policy prompt must leave room for a conversation, for both judged roles.
    from .prompt import encode_prefix, encode_suffix

    for role in ("user", "agent"):
        used = len(encode_prefix(guard.tokenizer, policy, role)) + len(encode_suffix(guard.tokenizer, role))
        if used + 4 * len(policy) + 64 > guard.max_context:
            raise ApiError(422, f"the policy prompt takes {used} tokens, leaving no room for a conversation in the "
                                f"guard's context of {guard.max_context}", param="policy")
    cache.put(key, policy)
    return policy


def parse_guard_request(data: dict, guard: Guard, config: ServerConfig, cache: PolicyCache) -> GuardRequest:
    unknown = set(data) - GUARD_FIELDS
    if unknown:  # a misspelt "policy" silently ignored would judge against the wrong policy
        raise ApiError(422, f"unknown fields {sorted(unknown)}; allowed: {sorted(GUARD_FIELDS)}", param=sorted(unknown)[0])
    if "messages" not in data:
        raise ApiError(422, "missing required field 'messages' (a list of {role, content} objects)", param="messages")
    msgs = data["messages"]
    if not isinstance(msgs, list):
        raise ApiError(422, f"'messages' must be a list of {{role, content}} objects, got {_json_type(msgs)}",
                       param="messages")
    if not msgs:
        raise ApiError(422, "'messages' is empty; send at least the message to judge", param="messages")
    if len(msgs) > config.max_messages:
        raise ApiError(422, f"'messages' has {len(msgs)} messages; the limit is {config.max_messages}", param="messages")
    role = data.get("role")
    if role is not None and not isinstance(role, str):
        raise ApiError(422, f"'role' must be 'user', 'agent' or null, got {_json_type(role)}", param="role")
    scores = data.get("category_scores", False)
    if not isinstance(scores, bool):
        raise ApiError(422, f"'category_scores' must be true or false, got {_json_type(scores)}", param="category_scores")
    try:
        conv = Conversation.from_messages(msgs, role)
    except ConversationError as e:
        raise ApiError(422, f"invalid conversation: {e}", param="messages") from None
    for i, m in enumerate(conv.messages):
        check_text(m.content, f"messages[{i}].content", config)
    policy = parse_policy(data["policy"], guard, config, cache) if data.get("policy") is not None else None
    return GuardRequest(conv, policy, scores)


# --------------------------------------------------------------------------------------------- the app
def create_app(guard: Guard, config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig()
    metrics = Metrics()
    batcher = Batcher(guard, config, metrics)
    policies = PolicyCache(config.policy_cache_size)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.ensure_started()
        yield
        await batcher.stop()

    app = FastAPI(title="pocketguard", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.guard, app.state.config, app.state.metrics, app.state.batcher = guard, config, metrics, batcher
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request_error")
        message = {404: f"no such endpoint: {request.method} {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        return _error(exc.status_code, message, kind)

    async def judged(request: Request, parse, respond) -> JSONResponse:
        """Shared request path: deadline, body, parse, queue, answer; every failure is a JSON error."""
        deadline = time.monotonic() + config.request_timeout_s
        try:
            try:
                data = await asyncio.wait_for(read_json(request, config), config.request_timeout_s)
            except asyncio.TimeoutError:
                raise ApiError(408, f"the request body did not arrive within {config.request_timeout_s:g} s",
                               "timeout") from None
            convs, policy, scores = parse(data)
            left = deadline - time.monotonic()
            if left <= 0:
                raise ApiError(504, f"the request timed out after {config.request_timeout_s:g} s", "timeout")
            verdicts = await batcher.submit(convs, policy, scores, left)
            return respond(data, verdicts, policy)
        except ApiError as e:
            return e.response()
        except ConversationError as e:
            return _error(422, f"invalid input: {e}", "invalid_request_error")
        except Exception as e:  # never let an unexpected failure look like anything but an error
            log.exception("unhandled error in %s", request.url.path)
            return _error(500, f"internal error: {type(e).__name__}", "server_error")

    def refuse_errors(verdicts: list[Verdict], single: bool) -> None:
        bad = [(i, v) for i, v in enumerate(verdicts) if v.status not in ("safe", "unsafe")]
        if bad:
            i, v = bad[0]
            where = "" if single else f"input[{i}]: "
            raise ApiError(500, f"{where}the guard could not judge this input: {v.error}", "guard_error",
                           extra={"verdict": v.to_dict()} if single else {})

    @app.post("/v1/moderations")
    async def moderations(request: Request):
        def parse(data):
            return [Conversation.prompt(t) for t in parse_moderation_inputs(data, config)], None, True

        def respond(data, verdicts, policy):
            refuse_errors(verdicts, single=len(verdicts) == 1)
            return JSONResponse({
                "id": f"modr-{uuid.uuid4().hex}",
                "model": config.model_name,
                "results": [openai_result(v, guard.policy) for v in verdicts],
            })

        return await judged(request, parse, respond)

    @app.post("/v1/guard")
    async def guard_endpoint(request: Request):
        def parse(data):
            req = parse_guard_request(data, guard, config, policies)
            return [req.conv], req.policy, req.category_scores

        def respond(data, verdicts, policy):
            refuse_errors(verdicts, single=True)
            return JSONResponse(verdicts[0].to_dict())

        return await judged(request, parse, respond)

    open_streams = {"n": 0}

    @app.websocket("/v1/guard/stream")
    async def guard_stream(ws: WebSocket):
        """One agent reply per socket. Every failure is an `error` message and a closed socket, never a verdict
        that reads as safe; guard work runs on the batcher's worker thread, serialised with the batches."""
        await ws.accept()

        async def fail(e: ApiError) -> None:  # the HTTP endpoints' error body, then close (1008: policy, 1011: ours)
            await ws.send_json({"type": "error", "error": {"message": e.message, "type": e.type, "param": e.param,
                                                           "code": e.status}})
            await ws.close(code=1008 if e.status < 500 else 1011)

        async def receive() -> dict:
            try:
                raw = await asyncio.wait_for(ws.receive_text(), config.request_timeout_s)
            except asyncio.TimeoutError:
                raise ApiError(408, f"no message within {config.request_timeout_s:g} s", "timeout") from None
            except KeyError:  # a binary frame: receive_text() finds no "text" in it
                raise ApiError(400, "send JSON text frames, not binary", "invalid_json") from None
            if len(raw.encode("utf-8", "surrogatepass")) > config.max_body_bytes:
                raise ApiError(413, f"a message is over {config.max_body_bytes} bytes", "payload_too_large")
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as e:
                raise ApiError(400, f"a message is not valid JSON: {e}", "invalid_json") from None
            if not isinstance(data, dict):
                raise ApiError(422, f"a message must be a JSON object, got {_json_type(data)}")
            return data

        if open_streams["n"] >= config.max_streams:
            metrics.rejected.labels("streams_full").inc()
            return await fail(ApiError(429, f"{config.max_streams} streams are open; retry later", "rate_limit_exceeded"))
        open_streams["n"] += 1
        try:
            batcher.ensure_started()
            loop = asyncio.get_running_loop()
            first = await receive()
            not_a_reply = ("a stream judges the agent's reply to the conversation's last user message: end 'messages' "
                           "with that message and send the reply as chunks")
            if first.get("role", "user") != "user":  # before parsing, which would only say the role mismatches
                raise ApiError(422, not_a_reply, param="role")
            req = parse_guard_request(first, guard, config, policies)
            if req.conv.judged != "user":
                raise ApiError(422, not_a_reply, param="messages")
            stream = await loop.run_in_executor(batcher._executor, guard.stream, req.conv, req.policy, req.category_scores)
            while True:
                data = await receive()
                if set(data) != {"chunk"} or not isinstance(data["chunk"], str):
                    raise ApiError(422, "after the first message, send {\"chunk\": \"...\"} objects", param="chunk")
                check_text(stream.text + data["chunk"], "the reply so far", config)
                v = _fail_closed(await loop.run_in_executor(batcher._executor, stream.feed, data["chunk"]))
                metrics.verdicts.labels(v.status).inc()
                await ws.send_json({"type": "verdict", "chunk": stream.chunks - 1, "stopped": stream.stopped,
                                    "first_unsafe_chunk": stream.first_unsafe, "verdict": v.to_dict()})
                if stream.stopped:
                    return await ws.close(code=1000)
        except WebSocketDisconnect:
            return None
        except ApiError as e:
            return await fail(e)
        except ConversationError as e:
            return await fail(ApiError(422, f"invalid input: {e}", "invalid_request_error"))
        except Exception as e:  # noqa: BLE001 - never let a failure look like anything but an error
            log.exception("unhandled error in the stream endpoint")
            return await fail(ApiError(500, f"internal error: {type(e).__name__}", "server_error"))
        finally:
            open_streams["n"] -= 1

    @app.get("/health")
    async def health():
        batcher.ensure_started()
        body = {"status": "ok" if batcher.alive else "unavailable", "model": config.model_name,
                "queue_depth": batcher.depth, "max_queue": config.max_queue, "max_batch": config.max_batch,
                "policy_codes": guard.policy.codes, "max_context": guard.max_context}
        return JSONResponse(body, status_code=200 if batcher.alive else 503)

    @app.get("/metrics")
    async def prometheus_metrics():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


# --------------------------------------------------------------------------------------------- CLI
def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ServerConfig()
    p.add_argument("--model", type=Path, help="checkpoint folder (default: the shipped default guard)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; the server has no auth)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model-name", help="name reported in responses (default: the checkpoint folder's name)")
    p.add_argument("--policy", type=Path, help="server policy TOML (see docs/policy.md)")
    p.add_argument("--no-custom-policy", action="store_true", help="refuse per-request policies on /v1/guard")
    p.add_argument("--threshold", type=float, help="flag when p_unsafe >= THRESHOLD instead of greedy decoding")
    p.add_argument("--max-context", type=int, help="token limit for the whole prompt (default: model's)")
    p.add_argument("--max-batch", type=int, default=d.max_batch, help="items per forward batch")
    p.add_argument("--batch-wait-ms", type=float, default=d.batch_wait_ms, help="wait this long for a batch to fill")
    p.add_argument("--max-queue", type=int, default=d.max_queue, help="items waiting before 429")
    p.add_argument("--timeout", type=float, default=d.request_timeout_s, help="per-request deadline in seconds (504)")
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes, help="request body limit (413)")
    p.add_argument("--max-items", type=int, default=d.max_items, help="inputs per /v1/moderations request")
    p.add_argument("--max-messages", type=int, default=d.max_messages, help="messages per /v1/guard conversation")
    p.add_argument("--max-chars", type=int, default=d.max_chars, help="characters per text")
    p.add_argument("--max-streams", type=int, default=d.max_streams, help="open /v1/guard/stream sockets")
    p.add_argument("--device", default="cpu", help="torch device for the guard (cpu, cuda, cuda:1, ...)")
    p.add_argument("--threads", type=int, help="torch CPU threads for the guard")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def config_from_args(args, model_name: str) -> ServerConfig:
    return ServerConfig(
        model_name=model_name, max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms, max_queue=args.max_queue,
        request_timeout_s=args.timeout, max_body_bytes=args.max_body_bytes, max_items=args.max_items,
        max_messages=args.max_messages, max_chars=args.max_chars, allow_custom_policy=not args.no_custom_policy,
        max_streams=args.max_streams,
    )


def run(args) -> int:
    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        config = config_from_args(args, args.model_name or (args.model.name if args.model else "pocketguard-default"))
        policy = Policy.from_toml(args.policy) if args.policy else None
        guard = Guard.load(args.model, policy=policy, device=args.device, max_context=args.max_context,
                           threshold=args.threshold)
    except (PolicyError, ValueError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not is_loopback(args.host):
        print(f"warning: serving on {args.host}, not loopback; pocketguard serve has no authentication or TLS — "
              "put it behind a proxy that has", file=sys.stderr)
    # Warm the policy-prefix cache for both judged roles, so the first requests do not pay for it.
    guard.moderate_batch(["hello", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]])
    app = create_app(guard, config)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, workers=1)
    return 0

