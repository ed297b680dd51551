"""Dynamic batching for the server: one asyncio queue in front of one guard worker thread.

Concurrent requests share packed passes (`Guard.moderate_batch`): while the worker judges a batch, new items
queue, so batches grow with load, and the oldest item never waits more than `batch_wait_ms` for a batch to
fill — the latency bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .conversation import Conversation
from .guard import Guard, Verdict
from .policy import Policy
from .server_api import ApiError, Metrics, ServerConfig

log = logging.getLogger("pocketguard.server")
_UNSET = object()  # no batch key yet: None is a key (the server's own policy), so it cannot mean "not set"

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


def _deliver(items: list[_Item], verdicts: list[Verdict]) -> None:
    """Give each item its verdict; a request that ended without it (504, the client gone) cancelled its futures."""
    for it, v in zip(items, verdicts):
        if not it.future.done():
            it.future.set_result(v)


def _shutting_down(items: Iterable[_Item]) -> None:
    """Fail the items still unanswered: the server is stopping (fail closed)."""
    for it in items:
        if not it.future.done():
            it.future.set_exception(ApiError(503, "the server is shutting down", "server_shutting_down"))


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
        lifespan events work too, and a loop change (a new TestClient) gets a fresh task and queue. A task that died
        on this loop is restarted with its queue: the items waiting there are judged, not left to time out."""
        loop = asyncio.get_running_loop()
        if self._loop is loop and self.alive:
            return
        if self._loop is not loop:
            self._loop, self._pending, self._arrived = loop, deque(), asyncio.Event()
        elif self._task is not None and self._task.done() and not self._task.cancelled():
            log.error("batcher stopped unexpectedly (%r); restarting with its %d queued items", self._task.exception(),
                      len(self._pending))
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pocketguard-guard")
        self._task = loop.create_task(self._run(), name="pocketguard-batcher")

    async def stop(self) -> None:
        """Answer every outstanding request now rather than at its own deadline: the batch in flight (`_run`, on
        its cancellation) and the queued items. What has no verdict gets a 503, never a default verdict."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        _shutting_down(self._pending)
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def run(self, work, *args):
        """`work(*args)` on the guard's worker thread (a stream's steps, between batches), within --timeout as a
        batch's items are (504): a busy worker or a hung guard kept a stream's verdict waiting without end."""
        self.ensure_started()
        done = asyncio.get_running_loop().run_in_executor(self._executor, work, *args)
        try:
            return await asyncio.wait_for(done, self.config.request_timeout_s)
        except asyncio.TimeoutError:
            raise self._timed_out() from None

    def _timed_out(self) -> ApiError:
        """The 504 of a request the guard did not answer within --timeout, counted."""
        self.metrics.rejected.labels("timeout").inc()
        return ApiError(504, f"the guard did not answer within {self.config.request_timeout_s:g} s", "timeout")

    async def submit(self, convs: list[Conversation], policy: Policy | None, scores: bool, timeout: float) -> list[Verdict]:
        """Queue the conversations and wait (up to `timeout` s) for their verdicts, in order."""
        self.ensure_started()
        if len(convs) > self.config.max_queue:  # never fits, however long the client waits: not a 429 "retry later"
            raise ApiError(422, f"the request has {len(convs)} inputs but the guard's queue holds at most "
                                f"{self.config.max_queue} (--max-queue); send at most that many per request", param="input")
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
            raise self._timed_out() from None
        finally:
            for f in futures:
                if not f.done():
                    f.cancel()
            if any(f.cancelled() for f in futures):  # timed out, or the client left: the items leave the queue now,
                # not when the batcher reaches them (a queue of requests already answered 504 is not full: no 429)
                self._pending = deque(it for it in self._pending if not it.future.done())

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
                work = loop.run_in_executor(self._executor, self._judge, items)
                # shielded: stop() cancels this task, not the batch, so a batch that has just finished still answers
                verdicts = await asyncio.shield(work)
            except asyncio.CancelledError:  # stop(): the worker thread cannot be interrupted, so the batch's items
                # are answered now, with its verdicts if it finished, else an error
                if work.done() and not work.cancelled() and work.exception() is None:
                    _deliver(items, work.result())
                _shutting_down(items)
                raise
            except Exception as e:  # _judge catches guard errors; this is the executor itself failing
                log.exception("guard worker failed")
                verdicts = [Verdict.failure(f"guard worker failed: {type(e).__name__}: {e}") for _ in items]
            _deliver(items, verdicts)

    def _take(self) -> list[_Item]:
        """Up to `max_batch` items sharing the oldest item's key (`_Item.key`), oldest first; the rest keep their
        places (`submit` takes a request's items out of the queue when it ends without their verdicts)."""
        batch: list[_Item] = []
        skipped: list[_Item] = []
        key: object = _UNSET
        while self._pending and len(batch) < self.config.max_batch:
            it = self._pending.popleft()
            if key is _UNSET:
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
        for v in verdicts:  # (a verdict with non-finite scores is already an error: Guard fails closed)
            self.metrics.verdicts.labels(v.status).inc()
        return verdicts
