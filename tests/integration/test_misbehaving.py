"""Infrastructure that misbehaves, for real: an endpoint that accepts and never answers, one
that is no S3 server, an S3 server gone for a minute mid-training, a rank that dies, an
`ftjob run` killed with SIGKILL, two runs of one folder, multipart uploads a killed upload
left behind. No hang, the right cause named, nothing left running."""

from __future__ import annotations

import http.server
import signal
import socket
import threading
import time

import psutil
import pytest

from tests.conftest import tiny_job
from tests.integration.test_checkpoints import checkpoint_steps, wait_for
from tests.support.seaweedfs import start_seaweedfs

pytestmark = pytest.mark.slow

# ftjob_trainer.storage.CHECK_SECONDS: the storage check ends within it; the rest is
# process start-up.
CHECK_SECONDS = 60
START_SECONDS = 90


def s3_job(name, minilm_path, bucket, endpoint, **overrides):
    return tiny_job(name, minilm_path, checkpoints={
        "uri": f"s3://{bucket}/{name}/ckpt", "endpointUrl": endpoint, "keep": 100},
        output={"uri": f"s3://{bucket}/{name}/model"}, **overrides)


@pytest.fixture
def silent_endpoint():
    """A TCP server that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.fixture
def web_server():
    """An HTTP server that is not S3 (Python's file server)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def run_processes(run) -> list[psutil.Process]:
    """The launcher and ranks of one run folder (their command lines name its config)."""
    config = str(run.run_dir / "config.json")
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if config in (process.info["cmdline"] or []):
            found.append(process)
    return found


def no_traceback(output: str) -> None:
    assert "Traceback" not in output, output[-3000:]


def test_a_silent_endpoint_fails_the_storage_check_as_unavailable(
        ftjob_run, minilm_path, seaweedfs, silent_endpoint):
    run = ftjob_run(s3_job("silent", minilm_path, "bkt", silent_endpoint))
    result = run.run(env=seaweedfs.env, timeout=CHECK_SECONDS + START_SECONDS)
    assert result.returncode == 74, result.stderr[-3000:]
    assert "StorageUnavailable" in result.stderr and "did not answer in time" in result.stderr
    no_traceback(result.stdout + result.stderr)


def test_an_endpoint_that_is_not_s3_is_named_as_such(ftjob_run, minilm_path, seaweedfs,
                                                      web_server):
    run = ftjob_run(s3_job("web", minilm_path, "bkt", web_server))
    result = run.run(env=seaweedfs.env, timeout=CHECK_SECONDS + START_SECONDS)
    assert result.returncode == 78, result.stderr[-3000:]
    assert "is the endpoint URL an S3 server?" in result.stderr
    no_traceback(result.stdout + result.stderr)


def test_storage_gone_for_a_minute_mid_training_loses_no_checkpoint(
        ftjob_run, minilm_path, tmp_path):
    storage = start_seaweedfs(tmp_path / "outage")
    try:
        storage.create_bucket("outage")
        job = s3_job("outage", minilm_path, "outage", storage.endpoint,
                     training={"maxSteps": 12, "saveSteps": 2})
        run = ftjob_run(job)
        process = run.start(env=storage.env)
        wait_for(lambda: any(e["event"] == "checkpoint" for e in run.events()), timeout=300,
                 what="the first checkpoint upload")
        storage.kill()  # connections refused from now on
        down_at = time.monotonic()
        time.sleep(60)
        assert process.poll() is None, "the run gave up during a one-minute outage"
        storage.restart()
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-4000:]
        assert time.monotonic() - down_at >= 60
        # Every save of the run was uploaded and marked complete.
        assert checkpoint_steps(storage, "outage", "outage/ckpt/") == list(range(2, 13, 2))
        reported = [e["step"] for e in run.events() if e["event"] == "checkpoint"]
        assert reported == list(range(2, 13, 2))
        assert "outage/model/_COMPLETE.json" in storage.keys("outage", "outage/model/")
    finally:
        storage.stop()


def test_a_rank_that_dies_ends_the_whole_run_within_30_seconds(ftjob_run, minilm_path):
    run = ftjob_run(tiny_job("rank-dies", minilm_path,
                             training={"maxSteps": 5000, "saveSteps": 100000}))
    process = run.start()
    try:
        wait_for(lambda: any(e["event"] == "progress" and e["step"] >= 2
                             for e in run.events()), timeout=300, what="training")
        rank_1 = next(p for p in run_processes(run) if p.environ().get("RANK") == "1")
        rank_1.kill()
        killed_at = time.monotonic()
        process.communicate(timeout=30)
        assert time.monotonic() - killed_at <= 30
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0
    wait_for(lambda: not run_processes(run), timeout=10, what="no rank or launcher left")


def test_sigkill_of_ftjob_run_stops_its_ranks_and_unlocks_its_folder(ftjob_run, minilm_path):
    job = tiny_job("owned", minilm_path, training={"maxSteps": 5000, "saveSteps": 100000})
    first = ftjob_run(job)
    process = first.start()
    try:
        wait_for(lambda: any(e["event"] == "progress" and e["step"] >= 2
                             for e in first.events()), timeout=300, what="training")
        # A second run of the same folder is refused while the first one lives.
        second = ftjob_run(job).run(timeout=120)
        assert second.returncode == 1
        assert "is in use by another `ftjob run`" in second.stderr
        no_traceback(second.stdout + second.stderr)
        assert len([e for e in first.events() if e["event"] == "started"]) == 1
        process.send_signal(signal.SIGKILL)  # ftjob run alone; its launcher is not told
        process.wait()
        wait_for(lambda: not run_processes(first), timeout=60,
                 what="the launcher and ranks to stop")
    finally:
        for leftover in run_processes(first):
            leftover.kill()
    # The folder is free again: the next run of the job starts (and stops at once).
    third = ftjob_run(job).run("--set", "training.maxSteps=1", timeout=300)
    assert "is in use" not in third.stderr


def test_multipart_uploads_a_killed_upload_left_are_aborted_at_start(
        ftjob_run, minilm_path, seaweedfs, s3_bucket):
    s3_bucket("parts")
    client = seaweedfs.client()
    left = client.create_multipart_upload(Bucket="parts",
                                          Key="stale/ckpt/checkpoint-4/model.safetensors")
    client.upload_part(Bucket="parts", Key="stale/ckpt/checkpoint-4/model.safetensors",
                       UploadId=left["UploadId"], PartNumber=1, Body=b"x" * 1024)
    elsewhere = client.create_multipart_upload(Bucket="parts", Key="other-job/ckpt/a.bin")
    job = s3_job("stale", minilm_path, "parts", seaweedfs.endpoint,
                 training={"maxSteps": 2, "saveSteps": 2})
    result = ftjob_run(job).run(env=seaweedfs.env)
    assert result.returncode == 0, result.stderr[-3000:]
    uploads = client.list_multipart_uploads(Bucket="parts").get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [elsewhere["UploadId"]]
