"""Loading the raw dataset (hub id, local folder, files or storage URIs) into 'train' and
'eval' splits; each task tokenizes it (tasks/)."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import datasets
from datasets import DatasetDict

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
        eval_split = data_args.eval_split
        if eval_split not in raw and data_args.validation_split_percentage:
            eval_split = None  # held out of the train split instead, as run_mlm does
        wanted = {"train": data_args.train_split, "eval": eval_split}
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
