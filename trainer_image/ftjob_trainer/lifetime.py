"""A process that dies with its parent, whatever kills the parent (SIGKILL included), so no
launcher, rank or uploader trains on, or writes to storage, after the run that started it
is gone. Linux only (prctl PR_SET_PDEATHSIG); elsewhere nothing changes.

Imports nothing heavy: `ftjob run` uses it for the launcher it starts.
"""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1  # prctl(2)


def die_with_parent(parent: int, signum: int = signal.SIGTERM) -> None:
    """Asks the kernel for `signum` when the parent dies; exits at once if `parent` (the
    expected parent pid) is already gone, since the request would then never fire."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signum))
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(128 + int(signum))
