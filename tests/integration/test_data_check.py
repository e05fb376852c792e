"""`ftjob validate --data`: the data loaded and prepared as the trainer would, with no
weights: each bad data set ends with exit 65 (or the trainer's own code) and the run's own
message; good data gets a report of rows, token lengths against maxLength, labels and
rendered chats."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from ftjob.api.load import parse_job
from ftjob.cli import main
from ftjob.controller import manifests
from tests.conftest import EXAMPLES, tiny_job

PARAPHRASE_COLUMNS = "idx, sentence1, sentence2, label"


def jsonl(path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def check(tmp_path, capsys, job: dict) -> tuple[int, str]:
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(job))
    code = main(["validate", "--data", str(job_file)])
    out = capsys.readouterr()
    return code, out.out + out.err


def task_job(model: str, task: str, dataset: dict, **spec) -> dict:
    job = tiny_job("data", model, model={"name": model, "task": task}, **spec)
    job["spec"]["model"].pop("numLabels")
    job["spec"]["dataset"] = dataset
    job["spec"]["metrics"] = []
    return job


def test_bad_data_sets_end_with_the_runs_own_message(tmp_path, capsys, minilm_path,
                                                     tiny_decoders):
    turn = [{"role": "user", "content": "hi"}]
    labels = jsonl(tmp_path / "labels-eval.jsonl", [{"text": "a", "label": "maybe"}])
    table = [
        (tiny_job("data", minilm_path, dataset={"textColumns": ["body"]}),
         f"the train data has no column body; its columns are {PARAPHRASE_COLUMNS} (set "
         "spec.dataset.textColumns and labelColumn)"),
        (tiny_job("data", minilm_path, dataset={"files": {
            "train": jsonl(tmp_path / "labels.jsonl", [{"text": "a", "label": "yes"},
                                                      {"text": "b", "label": "no"}]),
            "eval": labels}, "textColumns": ["text"]}),
         "eval labels ['maybe'] never occur in the train data"),
        (task_job(tiny_decoders["qwen2"], "sft", {
            "files": {"train": jsonl(tmp_path / "chat.jsonl", [{"messages": turn}])},
            "textColumns": ["messages"]}),
         "the train data's messages column, row 0, has no assistant turn to learn from"),
        (task_job(minilm_path, "token-classification", {
            "files": {"train": str(EXAMPLES / "data/entities-train.jsonl")},
            "textColumns": ["tokens"], "labelColumn": "tags"},
            tokenClassification={"labels": ["O", "B-ORG", "I-ORG"]}),
         "the train data's tags column has tag 'B-DATE' (row 0), which is not one of the 3 "
         "tags ['O', 'B-ORG', 'I-ORG']; list every tag in spec.tokenClassification.labels"),
        (task_job(tiny_decoders["qwen2"], "dpo", {
            "files": {"train": str(EXAMPLES / "data/preferences-train.jsonl")},
            "textColumns": ["prompt", "chosen", "refused"]}),
         "the train data has no column refused; its columns are chosen, prompt, rejected "
         "(set spec.dataset.textColumns ([prompt, chosen, rejected]))"),
        (task_job(tiny_decoders["llama"], "causal-lm", {
            "files": {"train": str(EXAMPLES / "data/news-text.jsonl")},
            "textColumns": ["text"]}, causalLm={"blockSize": 512}),
         "spec.causalLm.blockSize is 512 but the model reads at most 256 tokens "
         "(max_position_embeddings); set spec.causalLm.blockSize to 256 or less"),
    ]
    for job, message in table:
        code, output = check(tmp_path, capsys, job)
        assert code == 65, output
        assert output.splitlines()[-1] == f"{tmp_path / 'job.yaml'}: data: {message}"


def test_good_data_gets_a_report_of_lengths_labels_and_rendered_chats(tmp_path, capsys,
                                                                     minilm_path,
                                                                     tiny_decoders):
    job = tiny_job("data", minilm_path)
    job["spec"]["dataset"]["maxLength"] = 24
    code, output = check(tmp_path, capsys, job)
    assert code == 0, output
    # maxTrainSamples and maxEvalSamples apply as in the run
    assert "rows: train 256, eval 32; samples after preparation: train 256, eval 32" \
        in output
    cut = int(output.split("tokens, train (first 256 rows): ")[1].split("; ")[1].split()[0])
    assert 0 < cut < 256, output  # a few pairs are longer than 24 tokens
    assert "labels, train: 0 134, 1 122" in output
    assert "eval labels never seen in train: none" in output

    chat = task_job(tiny_decoders["qwen2"], "sft", {
        "files": {"train": str(EXAMPLES / "data/chat-train.jsonl")},
        "textColumns": ["messages"]})
    code, output = check(tmp_path, capsys, chat)
    assert code == 0, output
    assert output.count("as the model sees it: '<|im_start|>system") == 3
    assert "0 longer than maxLength 32 (cut)" not in output  # chats are ~70 tokens


@pytest.mark.parametrize("example", ["custom-loop/job.yaml"])
def test_a_script_job_has_no_data_to_check(capsys, example):
    assert main(["validate", "--data", str(EXAMPLES / example)]) == 0
    assert "reads its own data; nothing to check" in capsys.readouterr().out


def run_pod_program(tmp_path, job: dict) -> tuple[subprocess.CompletedProcess, dict]:
    """What the operator's data-check pod runs, on the config its ConfigMap holds."""
    job["metadata"]["namespace"] = "team-a"
    job["spec"]["checkpoints"]["uri"] = f"file://{tmp_path}/checkpoints"
    config_map = manifests.build_config_map(parse_job(job), "uid", manifests.Defaults())
    config = tmp_path / "config.json"
    config.write_text(config_map["data"]["config.json"])
    termination_log = tmp_path / "termination-log"
    termination_log.unlink(missing_ok=True)
    env = {**os.environ, "FTJOB_WORK_DIR": str(tmp_path / "scratch"),
           "FTJOB_TERMINATION_LOG": str(termination_log), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, *manifests.data_check_command()[1:-1],
                             str(config)], env=env, capture_output=True, text=True,
                            timeout=300)
    return result, json.loads(termination_log.read_text())


def test_the_data_check_pods_program_leaves_its_verdict_in_the_termination_log(tmp_path,
                                                                             minilm_path):
    result, verdict = run_pod_program(tmp_path, tiny_job("data", minilm_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert verdict["reason"] == "DataValid"
    assert verdict["message"].startswith("train 256 rows -> 256 samples, eval 32 rows -> "
                                         "32 samples; tokens p50 "), verdict
    assert "2 labels in train" in verdict["message"]

    result, verdict = run_pod_program(tmp_path, tiny_job(
        "data", minilm_path, dataset={"textColumns": ["body"]}))
    assert result.returncode == 65, result.stderr[-2000:]
    assert (verdict["reason"], verdict["retryable"]) == ("InvalidDataset", False)
    assert verdict["message"].startswith("the train data has no column body")
