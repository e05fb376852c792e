"""Will a job fit in GPU memory? An estimate per GPU, before anything holds one.

The model's size comes from its config.json alone: the task's model class is built on the
meta device (accelerate's init_empty_weights), so parameters are counted exactly, LoRA's
adapters included, and no weights are downloaded. What each GPU holds then follows from the
strategy, as the ZeRO paper counts it:

- weights, in the dtype from_pretrained loads them in (the config's, "auto"); DeepSpeed
  with bf16/fp16 holds 16-bit weights and keeps its fp32 master copy with the optimizer;
- gradients, one per trained weight (DDP adds its bucket copy when it has peers);
- optimizer states, AdamW's two moments per trained weight (DeepSpeed's 12 bytes: master
  weight and moments in fp32);
- sharding divides them: ZeRO stage 1 the optimizer states, 2 the gradients too, 3 the
  weights too, over every rank; FSDP full_shard all three (hybrid_shard within a node),
  shard_grad_op gradients and states; offload moves them to CPU memory; a sharded model
  gathers one layer at a time;
- activations, per layer 17 values per token and hidden unit (Korthikanti et al., with a
  memory-efficient attention kernel: no sequence-squared term), or with gradient
  checkpointing each layer's input and one layer's full set; plus the logits of a
  vocabulary head with their fp32 loss copies; DPO runs chosen and rejected together;
- DPO without LoRA keeps a frozen reference copy of the model;
- overhead: the CUDA context and library workspaces (1 GiB) and allocator fragmentation
  (5% of the rest).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
CONTEXT_BYTES = 1 * GIB
FRAGMENTATION = 0.05
ACTIVATION_VALUES_PER_LAYER = 17  # x tokens x hidden: 34 bytes at 16 bits
LOSS_COPIES_BYTES = 8  # the logits' fp32 copy and its gradient, per logit


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know of the model."""

    parameters: int       # all of them, a frozen base included
    trainable: int        # what the optimizer updates (with LoRA: the adapters)
    weight_bytes: int     # per parameter as loaded (the config's dtype)
    hidden_size: int
    layers: int
    vocab_size: int       # logits per token of a vocabulary head; 0 for other heads
    reference_copy: bool = False  # DPO without LoRA: a second, frozen model
    paired: bool = False          # DPO: chosen and rejected in one forward pass

    @property
    def adapter_bytes(self) -> int:
        """Bytes per trained parameter: peft keeps adapters in fp32 on a 16-bit base."""
        return 4 if self.trainable < self.parameters else self.weight_bytes


@dataclass(frozen=True)
class Layout:
    """How the job trains, from its spec."""

    world_size: int
    procs_per_node: int
    strategy: str = "ddp"              # ddp | fsdp | deepspeed
    zero_stage: int = 2
    offload_optimizer: bool = False
    offload_params: bool = False
    fsdp_sharding: str = "full_shard"
    fsdp_offload: bool = False
    mixed_precision: bool = False      # bf16 or fp16
    micro_batch: int = 8
    sequence_length: int = 128
    gradient_checkpointing: bool = False


@dataclass(frozen=True)
class Estimate:
    """Bytes per GPU, by what holds them."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    reference: float
    overhead: float

    @property
    def total(self) -> float:
        return sum(self.parts().values())

    def parts(self) -> dict[str, float]:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


def _sharding(layout: Layout) -> tuple[int, int, int]:
    """Over how many ranks (weights, gradients, optimizer states) are split."""
    n = layout.world_size
    if layout.strategy == "deepspeed":
        stage = layout.zero_stage
        return (n if stage >= 3 else 1, n if stage >= 2 else 1, n if stage >= 1 else 1)
    if layout.strategy == "fsdp":
        return {"full_shard": (n, n, n), "shard_grad_op": (1, n, n),
                "hybrid_shard": (layout.procs_per_node,) * 3,
                "no_shard": (1, 1, 1)}[layout.fsdp_sharding]
    return 1, 1, 1


def estimate(shape: ModelShape, layout: Layout) -> Estimate:
    frozen = shape.parameters - shape.trainable
    deepspeed_16bit = layout.strategy == "deepspeed" and layout.mixed_precision
    weight_bytes = 2 if deepspeed_16bit else shape.weight_bytes
    trained_bytes = 2 if deepspeed_16bit else shape.adapter_bytes
    optimizer_bytes = 12 if deepspeed_16bit else 2 * shape.adapter_bytes
    weights_split, grads_split, states_split = _sharding(layout)

    weights = (frozen * weight_bytes + shape.trainable * trained_bytes) / weights_split
    if weights_split > 1:  # a sharded model gathers one layer at a time to compute it
        weights += shape.parameters / max(shape.layers, 1) * weight_bytes
    gradients = shape.trainable * trained_bytes / grads_split
    if layout.strategy == "ddp" and layout.world_size > 1:
        gradients *= 2  # DDP's buckets copy the gradients for the all-reduce
    optimizer = shape.trainable * optimizer_bytes / states_split
    if layout.offload_optimizer or layout.fsdp_offload:
        optimizer = 0.0
    if layout.offload_params or layout.fsdp_offload:
        weights = shape.parameters / max(shape.layers, 1) * weight_bytes
        gradients = gradients if not layout.fsdp_offload else 0.0

    value_bytes = 2 if layout.mixed_precision else 4
    tokens = layout.micro_batch * layout.sequence_length * (2 if shape.paired else 1)
    one_layer = tokens * shape.hidden_size * ACTIVATION_VALUES_PER_LAYER * value_bytes
    if layout.gradient_checkpointing:
        activations = shape.layers * tokens * shape.hidden_size * value_bytes + one_layer
    else:
        activations = shape.layers * one_layer
    activations += tokens * shape.vocab_size * (value_bytes + LOSS_COPIES_BYTES)

    reference = shape.parameters * weight_bytes / weights_split if shape.reference_copy \
        else 0.0
    subtotal = weights + gradients + optimizer + activations + reference
    return Estimate(weights, gradients, optimizer, activations, reference,
                    CONTEXT_BYTES + FRAGMENTATION * subtotal)


def alternatives(layout: Layout, shape: ModelShape) -> list[tuple[str, Layout]]:
    """Changes that lower the memory per GPU, each as the spec field a user would set."""
    changes = []
    if layout.strategy != "deepspeed" or layout.zero_stage < 3:
        if layout.world_size > 1:
            changes.append(("distributed.strategy: deepspeed with zeroStage 3",
                            dataclasses.replace(layout, strategy="deepspeed", zero_stage=3,
                                                mixed_precision=True)))
    if not layout.gradient_checkpointing:
        changes.append(("training.gradientCheckpointing: true",
                        dataclasses.replace(layout, gradient_checkpointing=True)))
    if not layout.mixed_precision:
        changes.append(("training.bf16: true",
                        dataclasses.replace(layout, mixed_precision=True)))
    if layout.strategy == "deepspeed" and not layout.offload_optimizer:
        changes.append(("distributed.deepspeed.offloadOptimizer: true",
                        dataclasses.replace(layout, offload_optimizer=True)))
    return changes


def largest_fitting_batch(shape: ModelShape, layout: Layout, gpu_bytes: float) -> int | None:
    """The largest per-device batch below the job's that fits, or None."""
    batch = layout.micro_batch - 1
    while batch >= 1:
        if estimate(shape, dataclasses.replace(layout, micro_batch=batch)).total <= gpu_bytes:
            return batch
        batch -= 1
    return None


def gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB" if value >= GIB else f"{value / GIB:.2f} GiB"


def advice(shape: ModelShape, layout: Layout, gpu_bytes: float) -> list[str]:
    """What would make a job that does not fit fit, with what each would need."""
    lines = []
    for change, changed in alternatives(layout, shape):
        needed = estimate(shape, changed).total
        lines.append(f"{change} needs {gib(needed)}"
                     + (" (fits)" if needed <= gpu_bytes else ""))
    batch = largest_fitting_batch(shape, layout, gpu_bytes)
    if batch:
        steps = -(-layout.micro_batch // batch)
        lines.append(f"training.perDeviceTrainBatchSize {batch} needs "
                     f"{gib(estimate(shape, dataclasses.replace(layout, micro_batch=batch)).total)}"
                     f" (fits; gradientAccumulationSteps x{steps} keeps the batch)")
    if shape.trainable == shape.parameters:
        lines.append("spec.peft (LoRA) trains a small share of the weights: the gradients "
                     "and optimizer states shrink with it")
    return lines


def model_shape(config_source: str, task: str, *, revision: str | None = None,
                trust_remote_code: bool = False, num_labels: int | None = None,
                lora: dict | None = None) -> ModelShape:
    """The shape of the task's model, built from `config_source` (a folder or hub id with a
    config.json) on the meta device: exact parameter counts, no weights. `lora`: peft
    LoraConfig arguments when the job trains an adapter."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig

    from .tasks import task_for

    module = task_for(task)
    config = AutoConfig.from_pretrained(config_source, revision=revision,
                                        trust_remote_code=trust_remote_code)
    if num_labels:
        config.num_labels = num_labels
    with init_empty_weights():
        model = module.MODEL_CLASS.from_config(config, trust_remote_code=trust_remote_code)
    # Tied embeddings are one parameter, as in the loaded model (tied outside the context,
    # which would register the shared weight again as a new meta parameter).
    model.tie_weights()
    if lora is not None:
        from peft import LoraConfig, get_peft_model

        with init_empty_weights():
            model = get_peft_model(model, LoraConfig(task_type=module.LORA_TASK_TYPE, **lora))
    parameters = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    saved = config.to_dict()  # transformers 4 writes torch_dtype, 5 dtype
    dtype = str(saved.get("dtype") or saved.get("torch_dtype") or "float32"
                ).removeprefix("torch.")
    vocabulary_head = module.MODEL_CLASS.__name__ in ("AutoModelForCausalLM",
                                                      "AutoModelForMaskedLM")
    dpo = getattr(module, "REFERENCE_MODEL", False)
    return ModelShape(parameters=parameters, trainable=trainable,
                      weight_bytes=DTYPE_BYTES.get(dtype, 4), hidden_size=text.hidden_size,
                      layers=text.num_hidden_layers,
                      vocab_size=text.vocab_size if vocabulary_head else 0,
                      reference_copy=dpo and lora is None, paired=dpo)
