"""FineTuneJobs in real Kueue queues (tests/support/kueue.py): Kueue admits by quota, the
job says why it waits in Kueue's words, a finished job makes room for the next, and a
preemption saves a checkpoint that the preempted job resumes from once admitted again,
with no restart counted."""

from __future__ import annotations

import re

import pytest

from tests.e2e.test_e2e import cluster_job, status_of
from tests.operator.test_operator import Jobs, finetunejob
from tests.support.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

KUEUE = "kueue.x-k8s.io/v1beta2"
FLAVOR = "default-flavor"


def make_queue(cluster, namespace: str, quota: dict[str, str], name: str = "team") -> None:
    """A ClusterQueue with `quota` (one flavor) for this namespace alone, preempting lower
    priorities, and a LocalQueue `name` in the namespace that feeds it."""
    cluster_queue = f"cq-{namespace}"[:63]
    cluster.apply(
        {"apiVersion": KUEUE, "kind": "ResourceFlavor", "metadata": {"name": FLAVOR}},
        {"apiVersion": KUEUE, "kind": "ClusterQueue", "metadata": {"name": cluster_queue},
         "spec": {
             "namespaceSelector": {"matchLabels": {
                 "kubernetes.io/metadata.name": namespace}},
             "preemption": {"withinClusterQueue": "LowerPriority"},
             "resourceGroups": [{"coveredResources": list(quota), "flavors": [{
                 "name": FLAVOR, "resources": [{"name": resource, "nominalQuota": amount}
                                               for resource, amount in quota.items()]}]}]}})
    cluster.apply({"apiVersion": KUEUE, "kind": "LocalQueue",
                   "metadata": {"name": name, "namespace": namespace},
                   "spec": {"clusterQueue": cluster_queue}}, namespace=namespace)
    eventually(lambda: any(c["type"] == "Active" and c["status"] == "True" for c in
                           cluster.get("clusterqueue", cluster_queue).get("status", {})
                           .get("conditions", [])), what="the ClusterQueue to be active")


def test_a_16_gpu_queue_runs_two_of_four_8_gpu_jobs_and_the_next_when_one_finishes(
        cluster, namespace, operator, kueue):
    make_queue(cluster, namespace, {"nvidia.com/gpu": "16"})
    jobs = Jobs(cluster, namespace)
    names = [f"job-{index}" for index in range(4)]
    for name in names:
        jobs.create(finetunejob(name, {"sim.ftjob.dev/hold": "true"},
                                distributed={"nodes": 1, "gpusPerNode": 8},
                                runPolicy={"queueName": "team"}))

    def by_phase() -> dict[str, list[str]]:
        split: dict[str, list[str]] = {}
        for name in names:
            status = jobs.status(name)
            # Waiting counts once the job says why, in Kueue's words.
            if status.get("phase") != "Pending" or "quota" in status.get("message", ""):
                split.setdefault(status.get("phase"), []).append(name)
        return split

    split = eventually(lambda: (lambda s: s if len(s.get("Running", [])) == 2 and
                                len(s.get("Pending", [])) == 2 else None)(by_phase()),
                       timeout=120, what="2 jobs running and 2 waiting with Kueue's reason")
    for name in split["Pending"]:
        message = jobs.status(name)["message"]
        assert message.startswith("waiting for the queue team to admit the job: "), message
        assert "insufficient unused quota for nvidia.com/gpu" in message, message
        assert jobs.get("job", f"{name}-attempt-1")["spec"]["suspend"] is True
        assert jobs.pods(name, 1) == []
    gpus_in_use = sum(int(pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
                      for name in split["Running"] for pod in jobs.pods(name, 1))
    assert gpus_in_use == 16

    finished = split["Running"][0]
    jobs.annotate_pods(finished, 1, "sim.ftjob.dev/hold=false")
    jobs.wait_phase(finished, "Succeeded")
    admitted = eventually(lambda: [name for name in split["Pending"]
                                   if jobs.status(name).get("phase") == "Running"],
                          timeout=60, what="a waiting job admitted into the freed GPUs")
    assert len(admitted) == 1
    (still_waiting,) = set(split["Pending"]) - set(admitted)
    assert jobs.status(still_waiting)["phase"] == "Pending"
    assert jobs.status(split["Running"][1])["phase"] == "Running"


def test_a_preempted_job_resumes_from_the_checkpoint_it_saved_without_a_restart(
        cluster, namespace, operator, kueue, kubelet, storage, minilm_path):
    """A higher-priority job takes the quota of a running one: Kueue suspends the running
    one's Job, its trainers save on SIGTERM and exit, and the Job counts no failure; once
    the other job is done Kueue admits it again and it resumes from that checkpoint."""
    make_queue(cluster, namespace, {"cpu": "1"})
    for name, value in (("ftjob-test-low", 10), ("ftjob-test-high", 1000)):
        cluster.apply({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                       "metadata": {"name": name}, "value": value})

    def queued_job(name: str, nodes: int, max_steps: int, priority: str) -> dict:
        job = cluster_job(name, namespace, minilm_path, storage.endpoint, max_steps)
        job["spec"]["distributed"]["nodes"] = nodes
        # No periodic checkpoint before the preemption: the one it makes is the SIGTERM's.
        job["spec"]["training"]["saveSteps"] = 1000
        job["spec"]["resources"] = {"requests": {"cpu": "500m"}}
        job["spec"]["runPolicy"] = {"queueName": "team", "priorityClassName": priority,
                                    "preflight": "off"}
        return job

    cluster.apply(queued_job("low", 2, 24, "ftjob-test-low"), namespace=namespace)
    eventually(lambda: (status_of(cluster, namespace, "low").get("progress") or {})
               .get("step", 0) >= 2, timeout=400, interval=0.5, what="low to train 2 steps")
    cluster.apply(queued_job("high", 1, 2, "ftjob-test-high"), namespace=namespace)

    preempted = eventually(lambda: (lambda s: s if s.get("phase") == "Pending" and
                                    s.get("checkpoint") else None)(
        status_of(cluster, namespace, "low")), timeout=300, interval=0.5,
        what="low preempted, with the checkpoint it saved on SIGTERM")
    eventually(lambda: "Preempted" in [reason for reason, _ in
                                        Jobs(cluster, namespace).events("low")],
               timeout=30, what="a Preempted event on low")
    assert preempted["message"].startswith("evicted by Kueue (Preempted: Preempted to "
                                           "accommodate a workload"), preempted["message"]
    saved_step = preempted["checkpoint"]["step"]
    assert 2 <= saved_step < 24
    # Each node's trainer says so as it exits (after its status sink wrote the checkpoint).
    eventually(lambda: (lambda logs: len(logs) == 2 and all(
        f"stopped by SIGTERM at step {saved_step} after saving" in log for log in logs))(
        kubelet_logs(kubelet, "low-attempt-1", index=None)), timeout=120,
        what=f"both nodes of low to report stopping at step {saved_step}")

    high = eventually(lambda: (lambda s: s if s.get("phase") in ("Succeeded", "Failed")
                               else None)(status_of(cluster, namespace, "high")),
                      timeout=400, interval=1, what="high to finish")
    assert high["phase"] == "Succeeded", high.get("message")

    low = eventually(lambda: (lambda s: s if s.get("phase") in ("Succeeded", "Failed")
                              else None)(status_of(cluster, namespace, "low")),
                     timeout=600, interval=1, what="low, admitted again, to finish")
    assert low["phase"] == "Succeeded", low.get("message")
    assert (low["attempt"], low["restarts"]) == (1, 0)
    assert low["progress"]["step"] == 24
    job = cluster.get("job", "low-attempt-1", "-n", namespace)
    assert job["status"].get("failed", 0) == 0  # the pod failure policy ignored exit 75
    resumed = [re.search(r"Resuming from \S+ \(step (\d+)\)", log)
               for log in kubelet_logs(kubelet, "low-attempt-1")]
    assert [int(match.group(1)) for match in resumed if match] == [saved_step], \
        "rank 0 of the second set of pods resumes from the preemption's checkpoint"


def kubelet_logs(kubelet, job_name: str, index: int | None = 0) -> list[str]:
    """Logs of the pods of a Job's `index` (None: every index) the stand-in ran, in start
    order."""
    prefix = f"{job_name}-" if index is None else f"{job_name}-{index}-"
    return [container.log.read_text(errors="replace")
            for container in list(kubelet.containers.values())
            if container.pod.startswith(prefix)]
