"""User mistakes end with one clear message, a non-zero exit, no traceback, and nothing
written to storage."""

from __future__ import annotations

import pytest

from tests.conftest import tiny_job
from tests.support.seaweedfs import free_port

pytestmark = pytest.mark.slow


def assert_clean_failure(result, code: int, *words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    for word in words:
        assert word in output, output[-3000:]


@pytest.fixture
def bucket(seaweedfs, s3_bucket):
    s3_bucket("bad")
    yield "bad"
    assert seaweedfs.keys("bad") == [], "a failed run left objects in storage"


def s3_job(name, minilm_path, **overrides):
    storage = {"checkpoints": {"uri": f"s3://bad/{name}/ckpt"},
               "output": {"uri": f"s3://bad/{name}/model"}}
    return tiny_job(name, minilm_path, **{**storage, **overrides})


def test_missing_column(ftjob_run, minilm_path, seaweedfs, bucket):
    job = s3_job("missing-column", minilm_path,
                 dataset={"textColumns": ["sentence1", "headline"]})
    result = ftjob_run(job).run(env=seaweedfs.env)
    assert_clean_failure(result, 65, "headline", "sentence2", "textColumns")


def test_unknown_model_path(ftjob_run, minilm_path, seaweedfs, bucket, tmp_path):
    job = s3_job("no-model", str(tmp_path / "no-such-model"))
    result = ftjob_run(job).run(env=seaweedfs.env)
    assert_clean_failure(result, 66, "no-such-model")


def test_unreachable_storage(ftjob_run, minilm_path, seaweedfs, bucket):
    env = {**seaweedfs.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    result = ftjob_run(s3_job("unreachable", minilm_path)).run(env=env, timeout=180)
    assert_clean_failure(result, 74, "StorageUnavailable", "s3://bad/unreachable/ckpt")


def test_wrong_credentials(ftjob_run, minilm_path, seaweedfs, bucket):
    env = {**seaweedfs.env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    result = ftjob_run(s3_job("denied", minilm_path)).run(env=env, timeout=180)
    assert_clean_failure(result, 77, "StorageAccessDenied", "credentials")


def test_invalid_spec_is_refused_before_running(ftjob_run, minilm_path, bucket):
    job = s3_job("typo", minilm_path, training={"learningRat": 1e-5})
    result = ftjob_run(job).run()
    assert_clean_failure(result, 1, "spec.training.learningRat", "learning_rate")


def hub_job(name, minilm_path):
    return s3_job(name, minilm_path, output={"uri": f"s3://bad/{name}/model", "pushToHub": {
        "repo": "ftjob-tests/minilm", "tokenSecret": "hub-token"}})


def test_push_to_hub_without_a_token_fails_before_training(ftjob_run, minilm_path, seaweedfs,
                                                          bucket, tmp_path):
    env = {**seaweedfs.env, "HF_HUB_OFFLINE": "0", "HF_TOKEN": "",
           "HF_HOME": str(tmp_path / "hf-home")}  # no stored token either
    run = ftjob_run(hub_job("hub-no-token", minilm_path))
    result = run.run(env=env, timeout=180)
    assert_clean_failure(result, 77, "HubAccessDenied", "HF_TOKEN", "ftjob-tests/minilm")
    assert not [e for e in run.events() if e["event"] == "progress"]  # no step was trained


def test_push_to_hub_unreachable_fails_before_training(ftjob_run, minilm_path, seaweedfs,
                                                       bucket):
    env = {**seaweedfs.env, "HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_not_a_real_token",
           "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}  # nothing listens there
    run = ftjob_run(hub_job("hub-unreachable", minilm_path))
    result = run.run(env=env, timeout=180)
    assert_clean_failure(result, 74, "HubUnavailable", "ftjob-tests/minilm")
    assert not [e for e in run.events() if e["event"] == "progress"]
