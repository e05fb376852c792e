"""FineTuneJob status. The operator owns phase, conditions and counters; the trainer's
status sink owns progress, metrics and checkpoint (its Role allows nothing else)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from pydantic import Field

from .base import ApiModel, LongText, ShortText, bounded_list

Phase = Literal["Pending", "Suspended", "Initializing", "Running", "Restarting", "Succeeded",
                "Failed"]
PHASES: tuple[str, ...] = get_args(Phase)


class Condition(ApiModel):
    """One aspect of the job's state (metav1.Condition): Running, Restarting, Suspended,
    DataChecked, MemoryFit, Succeeded, Failed"""

    type: ShortText
    """The aspect this condition reports"""
    status: Literal["True", "False", "Unknown"]
    """Whether it holds"""
    reason: ShortText
    """Why, in one CamelCase word (a failure's reason, e.g. OOMKilled or InvalidDataset)"""
    message: LongText | None = None
    """Why, in words"""
    last_transition_time: ShortText
    """When status last changed (RFC 3339)"""
    observed_generation: int | None = None
    """The spec generation this condition was decided from"""


class Progress(ApiModel):
    """Training progress as rank 0 last reported it"""

    step: int = 0
    """Optimizer steps done"""
    max_steps: int | None = None
    """Optimizer steps the run takes in all"""
    epoch: float | None = None
    """Epochs done, fractional"""
    percent: float | None = None
    """step / maxSteps as a percentage"""
    loss: float | None = None
    """Training loss of the latest logged step"""
    learning_rate: float | None = None
    """Learning rate of the latest logged step"""
    samples_per_second: float | None = None
    """Training throughput over the recent steps"""
    eta_seconds: int | None = None
    """Seconds of training left, estimated from the recent step times"""
    updated_at: ShortText | None = None
    """When rank 0 reported this (RFC 3339)"""

    def updated_at_timestamp(self) -> float | None:
        """updatedAt as Unix time, or None when absent or unreadable."""
        try:
            return datetime.fromisoformat(self.updated_at).timestamp() if self.updated_at \
                else None
        except ValueError:
            return None


class CheckpointStatus(ApiModel):
    """The newest complete checkpoint: the next attempt resumes from it"""

    uri: LongText
    """Where it is stored"""
    step: int
    """The optimizer step it was saved at"""
    saved_at: ShortText
    """When its upload completed (RFC 3339)"""
    upload_seconds: float | None = None
    """How long its upload took: the operator keeps twice that (and the step in progress)
    for a final save before a deadline, and as the pods' termination grace period"""


class RunTiming(ApiModel):
    """Rank 0's account of the current run's time since training began (the operator splits
    each attempt's time with it for status.goodput)"""

    attempt: int
    """The attempt this run belongs to"""
    train_began_at: ShortText
    """When the Trainer began training (model, data and checkpoint loaded; RFC 3339)"""
    training_seconds: float = 0.0
    """Time in training steps since then (data loading and logging included)"""
    evaluation_seconds: float = 0.0
    """Time in evaluations during training"""
    checkpoint_seconds: float = 0.0
    """Time training waited on checkpoint saves (uploads run in the background)"""
    saved_training_seconds: float = 0.0
    """trainingSeconds at the step of this run's newest complete checkpoint: what a failure
    would not lose"""


class Goodput(ApiModel):
    """Where the job's wall time since creation went, updated at every phase change (and
    live in `ftjob status` and the per-job Prometheus metrics)"""

    ratio: float | None = None
    """productiveSeconds / wallSeconds"""
    wall_seconds: float = 0.0
    """Time from creation to accountedAt"""
    productive_seconds: float = 0.0
    """Training steps whose work was kept (saved in a checkpoint, or the run finished)"""
    startup_seconds: float = 0.0
    """Data check, pod scheduling, image pull, model, data and checkpoint loading: each
    attempt until training began"""
    checkpoint_seconds: float = 0.0
    """Training waiting on checkpoint saves"""
    evaluation_seconds: float = 0.0
    """Evaluations during training"""
    recompute_seconds: float = 0.0
    """Training steps after the last complete checkpoint of an attempt that failed or was
    stopped: work done again (or lost)"""
    restart_seconds: float = 0.0
    """From a failure until the next attempt was created: pods stopping, restart backoff"""
    queued_seconds: float = 0.0
    """Waiting for a queue to admit the job, or suspended"""
    other_seconds: float = 0.0
    """The rest of each attempt: final evaluation and export, pods exiting, the time
    between the last report and a failure"""
    accounted_at: ShortText | None = None
    """The time up to which the figures account (RFC 3339)"""
    folded_run: ShortText | None = None
    """trainBeganAt of the last run accounted: a checkpoint it completes later (a save on
    SIGTERM) moves its time from recompute back to productive"""
    folded_saved_seconds: float | None = None
    """savedTrainingSeconds of that run when it was accounted"""


class OutputStatus(ApiModel):
    """The exported model"""

    uri: LongText
    """Where the final model was written (spec.output.uri)"""


class Replicas(ApiModel):
    """The current attempt's pods, one per node, as its Job counts them"""

    active: int = 0
    """Pods running or pending"""
    ready: int = 0
    """Pods ready"""
    succeeded: int = 0
    """Pods that exited 0"""
    failed: int = 0
    """Pods that failed"""


class FineTuneJobStatus(ApiModel):
    """What the job is doing; written by the operator and by the trainer's rank 0"""

    phase: Phase | None = None
    """Pending, Suspended, Initializing, Running, Restarting, Succeeded or Failed"""
    message: LongText | None = None
    """The phase in words: what the job waits for, or why it failed"""
    conditions: list[Condition] = bounded_list(16, default_factory=list)
    """The job's conditions, one per type"""
    observed_generation: int | None = None
    """The spec generation the operator last acted on"""
    attempt: int = 0
    """The current attempt (1 for the first); each restart starts a new one"""
    restarts: int = 0
    """Attempts restarted after a failure, counted against runPolicy.backoffLimit"""
    start_time: ShortText | None = None
    """When the first attempt was created (RFC 3339)"""
    completion_time: ShortText | None = None
    """When the job succeeded or failed (RFC 3339)"""
    replicas: Replicas | None = None
    progress: Progress | None = None
    metrics: dict[ShortText, float] | None = Field(None, max_length=64)
    """The latest evaluation and training summary metrics by name (eval_loss, eval_accuracy,
    train_loss, ...)"""
    checkpoint: CheckpointStatus | None = None
    output: OutputStatus | None = None
    timing: RunTiming | None = None
    goodput: Goodput | None = None
