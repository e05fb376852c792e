"""The goodput ledger: a job's wall time split by cause, from statuses in order."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from ftjob import goodput
from ftjob.api.status import FineTuneJobStatus
from tests.unit.test_decide import NOW, attempt_job, decide, observe

CREATED = datetime(2026, 11, 22, 12, 0, 0)


def at(seconds: float) -> datetime:
    return CREATED + timedelta(seconds=seconds)


def moment(seconds: float) -> str:
    return at(seconds).isoformat(timespec="milliseconds") + "Z"


def timing(attempt, began, training, evaluation=0.0, checkpoint=0.0, saved=0.0):
    return {"attempt": attempt, "trainBeganAt": moment(began), "trainingSeconds": training,
            "evaluationSeconds": evaluation, "checkpointSeconds": checkpoint,
            "savedTrainingSeconds": saved}


def life(steps):
    """Carries a ledger through (status, seconds since creation) pairs as the operator
    would: it reads the status it decided last with the timing rank 0 has written since,
    and decides the next."""
    decided, ledger = {}, None
    for status, seconds in steps:
        read = {**decided, "timing": status.get("timing")}
        ledger = goodput.account(read, status, CREATED, at(seconds))
        decided = {**status, "goodput": ledger}
    return ledger


def seconds_by_cause(ledger):
    return {cause: ledger[f"{cause}Seconds"] for cause in goodput.CAUSES
            if ledger[f"{cause}Seconds"]}


# A data check of 10 s; attempt 1 trains from 40 s and a worker dies at 130 s, 30 s of
# training after its last complete checkpoint; restart backoff 20 s; attempt 2 resumes
# and succeeds at 240 s.
FAILED_THEN_SUCCEEDED = [
    ({"phase": "Initializing", "attempt": 0}, 0),
    ({"phase": "Initializing", "attempt": 1}, 10),
    ({"phase": "Running", "attempt": 1, "timing": timing(1, 40, 10)}, 45),
    ({"phase": "Restarting", "attempt": 1,
      "timing": timing(1, 40, 80, evaluation=5, checkpoint=3, saved=50)}, 130),
    ({"phase": "Initializing", "attempt": 2}, 150),
    ({"phase": "Running", "attempt": 2, "timing": timing(2, 170, 5)}, 175),
    ({"phase": "Succeeded", "attempt": 2, "timing": timing(2, 170, 60, checkpoint=2,
                                                           saved=60)}, 240),
]


def test_a_failed_attempt_and_a_resumed_one_split_by_cause_and_summing_to_the_wall_time():
    ledger = life(FAILED_THEN_SUCCEEDED)
    assert seconds_by_cause(ledger) == {
        "startup": 10 + 30 + 20, "productive": 50 + 60, "recompute": 30, "evaluation": 5,
        "checkpoint": 3 + 2, "restart": 20, "other": 2 + 8}
    assert ledger["wallSeconds"] == 240 == sum(seconds_by_cause(ledger).values())
    assert ledger["ratio"] == round(110 / 240, 4)
    assert ledger["accountedAt"] == "2026-11-22T12:04:00Z"
    FineTuneJobStatus.model_validate({"goodput": ledger})


def test_nothing_is_added_while_the_job_spends_time_on_the_same_thing():
    """Initializing to Running within one attempt, and every reconcile in between, leave
    the ledger as it was: accounting adds no status write."""
    ledger = life(FAILED_THEN_SUCCEEDED[:2])
    running = {"phase": "Running", "attempt": 1, "timing": timing(1, 40, 10)}
    old = {"phase": "Initializing", "attempt": 1, "goodput": ledger}
    assert goodput.account(old, running, CREATED, at(45)) == ledger
    assert goodput.account({**running, "goodput": ledger}, running, CREATED, at(99)) == ledger


def test_the_open_interval_counts_live_and_a_running_attempts_training_as_kept():
    ledger = life(FAILED_THEN_SUCCEEDED[:2])
    running = {"phase": "Running", "attempt": 1, "goodput": ledger,
               "timing": timing(1, 40, 50, evaluation=4, checkpoint=1, saved=20)}
    now = goodput.live(running, at(100))
    assert seconds_by_cause(now) == {"startup": 10 + 30, "productive": 50, "evaluation": 4,
                                     "checkpoint": 1, "other": 5}
    assert now["wallSeconds"] == 100
    assert running["goodput"] == ledger  # the status read is left as it was
    finished = life(FAILED_THEN_SUCCEEDED)
    assert goodput.live({"phase": "Succeeded", "goodput": finished}, at(999)) == finished
    assert goodput.live({"phase": "Running"}, at(5)) is None


def test_queued_suspended_and_restart_time():
    ledger = life([
        ({"phase": "Initializing", "attempt": 1}, 0),
        ({"phase": "Pending", "attempt": 1}, 2),  # the queue has not admitted it
        ({"phase": "Initializing", "attempt": 1}, 62),
        ({"phase": "Running", "attempt": 1, "timing": timing(1, 70, 1)}, 71),
        ({"phase": "Suspended", "attempt": 1, "timing": timing(1, 70, 30, saved=30)}, 100),
        ({"phase": "Initializing", "attempt": 2}, 400),
    ])
    assert seconds_by_cause(ledger) == {"startup": 2 + 8, "queued": 60 + 300,
                                        "productive": 30}
    assert ledger["wallSeconds"] == 400


def test_an_earlier_run_of_the_same_attempt_is_not_counted_again():
    """A queue that preempts and readmits an attempt starts a new run of it; until that run
    reports, the previous run's timing on status is not this interval's."""
    ledger = life([
        ({"phase": "Initializing", "attempt": 1}, 0),
        ({"phase": "Running", "attempt": 1, "timing": timing(1, 10, 1)}, 11),
        ({"phase": "Pending", "attempt": 1, "timing": timing(1, 10, 40, saved=40)}, 50),
        ({"phase": "Initializing", "attempt": 1, "timing": timing(1, 10, 40, saved=40)}, 80),
        ({"phase": "Failed", "attempt": 1, "timing": timing(1, 10, 40, saved=40)}, 90),
    ])
    assert seconds_by_cause(ledger) == {"startup": 10 + 10, "productive": 40, "queued": 30}


def test_a_save_on_sigterm_after_the_stop_moves_its_training_back_to_productive():
    """A deadline or suspend stops the attempt first; its pods save on SIGTERM and rank 0
    reports that checkpoint afterwards."""
    stopped = life([
        ({"phase": "Initializing", "attempt": 1}, 0),
        ({"phase": "Running", "attempt": 1, "timing": timing(1, 10, 1)}, 11),
        ({"phase": "Failed", "attempt": 1, "timing": timing(1, 10, 80, saved=60)}, 90),
    ])
    assert (stopped["productiveSeconds"], stopped["recomputeSeconds"]) == (60, 20)
    late = {"phase": "Failed", "attempt": 1, "goodput": stopped,
            "timing": timing(1, 10, 80, saved=80)}
    credited = goodput.account(late, late, CREATED, at(95))
    assert (credited["productiveSeconds"], credited["recomputeSeconds"]) == (80, 0)
    assert credited["ratio"] == round(80 / 90, 4)
    again = {**late, "goodput": credited}
    assert goodput.account(again, again, CREATED, at(99)) == credited


def test_a_job_that_finished_before_ledgers_were_kept_gets_none():
    assert goodput.account({"phase": "Succeeded"}, {"phase": "Succeeded"}, CREATED,
                           at(5)) is None


@pytest.mark.parametrize("value,expected", [
    ("2026-11-22T12:00:05Z", at(5)), ("2026-11-22T12:00:05.250Z", at(5.25)),
    ("not a time", None), (None, None)])
def test_times_from_the_operator_and_the_trainer(value, expected):
    assert goodput.parse_moment(value) == expected


def test_the_operator_keeps_the_ledger_on_status_from_the_creation_time():
    created = NOW - timedelta(seconds=30)
    observed = observe()
    observed.created = created
    plan = decide(observed)
    # Seen 30 s after creation, the job starts its first attempt: that was startup.
    assert plan.status["goodput"]["accountedAt"] == "2026-11-22T12:00:00Z"
    assert plan.status["goodput"]["startupSeconds"] == 30
    running = {**plan.status, "phase": "Running", "attempt": 1}
    observed = observe(status=running, jobs=[attempt_job(1, failed=True)],
                       now=NOW + timedelta(seconds=60))
    observed.created = created
    plan = decide(observed)
    assert plan.status["phase"] == "Restarting"
    assert plan.status["goodput"]["wallSeconds"] == 90
    assert plan.status["goodput"]["startupSeconds"] == 90  # training never began


def test_what_rank_0_writes_on_status_timing():
    from ftjob_trainer.kubernetes_status import status_update

    started, urgent = status_update({"event": "started", "time": "t", "attempt": 2, "step": 8,
                                     "timing": {"trainBeganAt": "t", "trainingSeconds": 0.0}})
    # A new run clears what the last run had saved.
    assert started["timing"] == {"attempt": 2, "trainBeganAt": "t", "trainingSeconds": 0.0,
                                 "savedTrainingSeconds": 0.0} and urgent
    saved, urgent = status_update({"event": "checkpoint", "time": "t", "attempt": 2, "step": 12,
                                   "uri": "s3://b/c", "timing": {
                                       "trainBeganAt": "t", "savedTrainingSeconds": 31.5}})
    assert saved["timing"]["savedTrainingSeconds"] == 31.5 and urgent
    FineTuneJobStatus.model_validate(started)
    ignored, _ = status_update({"event": "preempted", "time": "t", "attempt": 2, "step": 3,
                                "timing": {"trainBeganAt": "t"}})
    assert ignored == {}


def finished_status() -> FineTuneJobStatus:
    return FineTuneJobStatus.model_validate(
        {"phase": "Succeeded", "attempt": 2, "goodput": life(FAILED_THEN_SUCCEEDED)})


def test_per_job_goodput_series():
    from tests.unit.test_metrics import exposition
    from ftjob.controller import metrics

    text = exposition({"u": metrics.JobSample.of("ns", "j", finished_status())})
    assert 'ftjob_job_goodput_ratio{name="j",namespace="ns"} 0.4583' in text
    assert 'ftjob_job_goodput_seconds{cause="recompute",name="j",namespace="ns"} 30.0' in text
    assert 'ftjob_job_goodput_seconds{cause="queued",name="j",namespace="ns"} 0.0' in text
    running = FineTuneJobStatus.model_validate({"phase": "Running", "attempt": 1})
    assert "ftjob_job_goodput_ratio{" not in exposition(
        {"u": metrics.JobSample.of("ns", "j", running)})


def test_ftjob_status_shows_where_the_time_went():
    from ftjob.client import JobView
    from ftjob.cluster_cli import describe

    view = JobView(name="j", namespace="ns", uid="u", created="2026-11-22T12:00:00Z",
                   status=finished_status(), job=None)
    assert "Goodput:    46% of 4m00s (productive 1m50s, startup 1m00s, checkpoint 5s, " \
        "evaluation 5s, recompute 30s, restart 20s, other 10s)" in describe(view, at(300))
