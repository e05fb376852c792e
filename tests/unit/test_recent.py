"""What the operator remembers until its watch catches up, with a clock the test moves."""

from __future__ import annotations

from ftjob.controller.recent import COUNTS_INTERVAL_SECONDS, Recent


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def body(rv: str, phase: str = "Initializing") -> dict:
    return {"metadata": {"uid": "u1", "resourceVersion": rv}, "status": {"phase": phase}}


def test_the_version_our_write_replaced_is_read_as_what_we_wrote():
    recent = Recent(Clock())
    assert recent.freshest(body("1")) == body("1")
    recent.wrote_status("u1", "1", body("2", "Running"))
    assert recent.freshest(body("1"))["status"]["phase"] == "Running"  # watch lags
    assert recent.freshest(body("3")) == body("3")  # someone wrote after us: theirs


def test_the_written_copy_is_let_go_once_the_watch_has_moved_past_it():
    recent = Recent(Clock())
    recent.wrote_status("u1", "1", body("2", "Running"))
    recent.seen("u1", "1")  # the version we replaced, delivered late: still lagging
    assert recent.freshest(body("1"))["status"]["phase"] == "Running"
    recent.seen("u1", "2")  # our own write came back through the watch
    assert recent._jobs["u1"].written is None
    assert recent.freshest(body("1")) == body("1")
    recent.seen("u9", "5")  # a job this process never wrote: nothing to let go


def test_counts_only_changes_are_paced_and_phase_changes_are_not():
    clock = Clock()
    recent = Recent(clock)
    old = {"phase": "Initializing", "message": "0 of 2 nodes ready",
           "replicas": {"ready": 0}}
    counts = {**old, "message": "1 of 2 nodes ready", "replicas": {"ready": 1}}
    running = {**counts, "phase": "Running"}
    assert recent.counts_wait("u1", old, counts) == 0  # nothing written yet
    recent.wrote_status("u1", "1", {})
    clock.now += 1
    assert recent.counts_wait("u1", old, counts) == COUNTS_INTERVAL_SECONDS - 1
    assert recent.counts_wait("u1", old, running) == 0
    clock.now += COUNTS_INTERVAL_SECONDS
    assert recent.counts_wait("u1", old, counts) == 0


def test_a_created_job_is_awaited_until_seen_or_overdue():
    clock = Clock()
    recent = Recent(clock)
    assert recent.awaiting_watch("u1", "j-attempt-1", []) is None  # never created
    recent.created_job("u1", "j-attempt-1")
    assert recent.awaiting_watch("u1", "j-attempt-1", []) > 0
    assert recent.awaiting_watch("u1", "j-attempt-2", []) is None
    clock.now += 60
    assert recent.awaiting_watch("u1", "j-attempt-1", []) is None  # overdue: create again
    recent.created_job("u1", "j-attempt-1")
    seen = [{"metadata": {"name": "j-attempt-1"}}]
    assert recent.awaiting_watch("u1", "j-attempt-1", seen) is None
    assert recent.awaiting_watch("u1", "j-attempt-1", []) is None  # seen once: done
    recent.forget("u1")
    assert recent.freshest(body("1")) == body("1")
