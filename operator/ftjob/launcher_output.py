"""What `ftjob run` shows of the launcher's output: everything the trainer prints (progress
bar, its one-line errors, a user's own traceback), but not torchrun's own reports.

When a worker fails or is stopped by SIGTERM, torchrun logs which processes it signalled
and raises ChildFailedError or SignalException with a traceback and a summary block. The
trainer has already said what happened in one line and in its termination log, so those
reports go to `launcher.log` in the run folder instead of the terminal.
"""

from __future__ import annotations

import re
from typing import BinaryIO

# torchrun's own log lines: glog-style prefix, then a path inside torch.distributed. They
# may start right after a progress bar's unfinished line.
_LAUNCHER_LOG = re.compile(rb"[IWEF]\d{4} [\d:.]+ +\d+ \S*torch/distributed/")
_TRACEBACK = b"Traceback (most recent call last):"
_LAUNCHER_ERROR = re.compile(rb"^torch\.distributed\.elastic\.")


class LauncherOutputFilter:
    """Feed it the launcher's output in chunks as they arrive; it writes the shown part to
    `shown` at once (a progress bar's partial lines included) and the rest to `hidden`."""

    def __init__(self, shown: BinaryIO, hidden: BinaryIO):
        self.shown, self.hidden = shown, hidden
        self._line = b""  # the current line so far, not yet written anywhere
        self._passing = False  # the current line was already shown in part
        self._traceback: list[bytes] = []  # a traceback being read, not yet judged
        self._hiding_rest = False  # after the launcher's own error: its summary block

    def feed(self, chunk: bytes) -> None:
        *complete, partial = chunk.split(b"\n")
        for piece in complete:
            self._end_line(piece + b"\n")
        if partial:
            if self._passing or self._can_show_early(self._line + partial):
                self._show(self._line + partial)
                self._line, self._passing = b"", True
            else:
                self._line += partial
        self.shown.flush()

    def close(self) -> None:
        if self._line:
            self._end_line(self._line)
        for line in self._traceback:  # unfinished: not the launcher's, show it
            self._show(line)
        self._traceback = []
        self.shown.flush()
        self.hidden.flush()

    def _can_show_early(self, text: bytes) -> bool:
        """A partial line (a progress bar) is shown before its newline unless it may be the
        start of something hidden."""
        if self._traceback or self._hiding_rest:
            return False
        head = text.lstrip(b"\r")
        return not (_TRACEBACK.startswith(head[:len(_TRACEBACK)])
                    or re.match(rb"^[IWEF]\d", head) or head.startswith(b"torch"))

    def _end_line(self, rest: bytes) -> None:
        line = self._line + rest
        if self._passing:
            launcher = _LAUNCHER_LOG.search(rest)
            if launcher:  # the bar ends here; the launcher's line is not shown
                self._show(rest[:launcher.start()] + b"\n")
                self.hidden.write(rest[launcher.start():])
            else:
                self._show(rest)
            self._line, self._passing = b"", False
            return
        self._line = b""
        if self._hiding_rest or _LAUNCHER_LOG.match(line):
            self.hidden.write(line)
        elif self._traceback:
            self._traceback.append(line)
            if not line[:1].isspace():  # the exception line ends the traceback
                block, self._traceback = self._traceback, []
                if _LAUNCHER_ERROR.match(line):
                    self.hidden.writelines(block)
                    self._hiding_rest = True
                else:
                    for kept in block:
                        self._show(kept)
        elif line.startswith(_TRACEBACK):
            self._traceback = [line]
        else:
            self._show(line)

    def _show(self, data: bytes) -> None:
        self.shown.write(data)
