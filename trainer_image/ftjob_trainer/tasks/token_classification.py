"""token-classification: a tag per word (named entities, parts of speech), as run_ner. The
words are split into sub-words; each word's tag goes on its first piece and the other pieces
are ignored by the loss (-100), or carry the tag too with label_all_tokens. Entity-level
precision, recall and F1 are computed here, offline, as conlleval counts them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from datasets import ClassLabel, DatasetDict, Sequence
from transformers import AutoModelForTokenClassification, DataCollatorForTokenClassification

from ..errors import ConfigError, DataError
from ..modeling import load_pretrained
from .base import TaskParts, check_columns, hold_out_validation, \
    single_text_column

NAME = "token-classification"

# The model class and peft task type the job trains (memory_fit sizes the same).
MODEL_CLASS = AutoModelForTokenClassification
LORA_TASK_TYPE = "TOKEN_CLS"
IGNORED = -100  # the label the loss skips
METRICS = ("precision", "recall", "f1", "accuracy")


@dataclass
class Arguments:
    label_all_tokens: bool = field(default=False, metadata={
        "help": "Tag every sub-word piece of a word (B- becomes I- after the first), not "
                "only the first"})
    labels: list[str] | None = field(default=None, metadata={
        "help": "The tag names, in id order; by default the sorted tags of the train data"})


def tag_names(raw: DatasetDict, column: str, given: list[str] | None) -> list[str]:
    """The tag list, in id order: the dataset's own (a Sequence of ClassLabel), the job's,
    or the sorted tags the train data uses (run_ner's get_label_list)."""
    feature = raw["train"].features[column]
    if isinstance(feature, Sequence) and isinstance(feature.feature, ClassLabel):
        return given or feature.feature.names
    if given:
        return given
    values = sorted({tag for row in raw["train"][column] for tag in row}, key=str)
    if values and all(isinstance(v, int) for v in values):
        return [str(i) for i in range(max(values) + 1)]
    return [str(v) for v in values]


def tag_ids(raw: DatasetDict, column: str, names: list[str]) -> DatasetDict:
    """Tags as ids, refusing any tag outside the list."""
    index = {name: i for i, name in enumerate(names)}
    for split, dataset in raw.items():
        for row_number, row in enumerate(dataset[column]):
            for tag in row:
                known = 0 <= tag < len(names) if isinstance(tag, int) else tag in index
                if not known:
                    raise DataError(
                        f"the {split} data's {column} column has tag {tag!r} (row "
                        f"{row_number}), which is not one of the {len(names)} tags "
                        f"{names[:20]}; list every tag in spec.tokenClassification.labels")
    return raw.map(lambda batch: {column: [[t if isinstance(t, int) else index[t]
                                            for t in row] for row in batch[column]]},
                   batched=True, desc="Mapping tags to ids")


def inside_tag(names: list[str]) -> list[int]:
    """For each tag id, the id to give a word's later pieces with label_all_tokens: the
    I- tag of a B- tag when the list has one, else the tag itself (run_ner)."""
    index = {name: i for i, name in enumerate(names)}
    return [index.get("I-" + name[2:], i) if name.startswith("B-") else i
            for i, name in enumerate(names)]


def align_labels(word_ids: list[int | None], word_tags: list[int], label_all_tokens: bool,
                 inside: list[int]) -> list[int]:
    """One label per token: the word's tag on its first piece; IGNORED on special tokens,
    and on later pieces unless label_all_tokens."""
    labels, previous = [], None
    for word in word_ids:
        if word is None:
            labels.append(IGNORED)
        elif word != previous:
            labels.append(word_tags[word])
        else:
            labels.append(inside[word_tags[word]] if label_all_tokens else IGNORED)
        previous = word
    return labels


def entities(tags: list[str]) -> set[tuple[int, int, str]]:
    """The (start, end, type) spans of one sentence's IOB tags, read leniently like
    conlleval: an entity starts at B-X, or at I-X (or a bare X) that does not continue an
    X; O ends it."""
    spans, start, kind = set(), None, None
    for position, tag in enumerate([*tags, "O"]):
        prefix, _, name = tag.partition("-") if tag[:2] in ("B-", "I-") else ("I", "", tag)
        continues = prefix == "I" and name == kind
        if start is not None and not continues:
            spans.add((start, position, kind))
            start, kind = None, None
        if tag != "O" and not continues:
            start, kind = position, name
    return spans


def entity_scores(truth: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """Entity-level precision, recall and F1 (an entity counts when its span and type both
    match) and token-level accuracy, over sentences of tag names."""
    true_spans = {(i, *span) for i, row in enumerate(truth) for span in entities(row)}
    found = {(i, *span) for i, row in enumerate(predicted) for span in entities(row)}
    hits = len(true_spans & found)
    precision = hits / len(found) if found else 0.0
    recall = hits / len(true_spans) if true_spans else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    tokens = [(t, p) for row_t, row_p in zip(truth, predicted) for t, p in zip(row_t, row_p)]
    accuracy = sum(t == p for t, p in tokens) / len(tokens) if tokens else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy}


def build_compute_metrics(names: list[str], wanted: list[str]):
    """The requested entity-level scores (precision, recall, f1) and token accuracy."""
    if not wanted:
        return None

    def compute_metrics(eval_prediction):
        logits, labels = eval_prediction
        logits = logits[0] if isinstance(logits, tuple) else logits
        predictions = np.argmax(logits, axis=-1)
        kept = [[(names[p], names[t]) for p, t in zip(prediction, label) if t != IGNORED]
                for prediction, label in zip(predictions, labels)]
        scores = entity_scores([[t for _, t in row] for row in kept],
                               [[p for p, _ in row] for row in kept])
        return {name: scores[name] for name in wanted}

    return compute_metrics


def build(config, model_path: str, tokenizer, raw: DatasetDict) -> TaskParts:
    data, model_args, settings = config.data, config.model, config.task
    words, tags = single_text_column(data, NAME), data.label_column
    check_columns(raw, [words, tags], "spec.dataset.textColumns (the words) and labelColumn "
                                      "(their tags)")
    if not tokenizer.is_fast:
        raise ConfigError("token-classification needs a fast tokenizer (word_ids); "
                          f"{model_args.model_name_or_path} has none")
    names = tag_names(raw, tags, settings.labels)
    raw = hold_out_validation(tag_ids(raw, tags, names), data)
    inside = inside_tag(names)

    def tokenize(batch):
        encoded = tokenizer(batch[words], truncation=True, max_length=data.max_length,
                            is_split_into_words=True)
        encoded["labels"] = [
            align_labels(encoded.word_ids(batch_index=i), row, settings.label_all_tokens,
                         inside) for i, row in enumerate(batch[tags])]
        return encoded

    tokenized = raw.map(tokenize, batched=True, remove_columns=raw["train"].column_names,
                        desc="Tokenizing and aligning tags")

    def load(use_lora=None):
        return load_pretrained(MODEL_CLASS, model_path, model_args,
                               LORA_TASK_TYPE, use_lora, num_labels=len(names),
                               id2label=dict(enumerate(names)),
                               label2id={name: i for i, name in enumerate(names)})

    return TaskParts(
        load_model=load,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized.get("eval"),
        data_collator=DataCollatorForTokenClassification(tokenizer),
        compute_metrics=build_compute_metrics(names, data.metrics),
        load_base_model=lambda: load(use_lora=False),
    )
