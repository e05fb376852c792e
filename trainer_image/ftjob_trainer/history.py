"""The job's metric history in storage: `<checkpoints.uri>/events.jsonl`, every event rank 0
reported (logged steps, evaluations, checkpoints, restarts as a new attempt's `started`),
across attempts; and beside it the TensorBoard files, when the job reports to TensorBoard.

Events go to the local JSON-lines file at once, so training never waits on storage; a
thread copies the file to storage when it has grown, every few seconds, at once after a
run's start, a checkpoint or a failure, and when the run ends. A new attempt first fetches
what the last one left, so the history spans restarts; a failed attempt whose rank 0 was
killed may miss its last few seconds after its last checkpoint (steps trained again
anyway).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from .reporting import JsonLinesSink
from .storage import Location, local_files

logger = logging.getLogger(__name__)

HISTORY_FILE = "events.jsonl"
SYNC_SECONDS = 10.0
# Events stored at once: where a run began, what it saved, and why it stopped.
URGENT = ("started", "checkpoint", "failed", "preempted")


class StoredHistorySink(JsonLinesSink):
    """A JSON-lines event log that is also kept in storage."""

    def __init__(self, path: str | Path, location: Location, name: str = HISTORY_FILE,
                 sync_seconds: float = SYNC_SECONDS, folders: dict[str, Path] | None = None):
        self.location, self.name = location, name
        self.folders = {name: Path(folder) for name, folder in (folders or {}).items()}
        self._synced_files: dict[str, int] = {}  # storage path -> size copied
        path = Path(path)
        if not path.exists() or path.stat().st_size == 0:
            self._restore(path)
        super().__init__(path)
        self._synced_size = self.path.stat().st_size
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._sync_seconds = sync_seconds
        self._thread = threading.Thread(target=self._sync_loop, daemon=True,
                                        name="history-sync")
        self._thread.start()

    def _restore(self, path: Path) -> None:
        """The history the earlier attempts left, if any."""
        try:
            earlier = self.location.read_text(self.name)
        except FileNotFoundError:
            return
        except Exception as error:  # noqa: BLE001 - history is never worth failing a run
            logger.warning("Could not read the earlier metric history: %s", error)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(earlier if earlier.endswith("\n") or not earlier else earlier + "\n")

    def sync(self) -> None:
        """Copies the file, and each folder's files, to storage where they grew since the
        last copy (TensorBoard appends to its event files)."""
        try:
            size = self.path.stat().st_size
            if size != self._synced_size:
                self.location.write_text(self.path.read_text(), self.name)
                self._synced_size = size
            for name, folder in self.folders.items():
                self._sync_folder(name, folder)
        except Exception as error:  # noqa: BLE001 - tried again at the next sync
            logger.warning("Could not store the metric history: %s", error)

    def _sync_folder(self, name: str, folder: Path) -> None:
        if not folder.is_dir():
            return
        sizes = {relative: (folder / relative).stat().st_size
                 for relative in local_files(folder)}
        grown = [relative for relative, size in sizes.items()
                 if self._synced_files.get(f"{name}/{relative}") != size]
        if grown:
            self.location.upload_files(folder, grown, name)
            self._synced_files.update({f"{name}/{r}": sizes[r] for r in grown})

    def write(self, record: dict) -> None:
        super().write(record)
        if record.get("event") in URGENT:
            self._wake.set()

    def _sync_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._sync_seconds)
            self._wake.clear()
            if not self._stop.is_set():
                self.sync()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        super().close()
        self.sync()
