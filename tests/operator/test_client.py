"""ftjob.Client and the cluster verbs of the `ftjob` command against the real API server,
with the operator running and KWOK playing the pods."""

from __future__ import annotations

import json
import threading

import pytest
import yaml

from ftjob.api.load import SpecError
from ftjob.api.status import FineTuneJobStatus
from ftjob.cli import main
from ftjob.client import (CheckpointSaved, Client, ClientError, JobFailed, NotFound,
                          PhaseChanged, Progressed)
from tests.operator.test_operator import finetunejob
from tests.support.waiting import eventually

pytestmark = pytest.mark.cluster


@pytest.fixture
def sdk(cluster, namespace, operator) -> Client:
    return Client(namespace=namespace, kubeconfig=str(cluster.kubeconfig))


def patch_status(cluster, namespace: str, name: str, status: dict) -> None:
    """What the trainer's status sink does."""
    cluster.kubectl("patch", "finetunejob", name, "-n", namespace, "--subresource", "status",
                    "--type", "merge", "-p", json.dumps({"status": status}))


def test_submit_a_yaml_file_with_overrides_then_get_list_and_wait(sdk, tmp_path):
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(finetunejob("sdk", {"sim.ftjob.dev/run-for": "2s"})))
    submitted = sdk.submit(job_file, overrides=["training.maxSteps=20"])
    assert (submitted.name, submitted.namespace) == ("sdk", sdk.namespace)
    assert submitted.job.spec.training == {"max_steps": 20}
    assert [view.name for view in sdk.list()] == ["sdk"]
    done = sdk.wait("sdk", timeout=120)
    assert isinstance(done.status, FineTuneJobStatus)
    assert done.status.phase == "Succeeded" and done.condition("Succeeded").status == "True"
    assert sdk.get("sdk").status.completion_time is not None


def test_refusals_name_the_field_whoever_refuses(sdk, cluster):
    with pytest.raises(SpecError) as local:
        sdk.submit(finetunejob("typo", training={"learningRat": 0.1}))
    assert local.value.problems[0][0] == "spec.training.learningRat"
    with pytest.raises(SpecError) as on_cluster:
        sdk.submit({"apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob",
                    "metadata": {"name": "script"}, "spec": {"script": {"path": "train.py"}}})
    assert on_cluster.value.problems[0][0] == "spec.script.path"
    # What only the API server checks comes back in the same shape.
    with pytest.raises(SpecError) as server:
        sdk.submit({**finetunejob("labels"), "metadata": {
            "name": "labels", "labels": {"team": "not a label value!"}}})
    (path, message), = server.value.problems
    assert path == "metadata.labels" and "not a label value!" in message, server.value
    assert sdk.list() == []  # nothing half-created
    sdk.submit(finetunejob("twice", {"sim.ftjob.dev/hold": "true"}))
    with pytest.raises(ClientError, match="FineTuneJob twice already exists in namespace"):
        sdk.submit(finetunejob("twice"))
    with pytest.raises(NotFound, match="no FineTuneJob nosuch in namespace"):
        sdk.get("nosuch")
    elsewhere = Client(namespace="no-such-namespace", kubeconfig=str(cluster.kubeconfig))
    with pytest.raises(NotFound, match="no namespace no-such-namespace"):
        elsewhere.submit(finetunejob("lost"))


def test_watch_yields_phases_progress_and_checkpoints_in_order(sdk, cluster):
    sdk.submit(finetunejob("watched", {"sim.ftjob.dev/hold": "true"}))
    events = []
    watcher = threading.Thread(target=lambda: events.extend(sdk.watch("watched", timeout=120)))
    watcher.start()
    sdk.wait("watched", condition="Running", timeout=60)
    for step in range(1, 6):
        status = {"progress": {"step": step, "maxSteps": 5, "loss": 1.0 / step}}
        if step == 4:
            status["checkpoint"] = {"uri": "s3://x/checkpoint-4", "step": 4,
                                    "savedAt": "2026-12-01T00:00:00.000Z"}
        patch_status(cluster, sdk.namespace, "watched", status)
    cluster.kubectl("annotate", "pods", "-n", sdk.namespace, "--overwrite", "-l",
                    "ftjob.dev/job-name=watched", "sim.ftjob.dev/hold=false")
    watcher.join(timeout=120)
    assert not watcher.is_alive()
    phases = [e.phase for e in events if isinstance(e, PhaseChanged)]
    assert phases == ["Initializing", "Running", "Succeeded"], events
    assert [e.progress.step for e in events if isinstance(e, Progressed)] == [1, 2, 3, 4, 5]
    assert [e.checkpoint.step for e in events if isinstance(e, CheckpointSaved)] == [4]
    order = [type(e).__name__ for e in events]
    assert order.index("CheckpointSaved") > order.index("Progressed")


def test_suspend_resume_delete_and_a_failed_wait(sdk):
    sdk.submit(finetunejob("paused", {"sim.ftjob.dev/hold": "true"}))
    sdk.wait("paused", condition="Running", timeout=60)
    assert sdk.suspend("paused").job.spec.run_policy.suspend is True
    sdk.wait("paused", condition="Suspended", timeout=60)
    sdk.resume("paused")
    running = eventually(lambda: (lambda v: v if v.status.phase == "Running" and
                                  v.status.attempt == 2 else None)(sdk.get("paused")),
                         timeout=60, what="attempt 2 running")
    assert running.status.restarts == 0
    sdk.delete("paused")
    eventually(lambda: not [v for v in sdk.list() if v.name == "paused"],
               what="the job to go")

    sdk.submit(finetunejob("broken", {"sim.ftjob.dev/exit-code": "65"}))
    with pytest.raises(JobFailed, match="broken is Failed: attempt 1 failed"):
        sdk.wait("broken", timeout=60)
    with pytest.raises(TimeoutError):
        sdk.submit(finetunejob("slow", {"sim.ftjob.dev/hold": "true"}))
        sdk.wait("slow", timeout=3)


def test_the_cluster_verbs_of_the_ftjob_command(cluster, namespace, operator, tmp_path,
                                                capsys):
    where = ["-n", namespace, "--kubeconfig", str(cluster.kubeconfig)]

    def ftjob(*args: str) -> tuple[int, str, str]:
        code = main([*args, *where])
        out = capsys.readouterr()
        return code, out.out, out.err

    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(finetunejob("cli", {"sim.ftjob.dev/hold": "true"})))
    assert ftjob("submit", str(job_file), "--set", "training.maxSteps=30")[:2] == \
        (0, f"finetunejob {namespace}/cli submitted\n")
    eventually(lambda: ftjob("status", "cli")[1].count("Phase:      Running"),
               timeout=60, what="cli running")
    patch_status(cluster, namespace, "cli", {"progress": {
        "step": 12, "maxSteps": 30, "percent": 40.0, "loss": 0.5312, "etaSeconds": 3725}})
    code, listed, _ = ftjob("list")
    header, row = listed.splitlines()
    assert header.split() == ["NAME", "PHASE", "PROGRESS", "STEP", "LOSS", "ETA", "AGE"]
    assert row.split()[:6] == ["cli", "Running", "40%", "12/30", "0.5312", "1h02m"]
    assert ftjob("list", "-o", "name")[:2] == (0, "cli\n")  # what shell completion offers
    code, status, _ = ftjob("status", "cli")
    assert "Progress:   step 12/30 (40%), loss 0.5312" in status
    assert "Conditions:" in status and "AllPodsReady" in status
    assert ftjob("suspend", "cli")[0] == 0
    eventually(lambda: "Phase:      Suspended" in ftjob("status", "cli")[1], timeout=60,
               what="cli suspended")
    assert ftjob("resume", "cli")[0] == 0
    eventually(lambda: "Phase:      Running (attempt 2)" in ftjob("status", "cli")[1],
               timeout=60, what="cli running again")
    cluster.kubectl("annotate", "pods", "-n", namespace, "--overwrite", "-l",
                    "ftjob.dev/job-name=cli", "sim.ftjob.dev/hold=false")
    code, _, err = ftjob("watch", "cli")
    assert code == 0 and "Succeeded: all 2 nodes of attempt 2 finished" in err
    assert ftjob("delete", "cli")[0] == 0

    code, _, err = ftjob("status", "nosuch")
    assert (code, err) == (2, f"ftjob: no FineTuneJob nosuch in namespace {namespace}\n")
    code, _, err = ftjob("submit", str(job_file), "--set", "training.learningRat=1")
    assert code == 1 and "  spec.training.learningRat: " in err and "Traceback" not in err
