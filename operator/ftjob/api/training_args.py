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
import re
import types
import typing
from typing import Any

from pydantic_core import PydanticCustomError

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


@functools.cache
def training_argument_types() -> dict[str, Any]:
    """Field name -> resolved annotation of the installed TrainingArguments."""
    from transformers import TrainingArguments

    hints = typing.get_type_hints(TrainingArguments)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(TrainingArguments)
            if f.init}


def _enum_in_union(annotation: Any) -> type[enum.Enum] | None:
    """`SomeEnum | str` in TrainingArguments means "a value of SomeEnum, maybe as a string"."""
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, enum.Enum):
            return arg
    return None


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        enum_type = _enum_in_union(annotation)
        if enum_type is not None:
            return _describe(enum_type)
        return " or ".join(_describe(a) for a in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(str(m.value) for m in annotation)
    if annotation is type(None):
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(origin or annotation, str(annotation))


def _fits(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        enum_type = _enum_in_union(annotation)
        if enum_type is not None and isinstance(value, str):
            return _fits(value, enum_type)
        return any(_fits(value, a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is type(None):
        return value is None
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return value in {m.value for m in annotation}
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if (origin or annotation) in (list, tuple):
        args = typing.get_args(annotation)
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value) if args \
            else isinstance(value, list)
    if (origin or annotation) is dict:
        return isinstance(value, dict)
    return True  # an annotation we do not model: let TrainingArguments judge it at run time


def check_training_arguments(training: dict[str, Any]) -> dict[str, Any]:
    """Returns the arguments with snake_case names, or raises one error listing every
    problem as (name, message) pairs under ctx['problems']."""
    fields = training_argument_types()
    problems: list[tuple[str, str]] = []
    normalized: dict[str, Any] = {}
    for name, value in training.items():
        field = snake_case(name)
        if field in OWNED_BY_FTJOB:
            problems.append((name, f"is not allowed here: {OWNED_BY_FTJOB[field]}"))
        elif field not in fields:
            close = difflib.get_close_matches(field, fields, n=1, cutoff=0.8)
            hint = f" (did you mean {camel_case(close[0])}, i.e. {close[0]}?)" if close else ""
            problems.append((name, "is not a Hugging Face TrainingArguments field" + hint))
        elif not _fits(value, fields[field]):
            problems.append((name, f"must be {_describe(fields[field])}, got {value!r}"))
        elif field in normalized:
            problems.append((name, f"is given twice (also as {field})"))
        else:
            normalized[field] = value
    if problems:
        raise PydanticCustomError(
            "training_arguments",
            "; ".join(f"{n} {m}" for n, m in problems),
            {"problems": problems},
        )
    return normalized
