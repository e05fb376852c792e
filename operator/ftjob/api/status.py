"""FineTuneJob status. The operator owns phase, conditions and counters; the trainer's
status sink owns progress, metrics and checkpoint (its Role allows nothing else)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import ApiModel, LongText, ShortText, bounded_list

Phase = Literal["Pending", "Suspended", "Initializing", "Running", "Restarting", "Succeeded",
                "Failed"]


class Condition(ApiModel):
    """metav1.Condition."""

    type: ShortText
    status: Literal["True", "False", "Unknown"]
    reason: ShortText
    message: LongText | None = None
    last_transition_time: ShortText
    observed_generation: int | None = None


class Progress(ApiModel):
    step: int = 0
    max_steps: int | None = None
    epoch: float | None = None
    percent: float | None = None
    loss: float | None = None
    learning_rate: float | None = None
    samples_per_second: float | None = None
    eta_seconds: int | None = None
    updated_at: ShortText | None = None


class CheckpointStatus(ApiModel):
    uri: LongText
    step: int
    saved_at: ShortText


class OutputStatus(ApiModel):
    uri: LongText


class Replicas(ApiModel):
    active: int = 0
    ready: int = 0
    succeeded: int = 0
    failed: int = 0


class FineTuneJobStatus(ApiModel):
    phase: Phase | None = None
    message: LongText | None = None
    conditions: list[Condition] = bounded_list(16, default_factory=list)
    observed_generation: int | None = None
    attempt: int = 0
    restarts: int = 0
    start_time: ShortText | None = None
    completion_time: ShortText | None = None
    replicas: Replicas | None = None
    progress: Progress | None = None
    metrics: dict[ShortText, float] | None = Field(None, max_length=64)
    checkpoint: CheckpointStatus | None = None
    output: OutputStatus | None = None
