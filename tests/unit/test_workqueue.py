"""The work queue's contract, with a real event loop and thread pool."""

from __future__ import annotations

import asyncio
import threading
import time

from ftjob.controller.workqueue import WorkQueue


class Recorder:
    """Records which keys ran when; a key can be made slow or failing."""

    def __init__(self, slow: float = 0.0, fail_first: int = 0, again: float | None = None):
        self.runs: list[tuple[str, float]] = []
        self.active: set[str] = set()
        self.overlapped = False
        self.slow, self.fail_first, self.again = slow, fail_first, again
        self._lock = threading.Lock()

    def __call__(self, key: str) -> float | None:
        with self._lock:
            self.overlapped |= key in self.active
            self.active.add(key)
            self.runs.append((key, time.monotonic()))
            failing = sum(k == key for k, _ in self.runs) <= self.fail_first
        time.sleep(self.slow)
        with self._lock:
            self.active.discard(key)
        if failing:
            raise RuntimeError("API unavailable")
        return self.again


def run(scenario, work: Recorder, workers: int = 4):
    async def main():
        queue = WorkQueue(work, workers)
        queue.start()
        try:
            await scenario(queue)
        finally:
            await queue.stop()
    asyncio.run(main())
    return [key for key, _ in work.runs]


def test_events_for_a_waiting_key_coalesce_into_one_run():
    async def scenario(queue):
        for _ in range(50):
            queue.add("a")
        queue.add("b")
        await asyncio.sleep(0.3)
    assert sorted(run(scenario, Recorder(), workers=1)) == ["a", "b"]


def test_an_event_during_a_run_runs_the_key_again_afterwards_never_concurrently():
    work = Recorder(slow=0.2)

    async def scenario(queue):
        queue.add("a")
        await asyncio.sleep(0.05)  # "a" is running now
        for _ in range(5):
            queue.add("a")
        await asyncio.sleep(0.8)
    assert run(scenario, work) == ["a", "a"]
    assert not work.overlapped


def test_the_earliest_delay_wins():
    work = Recorder()

    async def scenario(queue):
        queue.add("a", 5.0)
        queue.add("a", 0.2)
        queue.add("a", 3.0)
        await asyncio.sleep(0.6)
    assert run(scenario, work) == ["a"]


def test_a_returned_delay_requeues_the_key():
    async def scenario(queue):
        queue.add("a")
        await asyncio.sleep(0.35)
    assert run(scenario, Recorder(again=0.1)).count("a") >= 3


def test_a_failing_reconcile_is_retried_with_growing_backoff():
    work = Recorder(fail_first=2)

    async def scenario(queue):
        queue.add("a")
        await asyncio.sleep(2.5)
    keys = run(scenario, work)
    a_times = [at for key, at in work.runs if key == "a"]
    assert keys.count("a") == 3  # fails, again after 0.5 s, fails, again after 1 s: done
    gaps = [later - earlier for earlier, later in zip(a_times, a_times[1:])]
    assert gaps[1] > gaps[0] * 1.5


def test_forget_drops_a_pending_delayed_run():
    async def scenario(queue):
        queue.add("a", 0.2)
        queue.forget("a")
        await asyncio.sleep(0.4)
    assert run(scenario, Recorder()) == []


def test_urgent_keys_go_first_and_a_queued_key_can_be_promoted():
    async def scenario(queue):
        queue.add("blocker")
        await asyncio.sleep(0.05)  # the only worker is busy
        queue.add("status-1")
        queue.add("status-2")
        queue.add("new-job", urgent=True)
        queue.add("status-2", urgent=True)  # promoted: runs once, before status-1
        await asyncio.sleep(0.5)
    assert run(scenario, Recorder(slow=0.1), workers=1) == [
        "blocker", "new-job", "status-2", "status-1"]
