"""What the pod's environment and the config JSON each decide."""

from __future__ import annotations

import os

import pytest

from ftjob_trainer.arguments import apply_environment


def raw(endpoint=None) -> dict:
    return {"job": {"name": "j"}, "storage": {"work_dir": "/scratch",
                                              "checkpoint_endpoint_url": endpoint}}


@pytest.mark.parametrize("environment, endpoint, expected", [
    # The job's endpoint serves its s3:// data and model too (the Secret has only keys).
    ({}, "http://minio.storage:9000", "http://minio.storage:9000"),
    # One the Secret (or the machine) names wins.
    ({"AWS_ENDPOINT_URL": "http://other:9000"}, "http://minio.storage:9000",
     "http://other:9000"),
    ({}, None, None),  # AWS itself
])
def test_the_jobs_s3_endpoint_is_the_default_for_every_uri(monkeypatch, environment,
                                                           endpoint, expected):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    apply_environment(raw(endpoint))
    assert os.environ.get("AWS_ENDPOINT_URL") == expected


@pytest.mark.parametrize("reporting, expected", [
    ({"events_uri": "s3://b/job"}, "/pod-1/scratch/events.jsonl"),  # in the (remapped) work dir
    ({"events_uri": "s3://b/job", "events_file": "/run/events.jsonl"}, "/run/events.jsonl"),
    ({}, None),
])
def test_the_history_is_written_in_the_work_dir_first(monkeypatch, reporting, expected):
    monkeypatch.setenv("FTJOB_WORK_DIR", "/pod-1/scratch")
    config = {**raw(), "reporting": dict(reporting)}
    assert apply_environment(config)["reporting"].get("events_file") == expected
