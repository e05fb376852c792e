"""Checks that fail fast and clearly, before any weights are loaded: storage answers,
accepts the credentials and takes a write. Every node runs them (each pod has its own network
path and credentials); the model and the data's columns are checked where they are loaded.
"""

from __future__ import annotations

from .arguments import Config
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
