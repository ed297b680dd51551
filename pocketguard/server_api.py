"""The server's HTTP contract: request limits and errors, the OpenAI moderation mapping, request parsing and
validation, and the Prometheus metrics — everything a client can observe, apart from the routes
(`server.py`) and the dynamic batching behind them (`server_batcher.py`)."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .conversation import Conversation, ConversationError, message_text
from .guard import Guard, Verdict
from .policy import Policy, PolicyError

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
            "notes": list(verdict.notes),
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
        # written so that NaN fails too (every comparison with it is false): a NaN timeout times out at once
        if not (self.batch_wait_ms >= 0 and self.request_timeout_s > 0):
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
    return json_object(text, "request body")


def json_object(text: str, what: str) -> dict:
    """`text` parsed as a JSON object, or a 400 ApiError naming `what` (an HTTP body, a WebSocket message: the
    same mistake gets the same status and wording on both)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ApiError(400, f"{what} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (RecursionError, ValueError) as e:  # absurd nesting, 5000-digit numbers
        raise ApiError(400, f"{what} is not acceptable JSON: {type(e).__name__}") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"{what} must be a JSON object, got {_json_type(data)}")
    return data


def _json_type(x: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(x), type(x).__name__)


def check_length(text: str, where: str, config: ServerConfig) -> None:
    if len(text) > config.max_chars:
        raise ApiError(422, f"{where} has {len(text)} characters; the limit is {config.max_chars}", param=where)


def check_text(text: str, where: str, config: ServerConfig) -> None:
    check_length(text, where, config)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ApiError(422, f"{where} contains an unpaired surrogate ({text[e.start]!r}) and is not valid Unicode",
                       param=where) from None
    if not text.strip():
        raise ApiError(422, f"{where} is empty; there is nothing to judge", param=where)


def parse_moderation_inputs(data: dict, config: ServerConfig) -> list[Conversation]:
    """`input`: a string, a list of strings (one result each) or a list of OpenAI content parts (one result:
    its text parts are judged as one user prompt; other parts, e.g. images, are listed in the verdict's
    notes as not judged, the same rule as message content in `Conversation.from_messages`)."""
    if "input" not in data:
        raise ApiError(422, "missing required field 'input' (a string or a list of strings)", param="input")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(422, f"'model' must be a string, got {_json_type(model)}", param="model")
    raw = data["input"]
    if isinstance(raw, str):
        check_text(raw, "input", config)
        return [Conversation.prompt(raw)]
    if not isinstance(raw, list):
        raise ApiError(422, f"'input' must be a string or a list of strings, got {_json_type(raw)}", param="input")
    if not raw:
        raise ApiError(422, "'input' is an empty list; send at least one string", param="input")
    if len(raw) > config.max_items:
        raise ApiError(422, f"'input' has {len(raw)} items; the limit is {config.max_items} per request", param="input")
    if all(isinstance(x, dict) for x in raw):  # content parts: one input
        for i, part in enumerate(raw):  # length and Unicode per part; an empty part among others is fine, as on
            if isinstance(part.get("text"), str) and part["text"].strip():  # /v1/guard and in guard.moderate
                check_text(part["text"], f"input[{i}]", config)
        try:
            conv = Conversation.from_messages([{"role": "user", "content": raw}])
        except ConversationError as e:
            raise ApiError(422, f"input: {e}", param="input") from None
        check_text(conv.messages[0].content, "input", config)  # the text judged: every text part (a refusal too), joined
        return [conv]
    if any(isinstance(x, dict) for x in raw):  # a list mixing the two shapes: say so, not "must be a string"
        raise ApiError(422, "'input' mixes strings and content parts: send a list of strings (one result each) or a "
                            "list of content parts (one input)", param="input")
    for i, x in enumerate(raw):
        if not isinstance(x, str):
            raise ApiError(422, f"input[{i}] must be a string, got {_json_type(x)}", param=f"input[{i}]")
        check_text(x, f"input[{i}]", config)
    return [Conversation.prompt(x) for x in raw]


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
    # The limit is per message as sent, not per turn (a turn merges an agent's assistant and tool messages), on the
    # text judged (tool calls included; a system message is dropped), and a message's index is its place in
    # 'messages'; the conversation has already refused empty turns and surrogates.
    for i, m in enumerate(msgs):
        text = message_text(m)
        if text is not None:
            check_length(text, f"messages[{i}]", config)
    policy = parse_policy(data["policy"], guard, config, cache) if data.get("policy") is not None else None
    if policy is not None:
        check_room(policy, guard, scores)
    return GuardRequest(conv, policy, scores)


def check_room(policy: Policy, guard: Guard, category_scores: bool) -> None:
    """Whether a request's policy leaves room for a conversation as this request judges under it (`Guard.check_policy`,
    the guard's own rule): with category scores (or a subset kept from the guard's policy) the room holds the codes'
    scoring tree, which for long custom codes is longer than the answer steps. A policy that fails it is the request's
    mistake (422); judged anyway, the guard raised for the whole batch (a 500 guard_error)."""
    try:
        guard.check_policy(policy, category_scores)
    except ValueError as e:
        raise ApiError(422, f"invalid policy{' with category scores' if category_scores else ''}: {e}",
                       param="policy") from None
