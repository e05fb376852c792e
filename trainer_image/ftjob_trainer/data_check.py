"""The data check before any GPU is held (`ftjob validate --data`): the data is loaded and
prepared exactly as the trainer will (the task's own `build`, which loads no weights until
asked), so every data error the run would hit comes out here, with the same message. Then a
short report: rows, token lengths against dataset.maxLength, labels, and for chat data how
the first conversations render.

On the cluster the operator runs `python -m ftjob_trainer.data_check CONFIG.json` in a
CPU-only pod before the first attempt; the exit code and the termination log say what the
trainer's would (the report, one line, on success)."""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections import Counter
from pathlib import Path

import datasets
import transformers
from datasets import DatasetDict

from .arguments import Config, load_config
from .data import load_raw_datasets
from .errors import ConfigError, TrainerError, write_termination_log
from .modeling import load_tokenizer, resolve_model_path
from .preflight import check_storage
from .tasks import task_for

SAMPLED_ROWS = 2000  # token lengths are measured on the first rows of each split
RENDERED = 3
PACKING = {("masked-lm", "line_by_line", False), ("causal-lm", "packing", True)}


def packed(config: Config) -> bool:
    """Texts are packed into blocks: nothing is cut, whatever their length."""
    return any(config.model.task == task and getattr(config.task, name) == value
               for task, name, value in PACKING)


def is_turns(value) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


def conversations(values: list) -> list[list[dict]]:
    """The conversations a row's turn columns make: the turns of [messages] or [prompt,
    completion]; for [prompt, chosen, rejected] the prompt with each answer."""
    if len(values) == 3:
        return [values[0] + values[1], values[0] + values[2]]
    return [[turn for value in values for turn in value]]


def token_count(tokenizer, values: list) -> int:
    """Tokens of one row's text columns as its task reads them: conversations through the
    chat template (the longer one for a preference pair), word lists as pre-split words,
    texts (or a pair) as they are."""
    if all(is_turns(v) for v in values):
        return max(len(tokenizer.apply_chat_template(turns, tokenize=True,
                                                     return_dict=True)["input_ids"])
                   for turns in conversations(values))
    if len(values) == 1 and isinstance(values[0], list):
        return len(tokenizer(values[0], is_split_into_words=True)["input_ids"])
    return len(tokenizer(*(str(v) for v in values))["input_ids"])


def percentile(ordered: list[int], share: float) -> int:
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def length_report(config: Config, tokenizer, raw: DatasetDict) -> dict:
    columns = config.data.text_columns
    report = {}
    for split, dataset in raw.items():
        rows = dataset.select(range(min(SAMPLED_ROWS, len(dataset))))
        lengths = sorted(token_count(tokenizer, [row[c] for c in columns]) for row in rows)
        if not lengths:
            continue
        report[split] = {
            "measured": len(lengths),
            **{f"p{int(share * 100)}": percentile(lengths, share) for share in (.5, .9, .99)},
            "max": lengths[-1],
            "cut": 0 if packed(config) else sum(n > config.data.max_length for n in lengths)}
    return report


def label_report(config: Config, raw: DatasetDict) -> dict | None:
    column = config.data.label_column
    if config.model.task not in ("sequence-classification", "token-classification") or \
            column not in raw["train"].column_names:
        return None

    def counts(dataset) -> Counter:
        values = dataset[column]
        flat = [tag for row in values for tag in row] if values and \
            isinstance(values[0], list) else values
        return Counter(str(v) for v in flat)

    train = counts(raw["train"])
    report = {"train": dict(train.most_common())}
    if "eval" in raw:
        report["unseen in train"] = sorted(set(counts(raw["eval"])) - set(train))
    return report


def rendered_conversations(config: Config, tokenizer, raw: DatasetDict) -> list[str]:
    """How the chat template renders the first conversations, as the model will see them."""
    columns = config.data.text_columns
    if not is_turns(raw["train"][0][columns[0]]):
        return []
    return [tokenizer.apply_chat_template(conversations([row[c] for c in columns])[0],
                                          tokenize=False)
            for row in raw["train"].select(range(min(RENDERED, len(raw["train"]))))]


def check_data(config: Config) -> dict:
    """Raises the run's own DataError, NotFound or ConfigError for bad data; else the
    report."""
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    cache_dir = Path(config.storage.work_dir) / "cache"
    model_path = resolve_model_path(config.model, cache_dir)
    tokenizer = load_tokenizer(model_path, config.model)
    raw = load_raw_datasets(config.data, cache_dir)
    parts = task_for(config.model.task).build(config, model_path, tokenizer, raw)
    samples = {"train": len(parts.train_dataset)}
    if parts.eval_dataset is not None:
        samples["eval"] = len(parts.eval_dataset)
    return {"rows": {split: len(dataset) for split, dataset in raw.items()},
            "samples": samples,
            "tokens": length_report(config, tokenizer, raw),
            "maxLength": config.data.max_length,
            "packed": packed(config),
            "labels": label_report(config, raw),
            "rendered": rendered_conversations(config, tokenizer, raw)}



def format_report(report: dict) -> str:
    """The report as `ftjob validate --data` prints it."""
    def splits(counts: dict) -> str:
        return ", ".join(f"{split} {count}" for split, count in counts.items())

    lines = [f"  rows: {splits(report['rows'])}; samples after preparation: "
             f"{splits(report['samples'])}"]
    for split, tokens in report["tokens"].items():
        cut = "packed into blocks, nothing cut" if report["packed"] else \
            f"{tokens['cut']} longer than maxLength {report['maxLength']} (cut)"
        lines.append(f"  tokens, {split} (first {tokens['measured']} rows): p50 "
                     f"{tokens['p50']}, p90 {tokens['p90']}, p99 {tokens['p99']}, max "
                     f"{tokens['max']}; {cut}")
    labels = report["labels"]
    if labels:
        shown = ", ".join(f"{name} {count}" for name, count in
                          list(labels["train"].items())[:20])
        lines.append(f"  labels, train: {shown}")
        if "unseen in train" in labels:
            lines.append(f"  eval labels never seen in train: "
                         f"{', '.join(labels['unseen in train']) or 'none'}")
    for index, text in enumerate(report["rendered"], start=1):
        lines.append(f"  conversation {index} as the model sees it: {text[:400]!r}")
    return "\n".join(lines)


def summary(report: dict) -> str:
    """One line for the DataChecked condition."""
    parts = [", ".join(f"{split} {report['rows'][split]} rows -> {samples} samples"
                       for split, samples in report["samples"].items())]
    tokens = report["tokens"].get("train")
    if tokens:
        cut = "packed, nothing cut" if report["packed"] else \
            f"{tokens['cut']} of {tokens['measured']} longer than maxLength " \
            f"{report['maxLength']}"
        parts.append(f"tokens p50 {tokens['p50']}, p99 {tokens['p99']}, max "
                     f"{tokens['max']} ({cut})")
    labels = report["labels"]
    if labels:
        parts.append(f"{len(labels['train'])} labels in train")
        if labels.get("unseen in train"):
            parts.append(f"eval labels never seen in train: "
                         f"{', '.join(labels['unseen in train'][:10])}")
    return "; ".join(parts)


def check_memory_fit(config: Config) -> dict | None:
    """The operator's question (FTJOB_MEMORY_FIT: the job's layout and the GPU memory of
    the nodes it may land on) answered from the model's config.json: {fits, message}."""
    from .memory_fit import FIT_REQUEST_ENV, Layout, fit_verdict, model_shape

    question = os.environ.get(FIT_REQUEST_ENV)
    if not question:
        return None
    asked = json.loads(question)
    model = config.model
    lora = {"r": model.lora_r, "lora_alpha": model.lora_alpha,
            "lora_dropout": model.lora_dropout,
            "target_modules": model.lora_target_modules} if model.use_lora else None
    shape = model_shape(resolve_model_path(model, Path(config.storage.work_dir) / "cache"),
                        model.task, revision=model.revision,
                        trust_remote_code=model.trust_remote_code,
                        num_labels=model.num_labels, lora=lora)
    return fit_verdict(shape, Layout(**asked["layout"]), asked["gpuMemoryBytes"],
                       asked["gpuMemorySource"])


def write_report(path: str | None, report: dict) -> None:
    """The summary where the operator reads it, in the termination message's format (with
    the memory fit's verdict when it was asked)."""
    path = os.environ.get("FTJOB_TERMINATION_LOG") or path
    if path:
        try:
            Path(path).write_text(json.dumps({
                "reason": "DataValid", "exitCode": 0, "message": summary(report),
                **({"memoryFit": report["memoryFit"]} if report.get("memoryFit") else {})}))
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    """The data check as a program: storage reachable and writable, then the data."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m ftjob_trainer.data_check CONFIG.json", file=sys.stderr)
        return 64
    config = None
    try:
        try:
            config = load_config(argv[0])
        except (OSError, ValueError, TypeError) as error:
            raise ConfigError(f"cannot read trainer config {argv[0]}: {error}") from None
        check_storage(config)
        report = check_data(config)
        report["memoryFit"] = check_memory_fit(config)
    except TrainerError as error:
        write_termination_log(config.reporting.termination_log if config else None, error)
        print(f"ftjob data check: {error.reason}: {error}", file=sys.stderr)
        return error.exit_code
    print("ftjob data check passed:")
    print(format_report(report))
    if report.get("memoryFit"):
        fit = report["memoryFit"]
        print(f"  memory: {'fits' if fit['fits'] else 'DOES NOT FIT'}: {fit['message']}")
    write_report(config.reporting.termination_log, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
