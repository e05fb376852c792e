"""The checkpoint lifecycle against a real S3 server (SeaweedFS): background upload with a
completion marker, retention, resume after a hard kill (never from an unmarked checkpoint),
and SIGTERM making the trainer save and exit with its own code."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from tests.conftest import tiny_job

pytestmark = pytest.mark.slow

EXIT_PREEMPTED = 75


def s3_job(name, minilm_path, bucket, **overrides):
    return tiny_job(name, minilm_path,
                    checkpoints={"uri": f"s3://{bucket}/{name}/checkpoints", "keep": 2},
                    output={"uri": f"s3://{bucket}/{name}/model"}, **overrides)


def checkpoint_steps(seaweedfs, bucket, prefix, complete_only=True) -> list[int]:
    keys = seaweedfs.keys(bucket, prefix)
    wanted = "_COMPLETE.json" if complete_only else ""
    steps = {int(k[len(prefix):].split("/")[0].removeprefix("checkpoint-"))
             for k in keys if k.endswith(wanted)}
    return sorted(steps)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def kill_tree(process, sig) -> None:
    """Signals `ftjob run` and everything it started (the launcher runs in its own session)."""
    parent = psutil.Process(process.pid)
    for proc in [parent, *parent.children(recursive=True)]:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def test_upload_marker_retention_and_export(ftjob_run, minilm_path, seaweedfs, s3_bucket):
    s3_bucket("ckpt")
    job = s3_job("upload", minilm_path, "ckpt",
                 training={"maxSteps": 8, "saveSteps": 2})
    run = ftjob_run(job)
    result = run.run(env=seaweedfs.env)
    assert result.returncode == 0, result.stderr[-4000:]
    prefix = "upload/checkpoints/"
    # keep: 2 → only the two newest complete checkpoints remain, with their markers.
    assert checkpoint_steps(seaweedfs, "ckpt", prefix, complete_only=False) == [6, 8]
    assert checkpoint_steps(seaweedfs, "ckpt", prefix) == [6, 8]
    marker = json.loads(seaweedfs.client().get_object(
        Bucket="ckpt", Key=prefix + "checkpoint-8/_COMPLETE.json")["Body"].read())
    keys = set(seaweedfs.keys("ckpt", prefix + "checkpoint-8/"))
    assert marker["step"] == 8
    assert {prefix + "checkpoint-8/" + name for name in marker["files"]} <= keys
    assert "trainer_state.json" in marker["files"] and "model.safetensors" in marker["files"]
    # Every save was reported once its upload finished.
    reported = [e["step"] for e in run.events() if e["event"] == "checkpoint"]
    assert reported == [2, 4, 6, 8]
    model_keys = seaweedfs.keys("ckpt", "upload/model/")
    assert "upload/model/_COMPLETE.json" in model_keys
    assert "upload/model/model.safetensors" in model_keys
    assert "upload/model/tokenizer.json" in model_keys
    # The preflight probe leaves nothing behind.
    assert not [k for k in seaweedfs.keys("ckpt") if ".ftjob-probe" in k]


def test_killed_run_resumes_from_newest_complete_checkpoint(ftjob_run, minilm_path,
                                                            seaweedfs, s3_bucket):
    s3_bucket("resume")
    prefix = "killed/checkpoints/"
    job = s3_job("killed", minilm_path, "resume",
                 training={"maxSteps": 40, "saveSteps": 4})
    run = ftjob_run(job)
    process = run.start(env=seaweedfs.env)
    try:
        wait_for(lambda: any(s >= 8 for s in checkpoint_steps(seaweedfs, "resume", prefix)),
                 timeout=300, what="checkpoint-8 in storage")
    finally:
        kill_tree(process, signal.SIGKILL)
        process.communicate()
    complete = checkpoint_steps(seaweedfs, "resume", prefix)
    newest = complete[-1]
    # A newer checkpoint whose upload never finished: files present, marker missing.
    client = seaweedfs.client()
    unmarked = newest + 2
    source = f"{prefix}checkpoint-{newest}/"
    for key in seaweedfs.keys("resume", source):
        if not key.endswith("_COMPLETE.json"):
            client.copy_object(Bucket="resume", Key=key.replace(source,
                                                                f"{prefix}checkpoint-{unmarked}/"),
                               CopySource={"Bucket": "resume", "Key": key})

    job["spec"]["training"]["maxSteps"] = newest + 4
    run = ftjob_run(job)
    result = run.run(env=seaweedfs.env)
    assert result.returncode == 0, result.stderr[-4000:]
    started = [e for e in run.events(attempt=2) if e["event"] == "started"][0]
    assert started["resumedFrom"]["step"] == newest
    steps = [e["step"] for e in run.events(attempt=2) if e["event"] == "progress"]
    assert steps[0] > newest and steps[-1] == newest + 4
    # The unmarked leftover was never used and is cleaned up once a newer save lands.
    assert unmarked not in checkpoint_steps(seaweedfs, "resume", prefix, complete_only=False)


def test_sigterm_saves_and_exits_with_preempted_code(ftjob_run, minilm_path, seaweedfs,
                                                     s3_bucket):
    s3_bucket("term")
    prefix = "term/checkpoints/"
    job = s3_job("term", minilm_path, "term", training={"maxSteps": 200, "saveSteps": 1000})
    run = ftjob_run(job)
    process = run.start(env=seaweedfs.env)
    wait_for(lambda: any(e["event"] == "progress" and e["step"] >= 3 for e in run.events()),
             timeout=300, what="training to reach step 3")
    os.kill(process.pid, signal.SIGTERM)  # what Ctrl-C or a pod eviction sends
    out, err = process.communicate(timeout=120)
    assert process.returncode == EXIT_PREEMPTED, err[-4000:]
    preempted = [e for e in run.events() if e["event"] == "preempted"]
    assert preempted, err[-3000:]
    step = preempted[0]["step"]
    assert 3 <= step < 200
    # saveSteps is 1000, so this checkpoint exists only because of the signal.
    assert checkpoint_steps(seaweedfs, "term", prefix) == [step]
    assert "Preempted" in out
    # torchrun's own SignalException report is kept out of the terminal, in the run folder.
    assert "Traceback" not in out + err and "SignalException" not in out + err, err[-3000:]
    assert "SignalException" in (run.run_dir / "launcher.log").read_text()

    job["spec"]["training"]["maxSteps"] = step + 2
    result = ftjob_run(job).run(env=seaweedfs.env)
    assert result.returncode == 0, result.stderr[-4000:]
    started = [e for e in run.events(attempt=2) if e["event"] == "started"][0]
    assert started["resumedFrom"]["step"] == step
