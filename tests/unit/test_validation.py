"""The validation table: good specs parse, bad ones fail with the field path and what is
allowed."""

from __future__ import annotations

import copy
import json

import pytest

from ftjob.api import SpecError, parse_job

GOOD = {
    "apiVersion": "ftjob.dev/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {"name": "job-a"},
    "spec": {
        "model": {"name": "bert-base-uncased", "numLabels": 2},
        "dataset": {"name": "glue", "config": "mrpc",
                    "textColumns": ["sentence1", "sentence2"]},
        "training": {"numTrainEpochs": 3, "learningRate": 2.0e-5, "evalStrategy": "epoch",
                     "per_device_train_batch_size": 8, "bf16": False,
                     "reportTo": ["tensorboard"], "lrSchedulerType": "cosine"},
    },
}


def with_changes(changes: dict, drop: tuple = ()) -> dict:
    job = copy.deepcopy(GOOD)
    for path, value in changes.items():
        node = job
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    for path in drop:
        node = job
        *parents, last = path.split(".")
        for part in parents:
            node = node[part]
        del node[last]
    return job


GOOD_CASES = {
    "minimal hub job": {},
    # As the API server reads them: a null known field is absent, 2.0 is the integer 2.
    "null known fields": {"spec.training.maxSteps": None, "spec.peft": None},
    "whole number written as a float": {"spec.distributed": {"nodes": 2.0}},
    "as read back from the API server": {
        "metadata.uid": "0c1d", "metadata.resourceVersion": "41", "metadata.generation": 2,
        "metadata.creationTimestamp": "2026-12-02T00:00:00Z", "metadata.managedFields": [{}],
        "metadata.finalizers": ["x/y"], "status": {"phase": "Running"}},
    "files instead of hub": {"spec.dataset": {"files": {"train": "s3://bkt/train.csv"},
                                              "textColumns": ["text"]}},
    "lora": {"spec.peft": {"type": "lora", "r": 16, "targetModules": ["query", "value"]}},
    "deepspeed stage 3 with offload": {"spec.distributed": {
        "nodes": 2, "gpusPerNode": 8, "strategy": "deepspeed",
        "deepspeed": {"zeroStage": 3, "offloadParams": True}}},
    "causal lm with perplexity": {"spec.model.task": "causal-lm",
                                  "spec.metrics": ["perplexity"]},
    "masked lm with its settings": {
        "spec.model.task": "masked-lm", "spec.metrics": ["perplexity"],
        "spec.dataset.textColumns": ["text"], "spec.dataset.validationSplitPercentage": 5,
        "spec.maskedLm": {"mlmProbability": 0.3, "lineByLine": True}},
    "token classification": {
        "spec.model.task": "token-classification", "spec.dataset.textColumns": ["tokens"],
        "spec.dataset.labelColumn": "ner_tags", "spec.metrics": ["f1", "precision"],
        "spec.tokenClassification": {"labelAllTokens": True, "labels": ["O", "B-PER"]}},
    "chat sft with lora": {
        "spec.model.task": "sft", "spec.dataset.textColumns": ["messages"],
        "spec.peft": {"type": "lora", "r": 8}, "spec.metrics": ["perplexity"],
        "spec.sft": {"completionOnlyLoss": False, "chatTemplate": "{{ messages }}"}},
    "prompt completion sft": {"spec.model.task": "sft",
                              "spec.dataset.textColumns": ["prompt", "completion"]},
    "dpo with lora": {"spec.model.task": "dpo", "spec.peft": {"type": "lora", "r": 8},
                      "spec.dataset.textColumns": ["prompt", "chosen", "rejected"],
                      "spec.dpo": {"beta": 0.5, "lossType": "ipo"}},
    "exo pair dpo with smoothing": {
        "spec.model.task": "dpo", "spec.dataset.textColumns": ["p", "c", "r"],
        "spec.dpo": {"lossType": "exo_pair", "labelSmoothing": 1e-3}},
    "causal lm without packing": {"spec.model.task": "causal-lm",
                                  "spec.causalLm": {"packing": False}},
    "storage": {"spec.checkpoints": {"uri": "s3://ckpt/team-a", "credentialsSecret": "s3",
                                     "keep": 5},
                "spec.output": {"uri": "gs://models/a"}},
    "pod template": {"spec.podTemplate": {"nodeSelector": {"gpu": "a100"},
                                          "env": [{"name": "NCCL_DEBUG", "value": "INFO"}],
                                          "volumes": [{"name": "x", "emptyDir": {}}]}},
}

# (changes, dropped paths, expected field path, words the message must contain)
BAD_CASES = {
    "unknown top-level spec field": ({"spec.modle": {}}, (), "spec.modle",
                                     ["unknown field", "model"]),
    "missing model": ({}, ("spec.model",), "spec",
                      ["spec.model and spec.dataset are required", "spec.script"]),
    "bad task": ({"spec.model.task": "translation"}, (), "spec.model.task",
                 ["sequence-classification", "causal-lm"]),
    "both name and files": ({"spec.dataset.files": {"train": "a.csv"}}, (), "spec.dataset",
                            ["exactly one of name and files"]),
    "neither name nor files": ({}, ("spec.dataset.name", "spec.dataset.config"),
                               "spec.dataset", ["exactly one of name and files"]),
    "four text columns": ({"spec.dataset.textColumns": ["a", "b", "c", "d"]}, (),
                          "spec.dataset.textColumns", ["at most 3"]),
    "three text columns for a classifier": ({"spec.dataset.textColumns": ["a", "b", "c"]},
                                            (), "spec", ["sequence-classification reads 1 or "
                                                         "2 columns, not 3"]),
    "mistyped training argument": ({"spec.training.learningRat": 1e-5}, (),
                                   "spec.training.learningRat", ["learningRate"]),
    "wrong enum in training": ({"spec.training.evalStrategy": "epochs"}, (),
                               "spec.training.evalStrategy", ["one of", "epoch", "steps"]),
    "wrong type in training": ({"spec.training.numTrainEpochs": "three"}, (),
                               "spec.training.numTrainEpochs", ["a number"]),
    "ftjob-owned training argument": ({"spec.training.outputDir": "/x"}, (),
                                      "spec.training.outputDir", ["checkpoints.uri"]),
    "deepspeed field without strategy": ({"spec.distributed": {"deepspeed": {"zeroStage": 3}}},
                                         (), "spec.distributed", ["strategy deepspeed"]),
    "bad zero stage": ({"spec.distributed": {"strategy": "deepspeed",
                                             "deepspeed": {"zeroStage": 4}}}, (),
                       "spec.distributed.deepspeed.zeroStage", ["0", "3"]),
    "offload params below stage 3": ({"spec.distributed": {
        "strategy": "deepspeed", "deepspeed": {"zeroStage": 2, "offloadParams": True}}}, (),
        "spec.distributed.deepspeed", ["zeroStage 3"]),
    "elastic, removed": ({"spec.distributed": {
        "nodes": 2, "elastic": {"minNodes": 1, "maxNodes": 2, "maxRestarts": 3}}}, (),
        "spec.distributed", ["elastic was removed", "restarts the attempt from the newest "
                             "complete checkpoint", "Remove distributed.elastic"]),
    "zero nodes": ({"spec.distributed": {"nodes": 0}}, (), "spec.distributed.nodes",
                   ["greater than or equal to 1"]),
    "storage uri scheme": ({"spec.checkpoints": {"uri": "ftp://x/y"}}, (),
                           "spec.checkpoints.uri", ["storage URI", "s3://BUCKET/PATH"]),
    "keep zero": ({"spec.checkpoints": {"keep": 0}}, (), "spec.checkpoints.keep",
                  ["greater than or equal to 1"]),
    "hostPath volume": ({"spec.podTemplate": {"volumes": [{"name": "h", "hostPath": {}}]}},
                        (), "spec.podTemplate.volumes[0].hostPath",
                        ["unknown field", "emptyDir", "persistentVolumeClaim"]),
    "privileged via podTemplate": ({"spec.podTemplate": {"securityContext": {
        "privileged": True}}}, (), "spec.podTemplate.securityContext", ["unknown field"]),
    "classification metric on causal lm": ({"spec.model.task": "causal-lm",
                                            "spec.metrics": ["f1"]}, (), "spec",
                                           ["spec.metrics", "perplexity, accuracy"]),
    "settings of another task": ({"spec.maskedLm": {"mlmProbability": 0.3}}, (), "spec",
                                 ["spec.maskedLm is for task masked-lm only"]),
    "masked lm reads one column": ({"spec.model.task": "masked-lm"}, (), "spec",
                                   ["spec.dataset.textColumns", "masked-lm reads 1 column"]),
    "entity metrics only for tagging": (
        {"spec.model.task": "token-classification", "spec.dataset.textColumns": ["tokens"],
         "spec.metrics": ["matthews_correlation"]}, (), "spec",
        ["spec.metrics", "precision, recall, f1, accuracy"]),
    "classification metric on sft": ({"spec.model.task": "sft", "spec.metrics": ["f1"]}, (),
                                     "spec", ["spec.metrics", "sft reports perplexity"]),
    "dpo without a rejected column": (
        {"spec.model.task": "dpo", "spec.dataset.textColumns": ["prompt", "chosen"]}, (),
        "spec", ["spec.dataset.textColumns", "dpo reads 3 columns, not 2"]),
    "metrics on dpo": ({"spec.model.task": "dpo", "spec.dataset.textColumns": ["p", "c", "r"],
                        "spec.metrics": ["accuracy"]}, (), "spec",
                       ["spec.metrics", "dpo reports its own metrics and takes none"]),
    "unknown dpo loss": ({"spec.model.task": "dpo", "spec.dataset.textColumns": ["p", "c", "r"],
                          "spec.dpo": {"lossType": "kto"}}, (), "spec.dpo.lossType",
                         ["sigmoid", "ipo"]),
    "exo pair without smoothing": ({"spec.model.task": "dpo",
                                    "spec.dataset.textColumns": ["p", "c", "r"],
                                    "spec.dpo": {"lossType": "exo_pair"}}, (), "spec.dpo",
                                   ["labelSmoothing above 0"]),
    "dpo settings on sft": ({"spec.model.task": "sft", "spec.dpo": {"beta": 0.2}}, (), "spec",
                            ["spec.dpo is for task dpo only"]),
    "mlm probability of one": ({"spec.model.task": "masked-lm",
                                "spec.maskedLm": {"mlmProbability": 1}}, (),
                               "spec.maskedLm.mlmProbability", ["less than 1"]),
    "eval split twice": ({"spec.dataset": {"files": {"train": "a.csv", "eval": "b.csv"},
                                           "validationSplitPercentage": 10}}, (),
                         "spec.dataset", ["validationSplitPercentage makes it from train"]),
    "block size without packing": ({"spec.model.task": "causal-lm",
                                    "spec.causalLm": {"packing": False, "blockSize": 64}}, (),
                                   "spec.causalLm", ["without packing"]),
    "block size line by line": ({"spec.model.task": "masked-lm",
                                 "spec.dataset.textColumns": ["text"],
                                 "spec.maskedLm": {"lineByLine": True, "blockSize": 64}}, (),
                                "spec.maskedLm", ["lineByLine truncates"]),
    "block size too small": ({"spec.model.task": "causal-lm",
                              "spec.causalLm": {"blockSize": 4}}, (),
                             "spec.causalLm.blockSize", ["greater than or equal to 8"]),
    "name too long": ({"metadata.name": "a" * 41}, (), "metadata.name", ["40"]),
    "name starts with digit": ({"metadata.name": "1job"}, (), "metadata.name",
                               ["start with a letter"]),
    "wrong kind": ({"kind": "PyTorchJob"}, (), "kind", ["FineTuneJob"]),
    # The API server refuses these too (strict field validation, a structural schema).
    "null unknown training field": ({"spec.training.f": None}, (), "spec.training.f",
                                    ["not a Hugging Face TrainingArguments field"]),
    "null field ftjob owns": ({"spec.training.saveTotalLimit": None}, (),
                              "spec.training.saveTotalLimit", ["is not allowed here"]),
    "null unknown field": ({"spec.model.foo": None}, (), "spec.model.foo", ["unknown field"]),
    "yes-like word for a boolean": ({"spec.runPolicy": {"suspend": "on"}}, (),
                                    "spec.runPolicy.suspend", ["valid boolean"]),
    "number as a string": ({"spec.distributed": {"nodes": "2"}}, (),
                           "spec.distributed.nodes", ["valid integer"]),
    "fractional number for an integer": ({"spec.distributed": {"nodes": 1.5}}, (),
                                         "spec.distributed.nodes", ["valid integer"]),
    # Strict decoding refuses unknown names in metadata and at the top too (found by the
    # API-server fuzz test: fz-229).
    "unknown metadata field": ({"metadata.owner": "me"}, (), "metadata.owner",
                               ["unknown field", "generateName"]),
    "unknown top-level field": ({"specs": {}}, (), "specs", ["unknown field", "spec"]),
}


@pytest.mark.parametrize("changes", GOOD_CASES.values(), ids=GOOD_CASES.keys())
def test_good_specs_parse(changes):
    job = parse_job(with_changes(changes))
    assert job.metadata.name == "job-a"


@pytest.mark.parametrize("changes,drop,path,words", BAD_CASES.values(), ids=BAD_CASES.keys())
def test_bad_specs_name_the_field(changes, drop, path, words):
    with pytest.raises(SpecError) as caught:
        parse_job(with_changes(changes, drop))
    problems = dict(caught.value.problems)
    assert path in problems, caught.value.problems
    for word in words:
        assert word in problems[path], (word, problems[path])


def test_training_names_are_normalized_to_trainingarguments_fields():
    job = parse_job(GOOD)
    assert job.spec.training["learning_rate"] == 2.0e-5
    assert job.spec.training["per_device_train_batch_size"] == 8
    assert job.spec.training["lr_scheduler_type"] == "cosine"


def test_every_problem_is_reported_at_once():
    job = with_changes({"spec.training.learningRat": 1, "spec.training.evalStrategy": "x",
                        "spec.model.task": "nope"})
    with pytest.raises(SpecError) as caught:
        parse_job(job)
    paths = {path for path, _ in caught.value.problems}
    assert {"spec.training.learningRat", "spec.training.evalStrategy",
            "spec.model.task"} <= paths


def test_non_mapping_document():
    with pytest.raises(SpecError, match="must be a FineTuneJob mapping"):
        parse_job(["not", "a", "job"])


def test_committed_training_arguments_table_matches_installed_transformers():
    from ftjob.api.training_args import TABLE, generate_table, table_changes

    changes = table_changes(json.loads(TABLE.read_text()), generate_table())
    assert not changes, ("transformers changed TrainingArguments; review, then run "
                         "`make training-args`:\n" + "\n".join(changes))


def edited_table(edit) -> dict:
    from ftjob.api.training_args import TABLE

    table = json.loads(TABLE.read_text())
    edit(table)
    return table


@pytest.mark.parametrize("edit,expected", [
    (lambda t: t["fields"].update(new_knob="int") or t["defaults"].update(new_knob=3),
     ["new_knob: added (an integer, default 3)"]),
    (lambda t: t["fields"].pop("warmup_steps"), ["warmup_steps: removed"]),
    (lambda t: t["fields"].update(seed="float"), ["seed: was an integer, now a number"]),
    (lambda t: t["fields"]["optim"]["union"][0]["enum"].remove("adamw_torch"),
     ["optim: was "]),
    (lambda t: t["defaults"].update(learning_rate=1e-3),
     ["learning_rate: default was 5e-05, now 0.001"]),
])
def test_training_arguments_drift_names_each_changed_field(edit, expected):
    from ftjob.api.training_args import TABLE, table_changes

    changes = table_changes(json.loads(TABLE.read_text()), edited_table(edit))
    assert len(changes) == len(expected)
    for change, start in zip(changes, expected):
        assert change.startswith(start), changes


def test_a_new_transformers_version_alone_is_not_drift():
    from ftjob.api.training_args import TABLE, table_changes

    bumped = edited_table(lambda t: t.update(transformers="99.0.0"))
    assert table_changes(json.loads(TABLE.read_text()), bumped) == []


SCRIPT = {"path": "train.py", "args": ["--epochs", "1"]}
TASK_ONLY = "spec.script runs your own program"


def test_a_script_job_needs_no_task_model_data_or_training():
    job = parse_job(with_changes({"spec.script": SCRIPT},
                                 ("spec.training", "spec.model", "spec.dataset")))
    assert job.spec.script.args == ["--epochs", "1"] and job.spec.model is None
    with_model = parse_job(with_changes({"spec.script": SCRIPT, "spec.model": {"name": "m"}},
                                        ("spec.training",)))
    assert with_model.spec.model.name == "m"


@pytest.mark.parametrize("changes,drop", [
    ({}, ()),  # GOOD's training section
    ({"spec.metrics": ["f1"]}, ("spec.training",)),
    ({"spec.model.task": "sft"}, ("spec.training",)),
    ({"spec.peft": {"r": 8}}, ("spec.training",)),
    ({"spec.dpo": {"beta": 0.2}}, ("spec.training",)),
    ({"spec.output": {"pushToHub": {"repo": "me/m", "tokenSecret": "hf"}}}, ("spec.training",)),
    ({"spec.distributed": {"strategy": "fsdp"}}, ("spec.training",)),
], ids=["training", "metrics", "task", "peft", "task settings", "push to hub", "fsdp"])
def test_a_script_job_refuses_what_only_the_built_in_tasks_read(changes, drop):
    with pytest.raises(SpecError) as caught:
        parse_job(with_changes({"spec.script": SCRIPT, **changes}, drop))
    assert TASK_ONLY in dict(caught.value.problems)["spec"]

