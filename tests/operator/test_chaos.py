"""Chaos: the operator is SIGKILLed at random points while 20 FineTuneJobs are being created
and run, and restarted each time. Deterministic names, create-or-adopt and status-first
decisions must leave no duplicate Jobs and no orphans, and every job must converge."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest
from kubernetes import client, config, watch

from tests.conftest import OPERATOR_ENV
from tests.operator.test_operator import finetunejob
from tests.support.operator import OperatorProcess
from tests.support.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

JOBS = 20
KILLS = 5


def test_operator_killed_repeatedly_while_creating_jobs(cluster, crd, tmp_path):
    namespace = f"chaos-{os.getpid()}"
    cluster.kubectl("create", "namespace", namespace)
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    batch = client.BatchV1Api(api)
    created_jobs: dict[str, int] = {}
    stop = threading.Event()

    def count_job_creations():
        # Every ADDED event of a batch Job: a duplicate attempt would show up here even if
        # it were deleted again before the end.
        stream = watch.Watch()
        try:
            for event in stream.stream(batch.list_namespaced_job, namespace,
                                       timeout_seconds=600):
                if event["type"] == "ADDED":
                    name = event["object"].metadata.name
                    created_jobs[name] = created_jobs.get(name, 0) + 1
                if stop.is_set():
                    stream.stop()
        except Exception:  # noqa: BLE001 - the watch ends when the test does
            if not stop.is_set():
                raise

    watcher = threading.Thread(target=count_job_creations, daemon=True)
    watcher.start()
    operator = OperatorProcess(cluster.kubeconfig, namespace, tmp_path / "operator.log",
                               OPERATOR_ENV)
    rng = random.Random(int(os.environ.get("FTJOB_CHAOS_SEED", "7")))
    names = [f"chaos-{index}" for index in range(JOBS)]

    def create_jobs():
        for name in names:
            cluster.apply(finetunejob(name, {"sim.ftjob.dev/run-for": "4s"}),
                          namespace=namespace)
            time.sleep(rng.uniform(0, 0.6))

    creator = threading.Thread(target=create_jobs)
    try:
        operator.start()
        creator.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(1.0, 5.0))
            operator.kill()
            operator.start()
        creator.join()
        operator.kill()
        operator.start()

        def statuses():
            items = cluster.get("finetunejobs", "-n", namespace)["items"]
            found = {i["metadata"]["name"]: i.get("status", {}) for i in items}
            done = [n for n, s in found.items() if s.get("phase") == "Succeeded"]
            return found if len(done) == JOBS else None

        final = eventually(statuses, timeout=300, interval=2,
                           what=f"all {JOBS} jobs to succeed")
    finally:
        stop.set()
        operator.kill()
    assert {name: status["attempt"] for name, status in final.items()} == \
        {name: 1 for name in names}, "a job needed more than one attempt"
    assert {name: status["restarts"] for name, status in final.items()} == \
        {name: 0 for name in names}
    assert created_jobs == {f"{name}-attempt-1": 1 for name in names}, created_jobs
    # No orphans: every object we label is owned by a FineTuneJob that exists, once.
    uids = {item["metadata"]["uid"]
            for item in cluster.get("finetunejobs", "-n", namespace)["items"]}
    for kind in ["configmaps", "services", "serviceaccounts", "roles", "rolebindings", "jobs"]:
        items = cluster.get(kind, "-n", namespace, "-l",
                            "app.kubernetes.io/managed-by=ftjob")["items"]
        owners = [item["metadata"]["ownerReferences"][0]["uid"] for item in items]
        assert sorted(owners) == sorted(uids), kind
    # The log has a line per phase change, not one per watch event (kopf's "Handler '…'
    # succeeded." at INFO, which at hundreds of jobs cost more CPU than the reconciles).
    log = operator.log()
    assert f"FineTuneJob {namespace}/chaos-0 is Succeeded" in log
    assert "Handler 'attempt_job_changed' succeeded" not in log
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")
