"""Progress, metrics and checkpoints from a user's own script, to the same places the
built-in tasks report to (the terminal bar, the event log, `status.progress` on the cluster).

    from ftjob_trainer import report

    report.progress(step, max_steps, loss=loss.item(), learning_rate=lr)
    report.metrics({"eval_accuracy": 0.91}, step=step)
    report.checkpoint_saved(folder, step)   # after the checkpoint is completely written

Safe on every rank and without torch.distributed: only global rank 0 reports, and every
node's local rank 0 declares checkpoints (the supervisor on that node uploads them). Outside
ftjob (no FTJOB_CONFIG) the calls do nothing, so the script still runs on its own.
`FtjobCallback` does all three for a Hugging Face Trainer.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from . import contract
from .checkpoints import utc_now
from .reporting import ProgressClock, Reporter

_reporter: Reporter | None = None
_clock: ProgressClock | None = None
_job: str | None = None
_began: tuple[float, str] | None = None  # training began: at the first step reported


def _timing() -> dict:
    """status.timing of this run: a script's time from its first reported step is all
    training (ftjob cannot tell its evaluations and saves apart)."""
    if _began is None:
        return {}
    return {"trainBeganAt": _began[1],
            "trainingSeconds": round(time.perf_counter() - _began[0], 3)}


def _rank(variable: str) -> int:
    return int(os.environ.get(variable, "0"))


def _get_reporter() -> Reporter:
    global _reporter, _job
    if _reporter is None:
        _reporter = Reporter()
        path = os.environ.get(contract.CONFIG)
        if path and _rank("RANK") == 0:
            from .reporting import build_reporter
            from .supervise import load_script_config

            config = load_script_config(path)
            # The supervisor keeps the event log in storage; the script only appends to it.
            _reporter = build_reporter(config.reporting, config.job, stores_history=False)
            _job = config.job.name
    return _reporter


def progress(step: int, max_steps: int | None = None, *, loss: float | None = None,
             learning_rate: float | None = None, samples_per_step: int | None = None,
             epoch: float | None = None) -> None:
    """The step just finished; with max_steps, percent and ETA follow."""
    global _clock, _began
    if _began is None:
        _began = (time.perf_counter(), utc_now())
    reporter = _get_reporter()
    if not reporter.sinks:
        return
    if _clock is None:
        _clock = ProgressClock(samples_per_step or 0, step - 1)
        resumed = {"step": step - 1} if os.environ.get(contract.RESUME_DIR) else None
        reporter.emit("started", job=_job, step=step - 1, maxSteps=max_steps,
                      worldSize=int(os.environ.get("WORLD_SIZE", "1")), resumedFrom=resumed,
                      timing=_timing())
    extra = {key: value for key, value in (("loss", loss), ("learningRate", learning_rate),
                                           ("epoch", epoch)) if value is not None}
    percent = round(100.0 * step / max_steps, 2) if max_steps else 0.0
    reporter.emit("progress", step=step, maxSteps=max_steps, percent=percent, **extra,
                  **_clock.tick(step, max_steps or 0), timing=_timing())


def metrics(values: dict, step: int | None = None) -> None:
    """Evaluation results; numbers only reach the FineTuneJob's status.metrics."""
    reporter = _get_reporter()
    if not reporter.sinks:
        return
    reporter.emit("eval", step=step, metrics=dict(values))
    # The supervisor reports the latest ones again when the script finishes.
    latest = Path(os.environ[contract.METRICS_FILE])
    known = json.loads(latest.read_text()) if latest.exists() else {}
    latest.write_text(json.dumps({**known, **values}))


def checkpoint_saved(folder: str | os.PathLike, step: int) -> None:
    """Declares a checkpoint in FTJOB_CHECKPOINT_DIR finished; call it after every rank has
    written its part. The supervisor of each node uploads that node's part."""
    if _rank("LOCAL_RANK") != 0 or not os.environ.get(contract.CHECKPOINT_DIR):
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # With the training time it keeps, for the goodput ledger.
    (folder / contract.SAVED_MARKER).write_text(json.dumps({"step": int(step), **_timing()}))
