"""Value checks of `spec.training` beyond types: the consistency rules TrainingArguments
enforces when it is built (so they fail at `ftjob validate`, not in a pod), and ranges it
does not check whose violations fail later inside the trainer (the optimizer refuses a
negative learning rate, the DataLoader a batch size of 0, numpy a seed of 2**32).

Each rule reads the effective arguments: the user's over TrainingArguments' defaults
(recorded in the committed table). A problem is reported under the name the user wrote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Range:
    low: float | None = None
    high: float | None = None
    low_open: bool = False   # low itself is outside the range
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or
                                         (self.high_open and value == self.high))

    def describe(self) -> str:
        low = None if self.low is None else \
            f"{'greater than' if self.low_open else 'at least'} {self.low:g}"
        high = None if self.high is None else \
            f"{'less than' if self.high_open else 'at most'} {self.high:g}"
        return " and ".join(part for part in (low, high) if part)


SEED = Range(0, 2**32 - 1)  # numpy's seeding takes 32 bits
RANGES: dict[str, Range] = {
    "learning_rate": Range(0),
    "per_device_train_batch_size": Range(1),
    "per_device_eval_batch_size": Range(1),
    "gradient_accumulation_steps": Range(1),
    "eval_accumulation_steps": Range(1),
    "num_train_epochs": Range(0),
    "max_steps": Range(-1),
    "weight_decay": Range(0),
    "adam_beta1": Range(0, 1, high_open=True),
    "adam_beta2": Range(0, 1, high_open=True),
    "adam_epsilon": Range(0),
    "max_grad_norm": Range(0),
    "warmup_steps": Range(0),
    "logging_steps": Range(0),
    "eval_steps": Range(0, low_open=True),
    "save_steps": Range(0, low_open=True),
    "seed": SEED,
    "data_seed": SEED,
    "label_smoothing_factor": Range(0, 1, high_open=True),
    "dataloader_num_workers": Range(0),
    "dataloader_prefetch_factor": Range(1),
    "ddp_timeout": Range(1),
    "torch_empty_cache_steps": Range(1),
    "neftune_noise_alpha": Range(0, low_open=True),
}


def range_problems(given: dict[str, Any]) -> list[tuple[str, str]]:
    """(snake_case name, message) for numbers that are not finite or out of range."""
    problems = []
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            problems.append((name, f"must be a finite number, got {value}"))
        elif name in RANGES and not RANGES[name].contains(value):
            problems.append((name, f"must be {RANGES[name].describe()}, got {value}"))
    return problems


def _steps_problems(a: dict[str, Any]) -> list[tuple[str, str]]:
    problems = []
    for kind in ("logging", "eval", "save"):
        strategy, steps = a.get(f"{kind}_strategy"), a.get(f"{kind}_steps")
        if strategy != "steps":
            continue
        if kind == "eval" and not steps:
            if not a.get("logging_steps"):
                problems.append(("eval_steps", "evalStrategy steps needs evalSteps or "
                                               "loggingSteps greater than 0"))
            continue
        if not steps:
            problems.append((f"{kind}_steps", f"{kind}Strategy steps needs {kind}Steps "
                                              "greater than 0"))
        elif steps > 1 and steps != int(steps):
            problems.append((f"{kind}_steps", f"must be a whole number when above 1 (below 1 "
                                              f"it is a fraction of training), got {steps}"))
    return problems


def _best_model_problems(a: dict[str, Any]) -> list[tuple[str, str]]:
    if not a.get("load_best_model_at_end") or a.get("save_strategy") == "best":
        return []
    if a.get("eval_strategy") != a.get("save_strategy"):
        return [("load_best_model_at_end", "needs evalStrategy and saveStrategy to match "
                 f"(or saveStrategy best), got {a.get('eval_strategy')} and "
                 f"{a.get('save_strategy')}")]
    save, evaluate = a.get("save_steps"), a.get("eval_steps") or a.get("logging_steps")
    if a.get("eval_strategy") != "steps" or not save or not evaluate:
        return []
    if (save < 1) != (evaluate < 1):
        return [("load_best_model_at_end", "needs saveSteps to be a multiple of evalSteps, "
                 "which mixing fractions and step counts cannot guarantee")]
    if round(save * 1_000_000) % round(evaluate * 1_000_000):
        return [("load_best_model_at_end", f"needs saveSteps ({save:g}) to be a multiple of "
                 f"evalSteps ({evaluate:g})")]
    return []


def _precision_problems(a: dict[str, Any]) -> list[tuple[str, str]]:
    problems = []
    if a.get("fp16") and a.get("bf16"):
        problems.append(("bf16", "cannot be set together with fp16"))
    if a.get("fp16_full_eval") and a.get("bf16_full_eval"):
        problems.append(("bf16_full_eval", "cannot be set together with fp16FullEval"))
    return problems


def _scheduler_problems(a: dict[str, Any]) -> list[tuple[str, str]]:
    if a.get("lr_scheduler_type") in ("reduce_lr_on_plateau", "greedy") and \
            a.get("eval_strategy") in ("no", None):
        return [("lr_scheduler_type", f"{a['lr_scheduler_type']} needs an evalStrategy "
                 "(it steps on eval results)")]
    return []


def _dataloader_problems(a: dict[str, Any]) -> list[tuple[str, str]]:
    if a.get("dataloader_num_workers") == 0 and a.get("dataloader_prefetch_factor") is not None:
        return [("dataloader_prefetch_factor", "needs dataloaderNumWorkers above 0")]
    return []


CONSISTENCY_RULES = (_steps_problems, _best_model_problems, _precision_problems,
                     _scheduler_problems, _dataloader_problems)


def consistency_problems(given: dict[str, Any], defaults: dict[str, Any]
                         ) -> list[tuple[str, str]]:
    """(snake_case name, message) for combinations TrainingArguments refuses."""
    effective = {**defaults, **given}
    return [problem for rule in CONSISTENCY_RULES for problem in rule(effective)]
