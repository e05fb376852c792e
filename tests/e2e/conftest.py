"""Fixtures of the end-to-end tests: the kubelet stand-in and the jobs' storage."""

from __future__ import annotations

import base64

import pytest

from tests.e2e.kubelet import LocalKubelet
from tests.support.seaweedfs import ACCESS_KEY, SECRET_KEY


@pytest.fixture
def kubelet(cluster, tmp_path):
    stand_in = LocalKubelet(cluster.kubeconfig, tmp_path / "kubelet", extra_env={
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        "FTJOB_STATUS_INTERVAL": "1", "PYTHONUNBUFFERED": "1"}).start()
    yield stand_in
    stand_in.stop()
    for container in stand_in.containers.values():  # shown when a test fails
        print(f"--- {container.pod} (exit {container.process.returncode})\n"
              f"{container.log.read_text(errors='replace')[-4000:]}")


def create_storage_secret(cluster, namespace: str) -> None:
    """The Secret the operator's default credentialsSecret (tests/conftest.py) names."""
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "storage-credentials"},
              "data": {key: base64.b64encode(value.encode()).decode() for key, value in
                       {"AWS_ACCESS_KEY_ID": ACCESS_KEY,
                        "AWS_SECRET_ACCESS_KEY": SECRET_KEY}.items()}}
    cluster.apply(secret, namespace=namespace)


@pytest.fixture
def storage(cluster, namespace, seaweedfs, s3_bucket):
    s3_bucket("e2e")
    create_storage_secret(cluster, namespace)
    return seaweedfs
