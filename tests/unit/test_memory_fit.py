"""The GPU memory estimate: the per-GPU parts by strategy (pure), the model's shape from its
config.json on the meta device (exact counts, no weights), and `ftjob validate --fit`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ftjob.cli import main
from ftjob.memory import parse_memory
from ftjob_trainer.memory_fit import GIB, Layout, ModelShape, advice, estimate, model_shape
from tests.conftest import EXAMPLES

P = 1_000_000
FULL = ModelShape(parameters=P, trainable=P, weight_bytes=4, hidden_size=256, layers=4,
                  vocab_size=0)
ONE = Layout(world_size=1, procs_per_node=1, micro_batch=2, sequence_length=16)
# Around FULL's layers at fp32 for ONE's 32 tokens: the embeddings' norm and the head's
# input, and the embeddings' dropout mask.
EDGES = 2 * 16 * (2 * 256 * 4 + 256)


@pytest.mark.parametrize("layout, weights, gradients, optimizer", [
    (ONE, 4 * P, 4 * P, 8 * P),                              # fp32 AdamW: 16 bytes a weight
    (dataclasses.replace(ONE, world_size=2), 4 * P, 8 * P, 8 * P),  # + DDP's bucket copy
    # ZeRO with bf16: 16-bit weights and gradients, 12 bytes of fp32 state, split by stage
    (Layout(4, 4, "deepspeed", zero_stage=1, mixed_precision=True), 2 * P, 2 * P, 3 * P),
    (Layout(4, 4, "deepspeed", zero_stage=2, mixed_precision=True), 2 * P, P / 2, 3 * P),
    (Layout(4, 4, "deepspeed", zero_stage=3, mixed_precision=True), P / 2 + P / 4 * 2,
     P / 2, 3 * P),                                          # + one gathered layer
    (Layout(4, 4, "deepspeed", zero_stage=2, mixed_precision=True, offload_optimizer=True),
     2 * P, P / 2, 0),
    (Layout(4, 4, "fsdp", fsdp_sharding="full_shard"), P + P, P, 2 * P),
    (Layout(4, 4, "fsdp", fsdp_sharding="shard_grad_op"), 4 * P, P, 2 * P),
    (Layout(8, 4, "fsdp", fsdp_sharding="hybrid_shard"), P + P, P, 2 * P),  # within a node
])
def test_weights_gradients_and_optimizer_states_by_strategy(layout, weights, gradients,
                                                            optimizer):
    need = estimate(FULL, layout)
    assert (need.weights, need.gradients, need.optimizer) == (weights, gradients, optimizer)


def test_lora_trains_fp32_adapters_on_a_frozen_16_bit_base():
    lora = dataclasses.replace(FULL, trainable=P // 100, weight_bytes=2)
    need = estimate(lora, ONE)
    assert need.weights == (P - P // 100) * 2 + P // 100 * 4
    assert (need.gradients, need.optimizer) == (P // 100 * 4, P // 100 * 8)


def test_activations_grow_with_tokens_and_checkpointing_keeps_layer_inputs():
    full = estimate(FULL, ONE).activations - EDGES
    # layers x tokens x (16 values of 4 bytes and 2 one-byte dropout masks per hidden unit)
    assert full == 4 * 2 * 16 * (16 * 256 * 4 + 2 * 256)
    assert estimate(FULL, dataclasses.replace(ONE, micro_batch=4)).activations == \
        2 * (full + EDGES)
    checkpointed = estimate(FULL, dataclasses.replace(ONE, gradient_checkpointing=True))
    assert checkpointed.activations == 4 * 2 * 16 * 256 * 4 + full / 4 + EDGES
    half = estimate(FULL, dataclasses.replace(ONE, mixed_precision=True)).activations
    # Korthikanti et al.'s 34 bytes at 16 bits
    assert half == 4 * 2 * 16 * 34 * 256 + 2 * 16 * (2 * 256 * 2 + 256)


def test_a_gated_mlp_with_grouped_keys_and_no_dropout_keeps_what_llama_keeps():
    llama = dataclasses.replace(FULL, intermediate_size=688, kv_size=64, gated_mlp=True,
                                dropout=False)
    per_token = (256 + 256 + (256 + 2 * 64) + 256) + (256 + 256 + 4 * 688)
    assert estimate(llama, ONE).activations == 4 * 2 * 16 * per_token * 4 + \
        2 * 16 * 2 * 256 * 4


def test_an_unfused_attention_kernel_keeps_the_scores():
    scored = dataclasses.replace(FULL, heads=4, attention_dropout=True)
    extra = estimate(scored, dataclasses.replace(ONE, attention_scores_saved=True)).activations \
        - estimate(scored, ONE).activations
    assert extra == 4 * 2 * 16 * (3 * 4 * 16 * 4 + 4 * 16)  # scores, softmax, dropout + mask


def test_a_vocabulary_head_adds_its_logits_and_dpo_its_reference_and_pairs():
    lm = dataclasses.replace(FULL, vocab_size=1000)
    assert estimate(lm, ONE).activations - estimate(FULL, ONE).activations == \
        2 * 16 * 1000 * (4 + 4)  # fp32 logits and log-softmax
    dpo = dataclasses.replace(FULL, reference_copy=True, paired=True)
    need = estimate(dpo, ONE)
    assert need.reference == 4 * P and need.activations == 2 * estimate(FULL, ONE).activations


LLAMA_7B = ModelShape(parameters=6_738_415_616, trainable=6_738_415_616, weight_bytes=2,
                      hidden_size=4096, layers=32, vocab_size=32000)


def test_a_7b_model_on_8_gpus_of_80_gib_needs_changes_and_says_which():
    layout = Layout(8, 8, "ddp", mixed_precision=True, micro_batch=4, sequence_length=2048)
    assert estimate(LLAMA_7B, layout).total > 80 * GIB
    lines = advice(LLAMA_7B, layout, 80 * GIB)
    assert any(line.startswith("distributed.strategy: deepspeed with zeroStage 3 needs")
               for line in lines), lines
    assert any(line.startswith("training.gradientCheckpointing: true needs") for line in lines)
    assert any("(fits" in line for line in lines), lines
    assert lines[-1].startswith("spec.peft (LoRA)")


def test_the_shape_is_counted_exactly_without_weights(minilm_path):
    from transformers import AutoModelForSequenceClassification

    real = AutoModelForSequenceClassification.from_pretrained(minilm_path, num_labels=3)
    shape = model_shape(minilm_path, "sequence-classification", num_labels=3)
    assert shape.parameters == shape.trainable == sum(p.numel() for p in real.parameters())
    assert (shape.hidden_size, shape.layers, shape.weight_bytes, shape.vocab_size) == \
        (384, 6, 4, 0)
    lora = model_shape(minilm_path, "sequence-classification", num_labels=3,
                       lora={"r": 8, "lora_alpha": 16})
    assert lora.trainable < shape.parameters / 100 < lora.parameters
    assert model_shape(minilm_path, "masked-lm").vocab_size == 30522


@pytest.mark.parametrize("text, value", [("80Gi", 80 * GIB), ("81920Mi", 80 * GIB),
                                         ("16G", 16e9)])
def test_memory_sizes(text, value):
    assert parse_memory(text) == value


def test_validate_fit_reports_the_parts_and_whether_it_fits(capsys, minilm_path, tmp_path):
    import yaml

    job = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())
    job["spec"]["model"]["name"] = minilm_path  # the hub id's files, offline
    quickstart = str(tmp_path / "quickstart.yaml")
    Path(quickstart).write_text(yaml.safe_dump(job))
    assert main(["validate", "--fit", quickstart, "--gpu-memory", "24Gi"]) == 0
    out = capsys.readouterr().out
    assert "22.7M parameters, ddp on 2 processes, batch 32 x 64 tokens" in out, out
    assert "per GPU: weights 0.08 GiB, gradients 0.17 GiB" in out and "fits in 24.0 GiB" in out
    assert main(["validate", "--fit", quickstart, "--gpu-memory", "1Gi"]) == 1
    out = capsys.readouterr().out
    assert "does not fit: needs 1.8 GiB per GPU of 1.0 GiB" in out
    with pytest.raises(SystemExit):
        main(["validate", "--fit", quickstart, "--gpu-memory", "lots"])
    assert "write it as 80Gi" in capsys.readouterr().err


B7 = 6_738_415_616  # Llama-2-7B's parameters: 32 layers of 4096, vocabulary 32000, 16-bit
LORA_QV_R16 = 32 * 2 * 16 * (4096 + 4096)  # r=16 on q_proj and v_proj of every layer


@pytest.mark.parametrize("case, shape, layout, parts", [
    ("DDP on 8 GPUs, bf16", LLAMA_7B, Layout(8, 8, "ddp", mixed_precision=True),
     (2 * B7, 2 * 2 * B7, 2 * 2 * B7)),       # 16-bit grads + DDP bucket, AdamW in 16 bits
    ("ZeRO-2 on 8", LLAMA_7B, Layout(8, 8, "deepspeed", zero_stage=2, mixed_precision=True),
     (2 * B7, 2 * B7 / 8, 12 * B7 / 8)),
    ("ZeRO-3 on 8", LLAMA_7B, Layout(8, 8, "deepspeed", zero_stage=3, mixed_precision=True),
     (2 * B7 / 8 + 2 * B7 / 32, 2 * B7 / 8, 12 * B7 / 8)),  # + one gathered layer
    ("LoRA r=16 on q,v, one GPU",
     dataclasses.replace(LLAMA_7B, parameters=B7 + LORA_QV_R16, trainable=LORA_QV_R16),
     Layout(1, 1, "ddp", mixed_precision=True),
     (2 * B7 + 4 * LORA_QV_R16, 4 * LORA_QV_R16, 8 * LORA_QV_R16)),  # fp32 adapters
])
def test_llama_7b_by_hand(case, shape, layout, parts):
    need = estimate(shape, layout)
    assert (need.weights, need.gradients, need.optimizer) == pytest.approx(parts), case
