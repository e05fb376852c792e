"""Goodput: where a job's wall time since creation went, by cause.

The operator keeps a ledger on `status.goodput` and adds to it only when the job changes
what it spends time on (a phase change or a new attempt), so accounting costs no status
write of its own. Time in the data check is startup; Pending and Suspended are queued;
Restarting is restart. An attempt's time is split with what rank 0 reported on
`status.timing` for that run: startup until training began, then training, evaluation and
checkpoint saves; training after the run's last complete checkpoint is recompute unless the
attempt succeeded; the rest (final export, pods exiting, a failure not yet reported) is other.

Everything here is pure: statuses (camelCase dicts, as on the resource) and times in, a
ledger out. `live` adds the interval still open, for `ftjob status` and the metrics.
"""

from __future__ import annotations

from datetime import datetime

CAUSES = ("productive", "startup", "checkpoint", "evaluation", "recompute", "restart",
          "queued", "other")
FIELDS = tuple(f"{cause}Seconds" for cause in CAUSES)


def parse_moment(value: str | None) -> datetime | None:
    """An RFC 3339 time from the operator (seconds) or the trainer (milliseconds), naive
    UTC like the operator's clock; None when absent or unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        return None


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def spent_on(status: dict) -> str | None:
    """What the job spends its time on in this status: "attempt" (pods of an attempt
    starting or training), a cause, or None once it has finished."""
    phase = status.get("phase")
    if phase in ("Succeeded", "Failed"):
        return None
    if phase in ("Pending", "Suspended"):
        return "queued"
    if phase == "Restarting":
        return "restart"
    if phase in ("Initializing", "Running") and status.get("attempt", 0) > 0:
        return "attempt"
    return "startup"  # not yet seen by the operator, or the data check


def split_attempt(seconds: float, start: datetime, timing: dict | None,
                  kept: bool) -> dict[str, float]:
    """An attempt's `seconds` from `start`, by cause, with its run's timing (None when
    training never began). `kept`: the attempt succeeded or is still going, so all its
    training counts; otherwise what came after its last complete checkpoint is recompute."""
    began = parse_moment((timing or {}).get("trainBeganAt"))
    if began is None:
        return {"startup": seconds}
    startup = min(max((began - start).total_seconds(), 0.0), seconds)
    training = float(timing.get("trainingSeconds") or 0.0)
    evaluation = float(timing.get("evaluationSeconds") or 0.0)
    checkpoint = float(timing.get("checkpointSeconds") or 0.0)
    lost = 0.0 if kept else max(training - float(timing.get("savedTrainingSeconds") or 0.0),
                                0.0)
    return {"startup": startup, "productive": training - lost, "recompute": lost,
            "evaluation": evaluation, "checkpoint": checkpoint,
            "other": max(seconds - startup - training - evaluation - checkpoint, 0.0)}


def _run_of(status: dict, start: datetime) -> dict | None:
    """The timing of the run that trained in the interval from `start`: of this attempt and
    begun in it (an earlier run of the same attempt, preempted by a queue, is not)."""
    timing = status.get("timing") or {}
    began = parse_moment(timing.get("trainBeganAt"))
    if timing.get("attempt") != status.get("attempt") or began is None or \
            (began - start).total_seconds() < -1.0:  # the operator's clock has seconds
        return None
    return timing


def _interval(status: dict, start: datetime, end: datetime, kept: bool) -> dict[str, float]:
    seconds = max((end - start).total_seconds(), 0.0)
    kind = spent_on(status)
    if kind is None:
        return {}
    if kind != "attempt":
        return {kind: seconds}
    return split_attempt(seconds, start, _run_of(status, start), kept)


def _added(ledger: dict, parts: dict[str, float], until: datetime) -> dict:
    ledger = dict(ledger)
    for cause, seconds in parts.items():
        ledger[f"{cause}Seconds"] = round(ledger.get(f"{cause}Seconds", 0.0) + seconds, 3)
    start = parse_moment(ledger["accountedAt"])
    ledger["wallSeconds"] = round(ledger.get("wallSeconds", 0.0) +
                                  max((until - start).total_seconds(), 0.0), 3)
    ledger["accountedAt"] = _stamp(until)
    return _with_ratio(ledger)


def _with_ratio(ledger: dict) -> dict:
    if ledger.get("wallSeconds"):
        ledger["ratio"] = round(ledger["productiveSeconds"] / ledger["wallSeconds"], 4)
    return ledger


def new_ledger(created: datetime) -> dict:
    return {"wallSeconds": 0.0, **{name: 0.0 for name in FIELDS},
            "accountedAt": _stamp(created)}


def credit_late_save(ledger: dict, timing: dict | None) -> dict:
    """A run accounted as stopped can still complete a checkpoint (it saves on SIGTERM):
    the training that checkpoint keeps moves from recompute back to productive."""
    timing = timing or {}
    if not ledger.get("foldedRun") or timing.get("trainBeganAt") != ledger["foldedRun"]:
        return ledger
    saved = float(timing.get("savedTrainingSeconds") or 0.0)
    moved = min(saved - (ledger.get("foldedSavedSeconds") or 0.0),
                ledger.get("recomputeSeconds", 0.0))
    if moved <= 0:
        return ledger
    return _with_ratio({**ledger, "foldedSavedSeconds": saved,
                        "recomputeSeconds": round(ledger["recomputeSeconds"] - moved, 3),
                        "productiveSeconds": round(ledger["productiveSeconds"] + moved, 3)})


def account(old: dict, new: dict, created: datetime, now: datetime) -> dict | None:
    """The ledger for the status the operator decided (`new`) from the one it read (`old`):
    the interval since the ledger's accountedAt is added when the job stops spending time on
    what `old` says (a phase change of another kind, or another attempt). None for a job
    that finished before any ledger was kept."""
    kind = spent_on(old)
    if kind is None and not old.get("goodput"):
        return None
    ledger = credit_late_save(old.get("goodput") or new_ledger(created), old.get("timing"))
    if kind is None or (kind == spent_on(new) and old.get("attempt") == new.get("attempt")):
        return ledger
    start = parse_moment(ledger["accountedAt"]) or created
    ledger = _added(ledger, _interval(old, start, now, kept=new.get("phase") == "Succeeded"),
                    now)
    run = _run_of(old, start) if kind == "attempt" else None
    if run:
        ledger["foldedRun"] = run["trainBeganAt"]
        ledger["foldedSavedSeconds"] = float(run.get("savedTrainingSeconds") or 0.0)
    return ledger


def live(status: dict, now: datetime) -> dict | None:
    """The ledger with the interval still open added as if it ended now (a running attempt's
    training all kept); None before the operator started one."""
    ledger = status.get("goodput")
    if not ledger or not parse_moment(ledger.get("accountedAt")):
        return None
    start = parse_moment(ledger["accountedAt"])
    if spent_on(status) is None or now <= start:
        return ledger
    return _added(ledger, _interval(status, start, now, kept=True), now)
