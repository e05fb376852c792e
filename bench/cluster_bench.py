"""Measures the test cluster: warm `cluster-up` (binaries cached, fresh state), the control
plane's memory and CPU at idle, and how many pods per second it takes from a Job's creation
to Running with KWOK's and the controllers' client QPS limits disabled.

    python -m bench.cluster_bench [--pods 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import psutil

from tests.support.cluster import Cluster, build_binaries, fake_node

BENCH_NODES = 10


def control_plane_usage(cluster: Cluster, seconds: float) -> tuple[float, float]:
    """(RSS in MiB, CPU in cores) of the control plane's processes over `seconds`."""
    processes = [psutil.Process(pid) for pid in cluster.pids().values()]
    before = sum(sum(p.cpu_times()[:2]) for p in processes)
    time.sleep(seconds)
    cpu = (sum(sum(p.cpu_times()[:2]) for p in processes) - before) / seconds
    return sum(p.memory_info().rss for p in processes) / 2**20, cpu


def running_pods(cluster: Cluster, namespace: str) -> int:
    listed = cluster.kubectl("get", "pods", "-n", namespace, "-o", "name",
                             "--field-selector=status.phase=Running").stdout
    return len(listed.split())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=1000)
    args = parser.parse_args()
    binaries = build_binaries()
    with tempfile.TemporaryDirectory() as state:
        cluster = Cluster("ftjob-bench", Path(state), binaries)
        started = time.monotonic()
        cluster.up()
        up_seconds = time.monotonic() - started
        started = time.monotonic()
        cluster.up()
        again_seconds = time.monotonic() - started
        try:
            time.sleep(20)  # let start-up work settle
            idle_rss, idle_cpu = control_plane_usage(cluster, 20)
            cluster.apply(*[fake_node(f"bench-node-{i}", {"bench": "true"},
                                      {"cpu": "256", "memory": "2Ti", "pods": "250"}, [])
                            for i in range(BENCH_NODES)])
            cluster.kubectl("wait", "--for=condition=Ready", "node", "-l", "bench=true",
                            "--timeout=60s")
            cluster.kubectl("create", "namespace", "bench")
            started = time.monotonic()
            cluster.apply({
                "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "many"},
                "spec": {"completions": args.pods, "parallelism": args.pods,
                         "template": {
                             "metadata": {"annotations": {"sim.ftjob.dev/hold": "true"}},
                             "spec": {"restartPolicy": "Never",
                                      "nodeSelector": {"bench": "true"},
                                      "containers": [{"name": "c", "image": "x"}]}}}},
                namespace="bench")
            while running_pods(cluster, "bench") < args.pods:
                time.sleep(0.5)
            load_seconds = time.monotonic() - started
            loaded_rss, _ = control_plane_usage(cluster, 1)
        finally:
            cluster.down()
    print(f"warm cluster-up (fresh state, 5 nodes Ready):  {up_seconds:.1f} s  (target < 60 s)")
    print(f"cluster-up again on a running cluster:         {again_seconds:.1f} s")
    print(f"control plane at idle:  RSS {idle_rss:.0f} MiB, CPU {idle_cpu:.2f} cores")
    print(f"{args.pods} pods of one Job to Running:  {load_seconds:.1f} s = "
          f"{args.pods / load_seconds:.0f} pods/s  (RSS after: {loaded_rss:.0f} MiB)")


if __name__ == "__main__":
    main()
