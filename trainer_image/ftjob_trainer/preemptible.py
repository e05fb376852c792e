"""The first process of a built-in task's training pod: runs the launcher and exits with the
trainer's verdict.

    python -m ftjob_trainer.preemptible -- LAUNCHER ARGS...

On SIGTERM (Kueue preempting the job, a node drain) torchrun and accelerate stop their
workers and exit 1 whatever the workers did, yet the workers saved a checkpoint and said so
in the termination message (reason Preempted). This exits 75 then, the code the attempt's
Job ignores (its podFailurePolicy) instead of counting a failure, so a preemption does not
fail the attempt. spec.script jobs have the same from their supervisor. Imports nothing
heavy: it waits for the launcher for the whole run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from .contract import EXIT_SAVED_AND_STOPPED
from .lifetime import die_with_parent

# Where Kubernetes reads the termination message unless the pod says otherwise (ftjob's
# pods keep it); whatever runs the pod can remap it, as the trainer allows.
TERMINATION_LOG = "/dev/termination-log"


def saved_and_stopped() -> bool:
    """Whether this node's trainer reported stopping on SIGTERM after saving."""
    path = os.environ.get("FTJOB_TERMINATION_LOG") or TERMINATION_LOG
    try:
        with open(path, encoding="utf-8") as log:
            message = json.load(log)
    except (OSError, ValueError):
        return False
    return isinstance(message, dict) and message.get("reason") == "Preempted"


def run(command: list[str]) -> int:
    parent = os.getpid()
    # A session of its own: the SIGTERM for the pod reaches the launcher once, from here.
    launcher = subprocess.Popen(command, start_new_session=True,
                                preexec_fn=lambda: die_with_parent(parent))
    signalled: list[int] = []

    def forward(signum, frame):
        signalled.append(signum)
        launcher.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    code = launcher.wait()
    if signalled and code != 0 and saved_and_stopped():
        return EXIT_SAVED_AND_STOPPED
    return 128 - code if code < 0 else code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] != "--":
        print("usage: python -m ftjob_trainer.preemptible -- LAUNCHER ARGS...", file=sys.stderr)
        return 64
    die_with_parent(os.getppid())
    return run(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
