"""Your own script through `ftjob run` (spec.script): the course's custom Accelerate loop
(examples/custom-loop) trains on 2 real torchrun processes with ftjob's progress,
checkpoints and export, and resumes from its checkpoint after a hard kill; a failing script
ends with its exit code and the last lines of its stderr, with no secret in them or in the
output."""

from __future__ import annotations

import json

import pytest

from tests.conftest import EXAMPLES
from tests.integration.test_tasks import assert_resumed_from, killed_after_a_checkpoint

pytestmark = pytest.mark.slow

CUSTOM_LOOP = EXAMPLES / "custom-loop" / "train.py"
HF_SCRIPT = EXAMPLES / "hf-script" / "run_mlm.py"
PARAPHRASES = {"train": str(EXAMPLES / "data/paraphrase-train.csv"),
               "eval": str(EXAMPLES / "data/paraphrase-validation.csv")}


def script_job(name: str, script, args: list[str], model: str | None = None,
               procs: int = 2) -> dict:
    spec = {"script": {"path": str(script), "args": args},
            "dataset": {"files": PARAPHRASES},
            "distributed": {"procsPerNode": procs},
            "checkpoints": {"keep": 2}}
    if model:
        spec["model"] = {"name": model}
    return {"apiVersion": "ftjob.dev/v1alpha1", "kind": "FineTuneJob",
            "metadata": {"name": name}, "spec": spec}


def killed_then_finished(ftjob_run, job: dict):
    """Kills the job's run after a checkpoint of step 8 or later, then runs it again to 6
    steps past that checkpoint (the script's first argument is its step limit); the rerun,
    which resumed from it, and the step it resumed from."""
    saved = killed_after_a_checkpoint(ftjob_run, job, 8)
    job["spec"]["script"]["args"][1] = str(saved + 6)
    rerun = ftjob_run(job)
    result = rerun.run()
    assert result.returncode == 0, result.stderr[-3000:]
    assert_resumed_from(rerun, saved)
    return rerun, saved


def test_the_custom_loop_trains_and_a_killed_run_resumes_from_its_checkpoint(ftjob_run,
                                                                            minilm_path):
    job = script_job("loop", CUSTOM_LOOP, ["--max-steps", "400", "--save-steps", "4",
                                           "--batch-size", "8"], minilm_path)
    rerun, saved = killed_then_finished(ftjob_run, job)
    events = rerun.events(attempt=2)
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [saved + 4, saved + 6]
    # For the goodput ledger: the script's time from its first step, and what each
    # checkpoint keeps of it, through the supervisor.
    kept = [e["timing"]["savedTrainingSeconds"] for e in events if e["event"] == "checkpoint"]
    last = [e for e in events if e["event"] == "progress"][-1]["timing"]
    assert 0 < kept[0] < kept[1] <= last["trainingSeconds"] + 1.0 and last["trainBeganAt"]
    finished = [e for e in events if e["event"] == "finished"][0]
    assert 0 < finished["metrics"]["eval_accuracy"] <= 1
    assert finished["checkpoint"]["step"] == saved + 6
    from transformers import AutoModelForSequenceClassification

    exported = rerun.run_dir / "model"
    assert (exported / "_COMPLETE.json").exists()
    assert AutoModelForSequenceClassification.from_pretrained(exported).num_labels == 2


def test_an_hf_trainer_script_resumes_through_ftjob_resume_dir(ftjob_run, minilm_path):
    job = script_job("hf-mlm", HF_SCRIPT, [
        "--max_steps", "400", "--save_steps", "4", "--logging_steps", "1",
        "--per_device_train_batch_size", "4", "--max_train_samples", "200",
        "--learning_rate", "0.0005", "--use_cpu", "true", "--report_to", "none",
        "--disable_tqdm", "true"], minilm_path)
    job["spec"]["dataset"] = {"files": {"train": str(EXAMPLES / "data/news-text.jsonl")}}
    rerun, saved = killed_then_finished(ftjob_run, job)
    events = rerun.events(attempt=2)
    losses = [e["loss"] for e in events if e["event"] == "progress" and "loss" in e]
    assert losses and all(loss > 0 for loss in losses)
    finished = [e for e in events if e["event"] == "finished"][0]
    assert finished["metrics"]["eval_perplexity"] > 1
    assert finished["checkpoint"]["step"] == saved + 6
    assert (rerun.run_dir / "model" / "model.safetensors").exists()


def test_a_failing_script_ends_with_its_exit_code_and_stderr_but_no_secret(ftjob_run,
                                                                         tmp_path):
    secret = "planted-Secret-9f8e7d6c"
    script = tmp_path / "fails.py"
    script.write_text(
        "import os, sys\n"
        "print('token is ' + os.environ['HF_TOKEN'], flush=True)\n"
        "print('key is ' + os.environ['AWS_SECRET_ACCESS_KEY'], file=sys.stderr)\n"
        "print('ValueError: the loss went to nan at step 7', file=sys.stderr)\n"
        "sys.exit(3)\n")
    run = ftjob_run(script_job("fails", script, [], procs=1))
    result = run.run(env={"AWS_SECRET_ACCESS_KEY": secret, "HF_TOKEN": secret + "-hub"})
    assert result.returncode == 3, result.stderr[-3000:]
    assert secret not in result.stdout + result.stderr
    assert "token is ***" in result.stdout
    failure = json.loads((run.run_dir / "termination-1.log").read_text())
    assert (failure["reason"], failure["exitCode"], failure["retryable"]) == \
        ("ScriptFailed", 3, False)
    assert "the script exited with code 3" in failure["message"]
    assert "key is ***\nValueError: the loss went to nan at step 7" in failure["message"]
    failed = [e for e in run.events() if e["event"] == "failed"]
    assert failed and secret not in json.dumps(run.events())


def test_a_script_that_is_not_there_is_refused_before_anything_runs(ftjob_run, tmp_path):
    run = ftjob_run(script_job("missing", tmp_path / "nope.py", []))
    result = run.run()
    assert result.returncode == 1
    assert "spec.script.path: no file" in result.stderr and "nope.py" in result.stderr
    assert not (run.run_dir / "events.jsonl").exists()
