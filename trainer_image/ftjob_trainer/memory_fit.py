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
- activations, what autograd saves per token in each layer (as Korthikanti et al. count
  it, from the layer's own shape): the norms' and projections' inputs, q, k and v and the
  attention output for a fused attention kernel (no sequence-squared term: flash or
  memory-efficient attention, the GPU default), the MLP's intermediate tensors (two for
  GELU, four for a gated MLP such as Llama's), a byte per dropout mask; with gradient
  checkpointing each layer's input and one layer's full set; plus the embeddings' norm and
  the head's input, and the logits of a vocabulary head with the loss's fp32 copies; DPO
  runs chosen and rejected together.
  A 17-value GPT layer (4h MLP, dropout) comes out at the paper's 34 bytes per token and
  hidden unit at 16 bits;
- DPO without LoRA keeps a frozen reference copy of the model;
- overhead: the CUDA context and library workspaces (1 GiB) and allocator fragmentation
  (5% of the rest).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

GIB = 2**30
# The operator's question to the data check's pod: the job's Layout and the GPU memory of
# the nodes it may land on, as JSON.
FIT_REQUEST_ENV = "FTJOB_MEMORY_FIT"
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
CONTEXT_BYTES = 1 * GIB
FRAGMENTATION = 0.05
# Per logit beyond the logits themselves: log-softmax's fp32 output, and the fp32 copy of
# 16-bit logits that the loss takes.
LOG_SOFTMAX_BYTES = 4


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
    intermediate_size: int = 0    # the MLP's width; 0: 4 x hidden
    kv_size: int = 0              # keys' (and values') width; 0: hidden (no GQA)
    gated_mlp: bool = False       # gate and up projections (Llama, Qwen, Mistral)
    dropout: bool = True          # dropout after attention and MLP while training
    heads: int = 1
    attention_dropout: bool = False  # dropout on the attention probabilities

    def layer_values(self, sequence_length: int, scores_saved: bool) -> float:
        """Values autograd keeps per token for one layer (dropout masks: mask_bytes)."""
        h = self.hidden_size
        i = self.intermediate_size or 4 * h
        kv = self.kv_size or h
        attention = h + h + (h + 2 * kv) + h  # norm and q/k/v inputs, q k v, o_proj input
        mlp = h + h + (4 * i if self.gated_mlp else 2 * i)  # norm, fc input, intermediates
        values = attention + mlp
        if scores_saved:  # an unfused kernel keeps scores, softmax and dropout output
            values += 3 * self.heads * sequence_length
        return values

    def mask_bytes(self, sequence_length: int, scores_saved: bool) -> float:
        """Bytes of dropout masks per token for one layer."""
        masks = 2 * self.hidden_size if self.dropout else 0
        if scores_saved and self.attention_dropout:
            masks += self.heads * sequence_length
        return masks

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
    # An attention kernel that keeps the attention scores (eager attention; PyTorch's math
    # kernel, which CPUs run when attention has dropout); GPUs run fused kernels.
    attention_scores_saved: bool = False


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

    def describe(self) -> str:
        """The parts that hold anything, as `ftjob validate --fit` and MemoryFit say them."""
        return ", ".join(f"{name} {gib(value)}" for name, value in self.parts().items()
                         if value)


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
    scores = layout.attention_scores_saved
    one_layer = tokens * (shape.layer_values(layout.sequence_length, scores) * value_bytes
                          + shape.mask_bytes(layout.sequence_length, scores))
    if layout.gradient_checkpointing:
        activations = shape.layers * tokens * shape.hidden_size * value_bytes + one_layer
    else:
        activations = shape.layers * one_layer
    # Around the layers: the embeddings' (or final) norm input and the head's input, and
    # the embeddings' dropout mask.
    activations += tokens * (2 * shape.hidden_size * value_bytes
                             + (shape.hidden_size if shape.dropout else 0))
    logit_bytes = value_bytes + LOG_SOFTMAX_BYTES + (4 if layout.mixed_precision else 0)
    activations += tokens * shape.vocab_size * logit_bytes

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
    heads = text.num_attention_heads
    return ModelShape(
        parameters=parameters, trainable=trainable, weight_bytes=DTYPE_BYTES.get(dtype, 4),
        hidden_size=text.hidden_size, layers=text.num_hidden_layers,
        vocab_size=text.vocab_size if vocabulary_head else 0,
        reference_copy=dpo and lora is None, paired=dpo,
        intermediate_size=getattr(text, "intermediate_size", None) or 0,
        kv_size=text.hidden_size * (getattr(text, "num_key_value_heads", None) or heads)
        // heads,
        gated_mlp=any(name.endswith("gate_proj") for name, _ in model.named_modules()),
        dropout=_first(text, "hidden_dropout_prob", "hidden_dropout", "resid_pdrop") > 0,
        heads=heads,
        attention_dropout=_first(text, "attention_probs_dropout_prob", "attention_dropout",
                                 "attn_pdrop") > 0)


def _first(config, *names: str) -> float:
    """The first of `names` the config has (architectures name dropout differently)."""
    return next((float(getattr(config, name)) for name in names
                 if getattr(config, name, None) is not None), 0.0)


def fit_verdict(shape: ModelShape, layout: Layout, gpu_bytes: float, source: str) -> dict:
    """Whether the job fits, in the words the MemoryFit condition shows: the need by part,
    and for a job that does not fit, what each change would need."""
    need = estimate(shape, layout)
    parts = need.describe()
    if need.total <= gpu_bytes:
        return {"fits": True, "message": f"needs {gib(need.total)} per GPU of "
                f"{gib(gpu_bytes)} ({need.total / gpu_bytes:.0%}; {parts}); GPU memory: "
                f"{source}"}
    return {"fits": False, "message": f"needs {gib(need.total)} per GPU of {gib(gpu_bytes)} "
            f"({parts}; GPU memory: {source}). " + "; ".join(advice(shape, layout, gpu_bytes))}
