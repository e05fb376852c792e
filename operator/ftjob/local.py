"""`ftjob run`: the same FineTuneJob on this machine, no cluster.

Everything for one job lives in a run folder (default `.ftjob/<name>/`): the rendered trainer
config, the event log, the trainer's scratch space, and, unless the spec names storage,
checkpoints and the exported model. Running the same job again resumes from the newest
complete checkpoint, exactly as a restarted attempt does on the cluster.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


# Imports nothing heavy; the trainer package is part of the same distribution.
from ftjob_trainer.lifetime import die_with_parent

from . import launch, render
from .api.spec import FineTuneJob
from .launcher_output import LauncherOutputFilter


class RunFolderBusy(Exception):
    """Another `ftjob run` of the same job is going on in this run folder."""


class ScriptMissing(Exception):
    """spec.script.path names no file on this machine."""


class DataCheckFailed(Exception):
    """The data would fail the run: the trainer's message and exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class LocalRun:
    job: FineTuneJob
    run_dir: Path
    procs: int
    attempt: int
    lock_fd: int  # held while this run and its launcher live (see lock_run_folder)

    @property
    def events_file(self) -> Path:
        return self.run_dir / "events.jsonl"

    @property
    def termination_log(self) -> Path:
        return self.run_dir / f"termination-{self.attempt}.log"

    @property
    def launcher_log(self) -> Path:
        """torchrun's own reports (see launcher_output), every attempt appended."""
        return self.run_dir / "launcher.log"


def resolve_local_paths(job: FineTuneJob, base: Path) -> FineTuneJob:
    """Relative file paths in the YAML are relative to the YAML's folder, like kubectl -f."""
    job = job.model_copy(deep=True)

    def resolve(value: str | None) -> str | None:
        if value is None or "://" in value or os.path.isabs(value):
            return value
        candidate = base / value
        return str(candidate.resolve()) if value.startswith(".") or candidate.exists() \
            else value

    files = job.spec.dataset.files if job.spec.dataset else None
    if files:
        files.train = resolve(files.train)
        files.eval = resolve(files.eval)
    if job.spec.model:
        job.spec.model.name = resolve(job.spec.model.name)
    if job.spec.script:
        job.spec.script.path = resolve(job.spec.script.path)
    return job


def lock_run_folder(run_dir: Path) -> int:
    """An exclusive lock on the run folder, as an open file descriptor. The launcher
    inherits it, so the folder stays locked until the launcher (which waits for its ranks)
    is gone too, even if this process is killed first."""
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunFolderBusy(f"{run_dir} is in use by another `ftjob run` (pid {holder}); wait "
                            "for it to end or stop it, then run again") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def prepare(job: FineTuneJob, job_file: Path, run_root: Path, procs: int | None) -> LocalRun:
    job = resolve_local_paths(job, job_file.resolve().parent)
    script = job.spec.script
    if script and "://" not in script.path and not Path(script.path).is_file():
        raise ScriptMissing(f"spec.script.path: no file {script.path} (a path relative to "
                            f"{job_file})")
    run_dir = (run_root / job.metadata.name).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = lock_run_folder(run_dir)
    attempts_file = run_dir / "attempts"
    attempt = int(attempts_file.read_text()) + 1 if attempts_file.exists() else 1
    attempts_file.write_text(str(attempt))
    spec = job.spec
    placement = render.Placement(
        work_dir=str(run_dir / "work"),
        checkpoint_uri=spec.checkpoints.uri or f"file://{run_dir / 'checkpoints'}",
        output_uri=spec.output.uri or f"file://{run_dir / 'model'}",
        events_file=str(run_dir / "events.jsonl"),
        termination_log=str(run_dir / f"termination-{attempt}.log"),
        attempt=attempt,
    )
    procs = procs or spec.distributed.nproc_per_node
    one_node = job.model_copy(update={"spec": spec.model_copy(update={
        "distributed": spec.distributed.model_copy(update={"nodes": 1,
                                                            "procs_per_node": procs})})})
    for name, text in render.trainer_files(one_node, placement).items():
        (run_dir / name).write_text(text)
    return LocalRun(job, run_dir, procs, attempt, lock_fd)


def launch_command(run: LocalRun) -> list[str]:
    """One node of `run.procs` processes."""
    job = run.job.model_copy(deep=True)
    job.spec.distributed.nodes = 1
    job.spec.distributed.procs_per_node = run.procs
    return launch.launch_command(job, launch.this_machine(str(run.run_dir)))


def launch_environment(run: LocalRun) -> dict:
    env = dict(os.environ)
    # Without a limit each process starts one thread per core and they fight.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // run.procs)))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["FTJOB_TERMINATION_LOG"] = str(run.termination_log)
    return env


def execute(run: LocalRun) -> int:
    """Runs the launcher in its own process group. Ctrl-C or SIGTERM here becomes one
    SIGTERM to the launcher, which passes it to the trainers: they save and stop."""
    parent = os.getpid()
    # The launcher gets SIGTERM when this process dies, however it dies (then it stops its
    # ranks, which save), and it keeps the run folder's lock until it is gone.
    process = subprocess.Popen(launch_command(run), env=launch_environment(run),
                               stderr=subprocess.PIPE, start_new_session=True,
                               pass_fds=(run.lock_fd,),
                               preexec_fn=lambda: die_with_parent(parent))

    def forward(signum, frame):
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with run.launcher_log.open("ab") as hidden:
            output = LauncherOutputFilter(sys.stderr.buffer, hidden)
            while chunk := os.read(process.stderr.fileno(), 65536):
                output.feed(chunk)
            output.close()
        code = process.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    failure = read_failure(run)
    if failure:
        return failure.get("exitCode", code or 1)
    return code


def read_failure(run: LocalRun) -> dict | None:
    try:
        return json.loads(run.termination_log.read_text())
    except (OSError, ValueError):
        return None


def read_events(run: LocalRun) -> list[dict]:
    """Events of this attempt (the log holds every attempt)."""
    if not run.events_file.exists():
        return []
    events = (json.loads(line) for line in run.events_file.read_text().splitlines() if line)
    return [e for e in events if e.get("attempt") == run.attempt]


def summary(run: LocalRun, code: int) -> str:
    events = read_events(run)
    finished = next((e for e in reversed(events) if e["event"] == "finished"), None)
    checkpoints = [e for e in events if e["event"] == "checkpoint"]
    if not checkpoints and finished and finished.get("checkpoint"):
        checkpoints = [finished["checkpoint"]]  # an earlier run saved it
    lines = []
    if finished:
        metrics = finished["metrics"]
        lines.append("Final metrics:")
        lines += [f"  {k}: {v:.4f}" if isinstance(v, float) else f"  {k}: {v}"
                  for k, v in sorted(metrics.items()) if k.startswith(("eval_", "train_loss"))]
        lines.append(f"Model: {finished['output']}")
        if finished.get("hub"):
            lines.append(f"Hub: {finished['hub']}")
    if checkpoints:
        lines.append(f"Latest checkpoint: {checkpoints[-1]['uri']} (step "
                     f"{checkpoints[-1]['step']})")
    failure = read_failure(run)
    if failure:
        lines.append(f"Failed: {failure['reason']}: {failure['message']}")
        if failure.get("retryable"):
            lines.append("Run the same command again to resume from the latest checkpoint.")
    elif code != 0:
        lines.append(f"The launcher exited with code {code}; see the output above and "
                     f"{run.launcher_log}.")
    lines.append(f"Run folder: {run.run_dir}")
    return "\n".join(lines)


def check_data(job: FineTuneJob, job_file: Path) -> dict:
    """`ftjob validate --data`: the trainer's own loading and preparation of the job's data
    in this process, with no weights loaded (ftjob_trainer.data_check)."""
    import tempfile

    from ftjob_trainer.arguments import load_config
    from ftjob_trainer.data_check import check_data as check
    from ftjob_trainer.errors import TrainerError

    job = resolve_local_paths(job, job_file.resolve().parent)
    with tempfile.TemporaryDirectory(prefix="ftjob-data-") as scratch:
        placement = render.Placement(work_dir=scratch, checkpoint_uri=f"file://{scratch}/c",
                                     output_uri=None, terminal=False)
        config_file = Path(scratch) / render.TRAINER_CONFIG
        config_file.write_text(json.dumps(render.trainer_config(job, placement)))
        try:
            return check(load_config(config_file))
        except TrainerError as error:
            raise DataCheckFailed(str(error), error.exit_code) from None
