"""The operator's manifest builders: table-driven cases and golden YAML for a multi-node
GPU job."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ftjob.api.load import parse_job
from ftjob.controller import manifests
from ftjob.controller.manifests import Defaults, Names, SpecProblem

GOLDEN = Path(__file__).parent / "golden"
DEFAULTS = Defaults(image="registry.example/trainer:1", checkpoint_uri="s3://ckpt/",
                    credentials_secret="s3-creds")


def job(**spec):
    body = {"apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob",
            "metadata": {"name": "bert", "namespace": "team-a"},
            "spec": {"model": {"name": "bert-base-uncased"},
                     "dataset": {"name": "glue", "config": "mrpc",
                                 "textColumns": ["sentence1", "sentence2"]},
                     **spec}}
    return parse_job(body)


def golden_objects():
    gpu_job = job(distributed={"nodes": 2, "gpusPerNode": 8, "strategy": "deepspeed"},
                  podTemplate={"nodeSelector": {"pool": "a100"},
                               "env": [{"name": "NCCL_DEBUG", "value": "WARN"}]})
    return [*manifests.build_all(gpu_job, "uid-1", DEFAULTS),
            manifests.build_data_check(gpu_job, "uid-1", DEFAULTS),
            manifests.build_job(gpu_job, "uid-1", 3, DEFAULTS, "s3://ckpt/x/checkpoint-50")]


def test_multi_node_gpu_job_matches_golden():
    rendered = yaml.safe_dump_all(golden_objects(), sort_keys=True)
    assert rendered == (GOLDEN / "multinode-deepspeed.yaml").read_text(), \
        "golden changed: review, then regenerate with tests/unit/golden/regenerate.py"


def command(**distributed):
    return manifests.build_job(job(distributed=distributed), "u", 2, DEFAULTS)[
        "spec"]["template"]["spec"]["containers"][0]["command"]


@pytest.mark.parametrize("distributed, expected", [
    ({}, ["torchrun", "--nproc-per-node", "1", "--standalone"]),
    ({"gpusPerNode": 4}, ["torchrun", "--nproc-per-node", "4", "--standalone"]),
    ({"nodes": 3, "gpusPerNode": 8},
     ["torchrun", "--nproc-per-node", "8", "--nnodes", "3", "--node-rank",
      "$(JOB_COMPLETION_INDEX)", "--master-addr", "bert-attempt-2-0.bert", "--master-port",
      "29500"]),
    ({"nodes": 2, "gpusPerNode": 2, "launcher": "accelerate"},
     ["accelerate", "launch", "--config_file", "/etc/ftjob/accelerate.yaml", "--machine_rank",
      "$(JOB_COMPLETION_INDEX)", "--main_process_ip", "bert-attempt-2-0.bert",
      "--main_process_port", "29500"]),
])
def test_launch_command(distributed, expected):
    found = command(**distributed)
    # The launcher runs under the wrapper whose exit code says "saved and stopped".
    wrapper = ["python", "-m", "ftjob_trainer.preemptible", "--"]
    assert found[:len(wrapper)] == wrapper
    found = found[len(wrapper):]
    assert found[:len(expected)] == expected
    assert found[-3:] == ["-m", "ftjob_trainer", "/etc/ftjob/config.json"]


@pytest.mark.parametrize("spec, check", [
    ({"distributed": {"nodes": 2, "gpusPerNode": 8}},
     lambda j: j["spec"]["completions"] == j["spec"]["parallelism"] == 2),
    ({"distributed": {"gpusPerNode": 8}},
     lambda j: pod(j)["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
     and {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
     in pod(j)["tolerations"]),
    ({}, lambda j: "tolerations" not in pod(j)
     and "nvidia.com/gpu" not in str(pod(j)["containers"][0]["resources"])),
    ({"resources": {"requests": {"cpu": "8", "memory": "64Gi"}}},
     lambda j: pod(j)["containers"][0]["resources"] == {"requests": {"cpu": "8",
                                                                     "memory": "64Gi"}}),
    ({"runPolicy": {"queueName": "team-a", "priorityClassName": "high"}},
     lambda j: j["spec"]["suspend"] is True
     and j["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
     and pod(j)["priorityClassName"] == "high"),
    ({}, lambda j: j["spec"]["suspend"] is False and j["spec"]["backoffLimit"] == 0),
    ({"checkpoints": {"uri": "s3://bkt/j", "credentialsSecret": "mine"},
      "output": {"uri": "s3://bkt/m", "credentialsSecret": "mine"}},
     lambda j: pod(j)["containers"][0]["envFrom"] == [{"secretRef": {"name": "mine"}}]),
    ({"output": {"uri": "gs://models", "credentialsSecret": "gcs"}},
     lambda j: pod(j)["containers"][0]["envFrom"] == [{"secretRef": {"name": "s3-creds"}},
                                                      {"secretRef": {"name": "gcs"}}]),
    # The Hub token stays in its Secret, read as HF_TOKEN the way huggingface_hub reads it.
    ({"output": {"pushToHub": {"repo": "org/m", "tokenSecret": "hub"}}},
     lambda j: {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub",
                                                                  "key": "token"}}}
     in pod(j)["containers"][0]["env"]),
    ({"podTemplate": {"labels": {"team": "a", "ftjob.dev/job-name": "spoofed"},
                      "annotations": {"a": "b"}, "tolerations": [{"key": "spot",
                                                                   "operator": "Exists"}],
                      "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}],
                      "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                      "imagePullSecrets": ["regcred"], "schedulerName": "volcano"}},
     lambda j: pod_meta(j)["labels"]["team"] == "a"
     and pod_meta(j)["labels"]["ftjob.dev/job-name"] == "bert"
     and pod_meta(j)["annotations"] == {"a": "b"}
     and pod(j)["tolerations"] == [{"key": "spot", "operator": "Exists"}]
     and pod(j)["volumes"][-1]["name"] == "data"
     and pod(j)["containers"][0]["volumeMounts"][-1]["mountPath"] == "/data"
     and pod(j)["imagePullSecrets"] == [{"name": "regcred"}]
     and pod(j)["schedulerName"] == "volcano"),
    ({"image": "mine:2"}, lambda j: pod(j)["containers"][0]["image"] == "mine:2"),
    ({}, lambda j: pod(j)["containers"][0]["image"] == DEFAULTS.image
     and pod(j)["serviceAccountName"] == "bert-trainer" and pod(j)["subdomain"] == "bert"
     and pod(j)["restartPolicy"] == "Never"
     and pod(j)["securityContext"]["runAsNonRoot"] is True
     and pod(j)["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}),
])
def test_build_job(spec, check):
    assert check(manifests.build_job(job(**spec), "u", 1, DEFAULTS))


def pod(built):
    return built["spec"]["template"]["spec"]


def pod_meta(built):
    return built["spec"]["template"]["metadata"]


def test_every_object_is_owned_labelled_and_named_after_the_job():
    built = golden_objects()
    assert [(o["kind"], o["metadata"]["name"]) for o in built] == [
        ("ConfigMap", "bert-trainer-config"), ("Service", "bert"),
        ("ServiceAccount", "bert-trainer"), ("Role", "bert-trainer"),
        ("RoleBinding", "bert-trainer"), ("Job", "bert-data-check"),
        ("Job", "bert-attempt-3")]
    for item in built:
        assert item["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
        assert item["metadata"]["ownerReferences"][0]["controller"] is True
        assert item["metadata"]["labels"]["ftjob.dev/job-name"] == "bert"


def test_role_allows_only_this_jobs_status():
    role = manifests.build_role(job(), "u")
    assert role["rules"] == [{"apiGroups": ["ftjob.dev"], "resources": ["finetunejobs/status"],
                              "resourceNames": ["bert"], "verbs": ["get", "patch"]}]


def test_checkpoint_uri_comes_from_the_spec_or_the_operator_default():
    assert manifests.checkpoint_uri(job(), DEFAULTS) == "s3://ckpt/team-a/bert"
    assert manifests.checkpoint_uri(job(checkpoints={"uri": "gs://mine/x"}), DEFAULTS) == \
        "gs://mine/x"
    with pytest.raises(SpecProblem, match="spec.checkpoints.uri is required"):
        manifests.checkpoint_uri(job(), Defaults())


def test_config_map_holds_no_secret_and_points_at_storage():
    config_map = manifests.build_config_map(
        job(checkpoints={"credentialsSecret": "s3-creds"}), "u", DEFAULTS)
    assert "s3-creds" not in str(config_map)
    assert '"checkpoint_uri": "s3://ckpt/team-a/bert"' in config_map["data"]["config.json"]
    assert '"kubernetes_status": true' in config_map["data"]["config.json"]


def test_the_data_check_is_one_cpu_pod_with_the_jobs_image_credentials_and_placement():
    gpu_job = job(distributed={"nodes": 4, "gpusPerNode": 8},
                  runPolicy={"queueName": "gpus"},
                  resources={"limits": {"memory": "200Gi"}},
                  podTemplate={"nodeSelector": {"pool": "a100"},
                               "annotations": {"sidecar.istio.io/inject": "false"}})
    defaults = Defaults(image="registry.example/trainer:1", checkpoint_uri="s3://ckpt/",
                        credentials_secret="s3-creds",
                        data_check_resources={"requests": {"cpu": "1"}},
                        data_check_timeout_seconds=120)
    check = manifests.build_data_check(gpu_job, "u", defaults)
    attempt = manifests.build_job(gpu_job, "u", 1, defaults)
    pod, training_pod = check["spec"]["template"], attempt["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert check["metadata"]["name"] == "bert-data-check"
    assert check["metadata"]["labels"]["ftjob.dev/attempt"] == "0"
    assert container["command"] == ["python", "-m", "ftjob_trainer.data_check",
                                    "/etc/ftjob/config.json"]
    assert container["resources"] == {"requests": {"cpu": "1"}}  # no GPU, not the job's
    assert "nvidia.com/gpu" in str(training_pod["spec"]["containers"][0]["resources"])
    for same in ("image", "envFrom", "volumeMounts"):
        assert container[same] == training_pod["spec"]["containers"][0][same], same
    for same in ("nodeSelector", "tolerations", "serviceAccountName", "volumes"):
        assert pod["spec"][same] == training_pod["spec"][same], same
    assert pod["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    # Not queued (it holds no GPU) and never stuck: the deadline gives it up.
    assert "suspend" not in check["spec"] and attempt["spec"]["suspend"] is True
    assert "kueue.x-k8s.io/queue-name" not in check["metadata"]["labels"]
    assert check["spec"]["activeDeadlineSeconds"] == 120
    assert check["spec"]["backoffLimit"] == 0


@pytest.mark.parametrize("path, refused", [
    ("train.py", True), ("./scripts/train.py", True), ("../train.py", True),
    ("/app/train.py", False), ("s3://code/train.py", False), ("gs://b/t.py", False),
])
def test_a_script_on_the_cluster_is_in_storage_or_the_image(path, refused):
    script_job = parse_job({"apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob",
                            "metadata": {"name": "s", "namespace": "team-a"},
                            "spec": {"script": {"path": path}}})
    if refused:
        with pytest.raises(SpecProblem, match=r"^spec.script.path: on the cluster a script"):
            manifests.check_for_cluster(script_job, DEFAULTS)
    else:
        manifests.check_for_cluster(script_job, DEFAULTS)


def gpu_node(name: str, mib: str | None, **labels) -> dict:
    return {"metadata": {"name": name, "labels": {
        **({"nvidia.com/gpu.memory": mib} if mib is not None else {}), **labels}}}


NODES = [gpu_node("a100-40", "40960", pool="a100"), gpu_node("h100", "81559", pool="h100"),
         gpu_node("cpu", None), gpu_node("odd", "lots")]


@pytest.mark.parametrize("spec, expected", [
    ({"distributed": {"gpusPerNode": 8}}, (40960 * 2**20, "a100-40")),  # the smallest
    ({"distributed": {"gpusPerNode": 8}, "podTemplate": {"nodeSelector": {"pool": "h100"}}},
     (81559 * 2**20, "h100")),
    ({"distributed": {"gpusPerNode": 8}, "podTemplate": {"nodeSelector": {"pool": "tpu"}}},
     None),                                                            # no node says
    ({"distributed": {"gpusPerNode": 0}}, None),                       # a CPU job
])
def test_the_gpu_memory_a_job_can_count_on(spec, expected):
    found = manifests.gpu_memory_of(job(**spec), NODES)
    assert (found and (found[0], found[1].split("node ")[1].split(" ")[0])) == expected


def test_the_data_check_is_asked_the_memory_fit_when_the_gpu_memory_is_known():
    import json

    gpu_job = job(distributed={"nodes": 2, "gpusPerNode": 8, "strategy": "deepspeed",
                               "deepspeed": {"zeroStage": 3}}, training={"bf16": True})
    built = manifests.build_data_check(gpu_job, "uid", DEFAULTS, (80 * 2**30, "labels"))
    env = {e["name"]: e.get("value") for e in pod(built)["containers"][0]["env"]}
    asked = json.loads(env["FTJOB_MEMORY_FIT"])
    assert asked["gpuMemoryBytes"] == 80 * 2**30 and asked["gpuMemorySource"] == "labels"
    assert asked["layout"]["world_size"] == 16 and asked["layout"]["zero_stage"] == 3
    assert asked["layout"]["mixed_precision"] is True
    unknown = manifests.build_data_check(gpu_job, "uid", DEFAULTS, None)
    assert "FTJOB_MEMORY_FIT" not in {e["name"] for e in
                                      pod(unknown)["containers"][0]["env"]}


def test_the_pods_grace_period_covers_the_measured_final_save():
    assert pod(manifests.build_job(job(), "uid", 2, DEFAULTS, None))[
        "terminationGracePeriodSeconds"] == 60                       # the floor
    assert pod(manifests.build_job(job(), "uid", 2, DEFAULTS, None, grace_seconds=95.2))[
        "terminationGracePeriodSeconds"] == 96


@pytest.mark.parametrize("job_name, finetunejob", [
    ("bert-attempt-3", "bert"), ("my-attempt-1-attempt-12", "my-attempt-1"),
    ("bert-data-check", None), ("bert-attempt-", None), ("-attempt-2", None),
    ("bert-attempt-x", None), ("batch-job", None)])
def test_an_attempts_job_name_gives_back_its_finetunejob(job_name, finetunejob):
    assert Names.finetunejob_of(job_name) == finetunejob
    if finetunejob:
        assert Names(finetunejob).attempt(int(job_name.rsplit("-", 1)[1])) == job_name
