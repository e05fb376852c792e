"""`ftjob validate --fit`: the job's GPU memory per GPU, by part, against the GPUs it may
land on, and what to change when it does not fit (ftjob_trainer.memory_fit estimates)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ftjob_trainer.memory_fit import GIB, Estimate, Layout, ModelShape, advice, estimate, gib

from .api.spec import FineTuneJob
from .api.training_args import snake_case
from .api.base import QUANTITY

# GPU memory sizes the report compares with when no size is given (A10G/L4, A100-40GB/L40S,
# A100-80GB/H100, H200).
COMMON_GPUS = {"24 GiB": 24 * GIB, "48 GiB": 48 * GIB, "80 GiB": 80 * GIB,
               "141 GiB": 141 * GIB}
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6,
         "G": 10**9, "T": 10**12, "": 1}


def parse_memory(text: str) -> float:
    """A Kubernetes quantity ("80Gi", "81920Mi") in bytes; ValueError names what is allowed."""
    import re

    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?", text.strip())
    if not match or not re.match(QUANTITY, text.strip()):
        raise ValueError(f"{text!r} is not a memory size: write it as 80Gi or 81920Mi")
    return float(match.group(1)) * UNITS[match.group(2) or ""]


def _training(job: FineTuneJob, name: str, default=None):
    """A TrainingArguments value as the job sets it, in either spelling."""
    for key, value in job.spec.training.items():
        if snake_case(key) == name:
            return value
    return default


def sequence_length(job: FineTuneJob) -> int:
    """Tokens per sample: a packed block where the task packs, else dataset.maxLength."""
    settings = job.spec.task_settings()
    block = getattr(settings, "block_size", None)
    packed = getattr(settings, "packing", True) and not getattr(settings, "line_by_line", False)
    return block if block and packed else job.spec.dataset.max_length


def layout_of(job: FineTuneJob) -> Layout:
    distributed = job.spec.distributed
    deepspeed, fsdp = distributed.deepspeed, distributed.fsdp
    return Layout(
        world_size=distributed.nodes * distributed.nproc_per_node,
        procs_per_node=distributed.nproc_per_node,
        strategy=distributed.strategy,
        zero_stage=deepspeed.zero_stage if deepspeed else 2,
        offload_optimizer=bool(deepspeed and deepspeed.offload_optimizer),
        offload_params=bool(deepspeed and deepspeed.offload_params),
        fsdp_sharding=fsdp.sharding if fsdp else "full_shard",
        fsdp_offload=bool(fsdp and fsdp.offload),
        mixed_precision=bool(_training(job, "bf16") or _training(job, "fp16")),
        micro_batch=int(_training(job, "per_device_train_batch_size", 8)),
        sequence_length=sequence_length(job),
        gradient_checkpointing=bool(_training(job, "gradient_checkpointing")),
    )


def shape_of(job: FineTuneJob) -> ModelShape:
    """The model's shape from its config.json (a storage URI: that file alone is fetched)."""
    from ftjob_trainer.memory_fit import model_shape
    from ftjob_trainer.storage import Location, is_storage_uri

    model, lora = job.spec.model, job.spec.peft
    lora_args = {"r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
                 "target_modules": lora.target_modules} if lora else None
    with tempfile.TemporaryDirectory(prefix="ftjob-fit-") as scratch:
        source = model.name
        if is_storage_uri(source):
            Location(source, job.spec.checkpoints.endpoint_url).download_files(
                ["config.json"], Path(scratch))
            source = scratch
        return model_shape(source, model.task, revision=model.revision,
                           trust_remote_code=model.trust_remote_code,
                           num_labels=model.num_labels, lora=lora_args)


def report(job: FineTuneJob, shape: ModelShape, layout: Layout,
           gpu_bytes: float | None) -> tuple[str, bool]:
    """The breakdown and verdict, and whether it fits (True when no size was given)."""
    need = estimate(shape, layout)
    trained = "" if shape.trainable == shape.parameters else \
        f" ({shape.trainable / 1e6:.2f}M trained)"
    lines = [f"{job.metadata.name}: {job.spec.model.name}, {shape.parameters / 1e6:.1f}M "
             f"parameters{trained}, {layout.strategy} on {layout.world_size} "
             f"process{'es' if layout.world_size != 1 else ''}, batch {layout.micro_batch} x "
             f"{layout.sequence_length} tokens per process",
             f"per GPU: {need.describe()} = {gib(need.total)}"]
    if gpu_bytes is None:
        verdicts = [f"{name}: {'fits' if need.total <= size else 'does not fit'}"
                    for name, size in COMMON_GPUS.items()]
        lines.append("GPU memory " + "; ".join(verdicts))
        return "\n".join(lines), True
    if need.total <= gpu_bytes:
        lines.append(f"fits in {gib(gpu_bytes)} per GPU ({need.total / gpu_bytes:.0%} used)")
        return "\n".join(lines), True
    lines.append(f"does not fit: needs {gib(need.total)} per GPU of {gib(gpu_bytes)}")
    lines += [f"  {line}" for line in advice(shape, layout, gpu_bytes)]
    return "\n".join(lines), False


__all__ = ["Estimate", "layout_of", "parse_memory", "report", "shape_of"]
