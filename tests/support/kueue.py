"""Kueue's manager (the version hack/versions.env names, built by hack/build-binaries.sh)
on the test cluster: its CRDs, only the batch/Job integration, every listener on
127.0.0.1, its webhooks registered by URL with a throwaway certificate; stopped by process
id, its webhooks removed first (one left behind with nothing serving it would refuse
every Job). Its CRDs stay: the Workloads still there carry Kueue's finalizers, which nothing
would remove once it is stopped, so deleting them would hang."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import yaml

from tests.support.cluster import Cluster, ClusterError
from tests.support.seaweedfs import free_port
from tests.support.webhooks import client_config, ready, serving_certificate

# The webhooks of what runs here (Kueue's own objects and batch/Jobs); the others' paths
# are not served with only the batch/Job integration on.
SERVED_GROUPS = {"kueue.x-k8s.io", "batch"}
KUEUE_NAMESPACE = "kueue-system"
# Without its internal certificate management Kueue reads a metrics certificate from this
# fixed path (cmd/kueue/main.go) and exits when there is none, even with metrics off.
METRICS_CERTS = Path("/etc/kueue/metrics/certs")


def provide_metrics_certificate(certs: Path) -> None:
    """Any certificate will do there: the metrics server it is for is not started."""
    if (METRICS_CERTS / "tls.crt").exists():
        return
    try:
        METRICS_CERTS.mkdir(parents=True, exist_ok=True)
        for name in ("tls.crt", "tls.key"):
            (METRICS_CERTS / name).write_bytes((certs / name).read_bytes())
    except OSError as error:
        raise ClusterError(f"Kueue needs a certificate in {METRICS_CERTS} (any one; it "
                           f"exits without): {error}") from None


def webhook_configurations(manifests: str, port: int, ca_bundle: bytes) -> list[dict]:
    """Kueue's webhook configurations, reduced to the served webhooks, each pointed at
    127.0.0.1:`port` instead of its Service."""
    configurations = []
    for document in yaml.safe_load_all(manifests):
        if not document:
            continue
        webhooks = [hook for hook in document["webhooks"] if any(
            set(rule["apiGroups"]) & SERVED_GROUPS for rule in hook["rules"])]
        for hook in webhooks:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = client_config(port, path, ca_bundle)
        document["metadata"] = {"name": f"kueue-{document['metadata']['name']}"}
        document["webhooks"] = webhooks
        configurations.append(document)
    return configurations


class Kueue:
    def __init__(self, cluster: Cluster, folder: Path):
        self.cluster, self.folder = cluster, folder
        self.process: subprocess.Popen | None = None
        self.webhooks: list[dict] = []

    @property
    def components(self) -> Path:
        return Path(self.cluster.binaries["kueue-config"])

    def start(self, timeout: float = 120) -> "Kueue":
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cluster.kubectl("apply", "--server-side", "-f",
                             str(self.components / "crd" / "bases"))
        self.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                             "-f", str(self.components / "crd" / "bases"))
        self.cluster.kubectl("create", "namespace", KUEUE_NAMESPACE, check=False)
        ca_bundle = serving_certificate(self.folder / "certs")
        provide_metrics_certificate(self.folder / "certs")
        webhook_port, health_port = free_port(), free_port()
        config = {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration",
            "namespace": KUEUE_NAMESPACE,
            "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
            "metrics": {"bindAddress": "0"},
            "webhook": {"host": "127.0.0.1", "port": webhook_port,
                        "certDir": str(self.folder / "certs")},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "integrations": {"frameworks": ["batch/job"]},
        }
        config_file = self.folder / "config.yaml"
        config_file.write_text(yaml.safe_dump(config))
        self.log = self.folder / "kueue.log"
        # The visibility API server would listen on every interface; nothing here uses it.
        self.process = subprocess.Popen(
            [self.cluster.binaries["kueue"], f"--config={config_file}",
             "--feature-gates=VisibilityOnDemand=false"],
            env={**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)},
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not ready(health_port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ClusterError(f"Kueue did not become ready:\n{self.log_tail()}")
            time.sleep(0.5)
        self.webhooks = webhook_configurations(
            (self.components / "webhook" / "manifests.yaml").read_text(), webhook_port,
            ca_bundle)
        self.cluster.apply(*self.webhooks)
        return self

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self) -> None:
        for webhook in self.webhooks:
            self.cluster.kubectl("delete", webhook["kind"].lower(), webhook["metadata"]["name"],
                                 "--ignore-not-found")
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
