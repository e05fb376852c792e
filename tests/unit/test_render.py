"""The pure builders: table-driven cases and a golden trainer config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftjob import render
from ftjob.api import load_job, parse_job
from tests.conftest import REPO
from tests.unit.test_validation import GOOD, with_changes

GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PLACEMENT = render.Placement(work_dir="/workspace", checkpoint_uri="s3://ckpt/job-a",
                             output_uri="s3://models/job-a", events_file=None, attempt=3)


def test_quickstart_trainer_config_matches_golden():
    job = load_job(EXAMPLES / "quickstart.yaml")
    rendered = json.dumps(render.trainer_config(job, PLACEMENT), indent=2, sort_keys=True)
    golden = GOLDEN / "quickstart-config.json"
    assert rendered + "\n" == golden.read_text(), \
        "golden changed: review, then regenerate with tests/unit/golden/regenerate.py"


@pytest.mark.parametrize("distributed,expected", [
    ({}, {"use_cpu": True, "ddp_find_unused_parameters": False}),
    ({"gpusPerNode": 8}, {}),
    ({"strategy": "deepspeed"}, {"deepspeed": "deepspeed.json",
                                 "ddp_find_unused_parameters": None}),
    ({"strategy": "fsdp"}, {"fsdp": "full_shard auto_wrap"}),
    ({"strategy": "fsdp", "fsdp": {"sharding": "hybrid_shard", "autoWrap": False,
                                   "offload": True}}, {"fsdp": "hybrid_shard offload"}),
])
def test_training_arguments_follow_distributed(distributed, expected):
    job = parse_job(with_changes({"spec.distributed": distributed}))
    training = render.training_arguments(job)
    for key, value in expected.items():
        assert training.get(key) == value
    if "gpusPerNode" in distributed:
        assert "use_cpu" not in training
    assert training["save_total_limit"] == 3
    assert training["disable_tqdm"] is True


def test_user_training_arguments_win_over_defaults():
    job = parse_job(with_changes({"spec.training.loggingSteps": 99,
                                  "spec.training.reportTo": "tensorboard"}))
    training = render.training_arguments(job)
    assert training["logging_steps"] == 99 and training["report_to"] == "tensorboard"


def test_a_model_with_unused_parameters_keeps_ddps_search_for_them():
    job = parse_job(with_changes({"spec.training.ddpFindUnusedParameters": True}))
    assert render.training_arguments(job)["ddp_find_unused_parameters"] is True


@pytest.mark.parametrize("deepspeed,check", [
    ({"zeroStage": 2}, lambda c: c["zero_optimization"]["stage"] == 2
     and "offload_optimizer" not in c["zero_optimization"]),
    ({"zeroStage": 3, "offloadParams": True, "offloadOptimizer": True},
     lambda c: c["zero_optimization"]["offload_param"]["device"] == "cpu"
     and c["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]),
    ({"config": {"zero_optimization": {"stage": 1}, "custom": True}},
     lambda c: c == {"zero_optimization": {"stage": 1}, "custom": True}),
])
def test_deepspeed_config(deepspeed, check):
    job = parse_job(with_changes({"spec.distributed": {"strategy": "deepspeed",
                                                       "deepspeed": deepspeed}}))
    config = render.deepspeed_config(job.spec.distributed)
    assert check(config)
    if "config" not in deepspeed:
        # Batch size, learning rate and precision come from TrainingArguments.
        assert config["train_micro_batch_size_per_gpu"] == "auto"
        assert config["optimizer"]["params"]["lr"] == "auto"


def test_no_deepspeed_config_for_other_strategies():
    assert render.deepspeed_config(parse_job(GOOD).spec.distributed) is None


@pytest.mark.parametrize("nodes,procs,rank,expected", [
    (1, 1, 0, {"distributed_type": "NO", "num_processes": 1}),
    (1, 2, 0, {"distributed_type": "MULTI_GPU", "num_processes": 2}),
    (4, 8, 3, {"num_machines": 4, "num_processes": 32, "machine_rank": 3,
               "main_process_ip": "job-a-0.job-a", "main_process_port": 29500}),
])
def test_accelerate_config(nodes, procs, rank, expected):
    job = parse_job(with_changes({"spec.distributed": {"nodes": nodes, "procsPerNode": procs}}))
    config = render.accelerate_config(job.spec.distributed, nodes, rank,
                                      main_process_ip="job-a-0.job-a")
    for key, value in expected.items():
        assert config[key] == value


RENDER_QUICKSTART = """
import json, sys
from ftjob import render
from ftjob.api import load_job
from tests.unit.test_render import PLACEMENT
job = load_job(sys.argv[1])
sys.stdout.write(json.dumps(render.trainer_config(job, PLACEMENT), indent=2))
"""


def test_rendered_config_is_the_same_in_every_process():
    """`ftjob run` writes the config without sorting keys, and every node of a cluster job
    reads one rendered by the operator: nothing may depend on set or hash order, which
    differs between processes."""
    rendered = {subprocess.run([sys.executable, "-c", RENDER_QUICKSTART,
                                str(EXAMPLES / "quickstart.yaml")],
                               env={**os.environ, "PYTHONHASHSEED": str(seed)}, cwd=REPO,
                               capture_output=True, text=True, check=True).stdout
                for seed in range(4)}
    assert len(rendered) == 1
