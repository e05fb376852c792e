"""Benchmark (not a test): does a task through ftjob train exactly like the plain script it
follows? Each task runs beside its plain script on the same data, model, seed and settings,
one process each, and the per-step training losses and the final eval loss are compared:

- masked-lm against bench/plain_mlm.py (run_mlm's style), on the pretrained MiniLM;
- sft against bench/plain_sft.py (TRL's SFTTrainer), on a tiny random-weight Qwen2 built
  by examples/make_tiny_decoders.py, chat data, loss on the assistant turns.

Prints the largest differences (target: below 1e-4).

    make bench-fidelity        # or: python -m bench.fidelity_bench
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.settings import REPO
from bench.trainer_bench import environment, model_path

DATA = REPO / "examples/data"
TRAINING = {"max_steps": 20, "per_device_train_batch_size": 8,
            "per_device_eval_batch_size": 16, "seed": 42, "logging_steps": 1,
            "report_to": "none"}


@dataclass
class Comparison:
    task: str
    plain_script: str
    plain_arguments: dict  # besides TRAINING and output_dir
    spec: dict  # the FineTuneJob spec, besides training, distributed and checkpoints
    learning_rate: float


def comparisons(decoders: dict[str, Path]) -> list[Comparison]:
    return [
        Comparison(
            "masked-lm", "bench/plain_mlm.py",
            {"model_name_or_path": model_path(), "train_file": DATA / "news-text.jsonl",
             "max_seq_length": 64, "validation_split_percentage": 10,
             "mlm_probability": 0.15, "max_train_samples": 400},
            {"model": {"name": model_path(), "task": "masked-lm"},
             "maskedLm": {"mlmProbability": 0.15, "blockSize": 64},
             "dataset": {"files": {"train": str(DATA / "news-text.jsonl")},
                         "textColumns": ["text"], "maxTrainSamples": 400,
                         "validationSplitPercentage": 10}},
            learning_rate=1e-4),
        Comparison(
            "sft", "bench/plain_sft.py",
            {"model_name_or_path": decoders["qwen2"],
             "train_file": DATA / "chat-train.jsonl", "eval_file": DATA / "chat-validation.jsonl",
             "max_train_samples": 400, "max_length": 128, "assistant_only_loss": True},
            {"model": {"name": str(decoders["qwen2"]), "task": "sft"},
             "dataset": {"files": {"train": str(DATA / "chat-train.jsonl"),
                                   "eval": str(DATA / "chat-validation.jsonl")},
                         "textColumns": ["messages"], "maxTrainSamples": 400,
                         "maxLength": 128}},
            learning_rate=1e-3),
    ]


def step_losses(log_history: list[dict]) -> dict[int, float]:
    return {entry["step"]: entry["loss"] for entry in log_history if "loss" in entry}


def run_plain(comparison: Comparison, work: Path) -> tuple[dict[int, float], float]:
    out = work / f"plain-{comparison.task}"
    arguments = {**comparison.plain_arguments, **TRAINING, "output_dir": out,
                 "learning_rate": comparison.learning_rate, "save_strategy": "no",
                 "use_cpu": True}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "1", str(REPO / comparison.plain_script)]
    for key, value in arguments.items():
        command += [f"--{key}", str(value)]
    subprocess.run(command, env=environment(), check=True, capture_output=True, cwd=REPO)
    history = json.loads((out / "history.json").read_text())
    return step_losses(history["log_history"]), history["eval"]["eval_loss"]


def run_ftjob(comparison: Comparison, work: Path) -> tuple[dict[int, float], float]:
    name = f"fidelity-{comparison.task}"
    job = {
        "apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {**comparison.spec,
                 "training": {**TRAINING, "learning_rate": comparison.learning_rate,
                              "save_steps": TRAINING["max_steps"], "eval_strategy": "no"},
                 "distributed": {"procsPerNode": 1}, "checkpoints": {"keep": 1}},
    }
    job_file = work / f"{name}.yaml"
    job_file.write_text(yaml.safe_dump(job))
    subprocess.run([sys.executable, "-m", "ftjob.cli", "run", str(job_file), "--run-root",
                    str(work / "runs")], env=environment(), check=True, capture_output=True,
                   cwd=REPO)
    run_dir = work / "runs" / name
    state = run_dir / "checkpoints" / f"checkpoint-{TRAINING['max_steps']}" / \
        "trainer_state.json"
    metrics = json.loads((run_dir / "model" / "metrics.json").read_text())
    return step_losses(json.loads(state.read_text())["log_history"]), metrics["eval_loss"]


def tiny_decoders(folder: Path) -> dict[str, Path]:
    spec = importlib.util.spec_from_file_location("make_tiny_decoders",
                                                  REPO / "examples/make_tiny_decoders.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make(folder)


def compare(comparison: Comparison, work: Path) -> bool:
    plain, plain_eval = run_plain(comparison, work)
    ours, our_eval = run_ftjob(comparison, work)
    print(f"{comparison.task} vs {comparison.plain_script}, {len(plain)} steps, 1 process, "
          f"seed {TRAINING['seed']}")
    if sorted(plain) != sorted(ours):
        print(f"  different logged steps: plain {sorted(plain)}, ftjob {sorted(ours)}")
        return False
    differences = {step: abs(plain[step] - ours[step]) for step in plain}
    worst = max(differences, key=differences.get)
    print(f"  first loss: plain {plain[min(plain)]:.6f}, ftjob {ours[min(ours)]:.6f}")
    print(f"  last loss:  plain {plain[max(plain)]:.6f}, ftjob {ours[max(ours)]:.6f}")
    print(f"  max per-step loss difference: {differences[worst]:.2e} (step {worst})")
    print(f"  eval loss difference: {abs(plain_eval - our_eval):.2e}")
    within = differences[worst] < 1e-4 and abs(plain_eval - our_eval) < 1e-4
    print("  within 1e-4" if within else "  NOT within 1e-4")
    return within


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["masked-lm", "sft"], action="append",
                        help="only these tasks (default: all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ftjob-fidelity-") as folder:
        work = Path(folder)
        results = [compare(comparison, work)
                   for comparison in comparisons(tiny_decoders(work / "decoders"))
                   if not args.task or comparison.task in args.task]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
