"""`spec.training` values: what TrainingArguments refuses when it is built is refused by
`ftjob validate` too (checked against the real TrainingArguments), and values it accepts but
the trainer fails on later are refused with the field and the allowed range."""

from __future__ import annotations

import pytest

from ftjob.api.load import SpecError, parse_job
from tests.unit.test_validation import with_changes

# Combinations TrainingArguments refuses in __post_init__, and neighbours it accepts.
CONSISTENCY = [
    ({"fp16": True, "bf16": True}, "spec.training.bf16"),
    ({"fp16": True}, None),
    ({"fp16FullEval": True, "bf16FullEval": True}, "spec.training.bf16FullEval"),
    ({"evalStrategy": "steps", "loggingSteps": 0}, "spec.training.loggingSteps"),
    ({"evalStrategy": "steps", "loggingStrategy": "epoch", "loggingSteps": 0},
     "spec.training.evalSteps"),
    ({"evalStrategy": "steps", "evalSteps": 10}, None),
    ({"evalStrategy": "steps"}, None),  # falls back to loggingSteps (500)
    ({"saveStrategy": "steps", "saveSteps": 2.5}, "spec.training.saveSteps"),
    ({"saveStrategy": "steps", "saveSteps": 0.25}, None),
    ({"loggingSteps": 7.5}, "spec.training.loggingSteps"),
    ({"evalStrategy": "steps", "evalSteps": 2.5}, "spec.training.evalSteps"),
    ({"loadBestModelAtEnd": True}, "spec.training.loadBestModelAtEnd"),
    ({"loadBestModelAtEnd": True, "evalStrategy": "epoch", "saveStrategy": "epoch"}, None),
    ({"loadBestModelAtEnd": True, "evalStrategy": "steps", "evalSteps": 30,
      "saveSteps": 100}, "spec.training.loadBestModelAtEnd"),
    ({"loadBestModelAtEnd": True, "evalStrategy": "steps", "evalSteps": 25,
      "saveSteps": 100}, None),
    ({"loadBestModelAtEnd": True, "evalStrategy": "steps", "evalSteps": 0.1,
      "saveSteps": 100}, "spec.training.loadBestModelAtEnd"),
    ({"loadBestModelAtEnd": True, "evalStrategy": "steps", "evalSteps": 0.1,
      "saveSteps": 0.3}, None),
    ({"loadBestModelAtEnd": True, "saveStrategy": "best", "evalStrategy": "steps",
      "evalSteps": 10}, None),
    ({"lrSchedulerType": "reduce_lr_on_plateau"}, "spec.training.lrSchedulerType"),
    ({"lrSchedulerType": "reduce_lr_on_plateau", "evalStrategy": "epoch"}, None),
    ({"dataloaderPrefetchFactor": 2}, "spec.training.dataloaderPrefetchFactor"),
    ({"dataloaderPrefetchFactor": 2, "dataloaderNumWorkers": 1}, None),
    ({"warmupSteps": -1}, "spec.training.warmupSteps"),
]


def refusal(training: dict) -> str | None:
    """The field path `ftjob validate` names for these arguments, or None if it accepts."""
    try:
        parse_job(with_changes({"spec.training": training}))
    except SpecError as error:
        return error.problems[0][0]
    return None


@pytest.mark.parametrize("training,refused_at", CONSISTENCY)
def test_consistency_rules_refuse_what_training_arguments_refuses(training, refused_at,
                                                                    tmp_path):
    from transformers import TrainingArguments

    from ftjob.api.training_args import snake_case

    try:
        TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                          **{snake_case(k): v for k, v in training.items()})
        transformers_refuses = False
    except ValueError:
        transformers_refuses = True
    assert transformers_refuses == (refused_at is not None), \
        "the table disagrees with transformers: fix the case or the rule"
    assert refusal(training) == refused_at


@pytest.mark.parametrize("training,message", [
    ({"learningRate": -1e-5}, "learningRate must be at least 0, got -1e-05"),
    ({"learningRate": float("nan")}, "learningRate must be a finite number, got nan"),
    ({"perDeviceTrainBatchSize": 0}, "perDeviceTrainBatchSize must be at least 1, got 0"),
    ({"gradientAccumulationSteps": 0}, "gradientAccumulationSteps must be at least 1"),
    ({"adamBeta2": 1.0}, "adamBeta2 must be at least 0 and less than 1, got 1.0"),
    ({"seed": 2**32}, "seed must be at least 0 and at most 4.29497e+09"),
    ({"maxSteps": -5}, "maxSteps must be at least -1"),
    ({"saveSteps": 0}, "saveSteps must be greater than 0"),
    ({"labelSmoothingFactor": 1}, "labelSmoothingFactor must be at least 0 and less than 1"),
])
def test_values_the_trainer_would_fail_on_are_refused_with_the_range(training, message):
    with pytest.raises(SpecError) as refused:
        parse_job(with_changes({"spec.training": training}))
    assert any(message in f"{path.rsplit('.', 1)[-1]} {text}"
               for path, text in refused.value.problems), refused.value.problems


@pytest.mark.parametrize("training", [
    {"learningRate": 0}, {"learningRate": 5e-5}, {"maxSteps": -1}, {"maxSteps": 0},
    {"seed": 0}, {"adamBeta1": 0.0}, {"warmupSteps": 0.1}, {"numTrainEpochs": 0.5},
])
def test_values_in_range_are_accepted(training):
    assert refusal(training) is None
