"""What one API request of each kind the operator makes costs the API server, in CPU.

On the two shared cores the operator benchmark's difference to its floor is CPU: the
operator's status writes and Events are requests the floor does not make. This measures
them on the same KWOK control plane: N requests of each kind from 8 threads, with the
kube-apiserver's and etcd's CPU seconds read from /proc before and after.

    python -m bench.api_costs [--requests 400] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config

from bench.operator_bench import control_plane_cpu, finetunejob
from tests.support.cluster import Cluster, build_binaries

THREADS = 8


def status(round_: int) -> dict:
    """A status of the shape the operator writes."""
    now = "2026-11-22T07:00:00Z"
    return {"status": {
        "phase": "Running", "attempt": 1, "restarts": 0, "observedGeneration": 1,
        "message": f"attempt 1: 2 nodes training ({round_})", "startTime": now,
        "conditions": [{"type": "Running", "status": "True", "reason": "AttemptStarted",
                        "message": "attempt 1 started", "lastTransitionTime": now,
                        "observedGeneration": 1}]}}


def event(namespace: str, name: str) -> dict:
    now = "2026-11-22T07:00:00Z"
    return {"metadata": {"generateName": f"{name}."},
            "involvedObject": {"apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob",
                               "name": name, "namespace": namespace},
            "reason": "Running", "message": f"{name} is running", "type": "Normal",
            "source": {"component": "bench"}, "firstTimestamp": now, "lastTimestamp": now,
            "count": 1}


def requests(api: client.ApiClient, namespace: str, round_: int) -> dict:
    """Request kind -> function of the request's index."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    raw = {"_preload_content": False}
    return {
        "create ConfigMap (floor and operator)": lambda i: core.create_namespaced_config_map(
            namespace, {"metadata": {"name": f"config-{i}"}, "data": {"x": "y" * 2000}}, **raw),
        "create FineTuneJob (the user's)": lambda i: custom.create_namespaced_custom_object(
            "ftjob.dev", "v1alpha1", namespace, "finetunejobs",
            finetunejob(f"job-{i}", namespace), **raw),
        "FineTuneJob status write (operator)":
            lambda i: custom.patch_namespaced_custom_object_status(
                "ftjob.dev", "v1alpha1", namespace, "finetunejobs", f"job-{i}",
                status(round_), **raw),
        "create Event (operator)": lambda i: core.create_namespaced_event(
            namespace, event(namespace, f"job-{i}"), **raw),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    costs: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as state:
        cluster = Cluster("ftjob-bench-api", Path(state), build_binaries()).up()
        try:
            cluster.install_crd()
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
            api.configuration.connection_pool_maxsize = THREADS * 2
            for round_ in range(args.rounds):
                namespace = f"costs-{round_}"
                cluster.kubectl("create", "namespace", namespace)
                time.sleep(2)
                for kind, call in requests(api, namespace, round_).items():
                    before = control_plane_cpu(cluster.state_dir)
                    with ThreadPoolExecutor(THREADS) as pool:
                        list(pool.map(call, range(args.requests)))
                    after = control_plane_cpu(cluster.state_dir)
                    costs.setdefault(kind, []).append(tuple(
                        1000 * (after[name] - before[name]) / args.requests
                        for name in ("kube-apiserver", "etcd")))
        finally:
            cluster.down()
    print(f"CPU milliseconds per request, median of {args.rounds} rounds of "
          f"{args.requests} ({THREADS} threads):")
    for kind, rows in costs.items():
        print(f"  {kind:40s} kube-apiserver {statistics.median(r[0] for r in rows):5.1f}"
              f"   etcd {statistics.median(r[1] for r in rows):4.1f}")


if __name__ == "__main__":
    main()
