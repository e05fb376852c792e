"""The parts of a pod a user may shape: Kubernetes' own rules and ftjob's reserved names,
with the field path and the rule in the message (the CRD's CEL twins are checked against the
API server in tests/cluster/test_smoke.py and by the admission fuzz test)."""

from __future__ import annotations

import pytest

from ftjob.api import SpecError, parse_job
from tests.unit.test_validation import with_changes

VOLUME = {"name": "data", "emptyDir": {}}


def refusal(**spec) -> list[tuple[str, str]]:
    try:
        parse_job(with_changes({f"spec.{key}": value for key, value in spec.items()}))
    except SpecError as error:
        return error.problems
    return []


@pytest.mark.parametrize("spec,path,words", [
    ({"resources": {"requests": {"cpuu": "1"}}}, "spec.resources", "'cpuu' is not a resource"),
    ({"resources": {"limits": {"kubernetes.io/x": "1"}}}, "spec.resources", "not a resource"),
    ({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}}, "spec.resources",
     "exceeds its limit"),
    ({"resources": {"requests": {"example.com/fpga": "1"}}}, "spec.resources",
     "needs a limit equal"),
    ({"resources": {"limits": {"example.com/fpga": "0.5"}}}, "spec.resources",
     "whole number"),
    ({"resources": {"requests": {"memory": "1ki"}}}, "spec.resources.requests.memory",
     "Kubernetes quantity"),
    ({"podTemplate": {"volumes": [{"name": "config", "emptyDir": {}}]}},
     "spec.podTemplate.volumes[0]", "ftjob's own"),
    ({"podTemplate": {"volumes": [VOLUME], "volumeMounts": [
        {"name": "data", "mountPath": "/dev/shm/"}]}}, "spec.podTemplate.volumeMounts[0]",
     "where ftjob mounts"),
    ({"podTemplate": {"volumes": [VOLUME], "volumeMounts": [
        {"name": "data", "mountPath": "/etc/ftjob/extra"}]}},
     "spec.podTemplate.volumeMounts[0]", "where ftjob mounts"),
    ({"podTemplate": {"volumes": [VOLUME], "volumeMounts": [
        {"name": "data", "mountPath": "/data", "subPath": "a/../.."}]}},
     "spec.podTemplate.volumeMounts[0].subPath", "without '..'"),
    ({"podTemplate": {"volumeMounts": [{"name": "data", "mountPath": "/data"}]}},
     "spec.podTemplate", "names no volume"),
    ({"podTemplate": {"volumes": [VOLUME, VOLUME]}}, "spec.podTemplate", "unique"),
    ({"podTemplate": {"volumes": [{"name": "data"}]}}, "spec.podTemplate.volumes[0]",
     "exactly one of"),
    ({"podTemplate": {"volumes": [{"name": "data", "emptyDir": {}, "secret": {
        "secretName": "s"}}]}}, "spec.podTemplate.volumes[0]", "exactly one of"),
    ({"podTemplate": {"volumes": [{"name": "n", "nfs": {"server": "x", "path": "/"}}]}},
     "spec.podTemplate.volumes[0].nfs", "unknown field"),
    ({"podTemplate": {"env": [{"name": "FTJOB_RESUME_FROM", "value": "s3://x/y"}]}},
     "spec.podTemplate.env[0]", "set by ftjob"),
    ({"podTemplate": {"env": [{"name": "X", "value": "1", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.name"}}}]}}, "spec.podTemplate.env[0]",
     "not both"),
    ({"podTemplate": {"labels": {"team name": "a"}}}, "spec.podTemplate.labels[\"team name\"]",
     "qualified name"),
    ({"podTemplate": {"nodeSelector": {"pool": "a b"}}}, "spec.podTemplate.nodeSelector.pool",
     "at most 63 letters"),
    ({"podTemplate": {"labels": {"a" * 254 + "/x": "v"}}}, "spec.podTemplate.labels",
     "DNS prefix of at most 253"),
    ({"podTemplate": {"tolerations": [{"operator": "Equal", "value": "x"}]}},
     "spec.podTemplate.tolerations[0]", "without a key must use operator Exists"),
    ({"podTemplate": {"affinity": {"nodeAffinity": {"deep": {"deeper": {}}}}}},
     "spec.podTemplate.affinity.nodeAffinity.deep", "unknown field"),
    # A null is still a field: the API server's strict field validation refuses the name.
    ({"podTemplate": {"volumes": [{"name": "data", "emptyDir": {}, "hostPath": None}]}},
     "spec.podTemplate.volumes[0].hostPath", "unknown field"),
    ({"checkpoints": {"uri": "s3:// "}}, "spec.checkpoints.uri", "storage URI"),
    ({"checkpoints": {"uri": "s3:///nobucket"}}, "spec.checkpoints.uri", "storage URI"),
    ({"checkpoints": {"uri": "s3://bkt/x", "endpointUrl": "localhost:9000"}},
     "spec.checkpoints.endpointUrl", "http(s) URL"),
])
def test_a_pod_kubernetes_or_ftjob_would_refuse_is_refused_with_the_field(spec, path, words):
    problems = refusal(**spec)
    assert any(found.startswith(path) and words in message for found, message in problems), \
        problems


@pytest.mark.parametrize("spec", [
    {"resources": {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"cpu": "1"}}},
    {"resources": {"limits": {"nvidia.com/gpu": "8", "example.com/fpga": "2"}}},
    {"podTemplate": {"volumes": [VOLUME], "volumeMounts": [
        {"name": "data", "mountPath": "/scratch-data", "subPath": "..hidden/./x"}]}},
    {"podTemplate": {"tolerations": [{"operator": "Exists"}],
                     "labels": {"example.com/team": "a", "plain": ""},
                     "affinity": {"podAntiAffinity": {
                         "requiredDuringSchedulingIgnoredDuringExecution": [
                             {"topologyKey": "kubernetes.io/hostname",
                              "labelSelector": {"matchLabels": {"app": "x"}}}]}}}},
    {"checkpoints": {"uri": "gs://my_bucket.example/a b", "endpointUrl":
                     "https://storage.example:8443/prefix"}},
])
def test_pods_kubernetes_accepts_are_accepted(spec):
    assert refusal(**spec) == []
