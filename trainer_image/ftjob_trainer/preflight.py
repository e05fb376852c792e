"""Checks that fail fast and clearly, before any accelerator is held: storage answers and
accepts the credentials, the model exists, the data has the configured columns.

`ftjob run` calls `preflight` before it starts the launcher; the trainer repeats the storage
check on every node because each pod has its own network path and credentials.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig

from .arguments import Config
from .data import check_columns, load_raw_datasets
from .modeling import model_not_found, resolve_model_path
from .storage import Location


def storage_locations(config: Config) -> tuple[Location, Location | None]:
    storage = config.storage
    checkpoints = Location(storage.checkpoint_uri, storage.checkpoint_endpoint_url)
    output = Location(storage.output_uri, storage.output_endpoint_url) \
        if storage.output_uri else None
    return checkpoints, output


def check_storage(config: Config) -> tuple[Location, Location | None]:
    checkpoints, output = storage_locations(config)
    checkpoints.check_writable()
    if output is not None:
        output.check_writable()
    return checkpoints, output


def check_model(config: Config, cache_dir: Path) -> None:
    path = resolve_model_path(config.model, cache_dir)
    try:
        AutoConfig.from_pretrained(path, revision=config.model.revision,
                                   trust_remote_code=config.model.trust_remote_code)
    except (OSError, ValueError) as error:
        raise model_not_found(config.model.model_name_or_path, error) from None


def preflight(config: Config) -> None:
    cache_dir = Path(config.storage.work_dir) / "cache"
    check_storage(config)
    check_model(config, cache_dir)
    raw = load_raw_datasets(config.data, cache_dir)
    check_columns(raw, config.data, needs_labels=config.model.task == "sequence-classification")
