"""The checkpoint lifecycle: upload in the background, mark complete last, keep N, resume.

Storage layout under the checkpoint URI:

    checkpoint-<step>/<files the Trainer wrote>
    checkpoint-<step>/_PART-<node>.json   one per node: which files that node uploaded
    checkpoint-<step>/_COMPLETE.json      written last, by global rank 0, once every node's
                                          part is there: step, time, every file and its size

Only folders with `_COMPLETE.json` are ever resumed from. Each node uploads what its own
disk holds (DeepSpeed and FSDP write per-rank shards on every node).
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import multiprocessing
import os
import queue
import re
import signal
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import StorageUnavailable
from .lifetime import die_with_parent
from .storage import Location, local_files

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "_COMPLETE.json"
UPLOADER_NICENESS = 10
LOCAL_COMPLETE_MARKER = ".ftjob-downloaded"
CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")


def part_marker(node: int) -> str:
    return f"_PART-{node}.json"


def utc_now() -> str:
    """RFC 3339 with milliseconds (benchmarks time events from it)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class SavedCheckpoint:
    step: int
    uri: str
    saved_at: str


class CheckpointStore:
    def __init__(self, location: Location, keep: int):
        self.location = location
        self.keep = keep

    def _steps(self) -> list[int]:
        steps = []
        for name in self.location.list_dirs():
            match = CHECKPOINT_DIR.match(name)
            if match:
                steps.append(int(match.group(1)))
        return sorted(steps)

    def is_complete(self, step: int) -> bool:
        return self.location.exists(f"checkpoint-{step}", COMPLETE_MARKER)

    def complete_steps(self) -> list[int]:
        return [s for s in self._steps() if self.is_complete(s)]

    def latest(self) -> SavedCheckpoint | None:
        steps = self.complete_steps()
        if not steps:
            return None
        marker = json.loads(self.location.read_text(f"checkpoint-{steps[-1]}", COMPLETE_MARKER))
        return SavedCheckpoint(steps[-1], self.location.display(f"checkpoint-{steps[-1]}"),
                               marker["savedAt"])

    def fetch(self, step: int, local_root: Path) -> Path:
        """Downloads complete checkpoint `step` to local_root/checkpoint-<step> (idempotent)."""
        folder = f"checkpoint-{step}"
        target = local_root / folder
        if (target / LOCAL_COMPLETE_MARKER).exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        marker = json.loads(self.location.read_text(folder, COMPLETE_MARKER))
        self.location.download_files(sorted(marker["files"]), target, folder,
                                     byte_count=sum(marker["files"].values()))
        for name, size in marker["files"].items():
            if (target / name).stat().st_size != size:
                raise OSError(f"{folder}/{name} has the wrong size after download")
        (target / LOCAL_COMPLETE_MARKER).write_text(utc_now())
        return target

    def forget_marker(self, step: int) -> None:
        """Before re-saving a step an earlier run also saved, so its stale marker never
        vouches for files being overwritten."""
        self.location.remove(f"checkpoint-{step}", COMPLETE_MARKER)

    def upload_part(self, local_dir: Path, step: int, node: int, run_id: str) -> None:
        folder = f"checkpoint-{step}"
        files = local_files(local_dir)
        self.location.remove(folder, part_marker(node))
        self.location.upload_files(local_dir, files, folder)
        sizes = {f: (local_dir / f).stat().st_size for f in files}
        self.location.write_text(json.dumps({"run": run_id, "files": sizes}), folder,
                                 part_marker(node))

    def mark_complete(self, step: int, nodes: int, run_id: str, timeout: float = 3600
                      ) -> SavedCheckpoint:
        """Waits for every node's part of this run, then writes the completion marker."""
        folder = f"checkpoint-{step}"
        deadline = time.monotonic() + timeout
        files: dict[str, int] = {}
        for node in range(nodes):
            while True:
                try:
                    part = json.loads(self.location.read_text(folder, part_marker(node)))
                    if part["run"] == run_id:
                        files.update(part["files"])
                        break
                except FileNotFoundError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"node {node} never uploaded its part of {folder}")
                time.sleep(1)
        saved_at = utc_now()
        self.location.write_text(json.dumps({"step": step, "savedAt": saved_at,
                                             "files": files}), folder, COMPLETE_MARKER)
        return SavedCheckpoint(step, self.location.display(folder), saved_at)

    def apply_retention(self, newest_step: int) -> list[int]:
        """Keeps the `keep` newest complete checkpoints; drops incomplete leftovers older than
        the newest (a crashed run's partial uploads). Returns the deleted steps."""
        complete = self.complete_steps()
        doomed = set(complete[:-self.keep]) if len(complete) > self.keep else set()
        doomed |= {s for s in self._steps() if s < newest_step and s not in complete}
        for step in sorted(doomed):
            self.location.remove(f"checkpoint-{step}")
        return sorted(doomed)


def snapshot(source: Path, staging: Path) -> Path:
    """Hard-links a checkpoint folder so the Trainer's local rotation cannot delete files
    under an upload in progress; copies where hard links are not possible."""
    shutil.rmtree(staging, ignore_errors=True)
    for relative in local_files(source):
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source / relative, target)
        except OSError:
            shutil.copy2(source / relative, target)
    return staging


RETRY_DELAYS = (2, 4, 8, 15, 30)  # seconds between tries; the last one repeats


def _upload_with_retries(store: CheckpointStore, staged: Path, step: int, node: int,
                         nodes: int, is_global_main: bool, run_id: str,
                         outage_seconds: float):
    """One checkpoint: this node's part, then (rank 0) the marker and retention, tried again
    through a storage outage of up to `outage_seconds`. Returns ("saved", SavedCheckpoint,
    seconds) or ("error", step, message)."""
    started = time.perf_counter()
    for tries in itertools.count(1):
        try:
            # Before any file of this step is overwritten, no stale marker of an earlier run
            # may vouch for it (each node removes it: idempotent, and off the training path).
            store.forget_marker(step)
            store.upload_part(staged, step, node, run_id)
            saved = None
            if is_global_main:
                saved = store.mark_complete(step, nodes, run_id)
                deleted = store.apply_retention(step)
                if deleted:
                    logger.info("Deleted old checkpoints %s from storage", deleted)
            shutil.rmtree(staged, ignore_errors=True)
            return ("saved", saved, time.perf_counter() - started)
        except Exception as error:  # noqa: BLE001 - retried through an outage, then reported
            waited = time.perf_counter() - started
            retry = isinstance(error, StorageUnavailable) and waited < outage_seconds
            logger.warning("Upload of checkpoint-%d failed (try %d, %.0f s): %s%s", step,
                           tries, waited, error, "; trying again" if retry else "")
            if not retry:
                return ("error", step, f"{type(error).__name__}: {error}")
            time.sleep(RETRY_DELAYS[min(tries, len(RETRY_DELAYS)) - 1])


def _uploader_process(uri: str, endpoint_url: str | None, keep: int, node: int, nodes: int,
                      is_global_main: bool, run_id: str, outage_seconds: float, parent: int,
                      tasks, results) -> None:
    # SIGTERM reaches the whole process group; the trainer decides when uploads end (the
    # None sentinel after the last save), so this process must outlive the signal. It dies
    # with the trainer instead, and the trainer kills it when it fails.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent, signal.SIGKILL)
    try:
        os.nice(UPLOADER_NICENESS)
    except OSError:
        pass
    store = CheckpointStore(Location(uri, endpoint_url), keep)
    while True:
        try:
            task = tasks.get(timeout=5)
        except queue.Empty:
            if os.getppid() != parent:  # the trainer was killed: nothing will come
                return
            continue
        if task is None:
            break
        staged, step = task
        results.put(_upload_with_retries(store, Path(staged), step, node, nodes,
                                         is_global_main, run_id, outage_seconds))
    results.put(None)


class BackgroundUploader:
    """Uploads checkpoints in a separate, lower-priority process, so uploads neither hold
    the training process's GIL (request signing, hashing, the S3 client's event loop) nor
    take its CPU. `submit` blocks only when `queue_size` checkpoints are already waiting,
    which bounds local disk use; `close` waits for all of them. Results come back on a
    thread that calls `on_saved` in this process."""

    def __init__(self, store: CheckpointStore, node: int, nodes: int, is_global_main: bool,
                 run_id: str, on_saved=None, queue_size: int = 2,
                 outage_seconds: float = 300):
        self.on_saved = on_saved or (lambda saved, seconds: None)
        self.errors: list[str] = []
        self.last_saved: SavedCheckpoint | None = None
        # spawn: forking a process that holds torch and gloo threads is not safe.
        context = multiprocessing.get_context("spawn")
        self._tasks = context.Queue(maxsize=queue_size)
        self._results = context.Queue()
        location = store.location
        self._process = context.Process(
            target=_uploader_process, name="checkpoint-uploader", daemon=True,
            args=(location.uri, location.endpoint_url, store.keep, node, nodes,
                  is_global_main, run_id, outage_seconds, os.getpid(), self._tasks,
                  self._results))
        self._process.start()
        # Whatever way this process ends, the uploader ends first (atexit handlers run last
        # in, first out: before multiprocessing's own, which would wait for it forever).
        atexit.register(self.kill)
        self._reader = threading.Thread(target=self._read_results, daemon=True,
                                        name="checkpoint-upload-results")
        self._reader.start()

    def submit(self, staged: Path, step: int) -> None:
        """Queues a checkpoint; waits while `queue_size` are already waiting (the only
        time training waits for storage). An upload that failed for good (storage gone for
        longer than the outage allowance) ends the run here."""
        self.raise_failure()
        self._tasks.put((str(staged), step))

    def raise_failure(self) -> None:
        if self.errors:
            raise StorageUnavailable(f"checkpoint upload failed: {self.errors[-1]}")

    def kill(self) -> None:
        """Stops the uploader at once (the trainer failed: nothing more will be saved)."""
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)

    def _read_results(self) -> None:
        while (result := self._results.get()) is not None:
            kind, payload, detail = result
            if kind == "error":
                self.errors.append(f"checkpoint-{payload}: {detail}")
            elif payload is not None:
                self.last_saved = payload
                self.on_saved(payload, detail)

    def close(self) -> None:
        """Waits for every queued upload, then stops the uploader."""
        self._tasks.put(None)
        self._reader.join()
        self._process.join()
        atexit.unregister(self.kill)
