"""The tasks ftjob fine-tunes for, one module each. A task module has:

- `NAME`, the task's name in `spec.model.task`;
- `Arguments`, a dataclass of its settings (the trainer config's `task` section, rendered
  from the spec section of the same name);
- `build(config, model_path, tokenizer, raw) -> TaskParts`: checks the columns it reads,
  preprocesses, and picks the model class, collator, metrics and trainer class.

`train()` knows no task by name. Adding a task is one module and one line below.
"""

from __future__ import annotations

from types import ModuleType

from ..errors import ConfigError
from . import causal_lm, dpo, masked_lm, sequence_classification, sft, token_classification
from .base import TaskParts

TASKS: dict[str, ModuleType] = {module.NAME: module for module in (
    sequence_classification,
    token_classification,
    masked_lm,
    causal_lm,
    sft,
    dpo,
)}


def task_for(name: str) -> ModuleType:
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"spec.model.task {name!r} is not one of "
                          f"{', '.join(TASKS)}") from None


__all__ = ["TASKS", "TaskParts", "task_for"]
