"""TrainerCallbacks that connect the Hugging Face Trainer to ftjob's lifecycle."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from . import contract, report
from .checkpoints import BackgroundUploader, snapshot, utc_now
from .reporting import ProgressClock, Reporter


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class CheckpointUploadCallback(TrainerCallback):
    """After each save, hands a snapshot of the checkpoint to the background uploader of
    this node (on its local main process)."""

    def __init__(self, uploader: BackgroundUploader | None, staging_root: Path):
        self.uploader, self.staging_root = uploader, staging_root
        self.blocked_seconds = 0.0  # training time spent here: what async upload still costs

    def on_save(self, args, state, control, **kwargs):
        started = time.perf_counter()
        step = state.global_step
        # Every rank has written its files (rng state, shards) once all are here.
        if _distributed():
            dist.barrier()
        if self.uploader is not None:
            source = Path(args.output_dir) / f"checkpoint-{step}"
            staged = snapshot(source, self.staging_root / f"checkpoint-{step}")
            self.uploader.submit(staged, step)
        self.blocked_seconds += time.perf_counter() - started
        return control


class PreemptionCallback(TrainerCallback):
    """SIGTERM → save at the end of the current step, then stop.

    Ranks may see the signal at different steps; training stops only when all agree, which a
    one-element all-reduce per step settles (a save is a collective under DeepSpeed/FSDP).
    Transformers' own `enable_jit_checkpoint` is not used: it decides per rank and saves
    outside `on_save`, so the upload would never see that checkpoint.
    """

    def __init__(self):
        self.signalled = False
        self.preempted_at: int | None = None
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.signalled = True

    def _agreed(self, device) -> bool:
        if not _distributed():
            return self.signalled
        flag = torch.tensor([1 if self.signalled else 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def on_step_end(self, args, state, control, **kwargs):
        if self.preempted_at is None and self._agreed(args.device):
            self.preempted_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        signal.signal(signal.SIGTERM, self._previous)


class RunClock(TrainerCallback):
    """This run's time since training began, split into training steps, evaluations and
    checkpoint saves (the operator's goodput ledger splits each attempt with it). The
    Trainer evaluates and then saves after a step ends and before the next begins, so what
    passes from a step's end to on_evaluate is evaluation, and from there to on_save is the
    save. Callbacks run in list order: put this one after the upload callback (its barrier
    and snapshot are part of the save) and before ProgressCallback (whose "started" event
    carries the clock's start)."""

    def __init__(self):
        self.began: float | None = None
        self.began_at: str | None = None
        self.ended: float | None = None
        self.evaluation = self.checkpoint = 0.0
        self._mark = 0.0
        self._saved: dict[int, float] = {}  # step -> training seconds when it was saved

    def training(self) -> float:
        if self.began is None:
            return 0.0
        end = self.ended if self.ended is not None else time.perf_counter()
        return max(end - self.began - self.evaluation - self.checkpoint, 0.0)

    def on_train_begin(self, args, state, control, **kwargs):
        self.began, self.began_at = time.perf_counter(), utc_now()

    def on_step_end(self, args, state, control, **kwargs):
        self._mark = time.perf_counter()

    def on_evaluate(self, args, state, control, **kwargs):
        if self.ended is None:  # the final evaluation after training is not training's
            now = time.perf_counter()
            self.evaluation += now - self._mark
            self._mark = now

    def on_save(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.checkpoint += now - self._mark
        self._mark = now
        self._saved[state.global_step] = self.training()

    def on_train_end(self, args, state, control, **kwargs):
        self.ended = time.perf_counter()

    def figures(self, saved_step: int | None = None) -> dict:
        """status.timing's fields; `saved_step`: a checkpoint that just became complete."""
        if self.began_at is None:
            return {}
        figures = {"trainBeganAt": self.began_at,
                   "trainingSeconds": round(self.training(), 3),
                   "evaluationSeconds": round(self.evaluation, 3),
                   "checkpointSeconds": round(self.checkpoint, 3)}
        if saved_step in self._saved:
            figures["savedTrainingSeconds"] = round(self._saved[saved_step], 3)
        return figures


class ProgressCallback(TrainerCallback):
    """Reports step, loss, learning rate, throughput, ETA and eval metrics (global rank 0).
    Progress events are throttled to one per `min_interval` seconds, plus every log step.
    Each event carries the values of its own step: the loss and learning rate only on the
    steps that log them (the Trainer calls on_step_end before on_log, so a step's loss is
    not known yet when it ends)."""

    def __init__(self, reporter: Reporter, clock: RunClock, min_interval: float = 1.0,
                 **run_facts):
        self.reporter = reporter
        self.run_clock = clock
        self.run_facts = run_facts  # job, attempt, resumedFrom: reported with "started"
        self.min_interval = min_interval
        self.clock: ProgressClock | None = None
        self._last_emit = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        samples = args.per_device_train_batch_size * args.world_size * \
            args.gradient_accumulation_steps
        self.clock = ProgressClock(samples, state.global_step)
        if state.is_world_process_zero:
            self.reporter.emit("started", worldSize=args.world_size, maxSteps=state.max_steps,
                               step=state.global_step, timing=self.run_clock.figures(),
                               **self.run_facts)

    def _progress(self, state, **logged) -> None:
        self._last_emit = time.monotonic()
        if not state.is_world_process_zero:
            return
        percent = 100.0 * state.global_step / state.max_steps if state.max_steps else None
        self.reporter.emit(
            "progress", step=state.global_step, maxSteps=state.max_steps,
            epoch=round(state.epoch or 0.0, 4), percent=round(percent, 2) if percent else 0.0,
            **logged, **self.clock.tick(state.global_step, state.max_steps),
            timing=self.run_clock.figures())

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_log:
            return  # on_log reports this step, with its loss
        if time.monotonic() - self._last_emit >= self.min_interval or \
                state.global_step == state.max_steps:
            self._progress(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self._progress(state, loss=round(logs["loss"], 6),
                           learningRate=logs.get("learning_rate"))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if state.is_world_process_zero and metrics:
            self.reporter.emit("eval", step=state.global_step, metrics=dict(metrics))


class FtjobCallback(PreemptionCallback):
    """For your own Hugging Face Trainer script under spec.script: progress, eval metrics and
    checkpoints go to ftjob, and SIGTERM saves, stops and exits 75 so the job resumes.

        trainer = Trainer(..., callbacks=[FtjobCallback()])
        trainer.train(resume_from_checkpoint=os.environ.get("FTJOB_RESUME_DIR"))

    with TrainingArguments(output_dir=os.environ["FTJOB_CHECKPOINT_DIR"], ...)."""

    def __init__(self, min_interval: float = 1.0):
        super().__init__()
        self.min_interval = min_interval
        self._last_progress = 0.0

    def _progress(self, state, **logged) -> None:
        self._last_progress = time.monotonic()
        report.progress(state.global_step, state.max_steps, epoch=state.epoch, **logged)

    def on_step_end(self, args, state, control, **kwargs):
        control = super().on_step_end(args, state, control, **kwargs)
        if not control.should_log and (
                time.monotonic() - self._last_progress >= self.min_interval or
                state.global_step == state.max_steps):
            self._progress(state)  # a logged step is reported by on_log, with its loss
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self._progress(state, loss=logs["loss"], learning_rate=logs.get("learning_rate"))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics:
            report.metrics(metrics, step=state.global_step)

    def on_save(self, args, state, control, **kwargs):
        if _distributed():
            dist.barrier()  # every rank has written its part
        report.checkpoint_saved(Path(args.output_dir) / f"checkpoint-{state.global_step}",
                                state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        super().on_train_end(args, state, control, **kwargs)
        if self.preempted_at is not None:
            sys.exit(contract.EXIT_SAVED_AND_STOPPED)
