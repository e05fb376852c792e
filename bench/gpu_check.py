"""The prepared GPU check (run by bench/gpu_check.sh on a machine with one GPU, PyTorch and
transformers, and no internet): peak CUDA memory against `ftjob validate --fit`'s estimate
for a few layouts, and ftjob's throughput against a plain Trainer script.

A decoder of a real architecture (Llama: grouped-query attention, gated MLP) is built here
from a config with random weights, saved in bf16, with the byte-level tokenizer of
examples/make_tiny_decoders.py; no download. Each case is one `ftjob run` of the causal-lm
task on examples/data/news-text.jsonl (packed blocks), whose rank 0 reports the peak memory
`torch.cuda.max_memory_allocated()` saw. Printed per case: the estimate without the CUDA
context and allowance (which the allocator does not count), the measured peak, the ratio;
then the estimate's parts. Then plain Trainer (bench/plain_clm.py) against ftjob on the
same model, data, batch and steps: samples/s and the ratio.

    bash bench/gpu_check.sh            # on the GPU machine (about 5 minutes on an H200)
    python -m bench.gpu_check --smoke  # the same code on this machine's CPU, tiny sizes
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.settings import REPO

TEXT = REPO / "examples/data/news-text.jsonl"
GIB = 2**30

# (hidden, intermediate, layers, heads, key-value heads, block, batch, steps)
SIZES = {
    "gpu": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16,
                num_attention_heads=16, num_key_value_heads=4, block=512, batch=8, steps=30),
    "smoke": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, block=64, batch=4, steps=3),
}

CASES = {
    "bf16": {},
    "bf16, gradient checkpointing": {"training": {"gradientCheckpointing": True}},
    "bf16, LoRA r=16 (q, v)": {"peft": {"type": "lora", "r": 16, "alpha": 32,
                                        "targetModules": ["q_proj", "v_proj"]}},
    "bf16, ZeRO-2, one process": {"distributed": {"strategy": "deepspeed",
                                                  "deepspeed": {"zeroStage": 2}}},
}


def make_model(root: Path, size: dict) -> Path:
    """A random-weight Llama of `size`, saved in bf16 with the tiny decoders' tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    spec = importlib.util.spec_from_file_location("make_tiny_decoders",
                                                  REPO / "examples/make_tiny_decoders.py")
    decoders = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(decoders)
    tokenizer = decoders.build_tokenizer()
    tokenizer.model_max_length = size["block"]
    shape = {key: value for key, value in size.items()
             if key not in ("block", "batch", "steps")}
    config = LlamaConfig(vocab_size=len(tokenizer), max_position_embeddings=size["block"],
                         tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None, **shape)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    folder = root / "llama"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def training(size: dict, gpu: bool) -> dict:
    """TrainingArguments both sides run with (camelCase for the spec)."""
    return {"maxSteps": size["steps"], "perDeviceTrainBatchSize": size["batch"],
            "learningRate": 1e-4, "seed": 42, "loggingSteps": 10, "saveSteps": 10_000,
            "bf16": gpu, "reportTo": "none"}


def job(name: str, model: Path, root: Path, size: dict, gpu: bool, case: dict) -> dict:
    spec = {
        "model": {"name": str(model), "task": "causal-lm"},
        "causalLm": {"blockSize": size["block"]},
        "dataset": {"files": {"train": str(TEXT)}, "textColumns": ["text"]},
        "training": {**training(size, gpu), **case.get("training", {})},
        "distributed": {"gpusPerNode": 1 if gpu else 0, "procsPerNode": 1,
                        **case.get("distributed", {})},
        "checkpoints": {"uri": f"file://{root}/checkpoints/{name}", "keep": 1},
        "output": {"uri": f"file://{root}/models/{name}"},
    }
    if "peft" in case:
        spec["peft"] = case["peft"]
    return {"apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob",
            "metadata": {"name": name}, "spec": spec}


def environment() -> dict:
    path = os.pathsep.join([str(REPO / "operator"), str(REPO / "trainer_image"), str(REPO),
                            os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false", PYTHONPATH=path)


def run_ftjob(document: dict, root: Path) -> dict:
    """The finished event of one `ftjob run`."""
    name = document["metadata"]["name"]
    job_file = root / f"{name}.yaml"
    job_file.write_text(yaml.safe_dump(document))
    result = subprocess.run([sys.executable, "-m", "ftjob.cli", "run", str(job_file),
                             "--run-root", str(root / "runs")], env=environment(),
                            capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"ftjob run {name} failed:\n{result.stderr[-4000:]}")
    events = [json.loads(line) for line in
              (root / "runs" / name / "events.jsonl").read_text().splitlines()]
    return next(e for e in events if e["event"] == "finished")


def run_plain(model: Path, root: Path, size: dict, gpu: bool) -> dict:
    arguments = {"max_steps": size["steps"], "per_device_train_batch_size": size["batch"],
                 "learning_rate": 1e-4, "seed": 42, "logging_steps": 10,
                 "save_strategy": "no", "bf16": gpu, "use_cpu": not gpu,
                 "report_to": "none", "disable_tqdm": True}
    result_file = root / "plain.json"
    subprocess.run([sys.executable, str(REPO / "bench/plain_clm.py"), str(model), str(TEXT),
                    str(size["block"]), str(root / "plain-out"), str(result_file),
                    json.dumps(arguments)], env=environment(), check=True,
                   capture_output=True, cwd=REPO)
    return json.loads(result_file.read_text())["metrics"]


def estimate_of(document: dict):
    from ftjob.api.load import parse_job
    from ftjob.memory import layout_of, shape_of
    from ftjob_trainer.memory_fit import estimate

    parsed = parse_job(document)
    return estimate(shape_of(parsed), layout_of(parsed))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes on this machine's CPU: checks the script runs")
    args = parser.parse_args()
    import torch

    gpu = torch.cuda.is_available() and not args.smoke
    if not gpu and not args.smoke:
        print("No GPU here: run it on a GPU machine, or with --smoke to check the script",
              file=sys.stderr)
        return 2
    size = SIZES["gpu" if gpu else "smoke"]
    device = torch.cuda.get_device_name() if gpu else "CPU (smoke: no memory figures)"
    print(f"ftjob GPU check on {device}; torch {torch.__version__}")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ftjob-gpu-check-") as scratch:
        root = Path(scratch)
        model = make_model(root, size)
        print(f"model: Llama {size['num_hidden_layers']} layers x {size['hidden_size']}, "
              f"bf16, batch {size['batch']} x {size['block']} tokens, {size['steps']} steps")
        rows, details, throughput = [], [], {}
        for index, (label, case) in enumerate(CASES.items()):
            document = job(f"case-{index}", model, root, size, gpu, case)
            need = estimate_of(document)
            finished = run_ftjob(document, root)
            throughput.setdefault("ftjob", finished["metrics"]["train_samples_per_second"])
            # The allocator counts neither the CUDA context nor the allowance.
            expected = need.total - need.overhead
            peak = finished.get("peakGpuMemoryBytes")
            rows.append((label, expected / GIB, peak / GIB if peak else None,
                         peak / expected if peak else None))
            details.append(f"  {label}: {need.describe()}")
        plain = run_plain(model, root, size, gpu)
        throughput["plain"] = plain["train_samples_per_second"]

    print(f"\n{'case':32} {'estimate GiB':>12} {'measured GiB':>12} {'measured/est':>12}")
    for label, expected, peak, ratio in rows:
        shown = (f"{peak:12.2f} {ratio:12.2f}") if peak is not None else \
            f"{'-':>12} {'-':>12}"
        print(f"{label:32} {expected:12.2f} {shown}")
    print("estimate parts (total with the CUDA context and 5%):")
    print("\n".join(details))
    print(f"\nthroughput (case 'bf16'): ftjob {throughput['ftjob']:.1f} samples/s, plain "
          f"Trainer {throughput['plain']:.1f} samples/s, ratio "
          f"{throughput['ftjob'] / throughput['plain']:.3f}")
    print(f"took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
