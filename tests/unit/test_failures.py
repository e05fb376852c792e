"""Failure classification: which pod failures earn another attempt."""

from __future__ import annotations

import json

import pytest

from ftjob.controller.failures import classify_pod, first_failure


def failed_pod(name="p-0", exit_code=1, reason="Error", message="", phase="Failed",
               pod_reason=None, conditions=()):
    status = {"phase": phase, "conditions": list(conditions), "containerStatuses": [
        {"name": "trainer", "state": {"terminated": {"exitCode": exit_code, "reason": reason,
                                                      "message": message}}}]}
    if pod_reason:
        status["reason"] = pod_reason
    return {"metadata": {"name": name}, "status": status}


TRAINER_MESSAGE = json.dumps({"reason": "InvalidDataset", "exitCode": 65, "retryable": False,
                              "message": "column 'sentence1' not in the train file"})
STORAGE_MESSAGE = json.dumps({"reason": "StorageUnavailable", "exitCode": 74,
                              "retryable": True, "message": "s3 did not answer"})


@pytest.mark.parametrize("pod, reason, retryable", [
    # the trainer's termination message wins: torchrun exits 1 whatever the worker said
    (failed_pod(exit_code=1, message=TRAINER_MESSAGE), "InvalidDataset", False),
    (failed_pod(exit_code=1, message=STORAGE_MESSAGE), "StorageUnavailable", True),
    (failed_pod(exit_code=75), "Preempted", True),
    (failed_pod(exit_code=74), "StorageUnavailable", True),
    (failed_pod(exit_code=65), "InvalidDataset", False),
    (failed_pod(exit_code=66), "NotFound", False),
    (failed_pod(exit_code=69), "PeerLost", True),  # another rank failed first
    (failed_pod(exit_code=77), "StorageAccessDenied", False),
    (failed_pod(exit_code=78), "InvalidConfig", False),
    (failed_pod(exit_code=137, reason="OOMKilled"), "OOMKilled", True),
    (failed_pod(exit_code=137), "Killed", True),
    (failed_pod(exit_code=143), "Terminated", True),
    (failed_pod(exit_code=1, message="torch.distributed.elastic.rendezvous.api."
                "RendezvousTimeoutError: timed out"), "NetworkTimeout", True),
    (failed_pod(exit_code=1, message="[Rank 3] Watchdog caught collective operation timeout"),
     "NetworkTimeout", True),
    (failed_pod(exit_code=1, message="torch.distributed.DistNetworkError: Connection reset"),
     "NetworkTimeout", True),
    (failed_pod(exit_code=1, message="Traceback ...\nKeyError: 'labels'"), "TrainerError",
     False),
    (failed_pod(exit_code=2), "TrainerError", False),
    (failed_pod(pod_reason="Evicted"), "Evicted", True),
    (failed_pod(phase="Running", conditions=[{"type": "DisruptionTarget", "status": "True",
                                              "reason": "DeletionByTaintManager"}]),
     "DeletionByTaintManager", True),
])
def test_classify_pod(pod, reason, retryable):
    failure = classify_pod(pod)
    assert (failure.reason, failure.retryable) == (reason, retryable)
    assert failure.pod == "p-0"


def test_running_and_succeeded_pods_have_no_failure():
    assert classify_pod({"metadata": {"name": "a"}, "status": {"phase": "Running"}}) is None
    assert classify_pod({"metadata": {"name": "a"}, "status": {"phase": "Succeeded"}}) is None


def finished(pod, at):
    pod["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"] = at
    return pod


def test_the_earliest_failure_explains_the_attempt():
    killed = finished(failed_pod("a-1", exit_code=137), "2026-11-22T10:00:00Z")
    collateral = finished(failed_pod("a-0", exit_code=1, message="RuntimeError: [gloo/transport/"
                                     "tcp/pair.cc:534] Connection closed by peer"),
                          "2026-11-22T10:00:04Z")
    assert first_failure([collateral, killed]).reason == "Killed"
    assert classify_pod(collateral).retryable


def test_a_permanent_failure_wins_a_tie():
    pods = [failed_pod("a-0", exit_code=143), failed_pod("a-1", exit_code=65)]
    assert first_failure(pods).reason == "InvalidDataset"
    assert first_failure([failed_pod("a-1", 143), failed_pod("a-0", 75)]).pod == "a-0"
    assert first_failure([]) is None


def test_the_message_of_an_unknown_error_quotes_the_last_log_line():
    failure = classify_pod(failed_pod(exit_code=1, message="line 1\nValueError: bad"))
    assert failure.message == "the trainer exited 1: ValueError: bad"
