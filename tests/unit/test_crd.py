"""The committed CRD is what the models generate, and it is a schema Kubernetes accepts."""

from __future__ import annotations

from pathlib import Path

import yaml

from ftjob.crd import build_crd, crd_yaml

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "finetunejobs.ftjob.dev.yaml"


def test_committed_crd_matches_models():
    assert CRD_FILE.read_text() == crd_yaml(), \
        "crds/ is stale: run `ftjob crd > crds/finetunejobs.ftjob.dev.yaml`"


def walk(node, path="$"):
    yield path, node
    for key, value in node.get("properties", {}).items():
        yield from walk(value, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def schema():
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_schema_is_structural():
    forbidden = {"$ref", "anyOf", "oneOf", "allOf", "propertyNames", "$defs", "const",
                 "patternProperties"}
    for path, node in walk(schema()):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert not forbidden & node.keys(), (path, forbidden & node.keys())
        assert not ("properties" in node and "additionalProperties" in node), path
        assert node.get("default", 0) is not None, path


def test_every_string_and_list_is_bounded():
    for path, node in walk(schema()):
        if path in ("$.apiVersion", "$.kind"):
            continue
        if node.get("type") == "string":
            assert "maxLength" in node or "enum" in node, f"{path} has no maxLength"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path} has no maxItems"
        if node.get("type") == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, f"{path} has no maxProperties"


def test_status_subresource_printer_columns_and_cel():
    version = build_crd()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Progress"] == ".status.progress.percent"
    for name in ("Step", "Loss", "ETA", "Age"):
        assert name in columns
    rules = [r["rule"] for _, node in walk(schema())
             for r in node.get("x-kubernetes-validations", [])]
    assert any("has(self.name) != has(self.files)" in r for r in rules)
    assert any("self.strategy == 'deepspeed'" in r for r in rules)
    assert any("metadata.name.size()" in r for r in rules)


def test_crd_yaml_round_trips():
    assert yaml.safe_load(crd_yaml()) == build_crd()


def test_training_arguments_are_typed_in_the_crd_from_the_committed_table():
    training = schema()["properties"]["spec"]["properties"]["training"]["properties"]
    assert training["learningRate"] == training["learning_rate"] == \
        {"type": "number", "minimum": 0, "exclusiveMinimum": False}
    assert training["perDeviceTrainBatchSize"]["minimum"] == 1
    assert training["adamBeta2"]["maximum"] == 1 and training["adamBeta2"]["exclusiveMaximum"]
    assert training["evalStrategy"] == {"type": "string", "enum": ["no", "steps", "epoch"]}
    assert training["bf16"] == {"type": "boolean"}
    assert training["reportTo"] == {"x-kubernetes-preserve-unknown-fields": True}  # a union
    for owned in ("outputDir", "output_dir", "deepspeed", "saveTotalLimit", "pushToHub"):
        assert owned not in training  # refused as unknown fields at admission
