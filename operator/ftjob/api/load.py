"""Reading FineTuneJob documents and turning validation failures into field-path messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .spec import FineTuneJob


class SpecError(Exception):
    """A FineTuneJob that cannot run. `problems` holds (field path, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("\n".join(f"{path}: {message}" for path, message in problems))


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
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


def _problems(error: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        if item["type"] == "extra_forbidden":
            owner = _model_at(loc[:-1])
            allowed = sorted(f.alias or n for n, f in owner.model_fields.items()) if owner else []
            hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
            problems.append((_path(loc), f"unknown field{hint}"))
        elif item["type"] == "training_arguments":
            for name, message in item["ctx"]["problems"]:
                problems.append((_path((*loc, name)), message))
        elif item["type"] == "missing":
            problems.append((_path(loc), "is required"))
        else:
            message = item["msg"].removeprefix("Value error, ")
            problems.append((_path(loc), message))
    return problems


def parse_job(document: Any) -> FineTuneJob:
    if not isinstance(document, dict):
        raise SpecError([("(document)", "must be a FineTuneJob mapping with apiVersion, kind, "
                                        "metadata and spec")])
    try:
        return FineTuneJob.model_validate(document)
    except ValidationError as error:
        raise SpecError(_problems(error)) from None


def read_document(path: str | Path) -> dict:
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise SpecError([(str(path), f"cannot be read: {error.strerror}")]) from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        raise SpecError([(str(path), f"is not valid YAML: {error}")]) from None
    if len(documents) != 1:
        raise SpecError([(str(path), f"must hold exactly one document, found {len(documents)}")])
    return documents[0]


TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec")


def apply_overrides(document: dict, overrides: list[str]) -> dict:
    """Applies `a.b.c=value` settings (value parsed as YAML); paths start at `spec` unless they
    name another top-level key."""
    for setting in overrides:
        key, sep, raw = setting.partition("=")
        if not sep or not key:
            raise SpecError([(setting, "--set takes PATH=VALUE, e.g. training.maxSteps=20")])
        parts = key.split(".")
        if parts[0] not in TOP_LEVEL:
            parts.insert(0, "spec")
        node = document
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SpecError([(key, f"{part} is not a mapping, cannot set a field inside")])
            node = child
        node[parts[-1]] = yaml.safe_load(raw) if raw else ""
    return document


def load_job(path: str | Path, overrides: list[str] = ()) -> FineTuneJob:
    return parse_job(apply_overrides(read_document(path), list(overrides)))
