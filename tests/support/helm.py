"""Helm against the test cluster, with the binary the cluster's build made."""

from __future__ import annotations

import subprocess

from tests.support.cluster import REPO

CHART = REPO / "charts/ftjob"


def helm(cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([cluster.binaries["helm"], "--kubeconfig", str(cluster.kubeconfig),
                             *args], capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def restricted_namespace(cluster, name: str) -> str:
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    return name
