"""Operator at scale on the KWOK cluster: N FineTuneJobs of 2 nodes each.

Floor: a plain script creates the same objects directly with 8 threads: each FineTuneJob
and what the operator would create for it (same builders: ConfigMap, Service,
ServiceAccount, Role, RoleBinding, Indexed Job), nothing else. Then the
operator (`kopf run`, its own process) gets N FineTuneJobs created by 8 threads. Both are
timed from the first create until a pod watch has seen every pod Running; the ratio is the
operator's overhead over the floor (target: at most 1.2). Floor and operator alternate
(ABBA) for --rounds rounds; the median of the rounds' ratios is the figure to quote, since
the two cores' load drifts between runs. CPU seconds of each control-plane process and of
the operator show where the difference goes.

    python -m bench.operator_bench [--jobs 200] [--rounds 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
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
PODS_PER_NODE = 250


def wait_limit(pods: int) -> int:
    """Seconds to wait for every pod: 300, more for thousands of jobs."""
    return max(300, pods // 4)


def finetunejob(name: str, namespace: str) -> dict:
    return {"apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"model": {"name": "bert-base-uncased"},
                     "dataset": {"name": "glue", "config": "mrpc",
                                 "textColumns": ["sentence1", "sentence2"]},
                     "distributed": {"nodes": 2},
                     "checkpoints": {"uri": f"s3://bench/{namespace}/{name}"},
                     # The floor script creates only the training Jobs: like for like, the
                     # data check's CPU pod (which KWOK would hold too) is left out.
                     "runPolicy": {"preflight": "off"},
                     "podTemplate": {"nodeSelector": {"bench": "true"},
                                     "annotations": {"sim.ftjob.dev/hold": "true"}}}}


def apiserver_requests(cluster: Cluster) -> float:
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("apiserver_request_total{"))


def print_timeline(cluster: Cluster, namespace: str, started_at: float) -> None:
    """When the last Job and pod were created and the last pod started (API timestamps,
    1 s resolution), relative to the first create; Jobs only where the operator makes
    them (Kubeflow's creates pods itself)."""
    def moments(kind: str, path) -> str:
        items = cluster.get(kind, "-n", namespace)["items"]
        if not items:
            return "-"
        latest = max(datetime.strptime(path(item), "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=timezone.utc).timestamp() for item in items)
        return f"{latest - started_at:.0f} s"
    created = lambda item: item["metadata"]["creationTimestamp"]  # noqa: E731
    print(f"  [{namespace}] last Job created {moments('jobs', created)}, last pod created "
          f"{moments('pods', created)}, last pod started "
          f"{moments('pods', lambda item: item['status']['startTime'])}", flush=True)


CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-scheduler", "kube-controller-manager",
                 "kwok-controller")


def control_plane_cpu(state: Path) -> dict[str, float]:
    """CPU seconds so far of this cluster's processes, by program (they share the cores
    with the operator or the floor script)."""
    seconds = {}
    for process in psutil.process_iter(["name", "cmdline", "cpu_times"]):
        name, cmdline = process.info["name"], " ".join(process.info["cmdline"] or ())
        if name in CONTROL_PLANE and str(state) in cmdline:
            times = process.info["cpu_times"]
            seconds[name] = seconds.get(name, 0.0) + times.user + times.system
    return seconds


def cpu_since(before: dict[str, float], state: Path) -> dict[str, float]:
    return {name: round(seconds - before.get(name, 0.0), 1)
            for name, seconds in control_plane_cpu(state).items()}


def settle(state: Path, idle_cores: float = 0.1, limit: float = 120) -> None:
    """Waits until the control plane is idle: the namespace is gone before garbage
    collection and the API server's own cleanup are, and a run that starts on top of that
    work measures it too."""
    started = time.monotonic()
    before = sum(control_plane_cpu(state).values())
    while time.monotonic() - started < limit:
        time.sleep(2)
        now = sum(control_plane_cpu(state).values())
        if (now - before) / 2 < idle_cores:
            break
        before = now
    print(f"  control plane idle after {time.monotonic() - started:.0f} s", flush=True)


class RunningPods:
    """Watches a namespace's pods from before the first create and notes when `target` of
    them are Running. A watch instead of polling with kubectl: polling twice a second cost
    the two cores more than the difference being measured."""

    def __init__(self, api: client.ApiClient, namespace: str, target: int):
        self.target = target
        self.core, self.namespace = client.CoreV1Api(api), namespace
        self.running: set[str] = set()
        self.done = threading.Event()
        self.done_at = 0.0
        self.version = self._list()
        self.response = self._watch()
        threading.Thread(target=self._follow, daemon=True).start()

    def _list(self) -> str:
        """Counts what is Running now; returns the list's resourceVersion to watch from."""
        listed = self.core.list_namespaced_pod(self.namespace)
        self.running = {pod.metadata.name for pod in listed.items
                        if pod.status and pod.status.phase == "Running"}
        self._check()
        return listed.metadata.resource_version

    def _watch(self):
        return self.core.list_namespaced_pod(
            self.namespace, watch=True, resource_version=self.version,
            allow_watch_bookmarks=True, timeout_seconds=wait_limit(self.target) + 30,
            _preload_content=False)

    def _check(self) -> None:
        if len(self.running) >= self.target and not self.done.is_set():
            self.done_at = time.monotonic()
            self.done.set()

    def _follow(self) -> None:
        try:
            while not self.done.is_set():
                self._count_running()
                # The server ended the watch (at thousands of pods it can fall behind its
                # watch cache: 410 Gone): list again and watch on from there.
                self.version = self._list()
                self.response = self._watch()
        except Exception:  # noqa: BLE001 - the cluster went away after the run
            if not self.done.is_set():
                raise

    def _count_running(self) -> None:
        for line in self.response:
            event = json.loads(line)
            if event["type"] == "ERROR":
                return
            pod = event["object"]
            self.version = pod["metadata"].get("resourceVersion", self.version)
            if event["type"] == "BOOKMARK":
                continue
            name = pod["metadata"]["name"]
            if event["type"] != "DELETED" and pod.get("status", {}).get("phase") == "Running":
                self.running.add(name)
            else:
                self.running.discard(name)
            self._check()

    def wait(self, cluster: Cluster, namespace: str, started: float) -> float:
        if not self.done.wait(wait_limit(self.target)):
            print(cluster.kubectl("get", "nodes").stdout, cluster.kubectl(
                "get", "pods", "-n", namespace, "--no-headers").stdout[:3000],
                cluster.kubectl("get", "events", "-n", namespace).stdout[-3000:])
            raise SystemExit(f"{namespace}: only {len(self.running)} of {self.target} pods "
                             f"Running after {wait_limit(self.target)} s")
        # The watch ends by itself (timeout_seconds); closing it under the thread reading it
        # would block.
        seconds = self.done_at - started
        print_timeline(cluster, namespace, time.time() - (time.monotonic() - started))
        return seconds


def run_floor(cluster: Cluster, api: client.ApiClient, jobs: int, namespace: str,
              log: Path) -> dict:
    del log
    cluster.kubectl("create", "namespace", namespace)
    custom = client.CustomObjectsApi(api)
    defaults = manifests.Defaults()

    def create(index: int) -> None:
        # The user's FineTuneJob, then what the operator would create for it, owned by it
        # (a dangling owner reference would let garbage collection delete them mid-run).
        document = finetunejob(f"job-{index}", namespace)
        uid = custom.create_namespaced_custom_object(
            "ftjob.dev", "v1alpha1", namespace, "finetunejobs", document)["metadata"]["uid"]
        job = parse_job(document)
        for item in [*manifests.build_all(job, uid, defaults),
                     manifests.build_job(job, uid, 1, defaults)]:
            utils.create_from_dict(api, item, namespace=namespace)

    return measure(cluster, api, namespace, 2 * jobs, create, jobs)


def run_operator(cluster: Cluster, api: client.ApiClient, jobs: int, namespace: str,
                 log: Path, finetunejob=finetunejob) -> dict:
    cluster.kubectl("create", "namespace", namespace)
    metrics_port = free_port()
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
           "FTJOB_METRICS_ADDRESS": "127.0.0.1", "FTJOB_METRICS_PORT": str(metrics_port)}
    operator = subprocess.Popen(
        [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", namespace, "-m",
         "ftjob.controller.handlers"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        while "Serving metrics" not in log.read_text():
            if operator.poll() is not None:
                raise SystemExit(f"the operator exited {operator.returncode}:\n"
                                 f"{log.read_text()[-3000:]}")
            time.sleep(0.2)
        time.sleep(2)  # watches established
        custom = client.CustomObjectsApi(api)
        result = measure(cluster, api, namespace, 2 * jobs, lambda i: (
            custom.create_namespaced_custom_object(
                "ftjob.dev", "v1alpha1", namespace, "finetunejobs",
                finetunejob(f"job-{i}", namespace))), jobs, operator.pid, metrics_port)
    finally:
        os.killpg(operator.pid, 9)
        operator.wait()
    text = result.pop("metrics")
    result["by_verb"] = sum_by_label(text, "ftjob_api_requests_total", "verb")
    result["latency"] = {q: reconcile_quantile(text, "ftjob_reconcile_duration_seconds", q)
                         for q in (0.5, 0.99)}
    return result


def measure(cluster: Cluster, api: client.ApiClient, namespace: str, pods: int, create,
            jobs: int, pid: int | None = None, metrics_port: int | None = None) -> dict:
    """Creates `jobs` jobs with `create(index)` from 8 threads and waits until `pods` pods
    of the namespace are Running: the time, all clients' API requests and the control
    plane's CPU; with an operator (process `pid`), also its CPU, RSS and metrics page."""
    process = psutil.Process(pid) if pid else None
    if process:
        cpu_before = sum(process.cpu_times()[:2])
        system_before = process.cpu_times().system
        loop_before = sum(sum(t[1:]) for t in process.threads() if t.id == process.pid)
    control_plane_before = control_plane_cpu(cluster.state_dir)
    before = apiserver_requests(cluster)
    running = RunningPods(api, namespace, pods)
    started = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(create, range(jobs)))
    print(f"  [{namespace}] all {jobs} jobs created after {time.monotonic() - started:.1f} s",
          flush=True)
    result = {"seconds": running.wait(cluster, namespace, started),
              "requests": apiserver_requests(cluster) - before,
              "control_plane": cpu_since(control_plane_before, cluster.state_dir)}
    if process:
        # For kopf the main thread runs the event loop (watches, its per-event processing
        # and the work queue); the others run reconciles and API calls.
        loop = sum(sum(t[1:]) for t in process.threads() if t.id == process.pid)
        result.update(
            cpu=sum(process.cpu_times()[:2]) - cpu_before,
            system_cpu=process.cpu_times().system - system_before,
            loop_cpu=loop - loop_before, rss=process.memory_info().rss / 2**20,
            metrics=subprocess.run(["curl", "-s", "--max-time", "10",
                                    f"http://127.0.0.1:{metrics_port}/metrics"],
                                   capture_output=True, text=True).stdout)
    return result


def reconcile_quantile(metrics_text: str, histogram: str, quantile: float) -> float:
    """A quantile of an operator's reconcile latency from its histogram's buckets, summed
    over the histogram's label sets (the upper bound of the bucket it falls in, as
    Prometheus' histogram_quantile would interpolate within it: an upper bound is the
    honest figure with these few buckets)."""
    buckets = sorted((float(bound), count) for bound, count
                     in sum_by_label(metrics_text, f"{histogram}_bucket", "le").items())
    total = buckets[-1][1] if buckets else 0
    return next((bound for bound, count in buckets if count >= quantile * total),
                float("inf"))


def sum_by_label(metrics_text: str, metric: str, label: str) -> dict[str, float]:
    """The samples of `metric` on a Prometheus metrics page, summed by the (lower-cased)
    value of `label` over every other label."""
    totals: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith(f"{metric}{{"):
            value = line.split(f'{label}="')[1].split('"')[0].lower()
            totals[value] = totals.get(value, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


@contextlib.contextmanager
def bench_cluster(name: str, jobs: int, binaries: dict[str, str], capacity: dict | None = None):
    """A KWOK cluster with the FineTuneJob CRD and enough idle bench nodes for 2 x `jobs`
    pods (`capacity` adds to each node's); yields the cluster and an API client."""
    with tempfile.TemporaryDirectory() as state:
        cluster = Cluster(name, Path(state), binaries).up()
        try:
            cluster.install_crd()
            nodes = max(BENCH_NODES, -(-2 * jobs // PODS_PER_NODE))
            cluster.apply(*[fake_node(f"bench-node-{i}", {"bench": "true"},
                                      {"cpu": "256", "memory": "2Ti",
                                       "pods": str(PODS_PER_NODE), **(capacity or {})}, [])
                            for i in range(nodes)])
            cluster.kubectl("wait", "--for=condition=Ready", "node", "-l", "bench=true",
                            "--timeout=60s")
            settle(cluster.state_dir)
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
            api.configuration.connection_pool_maxsize = THREADS * 2
            yield cluster, api
        finally:
            cluster.down()


def alternate(cluster: Cluster, kinds: tuple[str, str], rounds: int, pods: int,
              run) -> dict[str, list[dict]]:
    """`run(kind, namespace)` for both kinds each round, the order alternating (ABBA), each
    in a namespace of its own deleted afterwards: the next run starts on an idle control
    plane and an empty namespace set, as this one did."""
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    for round_ in range(rounds):
        for kind in kinds if round_ % 2 == 0 else kinds[::-1]:
            namespace = f"bench-{kind}-{round_}"
            result = run(kind, namespace)
            runs[kind].append(result)
            own = f", RSS {result['rss']:.0f} MiB, CPU {result['cpu']:.1f} s" \
                if "rss" in result else ""
            print(f"  [{namespace}] {result['seconds']:.1f} s{own}; control-plane CPU s "
                  f"{result['control_plane']}", flush=True)
            # Thousands of jobs' objects take minutes to delete on two cores.
            cluster.kubectl("delete", "namespace", namespace, "--wait=true",
                            f"--timeout={wait_limit(pods)}s", timeout=wait_limit(pods) + 30)
            settle(cluster.state_dir)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4,
                        help="floor and operator runs each; the order alternates (ABBA)")
    parser.add_argument("--operator-log", type=Path, help="keep the operator's log here")
    args = parser.parse_args()
    jobs = args.jobs
    with bench_cluster("ftjob-bench-operator", jobs, build_binaries()) as (cluster, api):
        log = args.operator_log or cluster.state_dir / "operator.log"

        def run(kind: str, namespace: str) -> dict:
            chosen = run_floor if kind == "floor" else run_operator
            return chosen(cluster, api, jobs, namespace, log)

        runs = alternate(cluster, ("floor", "operator"), args.rounds, 2 * jobs, run)
    floor, operator = runs["floor"], runs["operator"]
    floor_seconds = sum(r["seconds"] for r in floor) / len(floor)
    operator_seconds = sum(r["seconds"] for r in operator) / len(operator)
    last = operator[-1]
    print(f"{jobs} FineTuneJobs x 2 nodes, all {2 * jobs} pods Running, "
          f"{args.rounds} rounds (floor/operator order alternating):")
    print(f"  floor (plain script, same objects): mean {floor_seconds:.1f} s ("
          + ", ".join(f"{r['seconds']:.1f}" for r in floor) + "), "
          f"{floor[-1]['requests'] / jobs:.1f} API requests per job (all clients)")
    print(f"  operator:                           mean {operator_seconds:.1f} s ("
          + ", ".join(f"{r['seconds']:.1f}" for r in operator) + "), "
          f"{last['requests'] / jobs:.1f} API requests per job (all clients), "
          f"{sum(last['by_verb'].values()) / jobs:.1f} operator API calls per job ("
          + ", ".join(f"{verb} {count / jobs:.1f}" for verb, count
                      in sorted(last["by_verb"].items())) + ")")
    # Each round's floor and operator ran back to back, so their ratio shares the machine's
    # load at the time; the median of those ratios is what noise moves least.
    ratios = [o["seconds"] / f["seconds"] for f, o in zip(floor, operator)]
    print(f"  ratio operator/floor: median of rounds {statistics.median(ratios):.2f} ("
          + ", ".join(f"{r:.2f}" for r in ratios) + f"), of means "
          f"{operator_seconds / floor_seconds:.2f}  (target <= 1.2)")
    print("  CPU seconds per run, mean (floor -> operator): " + ", ".join(
        f"{name} {statistics.mean(r['control_plane'].get(name, 0) for r in floor):.1f} -> "
        f"{statistics.mean(r['control_plane'].get(name, 0) for r in operator):.1f}"
        for name in CONTROL_PLANE))
    print(f"  operator: RSS {last['rss']:.0f} MiB, CPU {last['cpu']:.1f} s "
          f"({last['cpu'] / last['seconds']:.2f} cores while creating; event loop "
          f"{last['loop_cpu']:.1f} s, other threads {last['cpu'] - last['loop_cpu']:.1f} s; "
          f"in the kernel {last['system_cpu']:.1f} s)")
    print(f"  reconcile latency (last run, bucket upper bounds): p50 <= "
          f"{last['latency'][0.5]} s, p99 <= {last['latency'][0.99]} s")


if __name__ == "__main__":
    main()
