"""Building blocks shared by the spec and status models.

Every string and list carries a bound: the CRD generated from these models must not accept
unbounded values (the API server's CEL cost estimates depend on it), and the bounds live
here once so the pydantic parser and the CRD agree.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

# A Kubernetes object name, as used for Secrets, queues and priority classes.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# A FineTuneJob name: it prefixes Job, Service and pod names, which must be DNS-1035 labels
# of at most 63 characters, so it is shorter and must start with a letter.
JOB_NAME = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
JOB_NAME_MAX_LENGTH = 40
# Storage URIs the checkpoint and model code understands (fsspec protocols).
STORAGE_URI = r"^(s3|gs|gcs|az|abfs|file)://.+$"
# A Kubernetes resource quantity ("500m", "16Gi", "2").
QUANTITY = r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|[numkMGTPE]i?|Ki)?$"

Name = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=253)]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
StorageUri = Annotated[str, StringConstraints(max_length=2048, pattern=STORAGE_URI)]
# Environment variable names as Kubernetes accepts them.
EnvName = Annotated[str, StringConstraints(min_length=1, max_length=253,
                                           pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")]
Quantity = Annotated[str, StringConstraints(max_length=64, pattern=QUANTITY)]


def bounded_list(max_items: int, **kwargs):
    """A list Field with the bound every CRD list needs."""
    return Field(max_length=max_items, **kwargs)


def is_storage_uri(value: str) -> bool:
    return re.match(STORAGE_URI, value) is not None


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=False,
        validate_default=False,
    )

    def to_wire(self) -> dict:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
