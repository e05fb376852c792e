"""Property-based: hostile FineTuneJobs through the real API server (with kubectl's strict
field validation) while the operator runs. What the API server refuses, `ftjob validate`
refuses too; what it admits never stays without a phase; the operator never fails a
reconcile over a spec."""

from __future__ import annotations

import copy
import itertools

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from ftjob.api.load import SpecError, parse_job
from tests.support.hostile import COUNTS, hostile_jobs
from tests.support.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

EXAMPLES = 300


def test_hostile_specs_through_the_api_server_with_the_operator_running(
        cluster, namespace, operator, caplog):
    api = client.CustomObjectsApi(config.new_client_from_config(str(cluster.kubeconfig)))
    names = (f"fz-{i}" for i in itertools.count())
    admitted, refused, disagreements = [], [], []

    # No shrinking: each example creates an object, and the failing one is reported as is.
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(document=hostile_jobs())
    def submit(document):
        name = next(names)
        if isinstance(document.get("metadata"), dict):
            document["metadata"]["name"] = name
        try:
            parse_job(copy.deepcopy(document))
            local = None
        except SpecError as error:
            local = str(error)
        try:
            api.create_namespaced_custom_object("ftjob.dev", "v1alpha1", namespace,
                                                "finetunejobs", document,
                                                field_validation="Strict")
            admitted.append((name, local))
        except ApiException as error:
            assert error.status in (400, 422), (error.status, error.body[:500])
            refused.append(name)
            if local is None:
                disagreements.append((document, error.body[:500]))

    submit()
    invalid = sum(1 for _, local in admitted if local is not None)
    COUNTS[f"the API server with the operator running ({len(admitted)} admitted, "
           f"{invalid} of them failed by the operator as InvalidSpec; "
           f"{len(refused)} refused)"] = len(admitted) + len(refused)
    assert not disagreements, f"refused by the API server, valid to ftjob: {disagreements[:2]}"
    assert admitted and refused  # the generator reaches both sides

    def phases():
        items = api.list_namespaced_custom_object("ftjob.dev", "v1alpha1", namespace,
                                                  "finetunejobs")["items"]
        return {item["metadata"]["name"]: (item.get("status") or {}).get("phase")
                for item in items}

    eventually(lambda: all(phases().get(name) for name, _ in admitted), timeout=300,
               interval=2, what="every admitted job to have a phase")
    seen = phases()
    for name, local in admitted:
        if local is not None:  # admitted by CEL, refused by ftjob: failed, not stuck
            assert seen[name] == "Failed", (name, seen[name], local)
    assert not operator.future.done(), "the operator stopped"
    failed_reconciles = [r.getMessage() for r in caplog.records
                         if r.name == "ftjob.controller.workqueue" and namespace in r.getMessage()]
    assert not failed_reconciles, failed_reconciles[:3]
