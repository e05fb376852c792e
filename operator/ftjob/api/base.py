"""Building blocks shared by the spec and status models.

Every string and list carries a bound: the CRD generated from these models must not accept
unbounded values (the API server's CEL cost estimates depend on it), and the bounds live
here once so the pydantic parser and the CRD agree.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

# A Kubernetes object name, as used for Secrets, queues and priority classes.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# Volume and container names: an RFC 1123 label.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Label and annotation keys: an optional DNS-subdomain prefix and a name of at most 63.
QUALIFIED_NAME = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                  r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
QUALIFIED_NAME_MEANING = ("must be a qualified name: an optional DNS prefix of at most 253 "
                          "characters and '/', then at most 63 letters, digits, '-', '_' or '.'")
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
# A FineTuneJob name: it prefixes Job, Service and pod names, which must be DNS-1035 labels
# of at most 63 characters, so it is shorter and must start with a letter.
JOB_NAME = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
JOB_NAME_MAX_LENGTH = 40
# Storage URIs the checkpoint and model code understands (fsspec protocols), with a bucket
# (container) named by its provider's rules, or an absolute local path.
STORAGE_URI = (r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
               r"|(gs|gcs)://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]"
               r"|(az|abfs|abfss)://[a-z0-9][a-z0-9-]{1,61}[a-z0-9](@[a-z0-9.-]+)?"
               r")(/[^\x00-\x1f\x7f]*)?$|^file:///[^\x00-\x1f\x7f]*$")
# An http(s) endpoint: a host, an optional port (1-65535) and path, and nothing else.
_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
ENDPOINT_URL = (r"^https?://[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:" + _PORT +
                r")?(/[-A-Za-z0-9._~/]*)?$")
# A Kubernetes resource quantity ("500m", "16Gi", "2").
QUANTITY = r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][-+]?[0-9]+)?$"

Name = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=253)]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
StorageUri = Annotated[str, StringConstraints(max_length=2048, pattern=STORAGE_URI)]
EndpointUrl = Annotated[str, StringConstraints(max_length=512, pattern=ENDPOINT_URL)]
# Environment variable names as Kubernetes accepts them.
EnvName = Annotated[str, StringConstraints(min_length=1, max_length=253,
                                           pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")]
Quantity = Annotated[str, StringConstraints(max_length=64, pattern=QUANTITY)]


def cel_string(text: str) -> str:
    """`text` as a CEL string literal (a regular expression's backslashes escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def cel(*rules: tuple[str, str]) -> dict:
    """json_schema_extra carrying CEL rules as (rule, message) pairs."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}


def bounded_list(max_items: int, **kwargs):
    """A list Field with the bound every CRD list needs."""
    return Field(max_length=max_items, **kwargs)


class ApiModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=False,
        validate_default=False,
        # A field's docstring (the string right below it) is its description in the CRD,
        # which `kubectl explain` shows.
        use_attribute_docstrings=True,
    )

    def to_wire(self) -> dict:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
