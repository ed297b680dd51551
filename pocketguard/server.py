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

This module holds the app (routes, the streaming socket) and the CLI; the HTTP contract (limits, errors,
parsing, the OpenAI mapping, metrics) is `server_api.py`, the dynamic batching `server_batcher.py`.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from .conversation import ConversationError, side_of
from .guard import Guard, Verdict
from .policy import SUBSET_MODE_HELP, SUBSET_MODES, Policy, PolicyError
from .server_api import (OPENAI_CATEGORIES, OPENAI_FROM_CODES, ApiError, Metrics, MetricsMiddleware, PolicyCache,
                         ServerConfig, _error, check_text, json_object, openai_result, parse_guard_request,
                         parse_moderation_inputs, read_json)
from .server_batcher import Batcher

__all__ = ["OPENAI_CATEGORIES", "OPENAI_FROM_CODES", "ServerConfig", "create_app", "openai_result", "run"]
log = logging.getLogger("pocketguard.server")

# --------------------------------------------------------------------------------------------- the app
def invalid_input(e: ValueError) -> ApiError:
    """Input the guard cannot judge as given (a bad conversation, a history past the context): 422 on every endpoint."""
    return ApiError(422, f"invalid input: {e}", "invalid_request_error")


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
            return invalid_input(e).response()
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
            return parse_moderation_inputs(data, config), None, True

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
            try:
                await ws.send_json({"type": "error", "error": {"message": e.message, "type": e.type, "param": e.param,
                                                               "code": e.status}})
                await ws.close(code=1008 if e.status < 500 else 1011)
            except WebSocketDisconnect:  # the client has gone (a failed send says so): nobody is left to tell
                return

        async def receive() -> dict:
            try:
                raw = await asyncio.wait_for(ws.receive_text(), config.request_timeout_s)
            except asyncio.TimeoutError:
                raise ApiError(408, f"no message within {config.request_timeout_s:g} s", "timeout") from None
            except KeyError:  # a binary frame: receive_text() finds no "text" in it
                raise ApiError(400, "send JSON text frames, not binary") from None
            # the same statuses and types as the same mistake in an HTTP body (read_json; docs/serving.md, Errors)
            if len(raw.encode("utf-8", "surrogatepass")) > config.max_body_bytes:
                raise ApiError(413, f"a message is over {config.max_body_bytes} bytes", "request_too_large")
            return json_object(raw, "a message")

        if open_streams["n"] >= config.max_streams:
            metrics.rejected.labels("streams_full").inc()
            return await fail(ApiError(429, f"{config.max_streams} streams are open; retry later", "rate_limit_exceeded"))
        open_streams["n"] += 1
        try:
            batcher.ensure_started()
            first = await receive()
            not_a_reply = ("a stream judges the agent's reply to the conversation's last user message: end 'messages' "
                           "with that message and send the reply as chunks")
            # None, "User", "human": the user's side, as on /v1/guard; a role naming the agent is refused before
            # parsing, which would only say the role mismatches
            if side_of(first.get("role")) == "agent":
                raise ApiError(422, not_a_reply, param="role")
            req = parse_guard_request(first, guard, config, policies)
            if req.conv.judged != "user":
                raise ApiError(422, not_a_reply, param="messages")
            stream = await batcher.run(guard.stream, req.conv, req.policy, req.category_scores)
            while True:
                data = await receive()
                if set(data) != {"chunk"} or not isinstance(data["chunk"], str):
                    raise ApiError(422, "after the first message, send {\"chunk\": \"...\"} objects", param="chunk")
                check_text(stream.text + data["chunk"], "the reply so far", config)
                v = await batcher.run(stream.feed, data["chunk"])
                metrics.verdicts.labels(v.status).inc()
                await ws.send_json({"type": "verdict", "chunk": stream.chunks - 1, "stopped": stream.stopped,
                                    "first_unsafe_chunk": stream.first_unsafe, "verdict": v.to_dict()})
                if stream.stopped:
                    return await ws.close(code=1000)
        except WebSocketDisconnect:
            return None
        except ApiError as e:
            return await fail(e)
        except ValueError as e:  # ConversationError, and a history the guard cannot open a stream on (ContextLengthError)
            return await fail(invalid_input(e))
        except Exception as e:  # noqa: BLE001 - never let a failure look like anything but an error
            log.exception("unhandled error in the stream endpoint")
            return await fail(ApiError(500, f"internal error: {type(e).__name__}", "server_error"))
        finally:
            open_streams["n"] -= 1

    @app.get("/health")
    async def health():
        batcher.ensure_started()  # a batching task that died is restarted (logged), its queued items kept
        body = {"status": "ok", "model": config.model_name,
                "queue_depth": batcher.depth, "max_queue": config.max_queue, "max_batch": config.max_batch,
                "policy_codes": guard.policy.codes, "max_context": guard.max_context, "threshold": guard.threshold,
                "subset_mode": guard.subset_mode}
        return JSONResponse(body)

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
    p.add_argument("--subset-mode", choices=SUBSET_MODES, default="filter", help=SUBSET_MODE_HELP)
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
                           threshold=args.threshold, subset_mode=args.subset_mode)
        # Warm the policy-prefix cache for both judged roles, so the first requests do not pay for it; a setting
        # no request could be judged under (a --max-context the policy prompt fills, which raises) or a model that
        # cannot judge at all (NaN weights, a head that cannot spell the answer: error verdicts) fails here, not
        # per request behind a healthy /health. With category scores, as /v1/moderations always asks: a --policy of
        # long custom codes can leave room for the answer but not for scoring the codes.
        warm = guard.moderate_batch(["hello", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]],
                                    category_scores=True)
    except (PolicyError, ValueError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (RuntimeError, AssertionError) as e:  # torch: an unknown --device, CUDA asked of a build without it
        print(f"error: cannot load or run the guard on --device {args.device}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    failed = next((v for v in warm if v.status not in ("safe", "unsafe")), None)
    if failed is not None:
        print(f"error: the guard cannot judge: {failed.error}", file=sys.stderr)
        return 2
    if not is_loopback(args.host):
        print(f"warning: serving on {args.host}, not loopback; pocketguard serve has no authentication or TLS — "
              "put it behind a proxy that has", file=sys.stderr)
    app = create_app(guard, config)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, workers=1)
    return 0

