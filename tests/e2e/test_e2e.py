"""End to end: `kubectl apply` a FineTuneJob; the operator creates an Indexed Job of 2 nodes
x 1 process; the kubelet stand-in runs the real trainer (torchrun rendezvous over
loopback, the pretrained MiniLM, checkpoints in SeaweedFS); the trainer's status sink moves
`status.progress` and sets `status.metrics`; the job ends Succeeded. A variant kills one
node's processes mid-training and checks that attempt 2 resumes from the checkpoint the
status recorded."""

from __future__ import annotations

import re
import signal

import pytest
import yaml

from tests.conftest import EXAMPLES
from tests.support.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def cluster_job(name: str, namespace: str, model_path: str, endpoint: str,
                max_steps: int) -> dict:
    return {
        "apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": name},
        "spec": {
            "model": {"name": model_path, "numLabels": 2},
            "dataset": {"files": {"train": str(EXAMPLES / "data/paraphrase-train.csv"),
                                  "eval": str(EXAMPLES / "data/paraphrase-validation.csv")},
                        "textColumns": ["sentence1", "sentence2"], "maxLength": 48,
                        "maxTrainSamples": 640, "maxEvalSamples": 32},
            "training": {"maxSteps": max_steps, "perDeviceTrainBatchSize": 8,
                         "saveSteps": 4, "loggingSteps": 1, "evalStrategy": "no",
                         "seed": 3},
            "metrics": ["accuracy"],
            "distributed": {"nodes": 2, "procsPerNode": 1},
            "checkpoints": {"uri": f"s3://e2e/{namespace}/{name}", "endpointUrl": endpoint,
                            "keep": 2},
            "podTemplate": {"nodeSelector": {"kubernetes.io/hostname": "local-node-0"}},
        },
    }


def status_of(cluster, namespace: str, name: str) -> dict:
    return cluster.get("finetunejob", name, "-n", namespace).get("status", {})


def succeeded_with_moving_progress(cluster, namespace: str, name: str) -> dict:
    """The job's status once it ended Succeeded, having shown at least two steps while
    Running."""
    steps_seen = set()

    def finished():
        status = status_of(cluster, namespace, name)
        if status.get("phase") == "Running" and status.get("progress"):
            steps_seen.add(status["progress"]["step"])
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = eventually(finished, timeout=600, interval=0.5, what="the job to finish")
    assert status["phase"] == "Succeeded", status.get("message")
    assert len(steps_seen) >= 2, f"progress did not move while running: {steps_seen}"
    return status


def test_kubectl_apply_trains_on_two_nodes_and_reports_progress(
        cluster, namespace, operator, kubelet, storage, minilm_path, tmp_path):
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(cluster_job("e2e", namespace, minilm_path,
                                                   storage.endpoint, max_steps=16)))
    cluster.kubectl("apply", "-n", namespace, "-f", str(job_file))
    status = succeeded_with_moving_progress(cluster, namespace, "e2e")
    assert status["progress"]["step"] == 16 and status["progress"]["percent"] == 100.0
    assert "eval_accuracy" in status["metrics"] and "train_loss" in status["metrics"]
    assert status["checkpoint"]["step"] == 16
    assert status["checkpoint"]["uri"].endswith(f"e2e/{namespace}/e2e/checkpoint-16")
    keys = storage.keys("e2e", f"{namespace}/e2e/")
    assert f"{namespace}/e2e/checkpoint-16/_COMPLETE.json" in keys
    for exported in ("_COMPLETE.json", "config.json", "model.safetensors", "metrics.json"):
        assert f"{namespace}/e2e/model/{exported}" in keys, (exported, sorted(keys))
    waited = cluster.kubectl("wait", "--for=condition=Succeeded", "finetunejob/e2e", "-n",
                             namespace, "--timeout=1s", check=False)
    assert waited.returncode == 0


def test_a_killed_node_restarts_the_group_from_the_recorded_checkpoint(
        cluster, namespace, operator, kubelet, storage, minilm_path, tmp_path):
    job = cluster_job("kill", namespace, minilm_path, storage.endpoint, max_steps=60)
    cluster.apply(job, namespace=namespace)
    recorded = eventually(lambda: status_of(cluster, namespace, "kill").get("checkpoint"),
                          timeout=400, interval=0.5, what="a checkpoint on status")
    pod_1 = cluster.get("pods", "-n", namespace, "-l",
                        "ftjob.dev/job-name=kill,ftjob.dev/attempt=1,"
                        "batch.kubernetes.io/job-completion-index=1")["items"][0]
    kubelet.kill(pod_1["metadata"]["name"], signal.SIGKILL)

    status = eventually(lambda: (lambda s: s if s.get("phase") in ("Succeeded", "Failed")
                                 else None)(status_of(cluster, namespace, "kill")),
                        timeout=600, interval=1, what="the job to finish")
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["attempt"] == 2 and status["restarts"] == 1
    restart = next(c for c in status["conditions"] if c["type"] == "Restarting")
    assert restart["reason"] in ("Killed", "NetworkTimeout"), restart
    attempt_2 = cluster.get("job", "kill-attempt-2", "-n", namespace)
    resume_from = attempt_2["metadata"]["annotations"]["ftjob.dev/resume-from"]
    resume_step = int(resume_from.rsplit("-", 1)[1])
    assert resume_step >= recorded["step"]
    rank_0 = cluster.get("pods", "-n", namespace, "-l",
                         "ftjob.dev/job-name=kill,ftjob.dev/attempt=2,"
                         "batch.kubernetes.io/job-completion-index=0")["items"][0]
    log = kubelet.log(rank_0["metadata"]["name"])
    resumed = re.search(r"Resuming from \S+ \(step (\d+)\)", log)
    assert resumed, log[-3000:]
    assert int(resumed.group(1)) == resume_step
    assert status["progress"]["step"] == 60


def test_your_own_script_from_storage_trains_on_two_nodes_with_status_and_export(
        cluster, namespace, operator, kubelet, storage, minilm_path, tmp_path):
    """spec.script: the course's custom loop, fetched from storage by each node's
    supervisor, reports progress and checkpoints (both nodes' parts) onto the status and is
    exported when it exits 0."""
    storage.client().put_object(Bucket="e2e", Key=f"{namespace}/scripts/train.py",
                                Body=(EXAMPLES / "custom-loop" / "train.py").read_bytes())
    job = cluster_job("own-script", namespace, minilm_path, storage.endpoint, max_steps=0)
    spec = job["spec"]
    for task_only in ("training", "metrics"):
        del spec[task_only]
    spec["model"] = {"name": minilm_path}
    spec["dataset"] = {"files": spec["dataset"]["files"]}
    spec["script"] = {"path": f"s3://e2e/{namespace}/scripts/train.py",
                      "args": ["--max-steps", "8", "--save-steps", "4", "--batch-size", "8"]}
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(job))
    cluster.kubectl("apply", "-n", namespace, "-f", str(job_file))
    status = succeeded_with_moving_progress(cluster, namespace, "own-script")
    assert status["progress"]["step"] == 8
    assert 0 < status["metrics"]["eval_accuracy"] <= 1
    assert status["checkpoint"]["step"] == 8
    keys = storage.keys("e2e", f"{namespace}/own-script/")
    for node in (0, 1):  # each node uploaded its part
        assert any(key.startswith(f"{namespace}/own-script/checkpoint-8/") and
                   key.endswith(f"random_states_{node}.pkl") for key in keys), sorted(keys)
    assert f"{namespace}/own-script/checkpoint-8/_COMPLETE.json" in keys
    for exported in ("_COMPLETE.json", "config.json", "model.safetensors"):
        assert f"{namespace}/own-script/model/{exported}" in keys, (exported, sorted(keys))
