"""Benchmark (not a test): does a task through ftjob train exactly like the plain script it
follows? The masked-lm task runs beside bench/plain_mlm.py (run_mlm's style) on the same
data, model, seed and settings, one process each, and the per-step training losses and the
final eval loss are compared. Prints the largest difference (target: below 1e-4).

    make bench-fidelity        # or: python -m bench.fidelity_bench
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from bench.settings import REPO
from bench.trainer_bench import environment, model_path

TEXT_FILE = str(REPO / "examples/data/news-text.jsonl")
MLM = {"max_seq_length": 64, "validation_split_percentage": 10, "mlm_probability": 0.15,
       "max_train_samples": 400}
TRAINING = {"max_steps": 20, "per_device_train_batch_size": 8,
            "per_device_eval_batch_size": 16, "learning_rate": 1e-4, "seed": 42,
            "logging_steps": 1, "report_to": "none", "use_cpu": True}


def step_losses(log_history: list[dict]) -> dict[int, float]:
    return {entry["step"]: entry["loss"] for entry in log_history if "loss" in entry}


def run_plain(work: Path) -> tuple[dict[int, float], float]:
    out = work / "plain"
    arguments = {"model_name_or_path": model_path(), "train_file": TEXT_FILE,
                 "output_dir": str(out), "save_strategy": "no", **MLM, **TRAINING}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "1", str(REPO / "bench/plain_mlm.py")]
    for key, value in arguments.items():
        command += [f"--{key}", str(value)]
    subprocess.run(command, env=environment(), check=True, capture_output=True, cwd=REPO)
    history = json.loads((out / "history.json").read_text())
    return step_losses(history["log_history"]), history["eval"]["eval_loss"]


def run_ftjob(work: Path) -> tuple[dict[int, float], float]:
    training = {key: value for key, value in TRAINING.items() if key != "use_cpu"}
    job = {
        "apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob",
        "metadata": {"name": "fidelity-mlm"},
        "spec": {
            "model": {"name": model_path(), "task": "masked-lm"},
            "maskedLm": {"mlmProbability": MLM["mlm_probability"],
                         "blockSize": MLM["max_seq_length"]},
            "dataset": {"files": {"train": TEXT_FILE}, "textColumns": ["text"],
                        "maxTrainSamples": MLM["max_train_samples"],
                        "validationSplitPercentage": MLM["validation_split_percentage"]},
            "training": {**training, "save_steps": TRAINING["max_steps"],
                         "eval_strategy": "no"},
            "distributed": {"procsPerNode": 1},
            "checkpoints": {"keep": 1},
        },
    }
    job_file = work / "fidelity-mlm.yaml"
    job_file.write_text(yaml.safe_dump(job))
    subprocess.run([sys.executable, "-m", "ftjob.cli", "run", str(job_file), "--run-root",
                    str(work / "runs")], env=environment(), check=True, capture_output=True,
                   cwd=REPO)
    run_dir = work / "runs" / "fidelity-mlm"
    state = run_dir / "checkpoints" / f"checkpoint-{TRAINING['max_steps']}" / \
        "trainer_state.json"
    losses = step_losses(json.loads(state.read_text())["log_history"])
    metrics = json.loads((run_dir / "model" / "metrics.json").read_text())
    return losses, metrics["eval_loss"]


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory(prefix="ftjob-fidelity-") as folder:
        work = Path(folder)
        plain, plain_eval = run_plain(work)
        ours, our_eval = run_ftjob(work)
    if sorted(plain) != sorted(ours):
        print(f"different logged steps: plain {sorted(plain)}, ftjob {sorted(ours)}")
        return 1
    differences = {step: abs(plain[step] - ours[step]) for step in plain}
    worst = max(differences, key=differences.get)
    print(f"masked-lm vs run_mlm-style script, {len(plain)} steps, 1 process, seed "
          f"{TRAINING['seed']}")
    print(f"  first loss: plain {plain[min(plain)]:.6f}, ftjob {ours[min(ours)]:.6f}")
    print(f"  last loss:  plain {plain[max(plain)]:.6f}, ftjob {ours[max(ours)]:.6f}")
    print(f"  max per-step loss difference: {differences[worst]:.2e} (step {worst})")
    print(f"  eval loss difference: {abs(plain_eval - our_eval):.2e}")
    within = differences[worst] < 1e-4
    print("  within 1e-4" if within else "  NOT within 1e-4")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
