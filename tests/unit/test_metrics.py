"""The operator's per-job metrics: what a status turns into, and that the chart's dashboard
and alert rules only use names the operator exports."""

from __future__ import annotations

import json
import re

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ftjob.api.status import FineTuneJobStatus
from ftjob.controller import metrics
from tests.support.helm import CHART


def status(**progress) -> FineTuneJobStatus:
    return FineTuneJobStatus.model_validate(
        {"phase": "Running", "restarts": 2, **({"progress": progress} if progress else {})})


@pytest.mark.parametrize("progress, ratio", [
    ({"step": 5, "maxSteps": 20, "percent": 25.0}, 0.25),
    ({"step": 5, "maxSteps": 20}, 0.25),  # percent absent: from the steps
    ({"step": 5}, None),                  # no total yet
    ({}, None),                           # no progress reported yet
])
def test_progress_ratio(progress, ratio):
    assert metrics.JobSample.of("ns", "job", status(**progress)).progress_ratio == ratio


def test_progress_timestamp_and_unreadable_time():
    assert metrics.JobSample.of("ns", "j", status(
        updatedAt="2026-01-01T00:00:00.000Z")).updated_at == 1767225600.0
    assert metrics.JobSample.of("ns", "j", status(updatedAt="yesterday")).updated_at is None


def exposition(jobs: dict[str, metrics.JobSample]) -> str:
    collector = metrics._Jobs()
    collector.samples.update(jobs)
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_a_job_is_exported_by_namespace_and_name_and_only_what_it_reported():
    text = exposition({"u1": metrics.JobSample.of("team-a", "bert", status(
        step=5, maxSteps=20, loss=0.5)), "u2": metrics.JobSample.of("team-b", "new", status())})
    assert 'ftjob_job_loss{name="bert",namespace="team-a"} 0.5' in text
    assert 'ftjob_job_restarts_total{name="new",namespace="team-b"} 2.0' in text
    assert 'ftjob_job_phase{name="new",namespace="team-b",phase="Running"} 1.0' in text
    assert 'ftjob_jobs{phase="Running"} 2.0' in text and 'ftjob_jobs{phase="Failed"} 0.0' in text
    assert 'ftjob_job_loss{name="new"' not in text  # no progress yet: no series


def test_a_deleted_job_leaves_no_series():
    sample = metrics.JobSample.of("ns", "gone", status(step=1, maxSteps=2, loss=1.0))
    metrics.observe_job("uid-gone", sample)
    assert 'name="gone"' in generate_latest().decode()
    metrics.observe_job("uid-gone", None)
    assert 'name="gone"' not in generate_latest().decode()


def exported_names() -> set[str]:
    """Every series name the operator's registry can expose, whether or not it has samples."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    return {family.name + suffix for family in metrics.REGISTRY.collect()
            if family.name.startswith("ftjob_")
            for suffix in suffixes.get(family.type, [""])}


@pytest.mark.parametrize("shipped", ["files/dashboard.json", "templates/prometheusrule.yaml"])
def test_the_chart_uses_only_metrics_the_operator_exports(shipped):
    text = (CHART / shipped).read_text()
    used = set(re.findall(r"\bftjob_[a-z_]+\b", text))
    assert used, shipped
    assert used <= exported_names(), used - exported_names()


def test_the_dashboard_covers_every_per_job_metric():
    panels = json.loads((CHART / "files/dashboard.json").read_text())["panels"]
    queried = " ".join(t["expr"] for p in panels for t in p["targets"])
    per_job = {name for name in exported_names() if name.startswith("ftjob_job_")}
    assert per_job <= set(re.findall(r"\bftjob_[a-z_]+\b", queried))
