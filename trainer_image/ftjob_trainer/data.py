"""Loading and tokenizing the dataset, in the style of the Hugging Face examples."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import datasets
from datasets import ClassLabel, DatasetDict

from .arguments import DataArguments
from .errors import DataError, NotFound
from .storage import Location, is_storage_uri

logger = logging.getLogger(__name__)

EXTENSIONS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _local_copy(uri: str, cache_dir: Path) -> str:
    """Storage URIs are downloaded once into the cache; local paths are used in place."""
    if not is_storage_uri(uri):
        if not Path(uri).exists():
            raise NotFound(f"dataset file {uri} does not exist")
        return uri
    target = cache_dir / hashlib.sha256(uri.encode()).hexdigest()[:16] / os.path.basename(uri)
    if not target.exists():
        folder, name = uri.rsplit("/", 1)
        location = Location(folder)
        if not location.exists(name):
            raise NotFound(f"dataset file {uri} does not exist")
        location.download_files([name], target.parent)
    return str(target)


def _file_format(data_args: DataArguments) -> str:
    if data_args.file_format:
        return data_args.file_format
    suffix = Path(data_args.train_file).suffix.lower()
    if suffix not in EXTENSIONS:
        raise DataError(f"cannot tell the format of {data_args.train_file}; set "
                        "spec.dataset.format to csv, json or parquet")
    return EXTENSIONS[suffix]


def load_raw_datasets(data_args: DataArguments, cache_dir: Path) -> DatasetDict:
    """Returns a DatasetDict with a 'train' split and, when configured, an 'eval' split."""
    if data_args.train_file:
        files = {"train": _local_copy(data_args.train_file, cache_dir)}
        if data_args.eval_file:
            files["eval"] = _local_copy(data_args.eval_file, cache_dir)
        raw = datasets.load_dataset(_file_format(data_args), data_files=files,
                                    cache_dir=str(cache_dir / "datasets"))
    else:
        try:
            raw = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name,
                                        cache_dir=str(cache_dir / "datasets"))
        except FileNotFoundError as error:
            raise NotFound(f"dataset {data_args.dataset_name} not found: {error}") from None
        wanted = {"train": data_args.train_split, "eval": data_args.eval_split}
        missing = [s for s in wanted.values() if s and s not in raw]
        if missing:
            raise DataError(f"dataset {data_args.dataset_name} has no split {missing[0]}; it "
                            f"has {', '.join(raw)}")
        raw = DatasetDict({k: raw[v] for k, v in wanted.items() if v})
    if data_args.max_train_samples:
        raw["train"] = raw["train"].select(range(min(data_args.max_train_samples,
                                                     len(raw["train"]))))
    if "eval" in raw and data_args.max_eval_samples:
        raw["eval"] = raw["eval"].select(range(min(data_args.max_eval_samples,
                                                   len(raw["eval"]))))
    return raw


def check_columns(raw: DatasetDict, data_args: DataArguments, needs_labels: bool) -> None:
    wanted = list(data_args.text_columns)
    if needs_labels:
        wanted.append(data_args.label_column)
    for split, dataset in raw.items():
        missing = [c for c in wanted if c not in dataset.column_names]
        if missing:
            raise DataError(
                f"the {split} data has no column {', '.join(missing)}; its columns are "
                f"{', '.join(dataset.column_names)} (set spec.dataset.textColumns and "
                "labelColumn)")


@dataclass
class Labels:
    names: list[str] | None
    num_labels: int


def label_ids(raw: DatasetDict, data_args: DataArguments) -> tuple[DatasetDict, Labels]:
    """Maps string labels to ids (sorted, from the train split); keeps integer labels."""
    column = data_args.label_column
    feature = raw["train"].features[column]
    if isinstance(feature, ClassLabel):
        return raw, Labels(feature.names, feature.num_classes)
    values = sorted(set(raw["train"][column]))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        if values[0] < 0:
            raise DataError(f"label column {column} has negative values")
        return raw, Labels(None, values[-1] + 1)
    names = [str(v) for v in values]
    index = {name: i for i, name in enumerate(names)}
    unknown = {str(v) for split in raw.values() for v in split[column]} - set(index)
    if unknown:
        raise DataError(f"eval labels {sorted(unknown)[:5]} never occur in the train data")
    raw = raw.map(lambda batch: {column: [index[str(v)] for v in batch[column]]},
                  batched=True, desc="Mapping labels to ids")
    return raw, Labels(names, len(names))


def tokenize(raw: DatasetDict, tokenizer, data_args: DataArguments, task: str) -> DatasetDict:
    columns = data_args.text_columns

    def tokenize_batch(batch):
        if task == "causal-lm":
            texts = ["\n".join(parts) for parts in zip(*(batch[c] for c in columns))]
            return tokenizer(texts, truncation=True, max_length=data_args.max_length)
        encoded = tokenizer(*(batch[c] for c in columns), truncation=True,
                            max_length=data_args.max_length)
        encoded["labels"] = batch[data_args.label_column]
        return encoded

    return raw.map(tokenize_batch, batched=True, remove_columns=raw["train"].column_names,
                   desc="Tokenizing")
