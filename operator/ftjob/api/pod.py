"""The parts of a training pod a user may shape, typed after their Kubernetes counterparts.

Only what a training job needs and the Pod Security `restricted` profile allows is here:
no hostPath, nfs, iscsi, flexVolume, gitRepo or CSI volumes, no privileged settings. Every
name and key follows Kubernetes' own rules, and names ftjob uses itself are refused, so a
spec that validates here is one whose Job the API server accepts. Unknown fields are
refused (the CRD prunes them), which also bounds how deep a spec can nest.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

from .base import (
    DNS_LABEL,
    LABEL_VALUE,
    QUALIFIED_NAME,
    QUALIFIED_NAME_MEANING,
    QUANTITY,
    ApiModel,
    EnvName,
    Name,
    Quantity,
    ShortText,
    bounded_list,
    cel,
    cel_string,
)

# ftjob's own volumes in every trainer container (the trainer config, a scratch disk, a
# shared-memory disk for the DataLoader's workers): volume name -> mount path.
FTJOB_MOUNTS = {"config": "/etc/ftjob", "scratch": "/scratch", "dshm": "/dev/shm"}
RESERVED_VOLUMES = tuple(FTJOB_MOUNTS)
RESERVED_MOUNT_PATHS = tuple(FTJOB_MOUNTS.values())
# Environment variables ftjob sets start with this; a user's would silently replace them.
RESERVED_ENV_PREFIX = "FTJOB_"

# Each rule below is checked twice with one message: by a pydantic validator (ftjob validate,
# the operator) and by CEL in the CRD (the API server, at admission).
TOLERATION_WITHOUT_KEY = "a toleration without a key must use operator Exists"
EXISTS_WITHOUT_VALUE = "a toleration with operator Exists takes no value"
RESERVED_ENV = f"environment variables starting with {RESERVED_ENV_PREFIX} are set by ftjob"
VALUE_OR_VALUE_FROM = "set value or valueFrom, not both"
RESERVED_VOLUME = f"volume names {', '.join(RESERVED_VOLUMES)} are ftjob's own"
RESERVED_MOUNT = f"{', '.join(RESERVED_MOUNT_PATHS)} are where ftjob mounts its own volumes"
UNIQUE_VOLUMES = "volume names must be unique"
UNIQUE_MOUNT_PATHS = "mount paths must be unique"



def _prefix_fits(key: str) -> str:
    if key.find("/") > 253:
        raise ValueError(QUALIFIED_NAME_MEANING)
    return key


VolumeName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS_LABEL)]
LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=317,
                                            pattern=QUALIFIED_NAME),
                     AfterValidator(_prefix_fits)]
LabelValue = Annotated[str, StringConstraints(max_length=63, pattern=LABEL_VALUE)]
# A path inside the container.
ABSOLUTE_PATH = r"^/[^\x00]*$"
AbsolutePath = Annotated[str, StringConstraints(min_length=1, max_length=1024,
                                                pattern=ABSOLUTE_PATH)]
# A path within a volume: relative, and never climbing out of it (no segment is "..").
_SEGMENT = r"([^/.\x00][^/\x00]*|\.[^/.\x00][^/\x00]*|\.\.[^/\x00]+|\.)"
RELATIVE_PATH = rf"^{_SEGMENT}(/{_SEGMENT})*/?$"
RelativePath = Annotated[str, StringConstraints(min_length=1, max_length=256,
                                                pattern=RELATIVE_PATH)]
FileMode = Annotated[int, Field(ge=0, le=0o777)]


def label_map(max_items: int, description: str):
    """A map Field keyed by label keys, which the API server checks through CEL (a schema
    cannot check the keys of a map). Selectors nested in affinity terms are checked here
    only: their rules would cost the API server more than its budget for one schema, and
    the API server refuses such a Job, which fails the FineTuneJob with its message."""
    rule = (f"self.all(k, k.matches({cel_string(QUALIFIED_NAME)}) && k.indexOf('/') <= 253)",
            f"keys {QUALIFIED_NAME_MEANING.removeprefix('must be ')}")
    return Field(None, max_length=max_items, description=description,
                 json_schema_extra=cel(rule))


LabelMap = dict[LabelKey, LabelValue]


class LabelSelectorRequirement(ApiModel):
    key: LabelKey
    """Label key the requirement applies to"""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    """In, NotIn, Exists or DoesNotExist"""
    values: list[LabelValue] | None = bounded_list(64, default=None)
    """Values for In and NotIn; empty for Exists and DoesNotExist"""


class LabelSelector(ApiModel):
    match_labels: dict[LabelKey, LabelValue] | None = Field(None, max_length=64)
    """Labels a pod must have, each with this value"""
    match_expressions: list[LabelSelectorRequirement] | None = bounded_list(16, default=None)
    """Requirements a pod's labels must meet, all of them"""


class NodeSelectorRequirement(ApiModel):
    key: LabelKey
    """Node label key (or field, in matchFields)"""
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
    """In, NotIn, Exists, DoesNotExist, Gt or Lt"""
    values: list[LabelValue] | None = bounded_list(64, default=None)
    """Values to compare with; one integer for Gt and Lt"""


class NodeSelectorTerm(ApiModel):
    match_expressions: list[NodeSelectorRequirement] | None = bounded_list(16, default=None)
    """Requirements on node labels, all of them"""
    match_fields: list[NodeSelectorRequirement] | None = bounded_list(16, default=None)
    """Requirements on node fields (metadata.name), all of them"""


class NodeSelector(ApiModel):
    node_selector_terms: list[NodeSelectorTerm] = bounded_list(16, min_length=1)
    """Terms of which a node must meet at least one"""


class PreferredSchedulingTerm(ApiModel):
    weight: int = Field(ge=1, le=100)
    """How much meeting the preference counts, 1-100"""
    preference: NodeSelectorTerm
    """The node requirements preferred"""


class NodeAffinity(ApiModel):
    required_during_scheduling_ignored_during_execution: NodeSelector | None = None
    """Nodes the training pods must land on"""
    preferred_during_scheduling_ignored_during_execution: list[PreferredSchedulingTerm] | None = (
        bounded_list(16, default=None))
    """Nodes the scheduler prefers for the training pods"""


class PodAffinityTerm(ApiModel):
    label_selector: LabelSelector | None = None
    """The pods this term is about"""
    namespace_selector: LabelSelector | None = None
    """Namespaces whose pods count; with namespaces, either may match"""
    namespaces: list[Name] | None = bounded_list(16, default=None)
    """Namespaces whose pods count; default this job's"""
    topology_key: LabelKey
    """Node label that defines 'near', e.g. kubernetes.io/hostname"""
    match_label_keys: list[LabelKey] | None = bounded_list(16, default=None)
    """Label keys whose values of the incoming pod are added to the selector (In)"""
    mismatch_label_keys: list[LabelKey] | None = bounded_list(16, default=None)
    """Label keys whose values of the incoming pod are added to the selector (NotIn)"""


class WeightedPodAffinityTerm(ApiModel):
    weight: int = Field(ge=1, le=100)
    """How much meeting the term counts, 1-100"""
    pod_affinity_term: PodAffinityTerm
    """The pods to be near (or away from)"""


class PodAffinity(ApiModel):
    required_during_scheduling_ignored_during_execution: list[PodAffinityTerm] | None = (
        bounded_list(16, default=None))
    """Terms every training pod must meet"""
    preferred_during_scheduling_ignored_during_execution: list[WeightedPodAffinityTerm] | None = (
        bounded_list(16, default=None))
    """Terms the scheduler prefers"""


class Affinity(ApiModel):
    """core/v1 Affinity: which nodes the pods may land on, near or away from which pods."""

    node_affinity: NodeAffinity | None = None
    """Which nodes the training pods land on"""
    pod_affinity: PodAffinity | None = None
    """Which pods the training pods land near"""
    pod_anti_affinity: PodAffinity | None = None
    """Which pods the training pods keep away from"""


class Toleration(ApiModel):
    """core/v1 Toleration. Without a key, `Exists` tolerates every taint."""

    model_config = ApiModel.model_config | {"json_schema_extra": cel(
        ("!has(self.key) ? self.operator == 'Exists' : true",
         TOLERATION_WITHOUT_KEY),
        ("self.operator != 'Exists' || !has(self.value)",
         EXISTS_WITHOUT_VALUE),
    )}

    key: LabelKey | None = None
    """Taint key; without one, operator Exists tolerates every taint"""
    operator: Literal["Exists", "Equal"] = "Equal"
    """Equal (key and value match) or Exists (the key matches)"""
    value: LabelValue | None = None
    """Taint value, with operator Equal"""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """NoSchedule, PreferNoSchedule or NoExecute; empty matches all"""
    toleration_seconds: int | None = None
    """With NoExecute: how long the pod stays after the taint appears"""

    @model_validator(mode="after")
    def _operator_fits(self):
        if self.key is None and self.operator != "Exists":
            raise ValueError(TOLERATION_WITHOUT_KEY)
        if self.operator == "Exists" and self.value is not None:
            raise ValueError(EXISTS_WITHOUT_VALUE)
        return self


class KeySelector(ApiModel):
    name: Name
    """Name of the ConfigMap or Secret, in the job's namespace"""
    key: ShortText
    """The key to read"""
    optional: bool | None = None
    """Start even if the object or key is missing"""


class ObjectFieldSelector(ApiModel):
    field_path: ShortText
    """Pod field, e.g. metadata.name or status.podIP"""
    api_version: ShortText | None = None
    """Version of the schema field_path is in (v1)"""


class ResourceFieldSelector(ApiModel):
    resource: ShortText
    """Container resource, e.g. limits.memory"""
    container_name: ShortText | None = None
    """Container to read it from (the trainer)"""
    divisor: Quantity | None = None
    """Unit of the value, e.g. 1Mi"""


def _exactly_one(model: ApiModel, fields: tuple[str, ...], what: str) -> None:
    given = [name for name in fields if getattr(model, name) is not None]
    if len(given) != 1:
        raise ValueError(f"{what} needs exactly one of "
                         f"{', '.join(model.model_fields[f].alias or f for f in fields)}")


# Where Kubernetes spells a field otherwise than camelCase does.
ALIASES = {"downward_api": "downwardAPI"}


def _one_of_rule(fields: tuple[str, ...], what: str) -> tuple[str, str]:
    names = [ALIASES.get(field, to_camel(field)) for field in fields]
    rule = " + ".join(f"(has(self.{name}) ? 1 : 0)" for name in names) + " == 1"
    return rule, f"{what} needs exactly one of {', '.join(names)}"


ENV_SOURCES = ("config_map_key_ref", "secret_key_ref", "field_ref", "resource_field_ref")


class EnvVarSource(ApiModel):
    model_config = ApiModel.model_config | {"json_schema_extra": cel(
        _one_of_rule(ENV_SOURCES, "valueFrom"))}

    config_map_key_ref: KeySelector | None = None
    """A key of a ConfigMap"""
    secret_key_ref: KeySelector | None = None
    """A key of a Secret (its creator must be allowed to get it)"""
    field_ref: ObjectFieldSelector | None = None
    """A field of the pod"""
    resource_field_ref: ResourceFieldSelector | None = None
    """A resource of the container"""

    @model_validator(mode="after")
    def _one_source(self):
        _exactly_one(self, ENV_SOURCES, "valueFrom")
        return self


class EnvVar(ApiModel):
    model_config = ApiModel.model_config | {"json_schema_extra": cel(
        (f"!self.name.startsWith('{RESERVED_ENV_PREFIX}')",
         RESERVED_ENV),
        ("!(has(self.value) && has(self.valueFrom))", VALUE_OR_VALUE_FROM),
    )}

    name: EnvName
    """Variable name; FTJOB_* names are ftjob's"""
    value: Annotated[str, StringConstraints(max_length=32768)] | None = None
    """The value"""
    value_from: EnvVarSource | None = None
    """Where the value comes from, instead of value"""

    @model_validator(mode="after")
    def _not_reserved(self):
        if self.name.startswith(RESERVED_ENV_PREFIX):
            raise ValueError(RESERVED_ENV)
        if self.value is not None and self.value_from is not None:
            raise ValueError(VALUE_OR_VALUE_FROM)
        return self


class KeyToPath(ApiModel):
    key: ShortText
    """The key to project"""
    path: RelativePath
    """Relative path of the file in the volume"""
    mode: FileMode | None = None
    """File mode bits, e.g. 0644 (420)"""


class DownwardApiFile(ApiModel):
    path: RelativePath
    """Relative path of the file in the volume"""
    field_ref: ObjectFieldSelector | None = None
    """A field of the pod"""
    resource_field_ref: ResourceFieldSelector | None = None
    """A resource of the container"""
    mode: FileMode | None = None
    """File mode bits"""


class EmptyDirSource(ApiModel):
    medium: Literal["", "Memory"] | None = None
    """'' for the node's disk, Memory for tmpfs"""
    size_limit: Quantity | None = None
    """Most the volume may hold"""


class ConfigMapSource(ApiModel):
    name: Name
    """ConfigMap in the job's namespace"""
    items: list[KeyToPath] | None = bounded_list(64, default=None)
    """Keys to project, and where; default every key"""
    default_mode: FileMode | None = None
    """File mode bits of the files"""
    optional: bool | None = None
    """Start even if the ConfigMap is missing"""


class SecretSource(ApiModel):
    secret_name: Name
    """Secret in the job's namespace (its creator must be allowed to get it)"""
    items: list[KeyToPath] | None = bounded_list(64, default=None)
    """Keys to project, and where; default every key"""
    default_mode: FileMode | None = None
    """File mode bits of the files"""
    optional: bool | None = None
    """Start even if the Secret is missing"""


class PersistentVolumeClaimSource(ApiModel):
    claim_name: Name
    """PersistentVolumeClaim in the job's namespace"""
    read_only: bool | None = None
    """Mount it read-only"""


class DownwardApiSource(ApiModel):
    items: list[DownwardApiFile] | None = bounded_list(32, default=None)
    """Pod fields and resources to project as files"""
    default_mode: FileMode | None = None
    """File mode bits of the files"""


class ProjectedConfigMap(ApiModel):
    name: Name
    """ConfigMap in the job's namespace"""
    items: list[KeyToPath] | None = bounded_list(64, default=None)
    """Keys to project, and where; default every key"""
    optional: bool | None = None
    """Start even if the ConfigMap is missing"""


class ProjectedSecret(ApiModel):
    name: Name
    """Secret in the job's namespace (its creator must be allowed to get it)"""
    items: list[KeyToPath] | None = bounded_list(64, default=None)
    """Keys to project, and where; default every key"""
    optional: bool | None = None
    """Start even if the Secret is missing"""


class ServiceAccountTokenProjection(ApiModel):
    path: RelativePath
    """Relative path of the token file"""
    audience: ShortText | None = None
    """Audience of the token; default the API server's"""
    expiration_seconds: int | None = Field(None, ge=600, le=2**32)
    """Lifetime of the token, at least 600"""


PROJECTIONS = ("config_map", "secret", "downward_api", "service_account_token")


class VolumeProjection(ApiModel):
    model_config = ApiModel.model_config | {"json_schema_extra": cel(
        _one_of_rule(PROJECTIONS, "a projected source"))}

    config_map: ProjectedConfigMap | None = None
    """A ConfigMap's keys"""
    secret: ProjectedSecret | None = None
    """A Secret's keys"""
    downward_api: DownwardApiSource | None = Field(None, alias=ALIASES["downward_api"])
    """Pod fields and resources"""
    service_account_token: ServiceAccountTokenProjection | None = None
    """A token of the job's trainer ServiceAccount"""

    @model_validator(mode="after")
    def _one_source(self):
        _exactly_one(self, PROJECTIONS, "a projected source")
        return self


class ProjectedSource(ApiModel):
    sources: list[VolumeProjection] = bounded_list(16, min_length=1)
    """What the volume combines"""
    default_mode: FileMode | None = None
    """File mode bits of the files"""


VOLUME_SOURCES = ("empty_dir", "config_map", "secret", "persistent_volume_claim",
                  "downward_api", "projected")


class Volume(ApiModel):
    """A pod volume of a kind the Pod Security `restricted` profile allows (inline CSI and
    generic ephemeral volumes aside)."""

    model_config = ApiModel.model_config | {"json_schema_extra": cel(
        _one_of_rule(VOLUME_SOURCES, "a volume"),
        (f"!(self.name in {list(RESERVED_VOLUMES)})",
         RESERVED_VOLUME),
    )}

    name: VolumeName
    """Volume name; config, scratch and dshm are ftjob's"""
    empty_dir: EmptyDirSource | None = None
    """A scratch directory that lives as long as the pod"""
    config_map: ConfigMapSource | None = None
    """A ConfigMap's keys as files"""
    secret: SecretSource | None = None
    """A Secret's keys as files"""
    persistent_volume_claim: PersistentVolumeClaimSource | None = None
    """A PersistentVolumeClaim"""
    downward_api: DownwardApiSource | None = Field(None, alias=ALIASES["downward_api"])
    """Pod fields and resources as files"""
    projected: ProjectedSource | None = None
    """Several sources in one directory"""

    @model_validator(mode="after")
    def _one_source_not_reserved(self):
        if self.name in RESERVED_VOLUMES:
            raise ValueError(RESERVED_VOLUME)
        _exactly_one(self, VOLUME_SOURCES, f"volume {self.name}")
        return self


def _under(path: str, parent: str) -> bool:
    return path.rstrip("/") == parent or path.startswith(parent + "/")


class VolumeMount(ApiModel):
    model_config = ApiModel.model_config | {"json_schema_extra": cel(
        (f"!(self.name in {list(RESERVED_VOLUMES)})",
         RESERVED_VOLUME),
        (" && ".join(f"!(self.mountPath == '{p}' || self.mountPath.startsWith('{p}/'))"
                     for p in RESERVED_MOUNT_PATHS),
         RESERVED_MOUNT),
    )}

    name: VolumeName
    """One of podTemplate.volumes"""
    mount_path: AbsolutePath
    """Absolute path in the trainer container; not /etc/ftjob, /scratch or /dev/shm"""
    sub_path: RelativePath | None = None
    """Mount only this relative path of the volume"""
    read_only: bool | None = None
    """Mount it read-only"""

    @model_validator(mode="after")
    def _not_reserved(self):
        if self.name in RESERVED_VOLUMES:
            raise ValueError(RESERVED_VOLUME)
        if any(_under(self.mount_path, path) for path in RESERVED_MOUNT_PATHS):
            raise ValueError(RESERVED_MOUNT)
        return self


# Container resources: the names the kubelet knows, or extended resources of a device plugin
# (a domain outside kubernetes.io, e.g. nvidia.com/gpu).
RESOURCE_NAME = (r"^(cpu|memory|ephemeral-storage|hugepages-[0-9]+(Ki|Mi|Gi)?|"
                 r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_SCALES = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
           "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9),
           "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18),
           **{f"{p}i": Decimal(2**(10 * (i + 1))) for i, p in enumerate("KMGTPE")}}


def quantity(text: str) -> Decimal:
    """The value of a Kubernetes quantity ("500m" is 0.5, "2Gi" is 2**31)."""
    match = re.match(QUANTITY, text)
    assert match, text
    number, suffix = match.group(1), match.group(3) or ""
    if suffix[:1] in ("e", "E"):
        return Decimal(number) * Decimal(10) ** int(suffix[1:])
    return Decimal(number) * _SCALES[suffix]


def _extended(name: str) -> bool:
    return "/" in name


def _check_resource_name(name: str) -> None:
    if not re.match(RESOURCE_NAME, name) or "kubernetes.io/" in name:
        raise ValueError(f"{name!r} is not a resource a container can ask for: use cpu, "
                         "memory, ephemeral-storage, hugepages-<size> or a device plugin's "
                         "domain/name (e.g. nvidia.com/gpu)")


ResourceList = dict[ShortText, Quantity]


def resource_list(description: str):
    return Field(None, max_length=16, description=description, json_schema_extra=cel(
        (f"self.all(k, k.matches({cel_string(RESOURCE_NAME)}) && "
         "!k.contains('kubernetes.io/'))",
         "resource names are cpu, memory, ephemeral-storage, hugepages-<size> or a device "
         "plugin's domain/name (e.g. nvidia.com/gpu)")))


class Resources(ApiModel):
    """Container resources of each training pod; ftjob adds nvidia.com/gpu from
    distributed.gpusPerNode."""

    model_config = ApiModel.model_config | {"json_schema_extra": cel(
        ("!has(self.requests) || !has(self.limits) || self.requests.all(k, "
         "!(k in self.limits) || quantity(self.requests[k]).compareTo("
         "quantity(self.limits[k])) <= 0)", "a request must not exceed its limit"),
        ("!has(self.requests) || self.requests.all(k, !k.contains('/') || "
         "(has(self.limits) && k in self.limits && "
         "quantity(self.requests[k]).compareTo(quantity(self.limits[k])) == 0))",
         "a device plugin's resource needs a limit equal to its request"),
        *[(f"!has(self.{side}) || self.{side}.all(k, !k.contains('/') || "
           f"quantity(self.{side}[k]).isInteger())",
           "a device plugin's resource is counted in whole numbers") for side in
          ("requests", "limits")],
    )}

    requests: ResourceList | None = resource_list("What the scheduler reserves for each pod")
    limits: ResourceList | None = resource_list("What each pod may use at most")

    @model_validator(mode="after")
    def _requests_fit_limits(self):
        requests, limits = self.requests or {}, self.limits or {}
        for name in {**requests, **limits}:
            _check_resource_name(name)
        for name, amount in requests.items():
            if name in limits and quantity(amount) > quantity(limits[name]):
                raise ValueError(f"the request for {name} ({amount}) exceeds its limit "
                                 f"({limits[name]})")
            if _extended(name) and (name not in limits or
                                    quantity(amount) != quantity(limits[name])):
                raise ValueError(f"{name} is a device plugin's resource: it needs a limit "
                                 "equal to its request (or only a limit)")
        for name, amount in {**requests, **limits}.items():
            if _extended(name) and quantity(amount) != quantity(amount).to_integral_value():
                raise ValueError(f"{name} must be a whole number, got {amount}")
        return self


class PodTemplate(ApiModel):
    """The parts of a training pod a user may shape. Anything not listed here cannot be set,
    which is how privileged containers, host namespaces, host paths and added capabilities
    stay out."""

    model_config = ApiModel.model_config | {"json_schema_extra": cel(
        ("!has(self.volumes) || self.volumes.all(v, self.volumes.exists_one(w, "
         "w.name == v.name))", UNIQUE_VOLUMES),
        ("!has(self.volumeMounts) || self.volumeMounts.all(m, self.volumeMounts.exists_one("
         "n, n.mountPath == m.mountPath))", UNIQUE_MOUNT_PATHS),
        ("!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && "
         "self.volumes.exists(v, v.name == m.name))",
         "every volumeMount must name one of podTemplate.volumes"),
    )}

    labels: LabelMap | None = label_map(64, "Labels of the training pods")
    annotations: dict[LabelKey, Annotated[str, StringConstraints(max_length=4096)]] | None = (
        label_map(64, "Annotations of the training pods"))
    node_selector: LabelMap | None = label_map(
        64, "Node labels the training pods require, e.g. a GPU product")
    tolerations: list[Toleration] | None = bounded_list(
        64, default=None, description="Taints the training pods tolerate (ftjob adds "
        "nvidia.com/gpu itself for GPU jobs)")
    affinity: Affinity | None = Field(None, description="Node and pod (anti-)affinity")
    env: list[EnvVar] | None = bounded_list(128, default=None, description="Extra "
                                            "environment variables of the trainer container")
    volumes: list[Volume] | None = bounded_list(32, default=None, description="Extra volumes")
    volume_mounts: list[VolumeMount] | None = bounded_list(
        32, default=None, description="Where the extra volumes are mounted in the trainer "
        "container")
    image_pull_secrets: list[Name] | None = bounded_list(
        16, default=None, description="Secrets to pull the trainer image with")
    scheduler_name: Name | None = Field(None, description="Scheduler of the training pods")

    @model_validator(mode="after")
    def _volumes_fit_together(self):
        names = [volume.name for volume in self.volumes or []]
        if len(set(names)) != len(names):
            raise ValueError(UNIQUE_VOLUMES)
        paths = [mount.mount_path for mount in self.volume_mounts or []]
        if len(set(paths)) != len(paths):
            raise ValueError(UNIQUE_MOUNT_PATHS)
        for mount in self.volume_mounts or []:
            if mount.name not in names:
                raise ValueError(f"volumeMount {mount.name} names no volume of "
                                 "podTemplate.volumes")
        return self
