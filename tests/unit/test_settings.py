"""The operator's settings: read from FTJOB_* variables once, validated at start; a bad value
stops the operator with one line naming the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ftjob.controller.settings import OperatorSettings, SettingsError


def test_defaults_and_every_variable_read():
    assert OperatorSettings.from_environment({}) == OperatorSettings()
    settings = OperatorSettings.from_environment({
        "FTJOB_TRAINER_IMAGE": "registry.example/t:2", "FTJOB_CHECKPOINT_URI": "s3://ckpt/x",
        "FTJOB_CREDENTIALS_SECRET": "s3", "FTJOB_S3_ENDPOINT_URL": "http://minio:9000",
        "FTJOB_QUEUE_NAME": "team-a", "FTJOB_DEFAULT_RESOURCES": '{"requests": {"cpu": "4"}}',
        "FTJOB_RESYNC_SECONDS": "60", "FTJOB_RESTART_BACKOFF_SECONDS": "1",
        "FTJOB_BATCH_SECONDS": "0.5", "FTJOB_WORKERS": "4",
        "FTJOB_METRICS_ADDRESS": "127.0.0.1", "FTJOB_METRICS_PORT": "0",
        "FTJOB_DATA_CHECK_RESOURCES": '{"limits": {"memory": "1Gi"}}',
        "FTJOB_DATA_CHECK_TIMEOUT_SECONDS": "60",
        "FTJOB_CHECKPOINT_URI_UNRELATED": "ignored", "FTJOB_QUEUE_NAME_X": ""})
    assert settings.model_dump() == {
        "trainer_image": "registry.example/t:2", "checkpoint_uri": "s3://ckpt/x",
        "credentials_secret": "s3", "s3_endpoint_url": "http://minio:9000",
        "queue_name": "team-a", "default_resources": {"requests": {"cpu": "4"}, "limits": None},
        "resync_seconds": 60, "restart_backoff_seconds": 1, "batch_seconds": 0.5,
        "workers": 4, "metrics_address": "127.0.0.1", "metrics_port": 0,
        "data_check_resources": {"requests": None, "limits": {"memory": "1Gi"}},
        "data_check_timeout_seconds": 60}


@pytest.mark.parametrize("variable,value,words", [
    ("FTJOB_WORKERS", "many", "valid integer"),
    ("FTJOB_WORKERS", "0", "greater than or equal to 1"),
    ("FTJOB_METRICS_PORT", "70000", "less than or equal to 65535"),
    ("FTJOB_METRICS_ADDRESS", "localhost", "must be an IP address"),
    ("FTJOB_RESYNC_SECONDS", "0", "greater than 0"),
    ("FTJOB_DEFAULT_RESOURCES", "{cpu: 4", "is not JSON"),
    ("FTJOB_DEFAULT_RESOURCES", '{"requests": {"cpuu": "4"}}', "not a resource"),
    ("FTJOB_CHECKPOINT_URI", "bucket/x", "String should match"),
    ("FTJOB_DATA_CHECK_RESOURCES", '{"limits": {"memory": "lots"}}', "limits: memory: "),
    ("FTJOB_DATA_CHECK_TIMEOUT_SECONDS", "5", "greater than or equal to 10"),
])
def test_a_bad_value_is_one_line_naming_the_variable(variable, value, words):
    with pytest.raises(SettingsError) as refused:
        OperatorSettings.from_environment({variable: value})
    assert str(refused.value).startswith(f"{variable}: ") and words in str(refused.value)
    assert "\n" not in str(refused.value)


def test_the_operator_does_not_start_with_a_bad_setting():
    result = subprocess.run(
        [sys.executable, "-m", "kopf", "run", "--standalone", "-m", "ftjob.controller.handlers"],
        env={"PATH": "/usr/bin:/bin", "FTJOB_WORKERS": "many", "HOME": "/tmp"},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 78
    assert "Traceback" not in result.stderr
    assert "ftjob operator: cannot start: FTJOB_WORKERS: " in result.stderr
