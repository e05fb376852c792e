"""The pod's first process gives the container the trainer's verdict on SIGTERM: a real
launcher stand-in (a Python process that exits 1 after SIGTERM, as torchrun does) and a real
signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

# Exits 1 on SIGTERM like torchrun, after writing what the trainer would (or nothing).
LAUNCHER = """
import json, os, signal, sys, time
def stop(signum, frame):
    if sys.argv[1] == "saved":
        with open(os.environ["FTJOB_TERMINATION_LOG"], "w") as log:
            json.dump({"reason": "Preempted", "exitCode": 75, "retryable": True}, log)
    sys.exit(1)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(60)
sys.exit(int(sys.argv[2]))
"""


def start(tmp_path, verdict: str, code: int = 0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ftjob_trainer.preemptible", "--", sys.executable, "-c",
         LAUNCHER, verdict, str(code)],
        env={**os.environ, "FTJOB_TERMINATION_LOG": str(tmp_path / "termination-log")},
        stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("verdict, exit_code", [("saved", 75), ("nothing", 1)])
def test_sigterm_exits_75_only_when_the_trainer_saved_and_stopped(tmp_path, verdict,
                                                                  exit_code):
    wrapper = start(tmp_path, verdict)
    assert wrapper.stdout.readline() == "ready\n"
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(timeout=30) == exit_code


def test_without_a_signal_the_launchers_exit_code_passes_through(tmp_path):
    (tmp_path / "termination-log").write_text(json.dumps({"reason": "Preempted"}))
    wrapper = subprocess.run(
        [sys.executable, "-m", "ftjob_trainer.preemptible", "--", sys.executable, "-c",
         "import sys; sys.exit(3)"],
        env={**os.environ, "FTJOB_TERMINATION_LOG": str(tmp_path / "termination-log")},
        timeout=30)
    assert wrapper.returncode == 3


def test_the_launcher_dies_with_the_wrapper(tmp_path):
    wrapper = start(tmp_path, "nothing")
    assert wrapper.stdout.readline() == "ready\n"
    import psutil

    (launcher,) = psutil.Process(wrapper.pid).children()
    wrapper.kill()
    wrapper.wait(timeout=10)
    deadline = time.monotonic() + 10
    while launcher.is_running() and launcher.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the launcher outlived the wrapper"
        time.sleep(0.1)
