"""What `ftjob run` shows of the launcher's output (torchrun's own reports go to a file)."""

from __future__ import annotations

import io

import pytest

from ftjob.launcher_output import LauncherOutputFilter

LAUNCHER_WARNING = (b"W1122 04:01:40.622000 8720 site-packages/torch/distributed/elastic/"
                    b"multiprocessing/api.py:1028] Sending process 8766 closing signal SIGTERM\n")
LAUNCHER_TRACEBACK = (
    b"Traceback (most recent call last):\n"
    b'  File "<frozen runpy>", line 198, in _run_module_as_main\n'
    b"    raise SignalException(f\"Process {os.getpid()} got signal: {sigval}\")\n"
    b"torch.distributed.elastic.multiprocessing.api.SignalException: Process 1 got signal: 15\n")
CHILD_FAILED = (
    b"Traceback (most recent call last):\n"
    b'  File "torch/distributed/launcher/api.py", line 386, in launch_agent\n'
    b"    raise ChildFailedError(\n"
    b"torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
    b"============================================================\n"
    b"Root Cause (first observed failure):\n"
    b"  exitcode  : 65 (pid: 8717)\n")
USER_TRACEBACK = (b"Traceback (most recent call last):\n"
                  b'  File "my_collator.py", line 3, in collate\n'
                  b"KeyError: 'labels'\n")


def run(*chunks: bytes) -> tuple[bytes, bytes]:
    shown, hidden = io.BytesIO(), io.BytesIO()
    output = LauncherOutputFilter(shown, hidden)
    for chunk in chunks:
        output.feed(chunk)
    output.close()
    return shown.getvalue(), hidden.getvalue()


@pytest.mark.parametrize("chunks, shown, hidden", [
    # The trainer's one-line error stays; torchrun's ChildFailedError report goes.
    ([b"ftjob-trainer: InvalidDataset: no column x\n", CHILD_FAILED],
     b"ftjob-trainer: InvalidDataset: no column x\n", CHILD_FAILED),
    # SIGTERM: torchrun's warning starts right after the unfinished progress bar.
    ([b"\r 30%|###   | 3/10", LAUNCHER_WARNING, LAUNCHER_TRACEBACK],
     b"\r 30%|###   | 3/10\n", LAUNCHER_WARNING + LAUNCHER_TRACEBACK),
    # A user's own traceback is theirs to read, even split across chunks.
    ([USER_TRACEBACK[:20], USER_TRACEBACK[20:]], USER_TRACEBACK, b""),
    # Ordinary lines pass untouched.
    ([b"Resuming from s3://b/c (step 4)\nstep 5\n"], b"Resuming from s3://b/c (step 4)\nstep 5\n",
     b""),
])
def test_launcher_reports_are_hidden_and_the_rest_is_shown(chunks, shown, hidden):
    assert run(*chunks) == (shown, hidden)


def test_a_progress_bar_is_shown_before_its_line_ends():
    shown, hidden = io.BytesIO(), io.BytesIO()
    output = LauncherOutputFilter(shown, hidden)
    output.feed(b"\r 10%|#         | 1/10")
    assert shown.getvalue() == b"\r 10%|#         | 1/10"
    output.feed(b"\r 20%|##        | 2/10")
    assert shown.getvalue().endswith(b"2/10")
