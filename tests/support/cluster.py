"""A real Kubernetes control plane on this machine: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler built from the Go module proxy, run by
`kwokctl --runtime binary` on 127.0.0.1, with fake GPU nodes whose pods KWOK drives through
the Stages in hack/cluster/stages.yaml.

`make cluster-up` / `make cluster-down` keep one dev cluster in .cluster/; the test suite
starts its own in a temporary folder (tests/conftest.py) so it never touches a developer's.

    python -m tests.support.cluster up|down|env [--state-dir DIR] [--name NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
STAGES = REPO / "hack" / "cluster" / "stages.yaml"
DEV_STATE_DIR = REPO / ".cluster"
DEV_NAME = "ftjob-dev"

GPU_NODES = 4
GPUS_PER_NODE = 8
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


class ClusterError(RuntimeError):
    """The cluster could not be brought up; the message says what to do."""


def build_binaries(*extras: str) -> dict[str, str]:
    """Builds (or finds cached) every binary, and the `extras` that benchmarks name (see
    hack/build-binaries.sh), and returns name -> path."""
    result = subprocess.run(["bash", str(REPO / "hack" / "build-binaries.sh"), *extras],
                            stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise ClusterError(
            f"hack/build-binaries.sh exited {result.returncode}: the test cluster's binaries "
            "could not be built (needs Go and the Go module proxy; see its log above)")
    return dict(line.split("=", 1) for line in result.stdout.split() if "=" in line)


def kwok_config(binaries: dict[str, str], versions: dict[str, str]) -> str:
    options = {
        "runtime": "binary",
        "bindAddress": "127.0.0.1",
        "kubeVersion": versions["KUBERNETES_VERSION"],
        "etcdVersion": versions["ETCD_VERSION"].lstrip("v"),
        "kubeApiserverBinary": binaries["kube-apiserver"],
        "kubeControllerManagerBinary": binaries["kube-controller-manager"],
        "kubeSchedulerBinary": binaries["kube-scheduler"],
        "kubectlBinary": binaries["kubectl"],
        "etcdBinary": binaries["etcd"],
        "kwokControllerBinary": binaries["kwok"],
        # Client-side rate limits of the controllers and KWOK would dominate every
        # measurement of our operator; a real cluster's are tuned much higher than defaults.
        "disableQPSLimits": True,
    }
    # KWOK takes only the nodes annotated as fake, so that a node of the tests' kubelet
    # stand-in (tests/e2e) is left to it.
    kwok_controller = {"name": "kwok-controller", "extraArgs": [
        {"key": "manage-all-nodes", "value": "false"},
        {"key": "manage-nodes-with-annotation-selector", "value": "kwok.x-k8s.io/node=fake"}]}
    # The Job controller syncs 5 Jobs at a time by default; with hundreds of training jobs
    # starting together it, not anything we measure, would decide when pods exist.
    controller_manager = {"name": "kube-controller-manager", "extraArgs": [
        {"key": "concurrent-job-syncs", "value": "20"}]}
    configuration = {"kind": "KwokctlConfiguration",
                     "apiVersion": "config.kwok.x-k8s.io/v1alpha1", "options": options,
                     "componentsPatches": [kwok_controller, controller_manager]}
    return yaml.safe_dump(configuration) + "---\n" + STAGES.read_text()


def read_versions() -> dict[str, str]:
    versions = {}
    for line in (REPO / "hack" / "versions.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


def fake_node(name: str, labels: dict, capacity: dict, taints: list) -> dict:
    """A Node that KWOK manages (its annotation) and the stages bring up."""
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name,
                     "annotations": {"kwok.x-k8s.io/node": "fake",
                                     "node.alpha.kubernetes.io/ttl": "0"},
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                "kubernetes.io/arch": "amd64", "type": "kwok", **labels}},
        "spec": {"taints": taints},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def node_manifests(gpu_nodes: int = GPU_NODES, gpus_per_node: int = GPUS_PER_NODE) -> list[dict]:
    """Fake nodes labelled the way GPU feature discovery labels real ones, tainted the way
    managed GPU node pools are, plus one untainted CPU node for everything else."""
    nodes = [fake_node(f"gpu-node-{index}",
                  {"node.kubernetes.io/instance-type": "sim.a100-8x",
                   "nvidia.com/gpu.present": "true",
                   "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
                   "nvidia.com/gpu.count": str(gpus_per_node),
                   "nvidia.com/gpu.memory": "81920"},
                  {"cpu": "96", "memory": "1152Gi", "pods": "110", "ephemeral-storage": "2Ti",
                   "nvidia.com/gpu": str(gpus_per_node)},
                  [GPU_TAINT])
             for index in range(gpu_nodes)]
    nodes.append(fake_node("cpu-node-0", {"node.kubernetes.io/instance-type": "sim.cpu-32"},
                      {"cpu": "32", "memory": "128Gi", "pods": "110",
                       "ephemeral-storage": "1Ti"}, []))
    return nodes


@dataclass
class Cluster:
    name: str
    state_dir: Path
    binaries: dict[str, str] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def kwok_workdir(self) -> Path:
        return self.state_dir / "kwok"

    def kwokctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "KWOK_WORKDIR": str(self.kwok_workdir)}
        result = subprocess.run([self.binaries["kwokctl"], "--name", self.name, *args],
                                env=env, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise ClusterError(f"kwokctl {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [self.binaries["kubectl"], "--kubeconfig", str(self.kubeconfig), *args],
            input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def get(self, *args: str) -> dict:
        """`kubectl get ARGS -o json`, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def install_crd(self, timeout: float = 60) -> None:
        """The FineTuneJob CRD, applied and established. Not `kubectl wait`: it fails at
        once, instead of waiting, while the new CRD has no status conditions yet."""
        self.kubectl("apply", "--server-side", "-f",
                     str(REPO / "crds/finetunejobs.ftjob.dev.yaml"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            conditions = self.get("crd", "finetunejobs.ftjob.dev").get(
                "status", {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                return
            time.sleep(0.2)
        raise ClusterError(f"the FineTuneJob CRD was not established within {timeout} s")

    def is_running(self) -> bool:
        if not self.kubeconfig.exists():
            return False
        listed = self.kwokctl("get", "clusters", check=False).stdout.split()
        return self.name in listed and self.kubectl(
            "get", "--raw", "/readyz", check=False, timeout=10).returncode == 0

    def pids(self) -> dict[str, int]:
        """The control plane's processes, from the pid files kwokctl keeps."""
        folder = self.kwok_workdir / "clusters" / self.name / "pids"
        return {path.stem: int(path.read_text().strip()) for path in folder.glob("*.pid")}

    def up(self) -> "Cluster":
        """Idempotent: a healthy cluster of this name is reused as it is."""
        self.binaries = self.binaries or build_binaries()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.is_running():
            self.kwokctl("delete", "cluster", check=False)  # a half-started one
            config = self.state_dir / "kwok.yaml"
            config.write_text(kwok_config(self.binaries, read_versions()))
            self.kwokctl("--config", str(config), "create", "cluster",
                         "--kubeconfig", str(self.kubeconfig), "--wait", "90s")
        self.apply(*node_manifests())
        self.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")
        return self

    def apply(self, *objects: dict, namespace: str | None = None,
              check: bool = True) -> subprocess.CompletedProcess:
        manifests = "".join("---\n" + yaml.safe_dump(item) for item in objects)
        return self.kubectl("apply", *(["-n", namespace] if namespace else []), "-f", "-",
                            input=manifests, check=check)

    def down(self) -> None:
        """Stops what `up` started: kwokctl kills the components by their pid files."""
        if self.binaries.get("kwokctl") is None:
            self.binaries = build_binaries()
        self.kwokctl("delete", "cluster", check=False)
        self.kubeconfig.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.cluster")
    parser.add_argument("action", choices=["up", "down", "env"])
    parser.add_argument("--state-dir", type=Path, default=DEV_STATE_DIR)
    parser.add_argument("--name", default=DEV_NAME)
    args = parser.parse_args(argv)
    from tests.support import seaweedfs

    cluster = Cluster(args.name, args.state_dir)
    try:
        if args.action == "up":
            started = time.monotonic()
            cluster.up()
            storage = seaweedfs.up_detached(args.state_dir)
            print(f"Cluster {args.name} up in {time.monotonic() - started:.1f} s "
                  f"(pids {json.dumps(cluster.pids())}; S3 {storage['AWS_ENDPOINT_URL']})")
            print(f"export KUBECONFIG={cluster.kubeconfig}")
        elif args.action == "down":
            seaweedfs.down_detached(args.state_dir)
            cluster.down()
            print(f"Cluster {args.name} stopped")
        else:
            print(f"export KUBECONFIG={cluster.kubeconfig}")
            for key, value in seaweedfs.detached_env(args.state_dir).items():
                print(f"export {key}={value}")
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
