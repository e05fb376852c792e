"""Runs a user's own training script (spec.script) under ftjob's checkpoints, resume, status
and export, one supervisor per node:

    python -m ftjob_trainer.supervise CONFIG.json -- LAUNCHER... SCRIPT ARGS...

Before the script starts it checks storage and downloads the newest complete checkpoint
(FTJOB_RESUME_DIR). While the script runs it uploads each checkpoint the script declares
finished (report.checkpoint_saved) from this node, and the first node marks it complete and
keeps checkpoints.keep of them. When the script exits 0 it exports FTJOB_OUTPUT_DIR to
output.uri; otherwise the exit code and the last lines of the script's stderr, with the
values of secret-looking variables blanked, become the termination message. The variables
are in `contract`.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from . import contract
from .arguments import JobArguments, ReportingArguments, StorageArguments, \
    apply_environment
from .checkpoints import BackgroundUploader, CheckpointStore, snapshot
from .errors import ConfigError, NotFound, Preempted, ScriptFailed, TrainerError, \
    write_termination_log
from .export import upload_export
from .lifetime import die_with_parent
from .preflight import check_storage
from .reporting import Reporter, build_reporter
from .storage import Location, is_storage_uri

STDERR_LINES = 20
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|(?:^|_)KEY(?:$|_)",
                         re.IGNORECASE)
# torchrun's summary of a failed worker names its exit code ("exitcode  : 75").
WORKER_EXIT_CODE = re.compile(r"exitcode\s*:\s*(-?\d+)")
# torchrun's own log lines and reports, after which the script's output is over.
LAUNCHER_REPORT = re.compile(r"[IWEF]\d{4} [\d:.]+ +\d+ \S*torch/distributed/|"
                             r"^torch\.distributed\.elastic\.|^=+$")


@dataclass
class ScriptArguments:
    path: str = field(default="", metadata={
        "help": "The script; a storage URI is downloaded before it starts"})
    nodes: int = field(default=1, metadata={"help": "Nodes, each with a supervisor"})
    environment: dict = field(default_factory=dict, metadata={
        "help": "Variables for the script: FTJOB_MODEL, FTJOB_TRAIN_FILE, ..."})


@dataclass
class ScriptConfig:
    job: JobArguments
    storage: StorageArguments
    reporting: ReportingArguments
    script: ScriptArguments


def load_script_config(path: str | os.PathLike) -> ScriptConfig:
    raw = apply_environment(json.loads(Path(path).read_text()))
    parsed = {name: HfArgumentParser(cls).parse_dict(raw.get(name, {}))[0] for name, cls in
              (("job", JobArguments), ("storage", StorageArguments),
               ("reporting", ReportingArguments))}
    return ScriptConfig(**parsed, script=ScriptArguments(**raw.get("script", {})))


def redact(text: str, environment: dict) -> str:
    """`text` without the values of variables whose names look secret."""
    for name, value in environment.items():
        if SECRET_NAME.search(name) and len(value) >= 4:
            text = text.replace(value, "***")
    return text


class OutputPump:
    """Passes one of the child's output streams through as it comes (a progress bar's
    partial lines too), with the values of secret-looking variables blanked, and keeps the
    script's last lines (torchrun's own reports end them) and the worker exit code torchrun
    reports."""

    def __init__(self, stream, target, environment: dict):
        self.target, self.environment = target, environment
        self.lines: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self.worker_exit_code: int | None = None
        self._launcher_reporting = False
        self._partial = ""
        self._thread = threading.Thread(target=self._pump, args=(stream.fileno(),),
                                        daemon=True)
        self._thread.start()

    def _pump(self, fd: int) -> None:
        # A writer's lines arrive whole: pipes deliver writes of up to 4 KiB at once.
        while chunk := os.read(fd, 65536):
            text = redact(chunk.decode(errors="replace"), self.environment)
            self.target.write(text)
            self.target.flush()
            *complete, self._partial = (self._partial + text).split("\n")
            for line in complete:
                self._keep(line.split("\r")[-1].rstrip())

    def _keep(self, line: str) -> None:
        if LAUNCHER_REPORT.search(line):
            self._launcher_reporting = True
        found = WORKER_EXIT_CODE.search(line)
        if found and self.worker_exit_code is None:
            self.worker_exit_code = int(found.group(1))
        if not self._launcher_reporting and line.strip():
            self.lines.append(line)

    def join(self) -> None:
        self._thread.join()


class DeclaredCheckpoints:
    """The checkpoint folders the script has declared finished, each handed over once."""

    def __init__(self, root: Path, staging: Path, uploader: BackgroundUploader):
        self.root, self.staging, self.uploader = root, staging, uploader
        self.handed: set[Path] = set()
        self.timing: dict[int, dict] = {}  # step -> status.timing once it is complete

    def timing_of(self, step: int) -> dict:
        return self.timing.get(step, {})

    def hand_over_new(self) -> None:
        declared = []
        for marker in self.root.glob(f"*/{contract.SAVED_MARKER}"):
            if marker.parent not in self.handed:
                try:
                    content = json.loads(marker.read_text())
                    declared.append((int(content["step"]), marker.parent))
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # being written
                if content.get("trainBeganAt"):
                    self.timing[int(content["step"])] = {
                        "trainBeganAt": content["trainBeganAt"],
                        "savedTrainingSeconds": content.get("trainingSeconds", 0.0)}
        for step, folder in sorted(declared):
            self.handed.add(folder)
            try:
                staged = snapshot(folder, self.staging / folder.name)
            except FileNotFoundError:
                # The script's own rotation (save_total_limit) removed it first.
                print(f"ftjob-supervisor: checkpoint {folder.name} was deleted before it "
                      "could be uploaded", file=sys.stderr)
                continue
            self.uploader.submit(staged, step)


def script_environment(config: ScriptConfig, work_dir: Path, resume_dir: Path | None,
                       config_path: str) -> dict:
    env = {**os.environ, **config.script.environment,
           contract.CHECKPOINT_DIR: str(work_dir / "checkpoints"),
           contract.OUTPUT_DIR: str(work_dir / "output"),
           contract.ATTEMPT: str(config.job.attempt),
           contract.CONFIG: str(Path(config_path).resolve()),
           contract.METRICS_FILE: str(work_dir / "metrics.json")}
    env.pop(contract.RESUME_DIR, None)
    if resume_dir is not None:
        env[contract.RESUME_DIR] = str(resume_dir)
    return env


def fetch_script(command: list[str], path: str, work_dir: Path,
                 endpoint_url: str | None) -> list[str]:
    """A script in storage is downloaded and run from the local copy."""
    if not is_storage_uri(path):
        return command
    folder, name = path.rstrip("/").rsplit("/", 1)
    try:
        Location(folder, endpoint_url).download_files([name], work_dir / "script")
    except FileNotFoundError:
        raise NotFound(f"spec.script.path: {path} not found in storage") from None
    local = str(work_dir / "script" / name)
    return [local if part == path else part for part in command]


def supervise(config: ScriptConfig, config_path: str, command: list[str]) -> int:
    node = int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    is_global_main = node == 0
    reporter = build_reporter(config.reporting, config.job) if is_global_main else Reporter()
    try:
        return run_script(config, config_path, command, node, reporter)
    except TrainerError as error:
        reporter.emit("failed", reason=error.reason, message=str(error),
                      exitCode=error.exit_code)
        raise
    finally:
        reporter.close()


def run_script(config: ScriptConfig, config_path: str, command: list[str], node: int,
               reporter: Reporter) -> int:
    is_global_main = node == 0
    work_dir = Path(config.storage.work_dir)
    checkpoints, output = check_storage(config)
    store = CheckpointStore(checkpoints, config.storage.checkpoint_keep)
    if is_global_main:
        store.location.abort_incomplete_uploads()
    latest = store.latest()
    resume_dir = store.fetch(latest.step, work_dir / "resume") if latest else None
    # What an earlier attempt left on this node's disk is not this attempt's work.
    for folder in ("checkpoints", "output", "staging"):
        shutil.rmtree(work_dir / folder, ignore_errors=True)
        (work_dir / folder).mkdir(parents=True)
    (work_dir / "metrics.json").unlink(missing_ok=True)
    env = script_environment(config, work_dir, resume_dir, config_path)
    command = fetch_script(command, config.script.path, work_dir,
                           config.storage.checkpoint_endpoint_url)

    def on_saved(saved, seconds):
        reporter.emit("checkpoint", step=saved.step, uri=saved.uri, savedAt=saved.saved_at,
                      uploadSeconds=round(seconds, 3), timing=declared.timing_of(saved.step))

    # The same id on every node's supervisor of this attempt.
    run_id = f"{config.job.name}-{config.job.attempt}"
    uploader = BackgroundUploader(store, node, config.script.nodes, is_global_main, run_id,
                                  on_saved, config.storage.upload_queue_size,
                                  config.storage.upload_outage_seconds)
    declared = DeclaredCheckpoints(work_dir / "checkpoints", work_dir / "staging", uploader)
    parent = os.getpid()
    try:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE,
                                   start_new_session=True,
                                   preexec_fn=lambda: die_with_parent(parent))
    except OSError as error:
        raise ConfigError(f"spec.script: cannot start {command[0]}: {error}") from None
    stopping = []

    def forward(signum, frame):
        stopping.append(signum)
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    started = time.monotonic()
    stdout = OutputPump(process.stdout, sys.stdout, env)
    stderr = OutputPump(process.stderr, sys.stderr, env)
    while process.poll() is None:
        declared.hand_over_new()
        time.sleep(0.5)
    stdout.join()
    stderr.join()
    declared.hand_over_new()
    uploader.close()
    uploader.raise_failure()
    code = stderr.worker_exit_code or process.returncode
    last = uploader.last_saved
    if code == contract.EXIT_SAVED_AND_STOPPED or (stopping and code != 0):
        reporter.emit("preempted", step=last.step if last else None)
        raise Preempted("the script stopped on SIGTERM" + (
            f" after checkpoint {last.step} was saved" if last else ", with no checkpoint"))
    if code != 0:
        tail = "\n".join(stderr.lines)
        raise ScriptFailed(f"the script exited with code {code}"
                           + (f"; the last lines of its stderr:\n{tail}" if tail else ""),
                           code)
    exported = upload_export(work_dir / "output", output) \
        if is_global_main and output is not None else None
    metrics_file = Path(env[contract.METRICS_FILE])
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    reporter.emit("finished", metrics=metrics, output=exported,
                  trainSeconds=round(time.monotonic() - started, 3),
                  checkpoint={"step": last.step, "uri": last.uri} if last else None)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    die_with_parent(os.getppid())
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m ftjob_trainer.supervise CONFIG.json -- COMMAND...",
              file=sys.stderr)
        return 64
    config = None
    try:
        try:
            config = load_script_config(argv[0])
        except (OSError, ValueError, TypeError) as error:
            raise ConfigError(f"cannot read trainer config {argv[0]}: {error}") from None
        return supervise(config, argv[0], argv[2:])
    except TrainerError as error:
        write_termination_log(config.reporting.termination_log if config else None, error)
        print(f"ftjob-supervisor: {error.reason}: {error}", file=sys.stderr)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
