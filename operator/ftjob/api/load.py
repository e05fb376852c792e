"""Reading FineTuneJob documents and turning validation failures into field-path messages.

Documents are read as kubectl reads them (kube_yaml), and decoded, pruned and typed as
strictly as the API server does with a structural schema, so a file `ftjob validate` accepts
is one the API server admits, and the other way round."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from . import base, pod
from .kube_yaml import DocumentError, load_all, load_value
from .spec import FineTuneJob
from .training_args import settable_training_arguments, spellings

# Free-form parts of the spec, kept as written: a null there means "None" to the library.
# Parts the CRD keeps as written (x-kubernetes-preserve-unknown-fields), nulls included: a
# complete DeepSpeed config, and the value of each TrainingArguments field (a null field
# itself is pruned like any other, its default then applies).
FREE_FORM = (("spec", "distributed", "deepspeed", "config"),)
FREE_FORM_CHILDREN = (("spec", "training"),)
# What each pattern of base.py asks for, in words (the regular expression is no message).
PATTERN_MEANINGS = {
    base.STORAGE_URI: "must be a storage URI: s3://BUCKET/PATH, gs://BUCKET/PATH, "
                      "az://CONTAINER/PATH (bucket names as the provider allows them: 3 to 63 "
                      "lowercase letters, digits, '-' or '.') or file:///ABSOLUTE/PATH",
    base.ENDPOINT_URL: "must be an http(s) URL of a host and an optional port, e.g. "
                       "http://minio.storage:9000",
    base.DNS_SUBDOMAIN: "must be a Kubernetes object name: lowercase letters, digits, '-' "
                        "and '.', starting and ending with a letter or digit",
    base.DNS_LABEL: "must be lowercase letters, digits and '-', starting and ending with a "
                    "letter or digit",
    base.QUALIFIED_NAME: base.QUALIFIED_NAME_MEANING,
    base.LABEL_VALUE: "must be at most 63 letters, digits, '-', '_' or '.', starting and "
                      "ending with a letter or digit",
    base.QUANTITY: "must be a Kubernetes quantity, e.g. 500m, 2, 16Gi",
    base.JOB_NAME: "must start with a letter and hold only lowercase letters, digits and '-'",
    pod.ABSOLUTE_PATH: "must be an absolute path",
    pod.RELATIVE_PATH: "must be a relative path without '..' segments",
}


class SpecError(Exception):
    """A FineTuneJob that cannot run. `problems` holds (field path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("\n".join(f"{path}: {message}" for path, message in problems))


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_./-]+$")


def _path(loc: tuple) -> str:
    """`spec.podTemplate.volumes[0].name`; a key that is not plain text (spaces, control
    characters, quotes) is quoted, so a path is always one printable line."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":  # pydantic: the key itself is wrong, not its value
            out += " (key)"
        elif _PLAIN_KEY.match(str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that owns the field at `loc`, following aliases and lists."""
    model: Any = FineTuneJob
    for part in loc:
        if isinstance(part, int):
            continue
        fields = {f.alias or n: f for n, f in model.model_fields.items()}
        if part not in fields:
            return None
        annotation = fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = [c for c in candidates for c in (c, *getattr(c, "__args__", ()))
                  if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return model


def _field_names(model: type[BaseModel]) -> list[str]:
    """A model's fields by their names on the wire."""
    return [f.alias or n for n, f in model.model_fields.items()]


def _short(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _message(item: dict) -> str:
    if item["type"] == "string_pattern_mismatch":
        return PATTERN_MEANINGS.get(item["ctx"]["pattern"], item["msg"])
    return _short(item["msg"].removeprefix("Value error, "), 300)


def _problems(error: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        loc = tuple(_short(part) if isinstance(part, str) else part for part in item["loc"])
        if item["type"] == "extra_forbidden":
            owner = _model_at(loc[:-1])
            allowed = sorted(_field_names(owner)) if owner else []
            hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
            problems.append((_path(loc), f"unknown field{hint}"))
        elif item["type"] == "training_arguments":
            for name, message in item["ctx"]["problems"]:
                problems.append((_path((*loc, _short(name))), message))
        elif item["type"] == "missing":
            problems.append((_path(loc), "is required"))
        else:
            problems.append((_path(loc), _message(item)))
    return problems


def _known_keys(path: tuple) -> set[str] | None:
    """The field names the schema declares at `path`; None where any key is allowed (maps
    such as labels)."""
    if path in FREE_FORM_CHILDREN:
        return {spelling for name in settable_training_arguments() for spelling in spellings(name)}
    owner = _model_at(path)
    if owner is None or owner.model_config.get("extra") != "forbid":
        return None
    return set(_field_names(owner))


def as_api_server_reads(value: Any, path: tuple = ()) -> Any:
    """The document as the API server decodes and prunes it: a null field is an absent one
    (except in the free-form parts), and a whole number written as 2.0 is the integer 2. A
    null under a name the schema does not declare stays, so it is refused as an unknown
    field, as the API server's strict field validation refuses it."""
    if path in FREE_FORM or path[:-1] in FREE_FORM_CHILDREN:
        return value
    if isinstance(value, dict):
        # Only a null needs the schema's names (the common document has none).
        known = _known_keys(path) if None in value.values() else None
        return {key: as_api_server_reads(item, (*path, key)) for key, item in value.items()
                if item is not None or (known is not None and key not in known)}
    if isinstance(value, list):
        return [as_api_server_reads(item, path) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2 ** 63:
        return int(value)
    return value


def parse_job(document: Any) -> FineTuneJob:
    if not isinstance(document, dict):
        raise SpecError([("(document)", "must be a FineTuneJob mapping with apiVersion, kind, "
                                        "metadata and spec")])
    try:
        # Strict: the API server takes no "on" for true and no "2" for 2, so neither do we.
        return FineTuneJob.model_validate(as_api_server_reads(document), strict=True)
    except ValidationError as error:
        raise SpecError(_problems(error)) from None


def read_documents(path: str | Path) -> list[Any]:
    """Every document of a file (kubectl applies each one)."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise SpecError([(str(path), f"cannot be read: {error.strerror}")]) from None
    try:
        documents = load_all(data)
    except DocumentError as error:
        raise SpecError([(str(path), str(error))]) from None
    if not documents:
        raise SpecError([(str(path), "holds no document")])
    return documents


def read_document(path: str | Path) -> Any:
    """The one document of a file that must hold exactly one (`ftjob run`)."""
    documents = read_documents(path)
    if len(documents) != 1:
        raise SpecError([(str(path), f"holds {len(documents)} documents; ftjob run runs one "
                                     "job, so give it a file with one FineTuneJob")])
    return documents[0]


TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec")


def apply_overrides(document: Any, overrides: list[str]) -> Any:
    """Applies `a.b.c=value` settings (value read like YAML in a document); paths start at
    `spec` unless they name another top-level key."""
    for setting in overrides:
        key, sep, raw = setting.partition("=")
        if not sep or not key or not all(key.split(".")):
            raise SpecError([(_short(setting), "--set takes PATH=VALUE, e.g. "
                                               "training.maxSteps=20")])
        if not isinstance(document, dict):
            return document  # parse_job says what is wrong with it
        parts = key.split(".")
        if parts[0] not in TOP_LEVEL:
            parts.insert(0, "spec")
        node = document
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SpecError([(_short(key), f"{part} is not a mapping, cannot set a field "
                                               "inside")])
            node = child
        try:
            node[parts[-1]] = load_value(raw) if raw else ""
        except DocumentError as error:
            raise SpecError([(_short(key), f"--set value {error}")]) from None
    return document


def load_job(path: str | Path, overrides: list[str] = ()) -> FineTuneJob:
    return parse_job(apply_overrides(read_document(path), list(overrides)))
