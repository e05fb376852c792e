"""Generates the FineTuneJob CustomResourceDefinition from the pydantic models.

pydantic emits JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI v3 schema: every
node typed, no $ref, no nullable unions, `x-kubernetes-preserve-unknown-fields` for free-form
objects, boolean exclusive bounds. The translation below is mechanical; the rules themselves
(bounds, enums, defaults, CEL) come from the models. Defaults are kept, so the API server
fills them in and CEL rules can read every defaulted field without `has()`.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

from . import GROUP, KIND, PLURAL, VERSION
from .api.base import JOB_NAME, JOB_NAME_MAX_LENGTH
from .api.spec import FineTuneJobSpec
from .api.training_args import (
    settable_training_arguments,
    spellings,
    training_argument_defaults,
    training_argument_help,
)
from .api.training_rules import RANGES
from .api.status import FineTuneJobStatus

# Not part of a structural schema (propertyNames), or noise in one (title, examples).
DROPPED_KEYS = {"title", "examples", "propertyNames"}


def _structural(node: Any, defs: dict) -> Any:
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(options) == 1:
            return _structural({**options[0], **rest}, defs)
        raise ValueError(f"cannot express a union in a structural schema: {node}")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROPPED_KEYS or key == "$defs" or (key == "default" and value is None):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "exclusiveMinimum":
            out.update(minimum=value, exclusiveMinimum=True)
        elif key == "exclusiveMaximum":
            out.update(maximum=value, exclusiveMaximum=True)
        elif key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key == "patternProperties":
            # Map keys with a pattern (label keys): a structural schema cannot check keys, so
            # a CEL rule on the map does (api/pod.py label_map), and the values keep theirs.
            (value_schema,) = value.values()
            out["additionalProperties"] = _structural(value_schema, defs)
        elif key == "additionalProperties":
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif value is not False:  # False: extra="forbid"; the API server prunes instead
                out[key] = _structural(value, defs)
        else:
            out[key] = _structural(value, defs)
    if out.get("type") == "object" and "properties" not in out and \
            "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in out and "type" not in out:
        out["type"] = "integer" if all(isinstance(v, int) for v in out["enum"]) else "string"
    return out


def _argument_schema(description: Any) -> dict:
    """A TrainingArguments field's type (api/training_args.py's table) as a structural
    schema; unions of several types are left to the operator's check."""
    if isinstance(description, dict) and "union" in description:
        members = [m for m in description["union"] if m != "null"]
        enums = [m for m in members if isinstance(m, dict) and "enum" in m]
        if len(enums) == 1 and all(m == "str" for m in members if m not in enums):
            return {"type": "string", "enum": enums[0]["enum"]}  # SomeEnum | str
        if len(members) == 1:
            return _argument_schema(members[0])
        return {"x-kubernetes-preserve-unknown-fields": True}
    if isinstance(description, dict) and "enum" in description:
        return {"type": "string", "enum": description["enum"]}
    if isinstance(description, dict) and "list" in description:
        return {"type": "array", "maxItems": 64, "items": _argument_schema(description["list"])}
    return {"bool": {"type": "boolean"}, "int": {"type": "integer"},
            "float": {"type": "number"}, "str": {"type": "string", "maxLength": 4096},
            }.get(description, {"x-kubernetes-preserve-unknown-fields": True})


def training_schema() -> dict:
    """spec.training as the API server can check it: every TrainingArguments field ftjob
    does not own, by its camelCase and snake_case names, with its type, choices and the
    range training_rules allows. Combinations of fields are the operator's to check."""
    properties = {}
    helps, defaults = training_argument_help(), training_argument_defaults()
    for name, description in sorted(settable_training_arguments().items()):
        schema = _argument_schema(description)
        schema["description"] = (f"{helps.get(name, 'TrainingArguments.' + name)} "
                                 f"(TrainingArguments.{name}, default {json.dumps(defaults.get(name))})")
        allowed = RANGES.get(name)
        if allowed and schema.get("type") in ("integer", "number"):
            if allowed.low is not None:
                schema.update(minimum=allowed.low, exclusiveMinimum=allowed.low_open)
            if allowed.high is not None:
                schema.update(maximum=allowed.high, exclusiveMaximum=allowed.high_open)
        for spelling in spellings(name):
            properties[spelling] = copy.deepcopy(schema)  # no YAML alias
    return {"type": "object", "properties": properties,
            "description": FineTuneJobSpec.model_fields["training"].description}


def structural_schema(model) -> dict:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(schema, schema.get("$defs", {}))


def spec_schema() -> dict:
    schema = structural_schema(FineTuneJobSpec)
    schema["properties"]["training"] = training_schema()
    return schema


PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Progress", "type": "number", "jsonPath": ".status.progress.percent",
     "description": "Percent of training steps done"},
    {"name": "Step", "type": "integer", "jsonPath": ".status.progress.step"},
    {"name": "Loss", "type": "number", "jsonPath": ".status.progress.loss"},
    {"name": "ETA", "type": "integer", "jsonPath": ".status.progress.etaSeconds",
     "description": "Seconds of training left, estimated"},
    {"name": "Attempt", "type": "integer", "jsonPath": ".status.attempt", "priority": 1},
    {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts", "priority": 1,
     "description": "Attempts restarted after a failure"},
    {"name": "Goodput", "type": "number", "jsonPath": ".status.goodput.ratio", "priority": 1,
     "description": "Share of the wall time spent on training that was kept, as of the "
                    "last phase change"},
    {"name": "Checkpoint", "type": "string", "jsonPath": ".status.checkpoint.uri",
     "priority": 1},
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_crd() -> dict:
    root = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": structural_schema(FineTuneJobStatus),
        },
        "x-kubernetes-validations": [
            {"rule": f"self.metadata.name.size() <= {JOB_NAME_MAX_LENGTH}",
             "message": f"metadata.name must be at most {JOB_NAME_MAX_LENGTH} characters: it "
                        "prefixes the names of the job's pods and Services"},
            {"rule": f"self.metadata.name.matches('{JOB_NAME}')",
             "message": "metadata.name must start with a letter and contain only lowercase "
                        "letters, digits and '-'"},
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": KIND, "plural": PLURAL, "singular": KIND.lower(),
                      "shortNames": ["ftj"], "categories": ["all", "ftjob"]},
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": PRINTER_COLUMNS,
                "schema": {"openAPIV3Schema": root},
            }],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `ftjob crd` from operator/ftjob/api; do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)
