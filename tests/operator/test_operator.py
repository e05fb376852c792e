"""The operator (kopf, in this process) against the real control plane: KWOK's stages play
the pods, annotations choose how each attempt ends."""

from __future__ import annotations

import json

import pytest

from tests.support.waiting import eventually

pytestmark = pytest.mark.cluster

OWNED_KINDS = ["configmap", "service", "serviceaccount", "role", "rolebinding"]


def finetunejob(name: str, pod_annotations: dict | None = None, **spec) -> dict:
    body = {
        "apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": name},
        "spec": {
            "model": {"name": "sentence-transformers/all-MiniLM-L6-v2", "numLabels": 2},
            "dataset": {"files": {"train": "s3://data/train.csv"},
                        "textColumns": ["sentence1", "sentence2"]},
            "training": {"maxSteps": 10},
            "distributed": {"nodes": 2, "gpusPerNode": 8},
            # KWOK plays the data check's pod with the same annotations as the attempts';
            # the data check's own tests turn it on.
            "runPolicy": {"backoffLimit": 2, "preflight": "off"},
            "podTemplate": {"annotations": pod_annotations or {}},
        },
    }
    for key, value in spec.items():
        body["spec"][key] = {**body["spec"].get(key, {}), **value}
    return body


class Jobs:
    """kubectl views of one test namespace."""

    def __init__(self, cluster, namespace):
        self.cluster, self.namespace = cluster, namespace

    def get(self, *args: str) -> dict:
        return self.cluster.get(*args, "-n", self.namespace)

    def exists(self, kind: str, name: str) -> bool:
        return self.cluster.kubectl("get", kind, name, "-n", self.namespace,
                                    check=False).returncode == 0

    def create(self, body: dict) -> None:
        self.cluster.apply(body, namespace=self.namespace)

    def status(self, name: str) -> dict:
        return self.get("finetunejob", name).get("status", {})

    def wait_phase(self, name: str, phase: str, timeout: float = 60) -> dict:
        return eventually(lambda: (lambda s: s if s.get("phase") == phase else None)(
            self.status(name)), timeout=timeout, what=f"{name} to be {phase}")

    def pods(self, name: str, attempt: int) -> list[dict]:
        return self.get("pods", "-l", f"ftjob.dev/job-name={name},ftjob.dev/attempt={attempt}"
                        )["items"]

    def annotate_pods(self, name: str, attempt: int, *annotations: str) -> None:
        self.cluster.kubectl("annotate", "pods", "-n", self.namespace, "--overwrite", "-l",
                             f"ftjob.dev/job-name={name},ftjob.dev/attempt={attempt}",
                             *annotations)

    def condition(self, name: str, kind: str) -> dict | None:
        return next((c for c in self.status(name).get("conditions", [])
                     if c["type"] == kind), None)

    def events(self, name: str) -> list[tuple[str, str]]:
        items = self.get("events", "--field-selector", f"involvedObject.name={name}")["items"]
        return [(e["reason"], e["message"]) for e in
                sorted(items, key=lambda e: e["metadata"]["creationTimestamp"])]


@pytest.fixture
def jobs(cluster, namespace, operator):
    return Jobs(cluster, namespace)


def test_created_job_gets_its_resources_runs_on_gpu_nodes_and_succeeds(jobs, cluster):
    jobs.create(finetunejob("ok", {"sim.ftjob.dev/run-for": "3s"}))
    running = jobs.wait_phase("ok", "Running")
    assert running["attempt"] == 1 and running["replicas"]["ready"] == 2
    uid = jobs.get("finetunejob", "ok")["metadata"]["uid"]
    for kind in OWNED_KINDS + ["job"]:
        name = "ok-attempt-1" if kind == "job" else (
            "ok" if kind == "service" else "ok-trainer-config" if kind == "configmap"
            else "ok-trainer")
        item = jobs.get(kind, name)
        assert [ref["uid"] for ref in item["metadata"]["ownerReferences"]] == [uid], kind
        assert item["metadata"]["labels"]["ftjob.dev/job-name"] == "ok", kind
    job = jobs.get("job", "ok-attempt-1")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][4:12] == ["torchrun", "--nproc-per-node", "8", "--nnodes", "2",
                                        "--node-rank", "$(JOB_COMPLETION_INDEX)",
                                        "--master-addr"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert {"secretRef": {"name": "storage-credentials"}} in container["envFrom"]
    config = json.loads(jobs.get("configmap", "ok-trainer-config")["data"]["config.json"])
    assert config["storage"]["checkpoint_uri"] == \
        f"s3://ftjob-test/checkpoints/{jobs.namespace}/ok"
    assert "storage-credentials" not in json.dumps(config)
    nodes = {pod["spec"]["nodeName"] for pod in jobs.pods("ok", 1)}
    assert len(nodes) == 2 and all(n.startswith("gpu-node-") for n in nodes)

    done = jobs.wait_phase("ok", "Succeeded")
    assert done["completionTime"] >= done["startTime"]
    assert jobs.condition("ok", "Succeeded")["status"] == "True"
    assert jobs.condition("ok", "Running")["status"] == "False"
    waited = cluster.kubectl("wait", "--for=condition=Succeeded", "finetunejob/ok", "-n",
                             jobs.namespace, "--timeout=5s", check=False)
    assert waited.returncode == 0, waited.stderr
    assert [reason for reason, _ in jobs.events("ok")] == \
        ["Created", "AllPodsReady", "Completed"]


def test_retryable_failure_restarts_from_the_checkpoint_in_status(jobs, cluster):
    jobs.create(finetunejob("retry", {"sim.ftjob.dev/hold": "true"}))
    jobs.wait_phase("retry", "Running")
    checkpoint = {"uri": f"s3://ftjob-test/checkpoints/{jobs.namespace}/retry/checkpoint-40",
                  "step": 40, "savedAt": "2026-01-01T00:00:00.000Z"}
    # What the trainer's status sink does after each complete upload.
    cluster.kubectl("patch", "finetunejob", "retry", "-n", jobs.namespace, "--subresource",
                    "status", "--type", "merge", "-p", json.dumps({"status": {
                        "checkpoint": checkpoint}}))
    # The trainer's exit code when storage stopped answering: retryable.
    jobs.annotate_pods("retry", 1, "sim.ftjob.dev/exit-code=74")

    running = eventually(lambda: (lambda s: s if s.get("attempt") == 2 and
                                  s.get("phase") == "Running" else None)(jobs.status("retry")),
                         timeout=60, what="attempt 2 running")
    assert running["restarts"] == 1
    assert jobs.condition("retry", "Restarting")["reason"] == "StorageUnavailable"
    assert not jobs.exists("job", "retry-attempt-1")
    attempt = jobs.get("job", "retry-attempt-2")
    assert attempt["metadata"]["annotations"]["ftjob.dev/resume-from"] == checkpoint["uri"]
    env = attempt["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "FTJOB_ATTEMPT", "value": "2"} in env
    jobs.annotate_pods("retry", 2, "sim.ftjob.dev/hold=false")
    jobs.wait_phase("retry", "Succeeded")
    assert jobs.status("retry")["checkpoint"] == checkpoint  # the operator keeps it


@pytest.mark.parametrize("exit_code, reason", [("65", "InvalidDataset"),
                                               ("78", "InvalidConfig")])
def test_permanent_failure_fails_the_job_without_restart(jobs, exit_code, reason):
    name = f"perm-{exit_code}"
    jobs.create(finetunejob(name, {"sim.ftjob.dev/exit-code": exit_code}))
    failed = jobs.wait_phase(name, "Failed")
    assert failed["restarts"] == 0 and failed["attempt"] == 1
    condition = jobs.condition(name, "Failed")
    assert condition["reason"] == reason and "attempt 1 failed" in condition["message"]
    eventually(lambda: not jobs.exists("job", f"{name}-attempt-1"),
               what="the failed attempt's Job to be deleted")


def test_the_data_check_runs_first_in_a_cpu_pod_then_the_attempt(jobs):
    jobs.create(finetunejob("checked", {"sim.ftjob.dev/run-for": "2s"},
                            runPolicy={"preflight": "enforce"}))
    checking = jobs.wait_phase("checked", "Initializing")
    assert checking["attempt"] == 0
    check = jobs.get("job", "checked-data-check")
    resources = check["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in str(resources)
    assert not jobs.exists("job", "checked-attempt-1")
    jobs.wait_phase("checked", "Succeeded", timeout=90)
    assert jobs.condition("checked", "DataChecked")["status"] == "True"
    assert jobs.exists("job", "checked-data-check")  # its log keeps the full report
    assert [reason for reason, _ in jobs.events("checked")][:2] == \
        ["CheckingData", "DataChecked"]


def test_bad_data_fails_the_job_before_any_gpu_pod(jobs):
    jobs.create(finetunejob("baddata", {"sim.ftjob.dev/exit-code": "65"},
                            runPolicy={"preflight": "enforce"}))
    failed = jobs.wait_phase("baddata", "Failed", timeout=60)
    assert failed["attempt"] == 0 and failed["restarts"] == 0
    assert jobs.condition("baddata", "Failed")["reason"] == "InvalidDataset"
    assert jobs.condition("baddata", "DataChecked")["status"] == "False"
    assert not jobs.exists("job", "baddata-attempt-1") and not jobs.pods("baddata", 1)


def test_backoff_limit_exhausted(jobs):
    jobs.create(finetunejob("exhaust", {"sim.ftjob.dev/exit-code": "137",
                                        "sim.ftjob.dev/reason": "OOMKilled"},
                            runPolicy={"backoffLimit": 1}))
    failed = jobs.wait_phase("exhaust", "Failed", timeout=90)
    assert failed["attempt"] == 2 and failed["restarts"] == 1
    condition = jobs.condition("exhaust", "Failed")
    assert condition["reason"] == "BackoffLimitExceeded" and "OOMKilled" in condition["message"]


def test_active_deadline(jobs):
    jobs.create(finetunejob("deadline", {"sim.ftjob.dev/hold": "true"},
                            runPolicy={"activeDeadlineSeconds": 3}))
    jobs.wait_phase("deadline", "Failed", timeout=30)
    assert jobs.condition("deadline", "Failed")["reason"] == "DeadlineExceeded"
    eventually(lambda: not jobs.pods("deadline", 1), what="the pods to be removed")


def test_suspend_stops_pods_and_resume_starts_the_next_attempt(jobs, cluster):
    jobs.create(finetunejob("pause", {"sim.ftjob.dev/hold": "true"}))
    jobs.wait_phase("pause", "Running")
    patch = lambda value: cluster.kubectl(  # noqa: E731
        "patch", "finetunejob", "pause", "-n", jobs.namespace, "--type", "merge", "-p",
        json.dumps({"spec": {"runPolicy": {"suspend": value}}}))
    patch(True)
    suspended = jobs.wait_phase("pause", "Suspended")
    assert jobs.condition("pause", "Suspended")["status"] == "True"
    eventually(lambda: not jobs.pods("pause", 1), what="the suspended pods to go")
    assert suspended["restarts"] == 0
    patch(False)
    resumed = eventually(lambda: (lambda s: s if s.get("phase") == "Running" and
                                  s.get("attempt") == 2 else None)(jobs.status("pause")),
                         timeout=60, what="attempt 2 running")
    assert resumed["restarts"] == 0  # a suspension is not a failure
    assert jobs.condition("pause", "Suspended")["status"] == "False"


def test_ttl_deletes_the_finished_job_and_everything_it_owns(jobs):
    jobs.create(finetunejob("ttl", runPolicy={"ttlSecondsAfterFinished": 2}))
    jobs.wait_phase("ttl", "Succeeded")
    eventually(lambda: not jobs.exists("finetunejob", "ttl"), timeout=30,
               what="the FineTuneJob to be deleted")
    eventually(lambda: not any(jobs.exists(kind, name) for kind, name in [
        ("configmap", "ttl-trainer-config"), ("service", "ttl"), ("job", "ttl-attempt-1")]),
        timeout=60, what="garbage collection of the owned objects")


def test_deleting_a_finetunejob_removes_everything(jobs, cluster):
    jobs.create(finetunejob("gone", {"sim.ftjob.dev/hold": "true"}))
    jobs.wait_phase("gone", "Running")
    cluster.kubectl("delete", "finetunejob", "gone", "-n", jobs.namespace)
    eventually(lambda: not any(jobs.exists(kind, name) for kind, name in [
        ("configmap", "gone-trainer-config"), ("service", "gone"), ("role", "gone-trainer"),
        ("job", "gone-attempt-1")]) and not jobs.pods("gone", 1), timeout=60,
        what="garbage collection")


def test_spec_the_api_server_accepts_but_ftjob_cannot_run_is_failed_with_the_field(jobs):
    # Each field is fine to the CRD's schema; together TrainingArguments refuses them.
    jobs.create(finetunejob("both", training={"fp16": True, "bf16": True}))
    failed = jobs.wait_phase("both", "Failed")
    condition = jobs.condition("both", "Failed")
    assert condition["reason"] == "InvalidSpec"
    assert "spec.training.bf16" in condition["message"] and "fp16" in condition["message"]
    assert failed["attempt"] == 0 and not jobs.exists("configmap", "both-trainer-config")
    # The operator carries on with the next job.
    jobs.create(finetunejob("after-both"))
    jobs.wait_phase("after-both", "Succeeded")


def refuse_jobs_of(cluster, namespace: str, job_name: str, message: str) -> str:
    """A cluster admission policy (the kind a platform team runs) that refuses the batch
    Jobs of one FineTuneJob with HTTP 422, active once a server-side dry run is refused."""
    name = f"refuse-{namespace}"[:63]
    cluster.apply({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": [{
            "apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"],
            "resources": ["jobs"]}]},
            "validations": [{"expression": "object.metadata.?labels[?'ftjob.dev/job-name']"
                             f".orValue('') != '{job_name}'",
                             "message": message, "reason": "Invalid"}]}}, {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"], "matchResources": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}}})
    probe = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
        "name": "probe", "labels": {"ftjob.dev/job-name": job_name}},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "x"}]}}}}
    eventually(lambda: cluster.kubectl("create", "--dry-run=server", "-n", namespace, "-f",
                                       "-", input=json.dumps(probe), check=False
                                       ).returncode != 0, what="the policy to be active")
    return name


def test_a_job_the_api_server_refuses_fails_once_with_its_message(jobs, cluster, caplog):
    policy = refuse_jobs_of(cluster, jobs.namespace, "refused",
                            "Jobs here need a cost-center label")
    try:
        jobs.create(finetunejob("refused"))
        failed = jobs.wait_phase("refused", "Failed")
    finally:
        cluster.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy",
                        policy, check=False)
    assert jobs.condition("refused", "Failed")["reason"] == "InvalidSpec"
    assert "Jobs here need a cost-center label" in failed["message"]
    assert not jobs.exists("job", "refused-attempt-1")
    warnings = [reason for reason, _ in jobs.events("refused") if reason == "InvalidSpec"]
    assert warnings == ["InvalidSpec"]
    # The in-process operator serves every test's namespace: only this one's count.
    refusals = [r for r in caplog.records
                if f"refused an object of FineTuneJob {jobs.namespace}/" in r.getMessage()]
    assert len(refusals) == 1
    assert not [r for r in caplog.records if r.name.startswith("ftjob") and r.exc_info]
    # The operator carries on with the next job.
    jobs.create(finetunejob("after-refusal"))
    jobs.wait_phase("after-refusal", "Succeeded")


def test_a_pod_that_saved_and_stopped_on_sigterm_is_replaced_without_a_restart(jobs):
    """Exit 75 is the trainer's "saved a checkpoint on SIGTERM": a drain or a preemption,
    not a failure. The Job's pod failure policy ignores it, so the Job replaces the pod
    (which resumes from that checkpoint) instead of failing, and no restart is counted."""
    jobs.create(finetunejob("drained", {"sim.ftjob.dev/hold": "true"}))
    jobs.wait_phase("drained", "Running")
    (first,) = [p for p in jobs.pods("drained", 1)
                if p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == "1"]
    jobs.cluster.kubectl("annotate", "pod", first["metadata"]["name"], "-n", jobs.namespace,
                         "sim.ftjob.dev/exit-code=75")

    def replaced():
        pods = [p for p in jobs.pods("drained", 1) if p["metadata"]["labels"][
            "batch.kubernetes.io/job-completion-index"] == "1"]
        return len(pods) == 2 and any(p["status"].get("phase") == "Running" and
                                      p["metadata"]["name"] != first["metadata"]["name"]
                                      for p in pods)

    eventually(replaced, timeout=60, what="index 1 replaced by a running pod")
    job = jobs.get("job", "drained-attempt-1")
    assert job["status"].get("failed", 0) == 0
    assert not any(c["type"] == "Failed" for c in job["status"].get("conditions", []))
    status = jobs.wait_phase("drained", "Running")
    assert (status["attempt"], status["restarts"]) == (1, 0)


def test_queue_name_creates_a_suspended_job_for_kueue(jobs, cluster):
    jobs.create(finetunejob("queued", runPolicy={"queueName": "team-a"}))
    # The test cluster runs no Kueue: the job says so instead of waiting silently.
    pending = eventually(lambda: (lambda s: s if s.get("phase") == "Pending" and "Kueue" in
                                  s.get("message", "") else None)(jobs.status("queued")),
                         what="Pending for want of Kueue")
    assert pending["message"].startswith("waiting for the queue team-a, but this cluster "
                                         "serves no Kueue API"), pending["message"]
    eventually(lambda: ("NoQueueController", pending["message"]) in jobs.events("queued"),
               what="a Warning event saying so")
    job = jobs.get("job", "queued-attempt-1")
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    # What Kueue does on admission.
    cluster.kubectl("patch", "job", "queued-attempt-1", "-n", jobs.namespace, "--type",
                    "merge", "-p", '{"spec": {"suspend": false}}')
    jobs.wait_phase("queued", "Succeeded")


def scrape() -> dict[str, float]:
    """The operator's /metrics as {series: value}."""
    import urllib.request

    from tests.conftest import OPERATOR_PORTS

    text = urllib.request.urlopen(
        f"http://127.0.0.1:{OPERATOR_PORTS['metrics']}/metrics", timeout=10).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def test_per_job_metrics_follow_the_status_and_go_with_the_job(jobs, cluster):
    jobs.create(finetunejob("watched", {"sim.ftjob.dev/hold": "true"}))
    jobs.wait_phase("watched", "Running")
    series = lambda metric: f'{metric}{{name="watched",namespace="{jobs.namespace}"}}'  # noqa
    # What the trainer's status sink writes after a logged step.
    cluster.kubectl("patch", "finetunejob", "watched", "-n", jobs.namespace, "--subresource",
                    "status", "--type", "merge", "-p", json.dumps({"status": {"progress": {
                        "step": 30, "maxSteps": 120, "percent": 25.0, "loss": 0.75,
                        "samplesPerSecond": 12.5, "etaSeconds": 90,
                        "updatedAt": "2026-01-01T00:00:00.000Z"}}}))
    samples = eventually(lambda: (lambda s: s if series("ftjob_job_loss") in s else None)(
        scrape()), what="the job's loss on /metrics")
    assert samples[series("ftjob_job_progress_ratio")] == 0.25
    assert samples[series("ftjob_job_loss")] == 0.75
    assert samples[series("ftjob_job_samples_per_second")] == 12.5
    assert samples[series("ftjob_job_eta_seconds")] == 90
    assert samples[series("ftjob_job_restarts_total")] == 0
    assert samples[series("ftjob_job_progress_timestamp_seconds")] == 1767225600.0
    assert samples[f'ftjob_job_phase{{name="watched",namespace="{jobs.namespace}",'
                   f'phase="Running"}}'] == 1
    cluster.kubectl("delete", "finetunejob", "watched", "-n", jobs.namespace)
    eventually(lambda: not any('name="watched"' in key for key in scrape()),
               what="the deleted job's series to go")


def test_liveness_and_prometheus_metrics(jobs):
    import urllib.request

    import psutil

    from tests.conftest import OPERATOR_PORTS

    jobs.create(finetunejob("metered", {"sim.ftjob.dev/exit-code": "143"},
                            runPolicy={"backoffLimit": 1}))
    jobs.wait_phase("metered", "Failed", timeout=90)
    live = urllib.request.urlopen(f"http://127.0.0.1:{OPERATOR_PORTS['liveness']}/healthz")
    assert live.status == 200
    # FTJOB_METRICS_ADDRESS=127.0.0.1 (tests/conftest.py): bound to loopback only.
    listening = {(c.laddr.ip, c.laddr.port) for c in psutil.Process().net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN}
    assert ("127.0.0.1", OPERATOR_PORTS["metrics"]) in listening
    assert ("0.0.0.0", OPERATOR_PORTS["metrics"]) not in listening
    samples = scrape()
    assert samples['ftjob_jobs{phase="Failed"}'] >= 1
    assert samples['ftjob_restarts_total{reason="Terminated"}'] >= 1
    assert samples[f'ftjob_job_restarts_total{{name="metered",namespace="{jobs.namespace}"}}'] \
        == 1
    assert samples["ftjob_reconcile_duration_seconds_count"] > 0
    assert samples['ftjob_api_requests_total{verb="create"}'] > 0
