"""The chart's RBAC is enough to run a real job: the operator runs on the token of the
ServiceAccount the chart installs (namespaced mode: Roles only), in a namespace enforcing
Pod Security `restricted`, and the real trainer finishes through the kubelet stand-in."""

from __future__ import annotations

import os

import pytest

from tests.conftest import OPERATOR_ENV
from tests.e2e.conftest import create_storage_secret
from tests.e2e.test_e2e import cluster_job
from tests.support.helm import CHART, helm, restricted_namespace
from tests.support.operator import OperatorProcess, service_account_kubeconfig
from tests.support.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_operator_on_the_charts_service_account_runs_a_real_job(
        cluster, crd, kubelet, seaweedfs, s3_bucket, minilm_path, tmp_path):
    release = restricted_namespace(cluster, f"ftjob-rbac-{os.getpid()}")
    jobs = restricted_namespace(cluster, f"rbac-e2e-{os.getpid()}")
    s3_bucket("e2e")
    create_storage_secret(cluster, jobs)
    helm(cluster, "install", "ftjob", str(CHART), "-n", release, "--wait", "--timeout", "120s",
         "--set", "crds.enabled=false", "--set", "watch.mode=namespaces",
         "--set", f"watch.namespaces={{{jobs}}}")
    kubeconfig = service_account_kubeconfig(cluster, release, "ftjob",
                                            tmp_path / "operator.kubeconfig")
    operator = OperatorProcess(kubeconfig, jobs, tmp_path / "operator.log",
                               OPERATOR_ENV).start()
    try:
        cluster.apply(cluster_job("rbac", jobs, minilm_path, seaweedfs.endpoint, max_steps=8),
                      namespace=jobs)

        def finished():
            status = cluster.get("finetunejob", "rbac", "-n", jobs).get("status", {})
            return status if status.get("phase") in ("Succeeded", "Failed") else None

        try:
            status = eventually(finished, timeout=500, interval=1, what="the job to finish")
        except AssertionError as error:
            raise AssertionError(f"{error}\noperator log:\n{operator.log()[-3000:]}") from None
        assert status["phase"] == "Succeeded", status.get("message")
        assert status["checkpoint"]["step"] == 8 and "train_loss" in status["metrics"]
        forbidden = [line for line in operator.log().splitlines() if "Forbidden" in line]
        assert not forbidden, forbidden[:3]
    finally:
        operator.kill()
        helm(cluster, "uninstall", "ftjob", "-n", release, "--wait", check=False)
        for namespace in (jobs, release):
            cluster.kubectl("delete", "namespace", namespace, "--wait=false")
