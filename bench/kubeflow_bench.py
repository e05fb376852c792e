"""ftjob's operator beside Kubeflow's training operator (v1.8.1) on one KWOK cluster.

N FineTuneJobs of 2 nodes against N PyTorchJobs of a master and one worker: the same image,
command, node selector and one nvidia.com/gpu per pod. Each operator runs (its own process)
only during its own rounds, in alternating order (ABBA), each round on an idle control plane
and an empty namespace; both are timed from the first create until a pod watch has seen
every pod Running. Kubeflow's validating webhook is registered while it runs (served on
127.0.0.1 with a throwaway certificate), so the API server calls it on every create as in
an installed cluster; ftjob validates in the API server (CEL). Printed for both: time to all
Running (the figure to compare: the median of the rounds' ratios), operator CPU and RSS, API
requests per job (all clients, and the operator's own), control-plane CPU, reconcile latency.

Kubeflow's operator is built from hack/kubeflow-operator (its controllers and webhooks, with
every listener on 127.0.0.1) on first use, about 4 minutes here. As released it limits its
own API client to 20 requests/s (burst 30, controller-runtime's default, no flag);
--kubeflow-qps -1 lifts that, to see how much of the difference it is.

    python -m bench.kubeflow_bench [--jobs 200] [--rounds 4] [--kubeflow-qps -1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from kubernetes import client

from ftjob.api.load import parse_job
from ftjob.controller import manifests
from bench.operator_bench import (CONTROL_PLANE, PODS_PER_NODE, alternate, bench_cluster,
                                  finetunejob, measure, reconcile_quantile, run_operator,
                                  settle, sum_by_label)
from tests.support.cluster import Cluster, build_binaries
from tests.support.seaweedfs import free_port
from tests.support.webhooks import client_config, ready, serving_certificate

WEBHOOK_PATH = "/validate-kubeflow-org-v1-pytorchjob"


def gpu_finetunejob(name: str, namespace: str) -> dict:
    job = finetunejob(name, namespace)
    job["spec"]["distributed"]["gpusPerNode"] = 1
    return job


def pytorchjob(name: str, namespace: str) -> dict:
    """The PyTorchJob a Kubeflow user would write for the same training: a master and one
    worker, with the pod ftjob builds for a FineTuneJob's node (image, command, GPU)."""
    trainer = manifests.build_job(parse_job(gpu_finetunejob(name, namespace)), "uid", 1,
                                  manifests.Defaults())["spec"]["template"]["spec"][
        "containers"][0]
    container = {"name": "pytorch", "image": trainer["image"],
                 "command": trainer["command"], "resources": trainer["resources"]}
    template = {"metadata": {"annotations": {"sim.ftjob.dev/hold": "true"}},
                "spec": {"containers": [container], "nodeSelector": {"bench": "true"}}}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"pytorchReplicaSpecs": {
                "Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template},
                "Worker": {"replicas": 1, "restartPolicy": "OnFailure",
                           "template": template}}}}


def webhook_configuration(port: int, ca_bundle: bytes) -> dict:
    """Kubeflow's validating webhook for PyTorchJobs (its manifests' rule), at 127.0.0.1."""
    return {"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "bench-kubeflow-training-operator"},
            "webhooks": [{
                "name": "validator.pytorchjob.training-operator.kubeflow.org",
                "admissionReviewVersions": ["v1"], "sideEffects": "None",
                "failurePolicy": "Fail",
                "clientConfig": client_config(port, WEBHOOK_PATH, ca_bundle),
                "rules": [{"apiGroups": ["kubeflow.org"], "apiVersions": ["v1"],
                           "operations": ["CREATE", "UPDATE"],
                           "resources": ["pytorchjobs"]}]}]}


def run_kubeflow(cluster: Cluster, api: client.ApiClient, jobs: int, namespace: str,
                 log: Path, binary: str, certs: Path, ca_bundle: bytes, qps: float) -> dict:
    cluster.kubectl("create", "namespace", namespace)
    metrics_port, probe_port, webhook_port = free_port(), free_port(), free_port()
    operator = subprocess.Popen(
        [binary, f"--metrics-bind-address=127.0.0.1:{metrics_port}",
         f"--health-probe-bind-address=127.0.0.1:{probe_port}",
         f"--webhook-server-port={webhook_port}", f"--webhook-cert-dir={certs}",
         f"--kube-api-qps={qps}"],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}, stdout=log.open("w"),
        stderr=subprocess.STDOUT, start_new_session=True)
    webhook = webhook_configuration(webhook_port, ca_bundle)
    try:
        ready_at = time.monotonic() + 60
        while not ready(probe_port):
            if operator.poll() is not None or time.monotonic() > ready_at:
                raise SystemExit(f"Kubeflow's operator did not become ready:\n"
                                 f"{log.read_text()[-3000:]}")
            time.sleep(0.2)
        cluster.apply(webhook)
        time.sleep(2)  # caches synced, as the ftjob run waits
        custom = client.CustomObjectsApi(api)
        result = measure(cluster, api, namespace, 2 * jobs, lambda i: (
            custom.create_namespaced_custom_object(
                "kubeflow.org", "v1", namespace, "pytorchjobs",
                pytorchjob(f"job-{i}", namespace))), jobs, operator.pid, metrics_port)
    finally:
        cluster.kubectl("delete", "validatingwebhookconfiguration",
                        webhook["metadata"]["name"], "--ignore-not-found")
        os.killpg(operator.pid, 9)
        operator.wait()
    text = result.pop("metrics")
    # controller-runtime counts its client's requests by method (and status code, host).
    result["by_verb"] = sum_by_label(text, "rest_client_requests_total", "method")
    result["latency"] = {
        q: reconcile_quantile(
            "\n".join(line for line in text.splitlines() if 'controller="pytorchjob' in line),
            "controller_runtime_reconcile_time_seconds", q)
        for q in (0.5, 0.99)}
    return result


def describe(name: str, runs: list[dict], jobs: int) -> None:
    last = runs[-1]
    print(f"  {name}: mean {statistics.mean(r['seconds'] for r in runs):.1f} s ("
          + ", ".join(f"{r['seconds']:.1f}" for r in runs) + f"); RSS {last['rss']:.0f} MiB, "
          f"CPU {last['cpu']:.1f} s; API requests per job {last['requests'] / jobs:.1f} (all "
          f"clients), {sum(last['by_verb'].values()) / jobs:.1f} its own ("
          + ", ".join(f"{verb} {count / jobs:.1f}" for verb, count
                      in sorted(last["by_verb"].items())) + f"); reconcile p50 <= "
          f"{last['latency'][0.5]} s, p99 <= {last['latency'][0.99]} s")
    print("    control-plane CPU s, mean: " + ", ".join(
        f"{part} {statistics.mean(r['control_plane'].get(part, 0) for r in runs):.1f}"
        for part in CONTROL_PLANE))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4,
                        help="runs of each operator; the order alternates (ABBA)")
    parser.add_argument("--kubeflow-qps", type=float, default=0,
                        help="Kubeflow's client-side request limit: 0 keeps the released "
                             "20/s (burst 30), a negative value lifts it (ftjob has none)")
    args = parser.parse_args()
    jobs = args.jobs
    binaries = build_binaries("kubeflow")
    with tempfile.TemporaryDirectory() as certs, bench_cluster(
            "ftjob-bench-kubeflow", jobs, binaries,
            {"nvidia.com/gpu": str(PODS_PER_NODE)}) as (cluster, api):
        certs = Path(certs)
        ca_bundle = serving_certificate(certs)
        cluster.kubectl("apply", "--server-side", "-k", binaries["kubeflow-crds"])
        cluster.kubectl("wait", "--for=condition=Established", "crd", "--all",
                        "--timeout=60s")
        settle(cluster.state_dir)

        def run(kind: str, namespace: str) -> dict:
            log = cluster.state_dir / f"{namespace}.log"
            if kind == "ftjob":
                return run_operator(cluster, api, jobs, namespace, log,
                                    finetunejob=gpu_finetunejob)
            return run_kubeflow(cluster, api, jobs, namespace, log,
                                binaries["training-operator"], certs, ca_bundle,
                                args.kubeflow_qps)

        runs = alternate(cluster, ("ftjob", "kubeflow"), args.rounds, 2 * jobs, run)
    ftjob, kubeflow = runs["ftjob"], runs["kubeflow"]
    print(f"{jobs} jobs x 2 pods (1 GPU each), all {2 * jobs} pods Running, {args.rounds} "
          "rounds each (order alternating):")
    describe("ftjob (FineTuneJob, kopf)", ftjob, jobs)
    limit = ("released client limit 20/s" if args.kubeflow_qps == 0 else
             "client limit lifted" if args.kubeflow_qps < 0 else
             f"client limit {args.kubeflow_qps:g}/s")
    describe(f"Kubeflow training-operator v1.8.1 (Go, {limit})", kubeflow, jobs)
    time_ratios = [f["seconds"] / k["seconds"] for f, k in zip(ftjob, kubeflow)]
    print(f"  ratio ftjob/Kubeflow: time to all Running, median of rounds "
          f"{statistics.median(time_ratios):.2f} (" + ", ".join(
              f"{r:.2f}" for r in time_ratios) + f"); RSS "
          f"{statistics.median(f['rss'] / k['rss'] for f, k in zip(ftjob, kubeflow)):.2f}; "
          f"operator CPU "
          f"{statistics.median(f['cpu'] / k['cpu'] for f, k in zip(ftjob, kubeflow)):.2f}; "
          f"API requests per job (all clients) "
          f"{statistics.median(f['requests'] / k['requests'] for f, k in zip(ftjob, kubeflow)):.2f}"
          "  (goal: at most 1.0)")


if __name__ == "__main__":
    main()
