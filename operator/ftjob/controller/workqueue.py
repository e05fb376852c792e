"""A work queue of FineTuneJob keys, the contract of client-go's workqueue:

- a key waiting in the queue is queued once, however many events name it;
- a key is reconciled by one worker at a time; an event that arrives meanwhile marks it
  dirty and it runs again right after, on the newer state;
- `add(key, delay)` keeps only the earliest pending deadline per key;
- a reconcile that raises is retried with per-key exponential backoff;
- urgent keys (a FineTuneJob was created or edited) are taken before the others (a Job's
  status moved, a timer fired), so a burst of new jobs gets its pods created before the
  operator spends the API server on bookkeeping of jobs already running.

Watch events call `add` from kopf's event loop; reconciles run on a thread pool because
the Kubernetes client is blocking.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor

logger = logging.getLogger(__name__)

URGENT, NORMAL = 0, 1
ERROR_BACKOFF_BASE = 0.5
ERROR_BACKOFF_MAX = 60.0


def describe(error: Exception) -> str:
    """One line about an error: an API error's status and reason, else its type and text."""
    status = getattr(error, "status", None)
    if status is not None:
        return f"HTTP {status} {getattr(error, 'reason', '') or ''}".strip()
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__


class WorkQueue:
    def __init__(self, work: Callable[[object], float | None], workers: int,
                 observe: Callable[[Hashable], object] = lambda key: key):
        """`work(observe(key))` reconciles one key and returns when to look again
        (seconds), or None when only a new event should wake it. `observe` runs on the
        event loop (where kopf updates its indices), `work` on a worker thread."""
        self._work, self._observe = work, observe
        self._workers = workers
        self._loop: asyncio.AbstractEventLoop | None = None
        # Entries are (priority, sequence, key); a key promoted to urgent leaves a stale
        # normal entry behind, skipped when it comes up.
        self._queue: asyncio.PriorityQueue[tuple[int, int, Hashable]] = asyncio.PriorityQueue()
        self._sequence = 0
        self._queued: dict[Hashable, int] = {}  # key -> priority of its live entry
        self._running: set[Hashable] = set()
        self._dirty: dict[Hashable, bool] = {}  # key -> urgent
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._failures: dict[Hashable, int] = {}
        self._tasks: list[asyncio.Task] = []
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="reconcile")

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks = [self._loop.create_task(self._worker()) for _ in range(self._workers)]

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def add(self, key: Hashable, delay: float = 0.0, urgent: bool = False) -> None:
        """Queue `key` now, or after `delay` seconds (an earlier pending one wins)."""
        if delay > 0:
            assert self._loop is not None
            when = self._loop.time() + delay
            timer = self._timers.get(key)
            if timer is not None:
                if timer.when() <= when:
                    return
                timer.cancel()
            self._timers[key] = self._loop.call_at(when, self._due, key)
            return
        if key in self._running:
            self._dirty[key] = self._dirty.get(key, False) or urgent
            return
        priority = URGENT if urgent else NORMAL
        if priority < self._queued.get(key, NORMAL + 1):
            self._queued[key] = priority
            self._sequence += 1
            self._queue.put_nowait((priority, self._sequence, key))

    def forget(self, key: Hashable) -> None:
        """The object is gone: no timer or retry count is kept for it."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._failures.pop(key, None)

    def _due(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def _worker(self) -> None:
        assert self._loop is not None
        while True:
            priority, _, key = await self._queue.get()
            if self._queued.get(key) != priority:
                continue  # promoted to urgent and already taken from that entry
            del self._queued[key]
            self._running.add(key)
            try:
                again = await self._loop.run_in_executor(self._executor, self._work,
                                                         self._observe(key))
                self._failures.pop(key, None)
            except Exception as error:  # noqa: BLE001 - one job's error never stops the others
                failures = self._failures[key] = self._failures.get(key, 0) + 1
                again = min(ERROR_BACKOFF_BASE * 2 ** (failures - 1), ERROR_BACKOFF_MAX)
                # One line per retry; the traceback only when debugging (--verbose).
                logger.warning("Reconciling %s failed (%d in a row): %s; again in %.1f s",
                               key, failures, describe(error), again)
                logger.debug("Reconciling %s failed", key, exc_info=True)
            finally:
                self._running.discard(key)
            if key in self._dirty:
                self.add(key, urgent=self._dirty.pop(key))
            elif again is not None:
                self.add(key, again)
