"""The trainer's status sink against the real API server, with the per-job ServiceAccount
and Role the operator creates: it can patch its own job's status and nothing else."""

from __future__ import annotations


import pytest
import yaml

from ftjob.api.load import parse_job
from ftjob.controller import manifests
from ftjob_trainer.kubernetes_status import KubernetesStatusSink
from tests.support.seaweedfs import free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.cluster


def finetunejob(name: str) -> dict:
    return {"apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob",
            "metadata": {"name": name},
            "spec": {"model": {"name": "m"}, "dataset": {"files": {"train": "s3://data/t.csv"}},
                     "checkpoints": {"uri": "s3://bkt/c"},
                     "runPolicy": {"suspend": True}}}


@pytest.fixture
def job_identity(cluster, crd, namespace, tmp_path):
    """Two FineTuneJobs and the ServiceAccount token of the first one's trainer."""
    cluster.apply(finetunejob("mine"), finetunejob("other"), namespace=namespace)
    body = cluster.get("finetunejob", "mine", "-n", namespace)
    job = parse_job({**finetunejob("mine"), "metadata": {"name": "mine",
                                                          "namespace": namespace}})
    uid = body["metadata"]["uid"]
    cluster.apply(manifests.build_service_account(job, uid), manifests.build_role(job, uid),
                  manifests.build_role_binding(job, uid), namespace=namespace)
    token = cluster.kubectl("create", "token", "mine-trainer", "-n", namespace).stdout.strip()
    (tmp_path / "token").write_text(token)
    kubeconfig = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]
    return kubeconfig["server"], kubeconfig["certificate-authority"], str(tmp_path / "token")


def status(cluster, namespace, name):
    return cluster.get("finetunejob", name, "-n", namespace).get("status", {})


def events(count: int):
    yield {"event": "started", "time": "t0", "step": 0, "maxSteps": count, "worldSize": 2}
    for step in range(1, count + 1):
        yield {"event": "progress", "time": f"t{step}", "step": step, "maxSteps": count,
               "epoch": step / count, "percent": 100 * step / count, "loss": 1 / step,
               "learningRate": 1e-5, "samplesPerSecond": 50.0, "etaSeconds": count - step,
               "gradNorm": 0.5}
    yield {"event": "eval", "time": "te", "step": count,
           "metrics": {"eval_accuracy": 0.8, "eval_loss": 0.4, "epoch": 1}}
    yield {"event": "checkpoint", "time": "tc", "step": count, "uri": "s3://bkt/c/checkpoint-40",
           "savedAt": "2026-11-22T00:00:00.000Z", "uploadSeconds": 1.0}


def test_rank0_patches_progress_metrics_and_checkpoint_of_its_own_job(cluster, namespace,
                                                                      job_identity):
    server, ca, token = job_identity
    sink = KubernetesStatusSink(server, namespace, "mine", token, ca, interval=0.5)
    for record in events(40):
        sink.write(record)
    sink.close()
    found = eventually(lambda: (lambda s: s if s.get("checkpoint") else None)(
        status(cluster, namespace, "mine")), what="the checkpoint on status")
    assert found["checkpoint"] == {"uri": "s3://bkt/c/checkpoint-40", "step": 40,
                                   "savedAt": "2026-11-22T00:00:00.000Z", "uploadSeconds": 1.0}
    assert found["progress"]["step"] == 40 and found["progress"]["loss"] == 1 / 40
    assert "gradNorm" not in found["progress"]
    assert found["metrics"] == {"epoch": 1.0, "eval_accuracy": 0.8, "eval_loss": 0.4}
    assert 1 <= sink.patches_sent < 10  # 43 events, coalesced


def test_the_job_token_cannot_patch_another_jobs_status(cluster, namespace, job_identity,
                                                        capfd):
    server, ca, token = job_identity
    sink = KubernetesStatusSink(server, namespace, "other", token, ca, interval=0.2)
    for record in events(3):
        sink.write(record)
    sink.close(wait=5)
    assert sink.patches_sent == 0
    assert "Forbidden" in capfd.readouterr().err
    assert "checkpoint" not in status(cluster, namespace, "other")
    forbidden = cluster.kubectl("auth", "can-i", "patch", "finetunejobs/other",
                                "--subresource=status", "-n", namespace,
                                f"--as=system:serviceaccount:{namespace}:mine-trainer",
                                check=False)
    assert forbidden.stdout.strip() == "no"


def test_an_unreachable_api_server_never_raises(tmp_path):
    (tmp_path / "token").write_text("x")
    sink = KubernetesStatusSink(f"https://127.0.0.1:{free_port()}", "ns", "job",
                                str(tmp_path / "token"), None, interval=0.1, timeout=1)
    for record in events(200):
        sink.write(record)
    sink.close(wait=3)
    assert sink.patches_sent == 0
