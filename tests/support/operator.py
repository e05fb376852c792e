"""The operator as its own process (`kopf run`), as it runs in its pod: killable like a
crashed pod, and able to run on any credentials (e.g. the Helm chart's ServiceAccount)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml


class OperatorProcess:
    def __init__(self, kubeconfig: Path, namespace: str, log_path: Path, env: dict):
        self.command = [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace",
                        namespace, "-m", "ftjob.controller.handlers"]
        self.env = {**os.environ, **env, "FTJOB_METRICS_ADDRESS": "127.0.0.1",
                    "FTJOB_METRICS_PORT": "0",
                    "KUBECONFIG": str(kubeconfig)}
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> "OperatorProcess":
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def service_account_kubeconfig(cluster, namespace: str, service_account: str,
                               path: Path) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount (a TokenRequest token)."""
    token = cluster.kubectl("create", "token", service_account, "-n", namespace,
                            "--duration=2h").stdout.strip()
    server = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": server}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}]}))
    return path
