"""The trainer's arguments, one dataclass per section of the config JSON the operator (or
`ftjob run`) renders. Parsed with HfArgumentParser like the Hugging Face examples."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser, TrainingArguments


@dataclass
class JobArguments:
    name: str = field(metadata={"help": "FineTuneJob name"})
    namespace: str | None = field(default=None)
    attempt: int = field(default=1)


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "Hub id, local dir or storage URI"})
    task: str = field(default="sequence-classification",
                      metadata={"help": "A task of ftjob_trainer.tasks.TASKS"})
    revision: str | None = field(default=None)
    num_labels: int | None = field(default=None)
    trust_remote_code: bool = field(default=False)
    use_lora: bool = field(default=False)
    lora_r: int = field(default=8)
    lora_alpha: float = field(default=16)
    lora_dropout: float = field(default=0.05)
    lora_target_modules: list[str] | None = field(default=None)
    lora_merge_on_export: bool = field(default=False)


@dataclass
class DataArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "Hub id or local dir"})
    dataset_config_name: str | None = field(default=None)
    train_file: str | None = field(default=None, metadata={"help": "Path or storage URI"})
    eval_file: str | None = field(default=None)
    file_format: str | None = field(default=None, metadata={"choices": ["csv", "json",
                                                                         "parquet"]})
    text_columns: list[str] = field(default_factory=lambda: ["text"])
    label_column: str | None = field(default="label")
    train_split: str = field(default="train")
    eval_split: str | None = field(default="validation")
    max_length: int = field(default=128)
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)
    validation_split_percentage: int | None = field(default=None, metadata={
        "help": "Without an eval split, this share of the train rows becomes one"})
    metrics: list[str] = field(default_factory=list)


@dataclass
class StorageArguments:
    work_dir: str = field(metadata={"help": "Local scratch directory for checkpoints"})
    checkpoint_uri: str = field(metadata={"help": "fsspec URI checkpoints are uploaded to"})
    checkpoint_keep: int = field(default=3)
    checkpoint_endpoint_url: str | None = field(default=None)
    output_uri: str | None = field(default=None)
    output_endpoint_url: str | None = field(default=None)
    hub_repo: str | None = field(default=None, metadata={"help": "Push the final model here"})
    hub_private: bool = field(default=True)
    upload_queue_size: int = field(
        default=2, metadata={"help": "Checkpoints waiting for upload before training waits"})
    upload_outage_seconds: float = field(
        default=300, metadata={"help": "How long an upload keeps retrying through a storage "
                                       "outage before the run fails as StorageUnavailable"})


@dataclass
class ReportingArguments:
    events_file: str | None = field(default=None, metadata={"help": "JSON-lines event log"})
    events_uri: str | None = field(default=None, metadata={
        "help": "Storage folder that keeps the event log (events.jsonl) across attempts"})
    events_endpoint_url: str | None = field(default=None, metadata={
        "help": "S3-compatible endpoint of events_uri"})
    terminal: bool = field(default=True, metadata={"help": "Progress bar on rank 0"})
    kubernetes_status: bool = field(default=False)
    termination_log: str | None = field(
        default=None, metadata={"help": "Where the failure reason goes (pod termination log)"})


SECTIONS = {
    "job": JobArguments,
    "model": ModelArguments,
    "data": DataArguments,
    "storage": StorageArguments,
    "reporting": ReportingArguments,
    "training": TrainingArguments,
}

# Config entries that name files; relative ones are resolved against the config's folder so
# the same config works wherever it is mounted.
RELATIVE_PATHS = {("training", "deepspeed")}


@dataclass
class Config:
    job: JobArguments
    model: ModelArguments
    data: DataArguments
    storage: StorageArguments
    reporting: ReportingArguments
    training: TrainingArguments
    task: Any = None  # the task's own Arguments (ftjob_trainer.tasks)
    # The training section as written, for a task whose trainer has its own config class
    # with defaults of its own (TRL's SFTConfig): it is built from what the job set.
    training_given: dict = field(default_factory=dict)


def apply_environment(raw: dict) -> dict:
    """What the environment says over the config JSON: the work dir can be remapped from
    outside (tests, local runs) without rewriting JSON, and on the cluster one ConfigMap
    serves every attempt, so the pod says which one it is."""
    if os.environ.get("FTJOB_WORK_DIR"):
        raw["storage"]["work_dir"] = os.environ["FTJOB_WORK_DIR"]
    if os.environ.get("FTJOB_ATTEMPT"):
        raw["job"]["attempt"] = int(os.environ["FTJOB_ATTEMPT"])
    reporting = raw.get("reporting", {})
    if reporting.get("events_uri") and not reporting.get("events_file"):
        # The history kept in storage is written locally first, in the work dir.
        reporting["events_file"] = str(Path(raw["storage"]["work_dir"]) / "events.jsonl")
    # The job's S3-compatible endpoint (checkpoints.endpointUrl, or the operator's default)
    # serves every s3:// URI it names, its data and model too, unless the environment
    # (the credentials Secret) names one: the pods' credentials Secret carries only keys.
    endpoint = raw.get("storage", {}).get("checkpoint_endpoint_url")
    if endpoint and not os.environ.get("AWS_ENDPOINT_URL"):
        os.environ["AWS_ENDPOINT_URL"] = endpoint
    return raw


def load_config(path: str | os.PathLike) -> Config:
    """Parses every section."""
    config_path = Path(path)
    raw = json.loads(config_path.read_text())
    for section, key in RELATIVE_PATHS:
        value = raw.get(section, {}).get(key)
        if isinstance(value, str) and not os.path.isabs(value):
            raw[section][key] = str(config_path.parent / value)
    apply_environment(raw)
    raw["training"]["output_dir"] = str(Path(raw["storage"]["work_dir"]) / "checkpoints")
    from .tasks import task_for

    sections = {**SECTIONS,
                "task": task_for(raw["model"].get("task", "sequence-classification")).Arguments}
    parsed = {}
    for section, cls in sections.items():
        (parsed[section],) = HfArgumentParser(cls).parse_dict(raw.get(section, {}),
                                                               allow_extra_keys=False)
    return Config(**parsed, training_given=dict(raw["training"]))
