"""Operator at scale on the KWOK cluster: N FineTuneJobs of 2 nodes each.

Floor: a plain script creates the very objects the operator would (same builders: ConfigMap,
Service, ServiceAccount, Role, RoleBinding, Indexed Job per job) with 8 threads. Then the
operator (`kopf run`, its own process) gets N FineTuneJobs created by 8 threads. Both are
timed from the first create until every pod is Running; the ratio is the operator's
overhead over the floor (target: at most 1.2).

    python -m bench.operator_bench [--jobs 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from kubernetes import client, config, utils

from ftjob.api.load import parse_job
from ftjob.controller import manifests
from tests.support.cluster import Cluster, build_binaries, fake_node
from tests.support.seaweedfs import free_port

THREADS = 8
BENCH_NODES = 10


def finetunejob(name: str, namespace: str) -> dict:
    return {"apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"model": {"name": "bert-base-uncased"},
                     "dataset": {"name": "glue", "config": "mrpc",
                                 "textColumns": ["sentence1", "sentence2"]},
                     "distributed": {"nodes": 2},
                     "checkpoints": {"uri": f"s3://bench/{namespace}/{name}"},
                     "podTemplate": {"nodeSelector": {"bench": "true"},
                                     "annotations": {"sim.ftjob.dev/hold": "true"}}}}


def apiserver_requests(cluster: Cluster) -> float:
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("apiserver_request_total{"))


def wait_running(cluster: Cluster, namespace: str, pods: int, started: float) -> float:
    jobs_seen = None
    while True:
        if jobs_seen is None and len(cluster.kubectl(
                "get", "jobs", "-n", namespace, "-o", "name").stdout.split()) >= pods // 2:
            jobs_seen = time.monotonic() - started
            print(f"  [{namespace}] all Jobs exist after {jobs_seen:.1f} s", flush=True)
        listed = cluster.kubectl("get", "pods", "-n", namespace, "-o", "name",
                                 "--field-selector=status.phase=Running").stdout.split()
        if len(listed) >= pods:
            return time.monotonic() - started
        if time.monotonic() - started > 300:
            print(cluster.kubectl("get", "nodes").stdout, cluster.kubectl(
                "get", "pods", "-n", namespace, "--no-headers").stdout[:3000],
                cluster.kubectl("get", "events", "-n", namespace).stdout[-3000:])
            raise SystemExit(f"{namespace}: only {len(listed)} of {pods} pods Running "
                             "after 300 s")
        time.sleep(0.5)


def run_floor(cluster: Cluster, api: client.ApiClient, jobs: int) -> tuple[float, float]:
    namespace = "bench-floor"
    cluster.kubectl("create", "namespace", namespace)
    owner = cluster.apply(finetunejob("owner", namespace), namespace=namespace)
    del owner
    uid = cluster.get("finetunejob", "owner", "-n", namespace)["metadata"]["uid"]
    defaults = manifests.Defaults()

    def create(index: int) -> None:
        job = parse_job(finetunejob(f"job-{index}", namespace))
        for item in [*manifests.build_all(job, uid, defaults),
                     manifests.build_job(job, uid, 1, defaults)]:
            utils.create_from_dict(api, item, namespace=namespace)

    before = apiserver_requests(cluster)
    started = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(create, range(jobs)))
    print(f"  [{namespace}] all objects created after {time.monotonic() - started:.1f} s",
          flush=True)
    seconds = wait_running(cluster, namespace, 2 * jobs, started)
    requests = apiserver_requests(cluster) - before
    cluster.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=300s")
    return seconds, requests


def run_operator(cluster: Cluster, api: client.ApiClient, jobs: int, log: Path) -> dict:
    namespace = "bench-operator"
    cluster.kubectl("create", "namespace", namespace)
    metrics_port = free_port()
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
           "FTJOB_METRICS_PORT": str(metrics_port)}
    operator = subprocess.Popen(
        [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", namespace, "-m",
         "ftjob.controller.handlers"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        process = psutil.Process(operator.pid)
        while "Serving metrics" not in log.read_text():
            time.sleep(0.2)
        time.sleep(2)  # watches established
        custom = client.CustomObjectsApi(api)
        cpu_before = sum(process.cpu_times()[:2])
        before = apiserver_requests(cluster)
        started = time.monotonic()
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(lambda i: custom.create_namespaced_custom_object(
                "ftjob.dev", "v1alpha1", namespace, "finetunejobs",
                finetunejob(f"job-{i}", namespace)), range(jobs)))
        print(f"  [{namespace}] all FineTuneJobs created after "
              f"{time.monotonic() - started:.1f} s", flush=True)
        seconds = wait_running(cluster, namespace, 2 * jobs, started)
        requests = apiserver_requests(cluster) - before
        cpu = sum(process.cpu_times()[:2]) - cpu_before
        rss = process.memory_info().rss / 2**20
        text = subprocess.run(["curl", "-s", f"http://127.0.0.1:{metrics_port}/metrics"],
                              capture_output=True, text=True).stdout
        writes = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.startswith("ftjob_api_requests_total{"))
    finally:
        os.killpg(operator.pid, 9)
        operator.wait()
    return {"seconds": seconds, "requests": requests, "cpu": cpu, "rss": rss,
            "writes": writes}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        cluster = Cluster("ftjob-bench-operator", Path(state), build_binaries()).up()
        try:
            cluster.kubectl("apply", "--server-side", "-f",
                            str(Path(__file__).parent.parent / "crds/finetunejobs.ftjob.dev.yaml"))
            cluster.kubectl("wait", "--for=condition=Established",
                            "crd/finetunejobs.ftjob.dev")
            cluster.apply(*[fake_node(f"bench-node-{i}", {"bench": "true"},
                                      {"cpu": "256", "memory": "2Ti", "pods": "250"}, [])
                            for i in range(BENCH_NODES)])
            cluster.kubectl("wait", "--for=condition=Ready", "node", "-l", "bench=true",
                            "--timeout=60s")
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
            api.configuration.connection_pool_maxsize = THREADS * 2
            floor_seconds, floor_requests = run_floor(cluster, api, args.jobs)
            result = run_operator(cluster, api, args.jobs, Path(state) / "operator.log")
        finally:
            cluster.down()
    jobs = args.jobs
    print(f"{jobs} FineTuneJobs x 2 nodes, all {2 * jobs} pods Running:")
    print(f"  floor (plain script, same objects): {floor_seconds:.1f} s, "
          f"{floor_requests / jobs:.1f} API requests per job (all clients)")
    print(f"  operator:                           {result['seconds']:.1f} s, "
          f"{result['requests'] / jobs:.1f} API requests per job (all clients), "
          f"{result['writes'] / jobs:.1f} operator API calls per job")
    print(f"  ratio operator/floor: {result['seconds'] / floor_seconds:.2f}  (target <= 1.2)")
    print(f"  operator: RSS {result['rss']:.0f} MiB, CPU {result['cpu']:.1f} s "
          f"({result['cpu'] / result['seconds']:.2f} cores while creating)")


if __name__ == "__main__":
    main()
