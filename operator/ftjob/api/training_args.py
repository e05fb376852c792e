"""Checks `spec.training` against the installed Hugging Face `TrainingArguments`.

Names may be camelCase (as in the rest of the spec) or snake_case (as in Hugging Face docs);
both map to the dataclass field. Each value is checked against the field's annotation, so a
mistyped name or a wrong enum value is refused with its path before anything runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic_core import PydanticCustomError

from .training_rules import consistency_problems, range_problems

# Fields ftjob sets itself, with where the user says what they want instead.
OWNED_BY_FTJOB = {
    "output_dir": "ftjob chooses the working directory; set checkpoints.uri and output.uri",
    "overwrite_output_dir": "ftjob manages the working directory",
    "resume_from_checkpoint": "ftjob resumes from the newest complete checkpoint by itself",
    "save_total_limit": "set checkpoints.keep",
    "deepspeed": "set distributed.strategy: deepspeed and distributed.deepspeed",
    "fsdp": "set distributed.strategy: fsdp and distributed.fsdp",
    "fsdp_config": "set distributed.strategy: fsdp and distributed.fsdp",
    "push_to_hub": "set output.pushToHub",
    "hub_model_id": "set output.pushToHub.repo",
    "hub_token": "set output.pushToHub.tokenSecret",
    "local_rank": "the launcher sets it",
}


def snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


TABLE = Path(__file__).with_name("training_arguments.json")
# Longer names are not compared with the fields for a "did you mean" (it costs quadratic time).
MAX_NAME_LENGTH = 100


def describe_type(annotation: Any) -> Any:
    """A JSON description of one TrainingArguments annotation, enough to check a value."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return "any"
    if annotation is type(None):
        return "null"
    if annotation in (bool, int, float, str):
        return annotation.__name__
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": [member.value for member in annotation]}
    if origin is typing.Literal:
        return {"literal": list(typing.get_args(annotation))}
    if origin in (typing.Union, types.UnionType):
        return {"union": [describe_type(arg) for arg in typing.get_args(annotation)]}
    if (origin or annotation) in (list, tuple):
        args = typing.get_args(annotation)
        return {"list": describe_type(args[0]) if args else "any"}
    if (origin or annotation) is dict:
        return "dict"
    return "any"  # an annotation we do not model: TrainingArguments judges it at run time


def json_default(field: dataclasses.Field) -> Any:
    """A field's default as JSON (enums by value), or None when it has none we can record."""
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return None
    if isinstance(value, enum.Enum):
        return value.value
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return repr(value)


def short_help(field: dataclasses.Field) -> str | None:
    """The field's help text cut to its first sentence: its description in the CRD."""
    text = " ".join(str(field.metadata.get("help") or "").split())
    if not text:
        return None
    sentence = re.split(r"(?<=[a-z0-9)])\. ", text, maxsplit=1)[0].rstrip(".")
    return sentence if len(sentence) <= 240 else sentence[:237].rstrip() + "..."


def generate_table() -> dict:
    """The table for the installed transformers (imports torch: slow, so it is committed).
    `transformers` records which version it was made from; only `fields` and `defaults`
    are compared when checking for drift."""
    import transformers
    from transformers import TrainingArguments

    hints = typing.get_type_hints(TrainingArguments)
    fields = [f for f in dataclasses.fields(TrainingArguments) if f.init]
    return {"transformers": transformers.__version__,
            "fields": {f.name: describe_type(hints.get(f.name, Any)) for f in fields},
            "defaults": {f.name: json_default(f) for f in fields},
            "help": {f.name: help for f in fields if (help := short_help(f))}}


def table_changes(committed: dict, current: dict) -> list[str]:
    """What differs between two tables in what validation reads (field names, their types
    and choices, their defaults), one line per field; the transformers version is ignored."""
    changes = []
    old, new = committed["fields"], current["fields"]
    old_defaults, new_defaults = committed.get("defaults", {}), current.get("defaults", {})
    for name in sorted(old.keys() | new.keys()):
        if name not in new:
            changes.append(f"{name}: removed")
        elif name not in old:
            changes.append(f"{name}: added ({_describe(new[name])}, "
                           f"default {new_defaults.get(name)!r})")
        elif old[name] != new[name]:
            changes.append(f"{name}: was {_describe(old[name])}, now {_describe(new[name])}")
        elif old_defaults.get(name) != new_defaults.get(name):
            changes.append(f"{name}: default was {old_defaults.get(name)!r}, "
                           f"now {new_defaults.get(name)!r}")
    return changes


@functools.cache
def _table() -> dict:
    return json.loads(TABLE.read_text())


def training_argument_types() -> dict[str, Any]:
    """Field name -> type description, from the table committed next to this module, so
    neither the operator nor `ftjob validate` imports transformers (and torch)."""
    return _table()["fields"]


def settable_training_arguments() -> dict[str, Any]:
    """The TrainingArguments fields a spec may set (ftjob owns the rest), with their types."""
    return {name: description for name, description in training_argument_types().items()
            if name not in OWNED_BY_FTJOB}


def spellings(name: str) -> list[str]:
    """The names spec.training takes for a field: snake_case, and camelCase where it differs."""
    return [name] if camel_case(name) == name else [name, camel_case(name)]


def training_argument_defaults() -> dict[str, Any]:
    return _table()["defaults"]


def training_argument_help() -> dict[str, str]:
    """Field name -> the first sentence of its Hugging Face help text."""
    return _table().get("help", {})


def _enum_values(description: Any) -> list | None:
    """`SomeEnum | str` in TrainingArguments means "a value of SomeEnum, maybe as a string"."""
    for member in description.get("union", []) if isinstance(description, dict) else []:
        if isinstance(member, dict) and "enum" in member:
            return member["enum"]
    return None


def _describe(description: Any) -> str:
    if isinstance(description, dict):
        if "enum" in description or _enum_values(description) is not None:
            values = description.get("enum") or _enum_values(description)
            return "one of " + ", ".join(str(value) for value in values)
        if "literal" in description:
            return "one of " + ", ".join(str(value) for value in description["literal"])
        if "union" in description:
            return " or ".join(_describe(member) for member in description["union"])
        return "a list"
    return {"bool": "a boolean", "int": "an integer", "float": "a number", "str": "a string",
            "null": "null", "dict": "an object"}.get(description, str(description))


def _fits(value: Any, description: Any) -> bool:
    if isinstance(description, dict):
        if "enum" in description:
            return value in description["enum"]
        if "literal" in description:
            return value in description["literal"]
        if "union" in description:
            enum_values = _enum_values(description)
            if enum_values is not None and isinstance(value, str):
                return value in enum_values
            return any(_fits(value, member) for member in description["union"])
        return isinstance(value, list) and all(_fits(v, description["list"]) for v in value)
    if description == "bool":
        return isinstance(value, bool)
    if description == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if description == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if description == "str":
        return isinstance(value, str)
    if description == "null":
        return value is None
    if description == "dict":
        return isinstance(value, dict)
    return True


def check_training_arguments(training: dict[str, Any]) -> dict[str, Any]:
    """Returns the arguments with snake_case names, or raises one error listing every
    problem as (name, message) pairs under ctx['problems']."""
    fields = training_argument_types()
    problems: list[tuple[str, str]] = []
    normalized: dict[str, Any] = {}
    given_as: dict[str, str] = {}  # snake_case field -> the name the user wrote
    for name, value in training.items():
        field = snake_case(name)
        if field in OWNED_BY_FTJOB:
            problems.append((name, f"is not allowed here: {OWNED_BY_FTJOB[field]}"))
        elif field not in fields:
            close = difflib.get_close_matches(field, fields, n=1, cutoff=0.8) \
                if len(field) <= MAX_NAME_LENGTH else []
            hint = f" (did you mean {camel_case(close[0])}, i.e. {close[0]}?)" if close else ""
            problems.append((name, "is not a Hugging Face TrainingArguments field" + hint))
        elif not _fits(value, fields[field]):
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:79] + "…"
            problems.append((name, f"must be {_describe(fields[field])}, got {shown}"))
        elif field in normalized:
            problems.append((name, f"is given twice (also as {field})"))
        else:
            normalized[field] = value
            given_as[field] = name
    if not problems:
        problems = [(given_as.get(field, camel_case(field)), message) for field, message in
                    range_problems(normalized) +
                    consistency_problems(normalized, training_argument_defaults())]
    if problems:
        raise PydanticCustomError(
            "training_arguments",
            "; ".join(f"{n} {m}" for n, m in problems),
            {"problems": problems},
        )
    return normalized
