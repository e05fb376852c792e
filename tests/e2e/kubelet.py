"""A kubelet stand-in for the end-to-end tests: pods the scheduler binds to one designated
node run as local processes, and their phase goes back to the API server.

It does what a kubelet does for ftjob's pods and no more: ConfigMap, Secret, emptyDir and
ServiceAccount-token volumes are written to a folder per pod and their mount paths remapped;
container logs are served over HTTPS at the node's kubelet port, so `kubectl logs` (and the
SDK's) go through the API server as on a real node;
env, envFrom and fieldRefs resolved, `$(VAR)` expanded; torchrun/accelerate run with this
Python; pod DNS names resolve to 127.0.0.1 (the rendezvous port is remapped per attempt so
two jobs never collide); deletion sends SIGTERM to the process group and SIGKILL after the
grace period; the termination message comes from the termination log file, or the log tail
(FallbackToLogsOnError). Product code never imports this.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import psutil
from kubernetes import client, config

from tests.support.seaweedfs import free_port

TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# The image's programs, as this machine runs them: the command's first word, and the
# launcher after `--` in a spec.script job's supervisor command.
PROGRAMS = {"torchrun": [sys.executable, "-m", "torch.distributed.run"],
            "accelerate": [sys.executable, "-m", "accelerate.commands.launch"],
            "python": [sys.executable]}
HOST_FLAGS = ("--master-addr", "--main_process_ip")
PORT_FLAGS = ("--master-port", "--main_process_port")


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class LocalContainer:
    pod: str
    namespace: str
    root: Path
    process: subprocess.Popen
    termination_log: Path
    log: Path
    attempt: str  # (namespace, job, attempt) of the pod
    terminating_since: float | None = None
    reported: bool = False


class LocalKubelet:
    def __init__(self, kubeconfig: Path, work_root: Path, node: str = "local-node-0",
                 extra_env: dict | None = None):
        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.node = node
        self.work_root = work_root
        self.extra_env = extra_env or {}
        cluster = self.api.configuration
        self.server, self.ca_file = cluster.host, cluster.ssl_ca_cert
        self.containers: dict[str, LocalContainer] = {}  # by pod uid
        self.ports: dict[str, int] = {}  # rendezvous port per (namespace, job, attempt)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- node ---------------------------------------------------------------------------
    def start(self) -> "LocalKubelet":
        self.log_server = self._start_log_server()
        capacity = {"cpu": "2", "memory": "24Gi", "pods": "20"}
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node, "labels": {"kubernetes.io/hostname": self.node,
                                                           "kubernetes.io/os": "linux",
                                                           "ftjob.dev/local": "true"}},
                "status": {"capacity": capacity, "allocatable": capacity}}
        self.core.create_node(node)
        self._heartbeat()
        for target in (self._heartbeats, self._sync_loop):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _heartbeat(self) -> None:
        stamp = now()
        self.core.patch_node_status(self.node, {"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "local kubelet stand-in", "lastHeartbeatTime": stamp,
                            "lastTransitionTime": stamp}],
            # Only an address the API server can reach: it dials the kubelet for logs.
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {
                "Port": self.log_server.server_address[1]}}}})

    def _heartbeats(self) -> None:
        while not self._stop.wait(5):
            try:
                self._heartbeat()
            except Exception as error:  # noqa: BLE001 - keep beating
                print(f"kubelet stand-in: heartbeat failed: {error}", file=sys.stderr)

    def stop(self) -> None:
        self._stop.set()
        self.log_server.shutdown()
        self.log_server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        for container in self.containers.values():
            self._signal(container, signal.SIGKILL)
        try:
            self.core.delete_node(self.node)
        except client.ApiException:
            pass

    # -- pods ---------------------------------------------------------------------------
    def _sync_loop(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.sync()
            except Exception as error:  # noqa: BLE001 - a kubelet keeps going
                print(f"kubelet stand-in: sync failed: {error!r}", file=sys.stderr)

    def sync(self) -> None:
        pods = self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.node}").items
        for pod in pods:
            container = self.containers.get(pod.metadata.uid)
            if pod.metadata.deletion_timestamp is not None:
                self._terminate(pod, container)
            elif container is None and pod.status.phase == "Pending":
                self.containers[pod.metadata.uid] = self._start(pod)
                self._report_running(pod)
            elif container and not container.reported and container.process.poll() is not None:
                self._report_exit(pod, container)

    def _terminate(self, pod, container: LocalContainer | None) -> None:
        if container and container.process.poll() is None:
            if container.terminating_since is None:
                container.terminating_since = time.monotonic()
                self._signal(container, signal.SIGTERM)
                return
            grace = pod.spec.termination_grace_period_seconds or 30
            if time.monotonic() - container.terminating_since < grace:
                return
            self._signal(container, signal.SIGKILL)
            container.process.wait()
        if container and not container.reported:
            # As a kubelet does: the pod's final status (its exit code, which the Job's
            # pod failure policy reads) before the pod object goes.
            self._report_exit(pod, container)
        try:
            self.core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace,
                                            grace_period_seconds=0)
        except client.ApiException as error:
            if error.status != 404:
                raise

    @staticmethod
    def _signal(container: LocalContainer, signum: int) -> None:
        # SIGKILL ends every process of the container, as a cgroup kill does: torchrun starts
        # its workers in sessions of their own, which a process-group kill would leave alive.
        processes = []
        if signum == signal.SIGKILL:
            try:
                processes = psutil.Process(container.process.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        try:
            os.killpg(container.process.pid, signum)
        except ProcessLookupError:
            pass
        for process in processes:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass

    def kill(self, pod_name: str, signum: int = signal.SIGKILL) -> None:
        """What a dying node or an OOM kill does to one pod's processes."""
        for container in self.containers.values():
            if container.pod == pod_name:
                self._signal(container, signum)

    def files(self, pod_name: str) -> Path:
        """The folder the pod's volumes and log live in on this machine."""
        for container in self.containers.values():
            if container.pod == pod_name:
                return container.log.parent
        raise KeyError(pod_name)

    def log(self, pod_name: str) -> str:
        for container in self.containers.values():
            if container.pod == pod_name:
                # As written: read_text would turn progress bars' \r into line ends.
                return container.log.read_bytes().decode(errors="replace")
        raise KeyError(pod_name)

    # -- logs ---------------------------------------------------------------------------
    def _start_log_server(self) -> ThreadingHTTPServer:
        """The kubelet's /containerLogs endpoint, on a free loopback port with a
        throwaway certificate (the API server does not verify kubelet certificates unless
        told to)."""
        tls = self.work_root / "kubelet-tls"
        tls.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "1", "-subj", "/CN=127.0.0.1", "-keyout", str(tls / "key.pem"),
                        "-out", str(tls / "cert.pem")], check=True, capture_output=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls / "cert.pem", tls / "key.pem")
        kubelet = self

        class Logs(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                found = kubelet._container(*parts[1:3]) if len(parts) == 4 and \
                    parts[0] == "containerLogs" else None
                if found is None:
                    self.send_error(404)
                    return
                follow = parse_qs(url.query).get("follow") == ["true"]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                with found.log.open("rb") as log:
                    while True:
                        chunk = log.read(65536)
                        if chunk:
                            self.wfile.write(chunk)
                            self.wfile.flush()
                        elif not follow or found.process.poll() is not None:
                            return
                        else:
                            time.sleep(0.2)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Logs)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        return server

    def _container(self, namespace: str, pod: str) -> LocalContainer | None:
        return next((c for c in self.containers.values()
                     if (c.namespace, c.pod) == (namespace, pod)), None)

    # -- starting a pod -----------------------------------------------------------------
    def _volume(self, pod, volume, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        namespace = pod.metadata.namespace
        if volume.config_map:
            data = self.core.read_namespaced_config_map(volume.config_map.name, namespace).data
            for key, value in (data or {}).items():
                (target / key).write_text(value)
        elif volume.secret:
            data = self.core.read_namespaced_secret(volume.secret.secret_name, namespace).data
            for key, value in (data or {}).items():
                (target / key).write_bytes(base64.b64decode(value))
        elif volume.projected:  # the ServiceAccount token volume
            request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
                audiences=[], expiration_seconds=3600,
                bound_object_ref=client.V1BoundObjectReference(
                    kind="Pod", api_version="v1", name=pod.metadata.name,
                    uid=pod.metadata.uid)))
            token = self.core.create_namespaced_service_account_token(
                pod.spec.service_account_name, namespace, request).status.token
            (target / "token").write_text(token)
            (target / "namespace").write_text(namespace)
            (target / "ca.crt").write_bytes(Path(self.ca_file).read_bytes())

    def _environment(self, pod, container) -> dict:
        env: dict[str, str] = {}
        for source in container.env_from or []:
            if source.secret_ref:
                data = self.core.read_namespaced_secret(source.secret_ref.name,
                                                        pod.metadata.namespace).data or {}
                env.update({k: base64.b64decode(v).decode() for k, v in data.items()})
        fields = {"metadata.name": pod.metadata.name,
                  "metadata.namespace": pod.metadata.namespace}
        for item in container.env or []:
            if item.value is not None:
                env[item.name] = _expand(item.value, env)
            elif item.value_from and item.value_from.field_ref:
                path = item.value_from.field_ref.field_path
                match = re.match(r"metadata\.(annotations|labels)\['(.+)'\]", path)
                if match:
                    source = getattr(pod.metadata, match.group(1)) or {}
                    env[item.name] = source.get(match.group(2), "")
                else:
                    env[item.name] = fields.get(path, "")
        return env

    def _start(self, pod) -> LocalContainer:
        container = pod.spec.containers[0]
        root = self.work_root / pod.metadata.uid
        mounts: dict[str, Path] = {}
        volumes = {volume.name: volume for volume in pod.spec.volumes or []}
        for mount in container.volume_mounts or []:
            local = root / "volumes" / mount.name
            self._volume(pod, volumes[mount.name], local)
            mounts[mount.mount_path] = local
        env = self._environment(pod, container)
        labels = pod.metadata.labels or {}
        attempt = (pod.metadata.namespace, labels.get("ftjob.dev/job-name"),
                   labels.get("ftjob.dev/attempt"))
        # A new rendezvous port for each new set of the attempt's pods (a Job that Kueue
        # suspended and admitted again starts them anew), not one the last set used.
        if not any(c.attempt == str(attempt) and c.process.poll() is None
                   for c in self.containers.values()):
            self.ports[str(attempt)] = free_port()
        port = self.ports[str(attempt)]
        command = [_expand(part, env) for part in (container.command or []) +
                   (container.args or [])]
        command = _remap(command, mounts, port)
        command = _local_programs(command)
        termination_log = root / "termination-log"
        token_dir = mounts.get(TOKEN_DIR)
        env.update({
            "PATH": os.environ["PATH"], "HOME": str(root), "OMP_NUM_THREADS": "1",
            "FTJOB_WORK_DIR": str(mounts.get("/scratch", root / "scratch")),
            "FTJOB_TERMINATION_LOG": str(termination_log),
            "FTJOB_KUBE_API": self.server,
            **({"FTJOB_KUBE_TOKEN_FILE": str(token_dir / "token"),
                "FTJOB_KUBE_CA_FILE": str(token_dir / "ca.crt")} if token_dir else {}),
            **self.extra_env})
        log = root / "container.log"
        process = subprocess.Popen(command, env=env, cwd=root, stdout=log.open("w"),
                                   stderr=subprocess.STDOUT, start_new_session=True)
        return LocalContainer(pod.metadata.name, pod.metadata.namespace, root, process,
                              termination_log, log, str(attempt))

    def _report_running(self, pod) -> None:
        stamp = now()
        container = pod.spec.containers[0]
        self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {
            "status": {
                "phase": "Running", "startTime": stamp, "podIP": "127.0.0.1",
                "hostIP": "127.0.0.1",
                "conditions": [{"type": kind, "status": "True", "lastTransitionTime": stamp}
                               for kind in ("Initialized", "Ready", "ContainersReady")],
                "containerStatuses": [{"name": container.name, "image": container.image,
                                       "imageID": "", "ready": True, "started": True,
                                       "restartCount": 0,
                                       "state": {"running": {"startedAt": stamp}}}]}})

    def _report_exit(self, pod, container: LocalContainer) -> None:
        code = container.process.returncode
        exit_code = 128 - code if code < 0 else code
        message = container.termination_log.read_text() if \
            container.termination_log.exists() else ""
        if not message and exit_code != 0:
            message = container.log.read_text(errors="replace")[-2048:]
        stamp = now()
        spec = pod.spec.containers[0]
        self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {
            "status": {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "conditions": [{"type": kind, "status": "False", "lastTransitionTime": stamp}
                               for kind in ("Ready", "ContainersReady")],
                "containerStatuses": [{
                    "name": spec.name, "image": spec.image, "imageID": "", "ready": False,
                    "started": False, "restartCount": 0,
                    "state": {"terminated": {
                        "exitCode": exit_code, "reason": "Completed" if exit_code == 0
                        else "Error", "message": message, "startedAt": stamp,
                        "finishedAt": stamp}}}]}})
        container.reported = True


def _expand(text: str, env: dict) -> str:
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: env.get(m.group(1), m.group(0)), text)


def _local_programs(command: list[str]) -> list[str]:
    def program(rest: list[str]) -> list[str]:
        if rest[:2] == ["accelerate", "launch"]:
            rest = rest[1:]
        return PROGRAMS.get(rest[0], rest[:1]) + rest[1:]

    if "--" in command:
        split = command.index("--")
        return program(command[:split]) + ["--"] + program(command[split + 1:])
    return program(command)


def _remap(command: list[str], mounts: dict[str, Path], port: int) -> list[str]:
    """Mount paths to the pod's folders; pod DNS names to loopback."""
    remapped = []
    for index, part in enumerate(command):
        previous = command[index - 1] if index else ""
        if previous in HOST_FLAGS:
            part = "127.0.0.1"
        elif previous in PORT_FLAGS:
            part = str(port)
        elif previous == "--rdzv-endpoint":
            part = f"127.0.0.1:{port}"
        for mount_path, local in mounts.items():
            if part == mount_path or part.startswith(mount_path + "/"):
                part = str(local) + part[len(mount_path):]
        remapped.append(part)
    return remapped
