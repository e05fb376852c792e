"""Each task as a real 2-process torchrun fine-tune through `ftjob run` on CPU: the training
loss goes down and the task's eval metrics are reported. Masked-LM and sft resume from
their checkpoint after a hard kill; dpo reports its reward accuracy and margin. The decoder tasks run on tiny random-weight Llama and Qwen2
models (examples/make_tiny_decoders.py); the others on the pretrained MiniLM. Bad data
ends with exit 65 and a message naming the column or field, before any weights load."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, tiny_job
from tests.integration.test_bad_inputs import assert_clean_failure
from tests.integration.test_checkpoints import kill_tree, wait_for
from tests.integration.test_training import assert_trained

pytestmark = pytest.mark.slow

EXIT_DATA = 65
NEWS = str(EXAMPLES / "data/news-text.jsonl")
ENTITIES = {"train": str(EXAMPLES / "data/entities-train.jsonl"),
            "eval": str(EXAMPLES / "data/entities-validation.jsonl")}
CHAT = {"train": str(EXAMPLES / "data/chat-train.jsonl"),
        "eval": str(EXAMPLES / "data/chat-validation.jsonl")}
PREFERENCES = {"train": str(EXAMPLES / "data/preferences-train.jsonl"),
               "eval": str(EXAMPLES / "data/preferences-validation.jsonl")}
LORA = {"type": "lora", "r": 8, "alpha": 16,
        "targetModules": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def task_job(name: str, model: str, task: str, dataset: dict, **spec) -> dict:
    job = tiny_job(name, model, model={"name": model, "task": task}, **spec)
    job["spec"]["model"].pop("numLabels")
    job["spec"]["dataset"] = dataset
    return job


def text_job(name: str, model: str, task: str, **spec) -> dict:
    return task_job(name, model, task, {
        "files": {"train": NEWS}, "textColumns": ["text"], "maxLength": 32,
        "maxTrainSamples": 200, "validationSplitPercentage": 10},
        metrics=["perplexity", "accuracy"],
        **spec)


def chat_job(name: str, model: str, **spec) -> dict:
    return task_job(name, model, "sft", {
        "files": CHAT, "textColumns": ["messages"], "maxLength": 128,
        "maxTrainSamples": 256, "maxEvalSamples": 32}, metrics=["perplexity"], peft=LORA,
        **spec)


def preference_job(name: str, model: str, **spec) -> dict:
    return task_job(name, model, "dpo", {
        "files": PREFERENCES, "textColumns": ["prompt", "chosen", "rejected"],
        "maxLength": 128, "maxTrainSamples": 256, "maxEvalSamples": 32}, metrics=[],
        peft=LORA, **spec)


def logged_losses(run) -> list[float]:
    """The training loss at each logged step, across every attempt of the run."""
    losses = {e["step"]: e["loss"] for e in run.events()
              if e["event"] == "progress" and "loss" in e}
    return [losses[step] for step in sorted(losses)]


def assert_loss_went_down(run) -> None:
    losses = logged_losses(run)
    assert len(losses) >= 4, losses
    assert sum(losses[-2:]) < sum(losses[:2]), losses


def learned(run, steps: int) -> dict:
    """The run trained to `steps`, its loss went down and it reported eval perplexity; its
    finished event."""
    done = assert_trained(run.run(), run, steps=steps)
    assert_loss_went_down(run)
    assert done["metrics"]["eval_perplexity"] > 1
    return done


def killed_after_a_checkpoint(ftjob_run, job: dict, min_step: int) -> int:
    """Runs the job, SIGKILLs it and all its processes once a checkpoint of at least
    `min_step` is saved, and returns the newest saved step."""
    first = ftjob_run(job)
    process = first.start()

    def saved() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"ftjob run ended with {process.returncode} before "
                                 f"checkpoint-{min_step}: {process.stderr.read()[-3000:]}")
        return any(e["event"] == "checkpoint" and e["step"] >= min_step
                   for e in first.events())

    try:
        wait_for(saved, timeout=600, what=f"checkpoint-{min_step}")
    finally:
        kill_tree(process, signal.SIGKILL)
        process.communicate()
    return max(e["step"] for e in first.events() if e["event"] == "checkpoint")


def assert_resumed_from(rerun, saved: int) -> None:
    started = [e for e in rerun.events(attempt=2) if e["event"] == "started"][0]
    assert started["resumedFrom"]["step"] == saved
    steps = [e["step"] for e in rerun.events(attempt=2) if e["event"] == "progress"]
    assert steps[0] == saved + 1


def test_masked_lm_trains_and_a_killed_run_resumes_from_its_checkpoint(ftjob_run,
                                                                       minilm_path):
    job = text_job("mlm", minilm_path, "masked-lm",
                   maskedLm={"blockSize": 32},
                   training={"maxSteps": 12, "saveSteps": 4, "loggingSteps": 1,
                             "learningRate": 1e-4, "evalStrategy": "no"})
    saved = killed_after_a_checkpoint(ftjob_run, job, 1)
    assert saved < 12
    rerun = ftjob_run(job)
    done = learned(rerun, steps=12)
    assert_resumed_from(rerun, saved)
    assert done["metrics"]["eval_perplexity"] == pytest.approx(
        2.718281828 ** done["metrics"]["eval_loss"], rel=1e-6)
    assert 0 < done["metrics"]["eval_accuracy"] < 1


def test_token_classification_reports_entity_scores(ftjob_run, minilm_path):
    job = task_job("ner", minilm_path, "token-classification", {
        "files": ENTITIES, "textColumns": ["tokens"], "labelColumn": "tags",
        "maxLength": 32, "maxTrainSamples": 256, "maxEvalSamples": 64},
        metrics=["precision", "recall", "f1", "accuracy"],
        training={"maxSteps": 16, "saveSteps": 16, "loggingSteps": 1, "learningRate": 2e-4,
                  "perDeviceTrainBatchSize": 8})
    run = ftjob_run(job)
    done = assert_trained(run.run(), run, steps=16)
    assert_loss_went_down(run)
    metrics = done["metrics"]
    for name in ("eval_precision", "eval_recall", "eval_f1", "eval_accuracy"):
        assert 0 <= metrics[name] <= 1, metrics
    # The tags are easy: after 16 steps most tokens are tagged right.
    assert metrics["eval_accuracy"] > 0.7, metrics
    config = json.loads((Path(done["output"].removeprefix("file://")) / "config.json")
                        .read_text())
    assert sorted(config["id2label"].values()) == ["B-DATE", "B-ORG", "I-DATE", "I-ORG", "O"]


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
def test_causal_lm_packs_text_for_a_real_decoder(ftjob_run, tiny_decoders, architecture):
    job = text_job(f"clm-{architecture}", tiny_decoders[architecture], "causal-lm",
                   causalLm={"blockSize": 64},
                   training={"maxSteps": 12, "saveSteps": 12, "loggingSteps": 1,
                             "learningRate": 3e-3, "perDeviceTrainBatchSize": 8})
    done = learned(ftjob_run(job), steps=12)
    assert 0 <= done["metrics"]["eval_accuracy"] < 1
    from transformers import AutoModelForCausalLM

    exported = AutoModelForCausalLM.from_pretrained(done["output"].removeprefix("file://"))
    assert exported.config.model_type == architecture


@pytest.mark.parametrize("name,task,dataset,spec,words", [
    ("no-text-column", "masked-lm", {"textColumns": ["body"]}, {},
     ["no column body", "spec.dataset.textColumns"]),
    ("unknown-tag", "token-classification",
     {"files": ENTITIES, "textColumns": ["tokens"], "labelColumn": "tags"},
     {"tokenClassification": {"labels": ["O", "B-ORG", "I-ORG"]}},
     ["'B-DATE'", "spec.tokenClassification.labels"]),
    ("block-too-long", "causal-lm", {}, {"causalLm": {"blockSize": 512}},
     ["spec.causalLm.blockSize is 512", "at most 256"]),
])
def test_bad_task_data_fails_before_the_model_loads(ftjob_run, minilm_path, tiny_decoders,
                                                    name, task, dataset, spec, words):
    model = tiny_decoders["llama"] if task == "causal-lm" else minilm_path
    job = text_job(name, model, task, **spec)
    job["spec"]["dataset"].update(dataset)
    if task == "token-classification":
        job["spec"]["dataset"].pop("validationSplitPercentage")
        job["spec"]["metrics"] = ["f1"]
    result = ftjob_run(job).run()
    assert_clean_failure(result, EXIT_DATA, *words)
    assert "Loading weights" not in result.stdout + result.stderr


@pytest.mark.parametrize("strategy,extra", [
    ("ddp", {}),
    ("fsdp", {"fsdp": {"sharding": "full_shard"}}),
    ("deepspeed", {"deepspeed": {"zeroStage": 2}}),
])
def test_sft_with_lora_learns_the_assistant_turns_under_each_strategy(
        ftjob_run, tiny_decoders, strategy, extra):
    job = chat_job(f"sft-{strategy}", tiny_decoders["qwen2"],
                   distributed={"procsPerNode": 2, "strategy": strategy, **extra},
                   training={"maxSteps": 10, "saveSteps": 10, "loggingSteps": 1,
                             "learningRate": 1e-2, "perDeviceTrainBatchSize": 8})
    done = learned(ftjob_run(job), steps=10)
    # The export is the adapter, which loads onto the base model.
    from peft import AutoPeftModelForCausalLM

    exported = AutoPeftModelForCausalLM.from_pretrained(done["output"].removeprefix("file://"))
    assert exported.peft_config["default"].r == 8


def test_sft_killed_run_resumes_from_its_checkpoint(ftjob_run, tiny_decoders):
    job = chat_job("sft-resume", tiny_decoders["llama"],
                   training={"maxSteps": 400, "saveSteps": 4, "loggingSteps": 1,
                             "learningRate": 1e-2, "perDeviceTrainBatchSize": 4})
    saved = killed_after_a_checkpoint(ftjob_run, job, 8)
    job["spec"]["training"]["maxSteps"] = saved + 6
    rerun = ftjob_run(job)
    assert_trained(rerun.run(), rerun, steps=saved + 6)
    assert_resumed_from(rerun, saved)


def test_bad_chat_data_fails_before_the_model_loads(ftjob_run, tiny_decoders, minilm_path,
                                                    tmp_path):
    no_assistant = tmp_path / "no-assistant.jsonl"
    no_assistant.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]})
                            + "\n")
    for name, model, dataset, words in [
        ("sft-no-column", tiny_decoders["qwen2"], {"textColumns": ["conversation"]},
         ["no column conversation", "messages"]),
        ("sft-no-assistant", tiny_decoders["qwen2"], {"files": {"train": str(no_assistant)}},
         ["row 0", "has no assistant turn"]),
        ("sft-no-template", minilm_path, {}, ["no chat template", "spec.sft.chatTemplate"]),
    ]:
        job = chat_job(name, model)
        job["spec"]["dataset"].update(dataset)
        result = ftjob_run(job).run()
        assert_clean_failure(result, EXIT_DATA, *words)
        assert "Loading weights" not in result.stdout + result.stderr


def test_dpo_with_lora_learns_to_prefer_the_chosen_answers(ftjob_run, tiny_decoders):
    job = preference_job("dpo", tiny_decoders["llama"],
                         training={"maxSteps": 10, "saveSteps": 10, "loggingSteps": 1,
                                   "learningRate": 1e-2, "perDeviceTrainBatchSize": 8,
                                   "evalStrategy": "no"})
    run = ftjob_run(job)
    done = assert_trained(run.run(), run, steps=10)
    assert_loss_went_down(run)
    metrics = done["metrics"]
    # The chosen answers gained on the rejected ones against the reference.
    assert 0.5 < metrics["eval_rewards/accuracies"] <= 1, metrics
    assert metrics["eval_rewards/margins"] > 0, metrics


def test_bad_preference_data_fails_before_the_model_loads(ftjob_run, tiny_decoders, tmp_path):
    user_answers = tmp_path / "user-answers.jsonl"
    turn = [{"role": "user", "content": "hi"}]
    user_answers.write_text(json.dumps({"prompt": turn, "chosen": turn, "rejected": turn})
                            + "\n")
    for name, dataset, words in [
        ("dpo-no-rejected", {"textColumns": ["prompt", "chosen", "refused"]},
         ["no column refused", "[prompt, chosen, rejected]"]),
        ("dpo-user-answers", {"files": {"train": str(user_answers)}},
         ["row 0", "chosen answer with turns that are not the assistant's"]),
    ]:
        job = preference_job(name, tiny_decoders["qwen2"])
        job["spec"]["dataset"].update(dataset)
        result = ftjob_run(job).run()
        assert_clean_failure(result, EXIT_DATA, *words)
        assert "Loading weights" not in result.stdout + result.stderr
