"""End to end: `kubectl apply` a FineTuneJob; the operator creates an Indexed Job of 2 nodes
x 1 process; the kubelet stand-in runs the real trainer (torchrun rendezvous over
loopback, the pretrained MiniLM, checkpoints in SeaweedFS); the trainer's status sink moves
`status.progress` and sets `status.metrics`; the job ends Succeeded. A variant kills one
node's processes mid-training and checks that attempt 2 resumes from the checkpoint the
status recorded."""

from __future__ import annotations

import json
import re
import signal
import threading

import pytest
import yaml
from kubernetes import client, config, watch
from urllib3.exceptions import ProtocolError

from ftjob.cli import main
from ftjob.client import Client, PhaseChanged, Progressed
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
        cluster, namespace, operator, kubelet, storage, minilm_path, tmp_path, capsys,
        monkeypatch):
    job_file = tmp_path / "job.yaml"
    job = cluster_job("e2e", namespace, minilm_path, storage.endpoint, max_steps=16)
    job["spec"]["training"]["reportTo"] = ["tensorboard"]
    job_file.write_text(yaml.safe_dump(job))
    cluster.kubectl("apply", "-n", namespace, "-f", str(job_file))
    sdk = Client(namespace=namespace, kubeconfig=str(cluster.kubeconfig))
    events = []
    watcher = threading.Thread(target=lambda: events.extend(sdk.watch("e2e", timeout=600)))
    watcher.start()
    status = succeeded_with_moving_progress(cluster, namespace, "e2e")
    assert status["progress"]["step"] == 16 and status["progress"]["percent"] == 100.0
    watcher.join(timeout=60)
    # The SDK saw the real trainer's progress in order, and the job's phases.
    steps = [event.progress.step for event in events if isinstance(event, Progressed)]
    assert len(steps) >= 2 and steps == sorted(set(steps)) and steps[-1] == 16, steps
    assert [e.phase for e in events if isinstance(e, PhaseChanged)][-1] == "Succeeded"
    # Logs of one node, through the API server from the node's kubelet.
    pods = {pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]:
            pod["metadata"]["name"] for pod in cluster.get(
                "pods", "-n", namespace, "-l", "ftjob.dev/job-name=e2e,ftjob.dev/attempt=1"
            )["items"]}
    node_1 = list(sdk.logs("e2e", node=1))
    assert node_1 == kubelet.log(pods["1"]).rstrip("\n").split("\n")
    assert node_1 != kubelet.log(pods["0"]).rstrip("\n").split("\n")
    assert main(["logs", "e2e", "--node", "1", "-n", namespace, "--kubeconfig",
                 str(cluster.kubeconfig)]) == 0
    assert capsys.readouterr().out.rstrip("\n").split("\n") == node_1
    assert "ftjob data check passed:" in "\n".join(sdk.logs("e2e", attempt=0))
    # The data check ran first, in its own pod, and its report is on the condition.
    checked = next(c for c in status["conditions"] if c["type"] == "DataChecked")
    assert checked["status"] == "True", checked
    assert checked["message"].startswith("train 640 rows -> 640 samples"), checked
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
    history_plot_and_download(sdk, cluster, storage, tmp_path, monkeypatch, capsys)


def history_plot_and_download(sdk, cluster, storage, tmp_path, monkeypatch, capsys):
    """The metric history rank 0 kept in storage, its plot, and the exported model, read
    from this machine with its own credentials as a user's laptop would."""
    for key, value in storage.env.items():
        monkeypatch.setenv(key, value)
    history = sdk.history("e2e")
    steps, losses = history.training("loss")
    progress = [(e["step"], e.get("loss")) for e in history.events if e["event"] == "progress"]
    assert steps == list(range(1, 17)), progress  # loggingSteps 1
    assert all(loss > 0 for loss in losses)
    assert [step for step, _ in progress] == sorted(step for step, _ in progress)
    assert history.checkpoints() == [4, 8, 12, 16] and history.restarts() == []
    kube_args = ["-n", sdk.namespace, "--kubeconfig", str(cluster.kubeconfig)]
    picture = tmp_path / "curves.png"
    assert main(["plot", "e2e", "-o", str(picture), *kube_args]) == 0
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from ftjob.history import plot
    (loss_line,) = [line for line in plot(history, "e2e").axes[0].get_lines()
                    if line.get_label() == "loss"]
    assert (list(loss_line.get_xdata()), list(loss_line.get_ydata())) == (steps, losses)
    # report_to tensorboard: its files beside the history, the same losses.
    board = f"{sdk.namespace}/e2e/tensorboard/attempt-1/"
    files = [key for key in storage.keys("e2e", board) if "tfevents" in key]
    assert files, storage.keys("e2e", sdk.namespace)
    local = tmp_path / "tensorboard"
    local.mkdir()
    for key in files:  # the Trainer opens a second writer for the evaluation after training
        storage.client().download_file("e2e", key, str(local / key.rsplit("/", 1)[1]))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    accumulator = EventAccumulator(str(local))
    accumulator.Reload()
    scalars = accumulator.Scalars("train/loss")
    assert [s.step for s in scalars] == steps
    assert all(abs(s.value - loss) < 1e-4 for s, loss in zip(scalars, losses))
    assert main(["download", "e2e", str(tmp_path / "model"), *kube_args]) == 0
    assert "Downloaded e2e's model" in capsys.readouterr().out
    for exported in ("config.json", "model.safetensors", "metrics.json"):
        assert (tmp_path / "model" / exported).is_file(), exported


SAVE_STEPS = 8


def test_a_killed_node_restarts_the_group_from_the_recorded_checkpoint(
        cluster, namespace, operator, kubelet, storage, minilm_path, tmp_path, monkeypatch):
    job = cluster_job("kill", namespace, minilm_path, storage.endpoint, max_steps=60)
    # Saves far enough apart that each upload (seconds here) ends before the next save.
    job["spec"]["training"]["saveSteps"] = SAVE_STEPS
    cluster.apply(job, namespace=namespace)
    recorded = eventually(lambda: status_of(cluster, namespace, "kill").get("checkpoint"),
                          timeout=400, interval=0.5, what="a checkpoint on status")
    pod_1 = cluster.get("pods", "-n", namespace, "-l",
                        "ftjob.dev/job-name=kill,ftjob.dev/attempt=1,"
                        "batch.kubernetes.io/job-completion-index=1")["items"][0]
    pod_0 = cluster.get("pods", "-n", namespace, "-l",
                        "ftjob.dev/job-name=kill,ftjob.dev/attempt=1,"
                        "batch.kubernetes.io/job-completion-index=0")["items"][0]
    # Killed two or more steps after a complete checkpoint and before the next save, as
    # rank 0's own event log shows, so that the attempt loses work the next one trains again.
    (events_file,) = kubelet.files(pod_0["metadata"]["name"]).rglob("events.jsonl")
    eventually(lambda: 2 <= steps_past_checkpoint(events_file) < SAVE_STEPS, timeout=120,
               interval=0.1, what="two steps after a checkpoint")
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
    # The history in storage spans both attempts: attempt 2 marked where it resumed.
    for key, value in storage.env.items():
        monkeypatch.setenv(key, value)
    history = Client(namespace=namespace, kubeconfig=str(cluster.kubeconfig)).history("kill")
    assert history.restarts() == [(2, resume_step)]
    assert {e["attempt"] for e in history.events if e["event"] == "progress"} == {1, 2}, \
        kubelet.log(pod_0["metadata"]["name"])[-5000:]
    assert history.training("loss")[0][-1] == 60
    # Attempt 1's events as its rank 0 wrote them (storage has them up to 10 s later, so a
    # rank killed in between leaves them only on its node).
    killed_job_goodput(cluster.get("finetunejob", "kill", "-n", namespace),
                       [json.loads(line) for line in events_file.read_text().splitlines()])


def steps_past_checkpoint(events_file) -> int:
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    saved = [e["step"] for e in events if e["event"] == "checkpoint"]
    steps = [e["step"] for e in events if e["event"] == "progress"]
    return steps[-1] - saved[-1] if saved and steps else -1


def killed_job_goodput(job: dict, events: list[dict]) -> None:
    """Where the killed job's time went: the training attempt 1 did after its last complete
    checkpoint is recompute, within one logging interval of what its rank 0 recorded, and
    the causes add up to the wall time from creation to completion."""
    from ftjob.goodput import CAUSES, parse_moment

    ledger = job["status"]["goodput"]
    wall = (parse_moment(job["status"]["completionTime"]) -
            parse_moment(job["metadata"]["creationTimestamp"])).total_seconds()
    parts = {cause: ledger[f"{cause}Seconds"] for cause in CAUSES}
    assert abs(sum(parts.values()) - wall) <= 0.02 * wall, (parts, wall)
    assert parts["productive"] > 0 and parts["startup"] > 0 and parts["restart"] > 0, parts
    assert ledger["ratio"] == round(parts["productive"] / ledger["wallSeconds"], 4)

    first = [e for e in events if e.get("attempt") == 1]
    saved = [e for e in first if e["event"] == "checkpoint"]
    assert saved, [(e["event"], e.get("step")) for e in first]
    kept = saved[-1]
    steps = {e["step"]: e for e in first if e["event"] == "progress"}
    last = max(steps)
    at = {step: parse_moment(event["time"]) for step, event in steps.items()}
    # From the end of the kept checkpoint's step to the last step reported, less the saves
    # in between (rank 0's clock separates those).
    stalls = steps[last]["timing"]["checkpointSeconds"] - \
        steps[kept["step"]]["timing"]["checkpointSeconds"]
    lost = (at[last] - at[kept["step"]]).total_seconds() - stalls
    interval = max((at[step] - at[step - 1]).total_seconds() for step in at if step - 1 in at)
    print(f"goodput of the killed job: {parts}, wall {wall:.1f} s; recompute "
          f"{parts['recompute']:.2f} s, history {lost:.2f} s, logging interval {interval:.2f} s")
    assert lost >= interval, ("the kill came too soon after the checkpoint to test anything",
                              [(e["event"], e.get("step"), e["time"]) for e in first][-12:])
    assert abs(parts["recompute"] - lost) <= interval, (parts["recompute"], lost, interval)


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


class PodsSeen:
    """Every pod created in a namespace while it runs, from an API watch (not a listing at
    the end, which would miss pods already deleted)."""

    def __init__(self, cluster, namespace: str):
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        self.core, self.namespace = client.CoreV1Api(api), namespace
        self.pods: dict[str, dict] = {}
        self.stopped = False
        self.watch = watch.Watch()
        start = self.core.list_namespaced_pod(namespace).metadata.resource_version
        self.thread = threading.Thread(target=self._run, args=(start,), daemon=True)
        self.thread.start()

    def _run(self, resource_version: str) -> None:
        try:
            for event in self.watch.stream(self.core.list_namespaced_pod, self.namespace,
                                           resource_version=resource_version,
                                           timeout_seconds=600):
                pod = event["object"]
                self.pods[pod.metadata.name] = {
                    "labels": pod.metadata.labels or {},
                    "limits": pod.spec.containers[0].resources.limits or {}}
        except ProtocolError:
            if not self.stopped:
                raise

    def stop(self) -> dict[str, dict]:
        self.stopped = True
        self.watch.stop()
        self.thread.join(timeout=10)
        return self.pods


def finished_with_pods_seen(cluster, namespace: str, job: dict) -> tuple[dict, dict]:
    """Applies the job; its final status and every pod created meanwhile."""
    seen = PodsSeen(cluster, namespace)
    cluster.apply(job, namespace=namespace)
    name = job["metadata"]["name"]
    status = eventually(lambda: (lambda s: s if s.get("phase") in ("Succeeded", "Failed")
                                 else None)(status_of(cluster, namespace, name)),
                        timeout=300, interval=0.5, what="the job to finish")
    return status, seen.stop()


def test_data_without_its_column_fails_the_job_before_any_gpu_pod_exists(
        cluster, namespace, operator, kubelet, storage, minilm_path):
    job = cluster_job("bad-data", namespace, minilm_path, storage.endpoint, max_steps=4)
    job["spec"]["dataset"]["textColumns"] = ["question", "sentence2"]
    job["spec"]["distributed"]["gpusPerNode"] = 1  # what the attempt's pods would request
    status, pods = finished_with_pods_seen(cluster, namespace, job)
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidDataset", failed
    assert "the train data has no column question" in failed["message"], failed
    checked = next(c for c in status["conditions"] if c["type"] == "DataChecked")
    assert (checked["status"], checked["reason"]) == ("False", "InvalidDataset")
    assert status["attempt"] == 0
    # The one pod there ever was is the data check's, and it asked for no GPU.
    assert len(pods) == 1, pods
    (pod,) = pods.values()
    assert pod["labels"]["ftjob.dev/attempt"] == "0"
    assert "nvidia.com/gpu" not in pod["limits"]
    jobs = cluster.get("jobs", "-n", namespace)["items"]
    assert not [j for j in jobs if "attempt" in j["metadata"]["name"]]


def test_a_job_that_does_not_fit_in_gpu_memory_is_refused_before_any_gpu_pod(
        cluster, namespace, operator, kubelet, storage, minilm_path):
    """The data check's pod (the real trainer image's code, on CPU) sizes the job from the
    model's config.json against the GPU memory the node says it has (GPU feature
    discovery's label), and under preflight enforce the job fails with the advice."""
    cluster.kubectl("label", "node", kubelet.node, "--overwrite", "nvidia.com/gpu.memory=1024")
    job = cluster_job("too-big", namespace, minilm_path, storage.endpoint, max_steps=4)
    job["spec"]["distributed"].update(gpusPerNode=8, procsPerNode=8)
    job["spec"]["training"]["perDeviceTrainBatchSize"] = 64
    status, pods = finished_with_pods_seen(cluster, namespace, job)
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "DoesNotFitMemory", failed
    fit = next(c for c in status["conditions"] if c["type"] == "MemoryFit")
    assert (fit["status"], fit["reason"]) == ("False", "DoesNotFitMemory")
    assert fit["message"].startswith("needs ") and "per GPU of 1.0 GiB" in fit["message"]
    assert "nvidia.com/gpu.memory of node local-node-0" in fit["message"]
    assert "training.gradientCheckpointing: true needs" in fit["message"]  # the advice
    assert next(c for c in status["conditions"] if c["type"] == "DataChecked")["status"] == \
        "True"
    # The one pod there ever was is the data check's, and it asked for no GPU.
    assert [pod["labels"]["ftjob.dev/attempt"] for pod in pods.values()] == ["0"], pods
    assert not any("nvidia.com/gpu" in pod["limits"] for pod in pods.values())


def test_a_deadline_before_the_eta_stops_early_with_a_checkpoint_the_next_run_resumes_from(
        cluster, namespace, operator, kubelet, storage, minilm_path):
    from datetime import datetime, timedelta

    job = cluster_job("deadline", namespace, minilm_path, storage.endpoint, max_steps=2000)
    job["spec"]["training"]["saveSteps"] = 5000  # no periodic checkpoint: only the final save
    job["spec"]["runPolicy"] = {"activeDeadlineSeconds": 120}
    cluster.apply(job, namespace=namespace)
    status = eventually(lambda: (lambda s: s if s.get("phase") in ("Succeeded", "Failed")
                                 else None)(status_of(cluster, namespace, "deadline")),
                        timeout=240, interval=0.5, what="the job to stop")
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "DeadlineExceeded", failed
    assert failed["message"].startswith("would run past runPolicy.activeDeadlineSeconds"), failed
    # The pods got SIGTERM before the deadline, saved at the end of their step and uploaded.
    checkpoint = eventually(lambda: status_of(cluster, namespace, "deadline").get("checkpoint"),
                            timeout=90, interval=0.5, what="the final checkpoint on status")
    started = datetime.fromisoformat(status["startTime"].replace("Z", "+00:00"))
    saved = datetime.fromisoformat(checkpoint["savedAt"].replace("Z", "+00:00"))
    assert saved <= started + timedelta(seconds=120), (checkpoint, status["startTime"])
    assert 0 < checkpoint["step"] < 2000 and checkpoint["uploadSeconds"] > 0

    # A new run with the same checkpoints.uri resumes from that checkpoint.
    again = cluster_job("deadline-again", namespace, minilm_path, storage.endpoint,
                        max_steps=checkpoint["step"] + 4)
    again["spec"]["checkpoints"]["uri"] = job["spec"]["checkpoints"]["uri"]
    cluster.apply(again, namespace=namespace)
    done = eventually(lambda: (lambda s: s if s.get("phase") in ("Succeeded", "Failed")
                               else None)(status_of(cluster, namespace, "deadline-again")),
                      timeout=300, interval=0.5, what="the resumed run to finish")
    assert done["phase"] == "Succeeded", done.get("message")
    rank_0 = cluster.get("pods", "-n", namespace, "-l",
                         "ftjob.dev/job-name=deadline-again,ftjob.dev/attempt=1,"
                         "batch.kubernetes.io/job-completion-index=0")["items"][0]
    resumed = re.search(r"Resuming from \S+ \(step (\d+)\)", kubelet.log(rank_0["metadata"]["name"]))
    assert resumed and int(resumed.group(1)) == checkpoint["step"]
    assert done["progress"]["step"] == checkpoint["step"] + 4
