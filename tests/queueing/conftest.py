"""Fixtures of the queueing tests: real Kueue on the test cluster, and the end-to-end
tests' kubelet stand-in and storage for jobs that train for real.

These tests run after tests/operator (pytest takes folders in name order): that one checks
what a queued job says on a cluster without Kueue, and Kueue's CRDs stay once installed."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import kubelet, storage  # noqa: F401 - fixtures used here
from tests.support.cluster import ClusterError
from tests.support.kueue import Kueue


@pytest.fixture(scope="module")
def kueue(cluster, tmp_path_factory):
    manager = Kueue(cluster, tmp_path_factory.mktemp("kueue"))
    try:
        manager.start()
    except ClusterError as error:
        pytest.fail(str(error), pytrace=False)
    yield manager
    manager.stop()
    print(f"--- Kueue's log\n{manager.log_tail()}")
