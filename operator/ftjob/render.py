"""Pure builders: a FineTuneJob spec in, the trainer's files out (config JSON, DeepSpeed
config, accelerate config). No I/O, no clock; the local runner and the operator both use
them, so a job behaves the same on a laptop and on the cluster."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from .api.spec import DatasetSpec, DistributedSpec, FineTuneJob
from .api.tasks import TASKS

TRAINER_CONFIG = "config.json"
DEEPSPEED_CONFIG = "deepspeed.json"
ACCELERATE_CONFIG = "accelerate.yaml"

# Defaults ftjob prefers over Hugging Face's where the user said nothing.
TRAINING_DEFAULTS = {
    "logging_steps": 10,
    "report_to": "none",
    "save_strategy": "steps",
}


@dataclass(frozen=True)
class Placement:
    """Where the trainer's files and results go for one run."""

    work_dir: str
    checkpoint_uri: str
    output_uri: str | None
    events_file: str | None = None
    # Storage folder that keeps events_file across attempts (the cluster's pods are new
    # each attempt; a local run folder keeps its own).
    events_uri: str | None = None
    termination_log: str | None = None
    terminal: bool = True
    kubernetes_status: bool = False
    attempt: int = 1


def deepspeed_config(distributed: DistributedSpec) -> dict | None:
    """A ZeRO config with Hugging Face "auto" values, so batch size, learning rate and
    precision come from TrainingArguments and cannot disagree with them."""
    if distributed.strategy != "deepspeed":
        return None
    settings = distributed.deepspeed
    if settings is None:
        from .api.spec import DeepSpeedSpec

        settings = DeepSpeedSpec()
    if settings.config is not None:
        return settings.config
    zero: dict[str, Any] = {"stage": settings.zero_stage}
    if settings.zero_stage >= 2:
        zero.update(overlap_comm=True, contiguous_gradients=True,
                    reduce_bucket_size="auto", allgather_bucket_size=5e8)
    if settings.zero_stage == 3:
        zero.update(stage3_prefetch_bucket_size="auto",
                    stage3_param_persistence_threshold="auto",
                    stage3_gather_16bit_weights_on_model_save=True)
    if settings.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if settings.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": "auto",
                                                  "eps": "auto", "weight_decay": "auto"}},
        "scheduler": {"type": "WarmupDecayLR", "params": {
            "warmup_min_lr": "auto", "warmup_max_lr": "auto", "warmup_num_steps": "auto",
            "total_num_steps": "auto"}},
        "zero_optimization": zero,
    }


def fsdp_arguments(distributed: DistributedSpec) -> dict:
    if distributed.strategy != "fsdp":
        return {}
    from .api.spec import FsdpSpec

    settings = distributed.fsdp or FsdpSpec()
    options = [settings.sharding]
    if settings.auto_wrap:
        options.append("auto_wrap")
    if settings.offload:
        options.append("offload")
    return {"fsdp": " ".join(options)}


def eval_data_given(dataset: DatasetSpec) -> bool:
    return bool(dataset.files.eval) if dataset.files else dataset.splits.eval is not None


def has_eval_data(dataset: DatasetSpec) -> bool:
    """Eval files, a hub eval split, or a share of the train rows held out."""
    return eval_data_given(dataset) or bool(dataset.validation_split_percentage)


def training_arguments(job: FineTuneJob) -> dict:
    spec = job.spec
    training = {**TRAINING_DEFAULTS, **TASKS[spec.model.task].training_defaults,
                **spec.training}
    training["save_total_limit"] = spec.checkpoints.keep
    training["disable_tqdm"] = True  # ftjob's progress sink replaces the Trainer's bar
    if spec.distributed.gpus_per_node == 0:
        training["use_cpu"] = True
    if spec.distributed.strategy == "deepspeed":
        training["deepspeed"] = DEEPSPEED_CONFIG  # resolved next to the config file
    training.update(fsdp_arguments(spec.distributed))
    if spec.distributed.strategy == "ddp":
        # The built-in tasks' models use every trainable parameter in each forward pass
        # (LoRA's frozen base needs no gradient at all), so DDP need not walk the autograd
        # graph after each step looking for unused ones, nor print on every rank that it
        # found none. A model that leaves some unused sets ddpFindUnusedParameters: true.
        training.setdefault("ddp_find_unused_parameters", False)
    if not has_eval_data(spec.dataset):
        training.setdefault("eval_strategy", "no")
    return training


def run_sections(job: FineTuneJob, placement: Placement) -> dict:
    """The sections every run has: the job, where its results go, where it reports."""
    spec = job.spec
    return {
        "job": {"name": job.metadata.name, "namespace": job.metadata.namespace,
                "attempt": placement.attempt},
        "storage": {
            "work_dir": placement.work_dir,
            "checkpoint_uri": placement.checkpoint_uri,
            "checkpoint_keep": spec.checkpoints.keep,
            "checkpoint_endpoint_url": spec.checkpoints.endpoint_url,
            "output_uri": placement.output_uri,
            "output_endpoint_url": spec.output.endpoint_url or spec.checkpoints.endpoint_url,
            "hub_repo": spec.output.push_to_hub.repo if spec.output.push_to_hub else None,
            "hub_private": spec.output.push_to_hub.private if spec.output.push_to_hub
            else True,
        },
        "reporting": {
            "events_file": placement.events_file,
            "events_uri": placement.events_uri,
            "events_endpoint_url": spec.checkpoints.endpoint_url if placement.events_uri
            else None,
            "terminal": placement.terminal,
            "kubernetes_status": placement.kubernetes_status,
            "termination_log": placement.termination_log,
        },
    }


def script_environment(job: FineTuneJob) -> dict:
    """The model and data a spec.script job names, as the variables its script reads
    (ftjob_trainer.contract)."""
    spec, env = job.spec, {}
    if spec.model:
        env["FTJOB_MODEL"] = spec.model.name
    if spec.dataset and spec.dataset.name:
        env["FTJOB_DATASET"] = spec.dataset.name
    if spec.dataset and spec.dataset.files:
        env["FTJOB_TRAIN_FILE"] = spec.dataset.files.train
        if spec.dataset.files.eval:
            env["FTJOB_EVAL_FILE"] = spec.dataset.files.eval
    return env


def trainer_config(job: FineTuneJob, placement: Placement) -> dict:
    """The config the trainer runs from: every section for a built-in task; for a
    spec.script job, what its supervisor needs."""
    if job.spec.script is not None:
        return {**run_sections(job, placement),
                "script": {"path": job.spec.script.path,
                           "nodes": job.spec.distributed.nodes,
                           "environment": script_environment(job)}}
    spec = job.spec
    dataset = spec.dataset
    lora = spec.peft
    task_settings = spec.task_settings()
    return {
        **run_sections(job, placement),
        "model": {
            "model_name_or_path": spec.model.name,
            "task": spec.model.task,
            "revision": spec.model.revision,
            "num_labels": spec.model.num_labels,
            "trust_remote_code": spec.model.trust_remote_code,
            "use_lora": lora is not None,
            **({"lora_r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
                "lora_target_modules": lora.target_modules,
                "lora_merge_on_export": lora.merge_on_export} if lora else {}),
        },
        "data": {
            "dataset_name": dataset.name,
            "dataset_config_name": dataset.config,
            "train_file": dataset.files.train if dataset.files else None,
            "eval_file": dataset.files.eval if dataset.files else None,
            "file_format": dataset.format,
            "text_columns": dataset.text_columns,
            "label_column": dataset.label_column,
            "train_split": dataset.splits.train,
            "eval_split": dataset.splits.eval if eval_data_given(dataset) else None,
            "max_length": dataset.max_length,
            "max_train_samples": dataset.max_train_samples,
            "max_eval_samples": dataset.max_eval_samples,
            "validation_split_percentage": dataset.validation_split_percentage,
            "metrics": spec.metrics,
        },
        "task": task_settings.model_dump() if task_settings else {},
        "training": training_arguments(job),
    }


def accelerate_config(distributed: DistributedSpec, num_machines: int, machine_rank: int,
                      main_process_ip: str | None = None, main_process_port: int = 29500
                      ) -> dict:
    """The file `accelerate config` would write for this layout. DeepSpeed and FSDP stay in
    TrainingArguments (the Trainer sets up its Accelerator from them), so the launcher only
    spreads processes.

    MULTI_GPU is accelerate's torchrun-based launcher; it is also right for CPU processes,
    whose device the Trainer picks from `use_cpu`. (accelerate's MULTI_CPU type expects an
    MPI launcher to start the processes and would start only one here.)"""
    per_node = distributed.nproc_per_node
    config = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "MULTI_GPU" if num_machines * per_node > 1 else "NO",
        "num_machines": num_machines,
        "num_processes": num_machines * per_node,
        "machine_rank": machine_rank,
        "mixed_precision": "no",
        "use_cpu": False,
        "same_network": True,
        "rdzv_backend": "static",
        "main_training_function": "main",
    }
    if num_machines > 1:
        config.update(main_process_ip=main_process_ip, main_process_port=main_process_port)
    return config



def trainer_files(job: FineTuneJob, placement: Placement,
                  rendezvous_port: int | None = None) -> dict[str, str]:
    """The files the trainer reads, by name: its config, DeepSpeed's and accelerate's
    launch config, for `distributed` as given (`ftjob run` passes one node of its own
    process count). The same bytes for the same job, everywhere."""
    distributed = job.spec.distributed
    files = {TRAINER_CONFIG: json.dumps(trainer_config(job, placement), indent=2,
                                        sort_keys=True)}
    deepspeed = deepspeed_config(distributed)
    if deepspeed is not None:
        files[DEEPSPEED_CONFIG] = json.dumps(deepspeed, indent=2, sort_keys=True)
    if distributed.launcher == "accelerate":
        port = {"main_process_port": rendezvous_port} if rendezvous_port else {}
        files[ACCELERATE_CONFIG] = yaml.safe_dump(accelerate_config(
            distributed, num_machines=distributed.nodes, machine_rank=0, **port))
    return files
