"""Proof that the test cluster is real: the API server enforces CRD schemas and CEL, the
scheduler places GPU pods by capacity and taints, the controllers run Jobs and garbage
collection, KWOK's stages drive pods through success and the faults we ask for, and Helm
installs into it."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.conftest import REPO
from tests.support.waiting import eventually

pytestmark = pytest.mark.cluster

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def apply(cluster, namespace: str, *objects: dict):
    return cluster.apply(*objects, namespace=namespace, check=False)


def gpu_job(name: str, pods: int, gpus: int, annotations: dict) -> dict:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {
            "completionMode": "Indexed", "completions": pods, "parallelism": pods,
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"restartPolicy": "Never", "tolerations": [GPU_TOLERATION],
                         "containers": [{"name": "trainer", "image": "example.invalid/t:1",
                                         "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]},
            },
        },
    }


def pods_of(cluster, namespace: str, job: str) -> list[dict]:
    return cluster.get("pods", "-n", namespace, "-l", f"job-name={job}")["items"]


def test_api_server_enforces_the_finetunejob_crd_schema_and_cel_rules(cluster, namespace):
    cluster.install_crd()
    quickstart = yaml.safe_load((REPO / "examples/quickstart.yaml").read_text())
    accepted = apply(cluster, namespace, quickstart)
    assert accepted.returncode == 0, accepted.stderr

    both_sources = json.loads(json.dumps(quickstart))
    both_sources["metadata"]["name"] = "both-sources"
    both_sources["spec"]["dataset"]["name"] = "glue"
    rejected = apply(cluster, namespace, both_sources)
    assert rejected.returncode != 0
    assert "set exactly one of name and files" in rejected.stderr

    bad_name = json.loads(json.dumps(quickstart))
    bad_name["metadata"]["name"] = "x" * 41
    rejected = apply(cluster, namespace, bad_name)
    assert rejected.returncode != 0 and "at most 40 characters" in rejected.stderr

    unknown_field = json.loads(json.dumps(quickstart))
    unknown_field["metadata"]["name"] = "unknown-field"
    unknown_field["spec"]["modle"] = {"name": "x"}
    rejected = apply(cluster, namespace, unknown_field)
    assert rejected.returncode != 0 and "modle" in rejected.stderr
    # The rules `ftjob validate` applies, refused by the API server with the same words.
    for name, change, words in [
        ("typo", {"training": {"learningRat": 0.1}}, "learningRat"),
        ("negative-rate", {"training": {"learningRate": -1}}, "learningRate"),
        ("bad-enum", {"training": {"evalStrategy": "epochs"}}, "evalStrategy"),
        ("resource", {"resources": {"requests": {"cpuu": "1"}}}, "resource names are"),
        ("reserved", {"podTemplate": {"volumes": [{"name": "dshm", "emptyDir": {}}]}},
         "ftjob's own"),
        ("host-path", {"podTemplate": {"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}},
         "hostPath"),
        ("bucket", {"checkpoints": {"uri": "s3:///nobucket"}}, "checkpoints.uri"),
        ("other-task", {"maskedLm": {"mlmProbability": 0.2}},
         "spec.maskedLm is for task masked-lm only"),
        ("unpacked-block", {"model": {**quickstart["spec"]["model"], "task": "causal-lm"},
                            "causalLm": {"packing": False, "blockSize": 64}},
         "without packing texts are truncated"),
        ("exo-pair", {"model": {**quickstart["spec"]["model"], "task": "dpo"},
                      "dataset": {**quickstart["spec"]["dataset"],
                                  "textColumns": ["prompt", "chosen", "rejected"]},
                      "dpo": {"lossType": "exo_pair"}},
         "lossType exo_pair needs labelSmoothing above 0"),
        ("script-and-task", {"script": {"path": "train.py"}},
         "spec.script runs your own program"),
        ("elastic", {"distributed": {"nodes": 2, "elastic": {"minNodes": 1, "maxNodes": 2}}},
         "elastic was removed"),
        ("eval-twice", {"dataset": {**quickstart["spec"]["dataset"],
                                    "validationSplitPercentage": 10}},
         "validationSplitPercentage makes it from train"),
    ]:
        job = json.loads(json.dumps(quickstart))
        job["metadata"]["name"] = name
        job["spec"].update(change)
        rejected = apply(cluster, namespace, job)
        assert rejected.returncode != 0 and words in rejected.stderr, (name, rejected.stderr)
    # A script on your machine cannot run on the cluster; one in the image or storage can.
    for path, admitted in (("train.py", False), ("/app/train.py", True)):
        script_job = {"apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob",
                      "metadata": {"name": "script"}, "spec": {"script": {"path": path}}}
        result = apply(cluster, namespace, script_job)
        assert (result.returncode == 0) == admitted, (path, result.stderr)
        if not admitted:
            assert "spec.script.path: on the cluster a script is a storage URI" in \
                result.stderr, result.stderr
    cluster.kubectl("delete", "finetunejob", "script", "-n", namespace)
    names = [item["metadata"]["name"]
             for item in cluster.get("finetunejobs", "-n", namespace)["items"]]
    assert names == [quickstart["metadata"]["name"]]

    def patch(spec: dict):
        return cluster.kubectl("patch", "finetunejob", names[0], "-n", namespace, "--type",
                               "merge", "-p", json.dumps({"spec": spec}), check=False)

    changed_model = patch({"model": {"name": "another-model"}})
    assert changed_model.returncode != 0
    assert "spec.model cannot change once created" in changed_model.stderr
    assert patch({"runPolicy": {"queueName": "late"}}).returncode != 0
    assert patch({"runPolicy": {"suspend": True, "backoffLimit": 7}}).returncode == 0


def test_indexed_gpu_job_is_scheduled_on_gpu_nodes_and_completed_by_stages(cluster, namespace):
    apply(cluster, namespace, gpu_job("train", pods=2, gpus=8,
                                      annotations={"sim.ftjob.dev/run-for": "2s"}))
    eventually(lambda: cluster.get("job", "train", "-n", namespace)["status"].get("succeeded")
               == 2, timeout=60, what="both pods of the Job to succeed")
    job = cluster.get("job", "train", "-n", namespace)
    assert any(c["type"] == "Complete" and c["status"] == "True"
               for c in job["status"]["conditions"])
    pods = pods_of(cluster, namespace, "train")
    nodes = {pod["spec"]["nodeName"] for pod in pods}
    assert len(nodes) == 2 and all(node.startswith("gpu-node-") for node in nodes)
    indexes = sorted(pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                     for pod in pods)
    assert indexes == ["0", "1"]


def test_pods_asking_for_more_gpus_than_exist_stay_pending(cluster, namespace):
    # Four nodes with eight GPUs each: the fifth eight-GPU pod has nowhere to go.
    apply(cluster, namespace, gpu_job("big", pods=5, gpus=8,
                                      annotations={"sim.ftjob.dev/hold": "true"}))

    def phases():
        found = [pod["status"].get("phase") for pod in pods_of(cluster, namespace, "big")]
        return sorted(found) if found.count("Running") == 4 and len(found) == 5 else None

    assert eventually(phases, timeout=60, what="4 Running pods") == ["Pending"] + ["Running"] * 4
    events = eventually(lambda: [e for e in cluster.get("events", "-n", namespace)["items"]
                                 if e["reason"] == "FailedScheduling"], timeout=30,
                        what="a FailedScheduling event")
    assert "Insufficient nvidia.com/gpu" in events[0]["message"]
    cluster.kubectl("delete", "job", "big", "-n", namespace, "--cascade=foreground",
                    "--timeout=60s")
    eventually(lambda: not pods_of(cluster, namespace, "big"), what="the held pods to go")


def test_garbage_collector_removes_dependents_of_a_deleted_owner(cluster, namespace):
    apply(cluster, namespace, {"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": "owner"}, "data": {}})
    owner_uid = cluster.get("configmap", "owner", "-n", namespace)["metadata"]["uid"]
    apply(cluster, namespace, {
        "apiVersion": "v1", "kind": "ConfigMap", "data": {},
        "metadata": {"name": "dependent", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}]}})
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)

    def dependent_gone():
        return cluster.kubectl("get", "configmap", "dependent", "-n", namespace,
                               check=False).returncode != 0

    eventually(dependent_gone, timeout=60, what="the garbage collector to delete 'dependent'")


@pytest.mark.parametrize("exit_code, reason", [("75", "Error"), ("137", "OOMKilled")])
def test_failure_stage_fails_a_pod_with_the_chosen_exit_code(cluster, namespace, exit_code,
                                                             reason):
    annotations = {"sim.ftjob.dev/exit-code": exit_code, "sim.ftjob.dev/fail-after": "1s"}
    if reason != "Error":
        annotations["sim.ftjob.dev/reason"] = reason
    apply(cluster, namespace, gpu_job("fails", pods=1, gpus=1, annotations=annotations))

    def terminated():
        pods = pods_of(cluster, namespace, "fails")
        if pods and pods[0]["status"].get("phase") == "Failed":
            return pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
        return None

    state = eventually(terminated, timeout=60, what="the pod to fail")
    assert (str(state["exitCode"]), state["reason"]) == (exit_code, reason)
    eventually(lambda: any(c["type"] == "Failed" and c["status"] == "True" for c in
                           cluster.get("job", "fails", "-n", namespace)["status"]
                           .get("conditions", [])), what="the Job to fail")


def test_node_failure_stage_makes_a_node_not_ready(cluster):
    node = "gpu-node-3"

    def ready_status():
        conditions = cluster.get("node", node)["status"]["conditions"]
        return next(c["status"] for c in conditions if c["type"] == "Ready")

    cluster.kubectl("label", "node", node, "sim.ftjob.dev/not-ready=true")
    try:
        eventually(lambda: ready_status() == "False", timeout=30, what="Ready=False")
        eventually(lambda: any(t["key"] == "node.kubernetes.io/not-ready"
                               for t in cluster.get("node", node)["spec"].get("taints", [])),
                   timeout=60, what="the node lifecycle controller to taint the node")
    finally:
        cluster.kubectl("label", "node", node, "sim.ftjob.dev/not-ready-")
    eventually(lambda: ready_status() == "True", timeout=30, what="the node to recover")


def test_helm_installs_a_chart_into_the_cluster(cluster, namespace, tmp_path):
    helm = [cluster.binaries["helm"], "--kubeconfig", str(cluster.kubeconfig), "-n", namespace]
    subprocess.run([cluster.binaries["helm"], "create", str(tmp_path / "smoke")], check=True,
                   capture_output=True)
    installed = subprocess.run([*helm, "install", "smoke", str(tmp_path / "smoke"), "--wait",
                                "--timeout", "90s"], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    deployment = cluster.get("deployment", "smoke", "-n", namespace)
    assert deployment["status"].get("availableReplicas") == 1
    listed = json.loads(subprocess.run([*helm, "list", "-o", "json"], capture_output=True,
                                       text=True, check=True).stdout)
    assert [(r["name"], r["status"]) for r in listed] == [("smoke", "deployed")]
    subprocess.run([*helm, "uninstall", "smoke", "--wait"], check=True, capture_output=True)
    assert cluster.kubectl("get", "deployment", "smoke", "-n", namespace,
                           check=False).returncode != 0


def test_kubectl_explain_describes_every_dataset_and_status_field(cluster, crd):
    # The API server publishes the CRD's schema as OpenAPI; explain reads it from there.
    def explain(path: str) -> str:
        return eventually(lambda: (lambda r: r.stdout if r.returncode == 0 else None)(
            cluster.kubectl("explain", path, "--recursive=false", check=False)),
            timeout=30, what=f"kubectl explain {path}")

    dataset = explain("finetunejob.spec.dataset")
    assert "The data; with spec.script" in dataset
    fields = explain("finetunejob.spec.dataset").split("FIELDS:", 1)[1]
    entries = [block for block in fields.strip().split("\n\n") if block.strip()]
    names = [block.split()[0] for block in entries]
    assert {"files", "maxLength", "textColumns", "splits"} <= set(names), names
    # A field's block: "name <type>", its enum if any, then its description.
    undescribed = [block.split()[0] for block in entries
                   if not [line for line in block.splitlines()[1:]
                           if not line.strip().startswith("enum:")]]
    assert not undescribed, undescribed
    assert "Training throughput" in explain("finetunejob.status.progress.samplesPerSecond")
    assert "TrainingArguments.learning_rate" in explain("finetunejob.spec.training.learningRate")
