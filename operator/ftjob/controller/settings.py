"""The operator's settings: one object, read from FTJOB_* environment variables when the
operator starts (the Helm chart sets them from its values) and validated then, so a bad
value stops the operator with one line that names the variable instead of a traceback."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..api.base import Name, ShortText, StorageUri
from ..api.pod import Resources
from .manifests import DATA_CHECK_RESOURCES

PREFIX = "FTJOB_"


class SettingsError(ValueError):
    """A setting that cannot be used; the message is one line per variable."""


class OperatorSettings(BaseModel):
    """Each field is read from FTJOB_<FIELD NAME IN CAPITALS>; an empty variable means the
    default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trainer_image: ShortText = Field("ghcr.io/ftjob/trainer:0.1.0",
                                     description="Image of the training pods when a job names none")
    checkpoint_uri: StorageUri | None = Field(
        None, description="Default storage: a job's checkpoints go under <uri>/<namespace>/<name>")
    credentials_secret: Name | None = Field(
        None, description="Secret with storage credentials for jobs that name none")
    s3_endpoint_url: ShortText | None = Field(
        None, description="S3-compatible endpoint for jobs that name none")
    queue_name: Name | None = Field(None, description="Kueue LocalQueue for jobs that name none")
    default_resources: Resources = Field(
        default_factory=Resources, description="Container resources (JSON) for jobs that set none")
    data_check_resources: Resources = Field(
        default_factory=lambda: Resources.model_validate(DATA_CHECK_RESOURCES),
        description="Container resources (JSON) of the CPU-only pod that checks a job's "
        "data before its first attempt (runPolicy.preflight)")
    data_check_timeout_seconds: int = Field(
        900, ge=10, description="A data check still running after this long is given up: "
        "the condition says so and training starts")
    resync_seconds: float = Field(300, gt=0, description="Look at every unfinished job this "
                                  "often even without an event (a safety net)")
    restart_backoff_seconds: float = Field(10, ge=0, description="Delay before the first "
                                           "restart; doubles with each restart, at most 5 min")
    batch_seconds: float = Field(1, ge=0, description="Pod and Job events of one job within "
                                 "this window are decided on together")
    workers: int = Field(16, ge=1, le=256, description="Reconciles running at once")
    metrics_address: str = Field("0.0.0.0", description="Address the /metrics endpoint binds")
    metrics_port: int = Field(9090, ge=0, le=65535,
                              description="Port of the /metrics endpoint; 0 picks a free one")

    @field_validator("default_resources", "data_check_resources", mode="before")
    @classmethod
    def _json(cls, value):
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"is not JSON: {error.msg}") from None
        return value

    @field_validator("metrics_address")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"must be an IP address, got {value!r}") from None
        return value

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> "OperatorSettings":
        values = {name: environ[variable(name)] for name in cls.model_fields
                  if environ.get(variable(name), "") != ""}
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise SettingsError("; ".join(
                f"{variable(str(item['loc'][0]))}: "
                + "".join(f"{part}: " for part in item["loc"][1:])
                + item["msg"].removeprefix("Value error, ")
                for item in error.errors(include_url=False))) from None


def variable(field: str) -> str:
    return PREFIX + field.upper()
