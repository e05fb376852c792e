"""Polling for conditions a real cluster reaches eventually."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def eventually(probe: Callable[[], T], timeout: float = 60, interval: float = 0.5,
               what: str = "condition") -> T:
    """Calls `probe` until it returns something truthy and returns that; fails the test with
    `what` and the last value seen when `timeout` passes first."""
    deadline = time.monotonic() + timeout
    last: T = probe()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; "
                                 f"last seen: {last!r}")
        time.sleep(interval)
        last = probe()
    return last
