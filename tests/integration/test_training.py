"""Real 2-process torchrun fine-tunes of the pretrained MiniLM through `ftjob run`, one per
strategy that runs on CPU, plus LoRA, causal-LM and the accelerate launcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import tiny_job

pytestmark = pytest.mark.slow


def finished(run) -> dict:
    events = run.events()
    done = [e for e in events if e["event"] == "finished"]
    assert done, f"no finished event; events: {[e['event'] for e in events]}"
    return done[-1]


def assert_trained(result, run, steps: int, world_size: int = 2) -> dict:
    assert result.returncode == 0, result.stderr[-4000:]
    started = [e for e in run.events() if e["event"] == "started"]
    assert started[-1]["worldSize"] == world_size
    # This run's attempt: an earlier, killed one may have gone past its last checkpoint.
    progress = [e["step"] for e in run.events(attempt=started[-1]["attempt"])
                if e["event"] == "progress"]
    assert progress[-1] == steps
    assert progress == sorted(progress)
    done = finished(run)
    model_dir = Path(done["output"].removeprefix("file://"))
    assert (model_dir / "_COMPLETE.json").exists()
    assert json.loads((model_dir / "metrics.json").read_text())["train_loss"] > 0
    return done


def assert_timing(run, done: dict) -> None:
    """Rank 0's clock for the goodput ledger: training, the evaluation at step 4 and the
    saves at steps 2 and 4 apart, within the time since training began."""
    from ftjob.goodput import parse_moment

    timing = done["timing"]
    began = parse_moment(timing["trainBeganAt"])
    # "started" already carries the clock: the status sink clears the last run's saved
    # figure with it.
    started = [e for e in run.events() if e["event"] == "started"][-1]
    assert started["timing"]["trainBeganAt"] == timing["trainBeganAt"]
    assert timing["evaluationSeconds"] > 0 and timing["checkpointSeconds"] > 0
    saved = [(e["step"], e["timing"]["savedTrainingSeconds"]) for e in run.events()
             if e["event"] == "checkpoint"]
    assert [step for step, _ in saved] == [2, 4]
    assert 0 < saved[0][1] < saved[1][1] == timing["savedTrainingSeconds"]
    assert timing["savedTrainingSeconds"] <= timing["trainingSeconds"]
    parts = sum(timing[f"{part}Seconds"] for part in ("training", "evaluation", "checkpoint"))
    assert parts <= (parse_moment(done["time"]) - began).total_seconds() + 0.01


@pytest.mark.parametrize("strategy,extra", [
    ("ddp", {}),
    ("fsdp", {"fsdp": {"sharding": "full_shard"}}),
    ("deepspeed", {"deepspeed": {"zeroStage": 2}}),
])
def test_two_process_strategies(ftjob_run, minilm_path, strategy, extra):
    job = tiny_job(f"strategy-{strategy}", minilm_path,
                   distributed={"procsPerNode": 2, "strategy": strategy, **extra},
                   training={"maxSteps": 4, "saveSteps": 2, "evalStrategy": "steps",
                             "evalSteps": 4})
    run = ftjob_run(job)
    result = run.run()
    done = assert_trained(result, run, steps=4)
    assert "eval_accuracy" in done["metrics"]
    # The Trainer evaluated at the last step; the final metrics are that evaluation's.
    evals = [e for e in run.events() if e["event"] == "eval"]
    assert [e["step"] for e in evals] == [4]
    assert done["metrics"]["eval_accuracy"] == evals[0]["metrics"]["eval_accuracy"]
    assert_timing(run, done)
    # Whatever the strategy sharded, the export is a whole model Transformers can load.
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = done["output"].removeprefix("file://")
    model, loading = AutoModelForSequenceClassification.from_pretrained(
        model_dir, output_loading_info=True)
    assert not loading["missing_keys"] and not loading["unexpected_keys"], loading
    assert model.config.num_labels == 2 and AutoTokenizer.from_pretrained(model_dir)
    saved = sorted(e["step"] for e in run.events() if e["event"] == "checkpoint")
    assert saved == [2, 4]
    config = json.loads((run.run_dir / "config.json").read_text())
    if strategy == "deepspeed":
        assert config["training"]["deepspeed"] == "deepspeed.json"
        ds = json.loads((run.run_dir / "deepspeed.json").read_text())
        assert ds["zero_optimization"]["stage"] == 2
        # DeepSpeed writes its own per-rank optimizer shards into the checkpoint.
        marker = json.loads((run.run_dir / "checkpoints/checkpoint-4/_COMPLETE.json")
                            .read_text())
        assert any("zero_pp_rank_1" in name for name in marker["files"])
    if strategy == "fsdp":
        assert config["training"]["fsdp"].startswith("full_shard")
    if strategy == "ddp":
        # The terminal shows ftjob's bar and nothing per rank: no DDP notice about unused
        # parameters, no dataset-map or model-shard bars from the libraries.
        output = result.stdout + result.stderr
        for noise in ("find_unused_parameters", "Writing model shards", "Map:"):
            assert noise not in output, (noise, output[-3000:])
        # Each progress event carries its own step's values (the Trainer's log history says
        # which loss each step had), never the step before's under a new step number.
        history = json.loads((run.run_dir / "checkpoints/checkpoint-4/trainer_state.json")
                             .read_text())["log_history"]
        logged = {entry["step"]: entry["loss"] for entry in history if "loss" in entry}
        reported = [(e["step"], e["loss"]) for e in run.events()
                    if e["event"] == "progress" and "loss" in e]
        assert [step for step, _ in reported] == [1, 2, 3, 4], reported
        assert all(abs(logged[step] - loss) < 1e-6 for step, loss in reported), \
            (reported, logged)


def test_lora_trains_only_adapters_and_exports_a_merged_copy(ftjob_run, minilm_path):
    job = tiny_job("lora", minilm_path,
                   peft={"type": "lora", "r": 4, "alpha": 8, "targetModules": ["query", "value"],
                         "mergeOnExport": True},
                   training={"maxSteps": 3, "saveSteps": 3, "learningRate": 1.0e-2})
    run = ftjob_run(job)
    done = assert_trained(run.run(), run, steps=3)
    model_dir = Path(done["output"].removeprefix("file://"))
    adapter = json.loads((model_dir / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and set(adapter["target_modules"]) == {"query", "value"}
    # The export holds the adapter, not a full copy of the base weights...
    assert not (model_dir / "model.safetensors").exists()
    # ...and, asked for, the adapter merged into the base: a plain Transformers model that
    # predicts what base + adapter predict, and not what the base alone does.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    merged = AutoModelForSequenceClassification.from_pretrained(model_dir / "merged").eval()
    base = AutoModelForSequenceClassification.from_pretrained(minilm_path, num_labels=2)
    with_adapter = PeftModel.from_pretrained(base, model_dir).eval()
    batch = AutoTokenizer.from_pretrained(model_dir / "merged")(
        ["A cat sat on the mat.", "Stocks fell sharply today."],
        ["The cat was sitting on the mat.", "It rained in the north."],
        return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = with_adapter(**batch).logits
        assert torch.allclose(merged(**batch).logits, expected, atol=1e-4)
        with with_adapter.disable_adapter():
            assert not torch.allclose(with_adapter(**batch).logits, expected, atol=1e-4)


def test_causal_lm(ftjob_run, minilm_path, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"The council approved plan {i} on day {i}."})
                              + "\n" for i in range(64)))
    job = tiny_job("causal", minilm_path,
                   model={"name": minilm_path, "task": "causal-lm"},
                   dataset={"files": {"train": str(corpus), "eval": str(corpus)},
                            "textColumns": ["text"], "labelColumn": None, "maxLength": 32,
                            "maxTrainSamples": 64, "maxEvalSamples": 16},
                   metrics=["perplexity"],
                   training={"maxSteps": 3, "saveSteps": 3, "evalStrategy": "no"})
    job["spec"]["model"].pop("numLabels")
    run = ftjob_run(job)
    done = assert_trained(run.run(), run, steps=3)
    assert done["metrics"]["eval_perplexity"] > 1


def test_accelerate_launcher(ftjob_run, minilm_path):
    job = tiny_job("accelerate", minilm_path,
                   distributed={"procsPerNode": 2, "launcher": "accelerate"},
                   training={"maxSteps": 2, "saveSteps": 2})
    run = ftjob_run(job)
    assert_trained(run.run(), run, steps=2)
    config = (run.run_dir / "accelerate.yaml").read_text()
    assert "num_processes: 2" in config


def test_finished_job_run_again_says_so_and_longer_training_continues(ftjob_run, minilm_path):
    job = tiny_job("again", minilm_path, training={"maxSteps": 2, "saveSteps": 2})
    run = ftjob_run(job)
    first = finished(run) if assert_trained(run.run(), run, steps=2) else None

    again = run.run()
    assert again.returncode == 0, again.stderr[-4000:]
    said = again.stdout + again.stderr
    assert "Already finished at step 2: nothing left to train" in said, said[-3000:]
    attempt_two = run.events(attempt=2)
    assert [e["event"] for e in attempt_two] == ["finished"]  # nothing trained or loaded
    assert attempt_two[0]["metrics"] == first["metrics"]
    assert f"train_loss: {first['metrics']['train_loss']:.4f}" in again.stdout
    assert "(step 2)" in again.stdout  # the checkpoint the earlier run saved

    # A longer run of the same job is not finished: it resumes and trains the rest.
    longer = run.run("--set", "training.maxSteps=4")
    assert longer.returncode == 0, longer.stderr[-4000:]
    started = [e for e in run.events(attempt=3) if e["event"] == "started"][0]
    assert started["resumedFrom"]["step"] == 2
    assert [e["step"] for e in run.events(attempt=3) if e["event"] == "progress"][-1] == 4
    assert finished(run)["metrics"]["train_loss"] > 0


def test_a_learning_rate_written_5e_5_trains(ftjob_run, minilm_path):
    """The way most people write it; YAML 1.1 (PyYAML's default) would read a string."""
    run = ftjob_run(tiny_job("five-e-five", minilm_path, training={"maxSteps": 2,
                                                                   "saveSteps": 2}))
    text = run.job_file.read_text()
    assert "learningRate: 5.0e-05" in text
    run.job_file.write_text(text.replace("learningRate: 5.0e-05", "learningRate: 5e-5"))
    assert_trained(run.run(), run, steps=2)
    config = json.loads((run.run_dir / "config.json").read_text())
    assert config["training"]["learning_rate"] == 5e-5
