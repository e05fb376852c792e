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
    # `kubectl get ftj -o wide` adds the attempt, restarts, checkpoint and the phase's words.
    wide = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority")]
    assert wide == ["Attempt", "Restarts", "Goodput", "Checkpoint", "Message"]
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
    typed = lambda name: {k: v for k, v in training[name].items() if k != "description"}  # noqa
    assert typed("learningRate") == typed("learning_rate") == \
        {"type": "number", "minimum": 0, "exclusiveMinimum": False}
    assert training["perDeviceTrainBatchSize"]["minimum"] == 1
    assert training["adamBeta2"]["maximum"] == 1 and training["adamBeta2"]["exclusiveMaximum"]
    assert typed("evalStrategy") == {"type": "string", "enum": ["no", "steps", "epoch"]}
    assert typed("bf16") == {"type": "boolean"}
    assert typed("reportTo") == {"x-kubernetes-preserve-unknown-fields": True}  # a union
    for owned in ("outputDir", "output_dir", "deepspeed", "saveTotalLimit", "pushToHub"):
        assert owned not in training  # refused as unknown fields at admission


def test_every_field_has_a_description_for_kubectl_explain():
    undescribed = [path for path, node in walk(schema())
                   if path not in ("$", "$.apiVersion", "$.kind", "$.metadata")
                   and not path.endswith(("[]", "{}")) and not node.get("description")]
    assert not undescribed, undescribed


def test_training_arguments_are_described_with_their_hugging_face_help_and_default():
    training = schema()["properties"]["spec"]["properties"]["training"]["properties"]
    description = training["learningRate"]["description"]
    assert "learning rate" in description.lower()
    assert description.endswith("(TrainingArguments.learning_rate, default 5e-05)")
    assert training["learning_rate"]["description"] == description


def test_the_crd_fits_client_side_apply():
    # kubectl apply (client side) keeps the whole object in an annotation, and annotations
    # may total 256 KiB.
    import json
    assert len(json.dumps(build_crd(), separators=(",", ":"))) < 256 * 1024 * 0.9
