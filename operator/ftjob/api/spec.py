"""The FineTuneJob spec: the single source of truth for the CRD, the operator and the CLI.

Cross-field rules are written twice, on purpose: as a pydantic validator (so `ftjob validate`
and the operator give the same message offline) and as a CEL rule in
`x-kubernetes-validations` (so the API server refuses the object at admission). The
validation table in tests/unit checks the pydantic side; the cluster tests check CEL.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator
from pydantic.alias_generators import to_camel, to_snake

from .base import (
    JOB_NAME,
    JOB_NAME_MAX_LENGTH,
    ApiModel,
    EndpointUrl,
    LongText,
    Name,
    ShortText,
    StorageUri,
    bounded_list,
    cel,
    cel_string,
)
from .pod import PodTemplate, Resources
from .tasks import SETTINGS_FIELDS, TASKS, CausalLmSpec, DpoSpec, MaskedLmSpec, SftSpec, \
    Task, TokenClassificationSpec, task_fits
from .training_args import check_training_arguments

Strategy = Literal["ddp", "fsdp", "deepspeed"]
Launcher = Literal["torchrun", "accelerate"]


class ModelSpec(ApiModel):
    name: LongText = Field(
        description="Hugging Face hub id, local directory, or storage URI (s3://, gs://, file://)"
    )
    revision: ShortText | None = Field(None, description="Hub revision (branch, tag or commit)")
    task: Task = Field("sequence-classification", description=(
        "What the model learns; a task with settings reads them from the spec section "
        "named after it (maskedLm, causalLm, tokenClassification, sft, dpo)"))
    num_labels: int | None = Field(None, ge=1, le=100_000)
    """Classes of a sequence-classification head; inferred from the train labels if omitted"""
    trust_remote_code: bool = False
    """Run the Python code a hub model ships (its own modeling files); only for models you
    trust"""


SCRIPT_PATH_ON_CLUSTER = (
    "spec.script.path: on the cluster a script is a storage URI (s3://, gs://, ...) or an "
    "absolute path inside the image; a relative path names a file on your machine, which "
    "only ftjob run can read: upload it to storage or bake it into the image")
URI_SCHEME = "^[a-zA-Z][a-zA-Z0-9+.-]*://"


def script_path_on_cluster(path: str) -> str | None:
    """The problem with a script path for the cluster, or None. The API server checks the
    same with the CEL rule on ScriptSpec; `ftjob run` reads relative paths, so the model
    itself accepts them."""
    if path.startswith("/") or re.match(URI_SCHEME, path):
        return None
    return SCRIPT_PATH_ON_CLUSTER


class ScriptSpec(ApiModel):
    """Your own training program, run by the launcher in place of a built-in task, under a
    supervisor that gives it checkpoints, resume, status and export (see the README's "Your
    own script" for the variables it reads)"""

    model_config = ApiModel.model_config | {"json_schema_extra": cel(
        (f"self.path.startsWith('/') || self.path.matches({cel_string(URI_SCHEME)})",
         SCRIPT_PATH_ON_CLUSTER))}

    path: LongText = Field(description=(
        "The script: for ftjob run a path relative to the YAML; on the cluster a path inside "
        "the image or a storage URI (s3://, gs://, ...) downloaded before it starts"))
    args: list[LongText] = bounded_list(128, default_factory=list, description=(
        "Its command-line arguments"))


class LoraSpec(ApiModel):
    """Parameter-efficient fine-tuning: train a LoRA adapter (peft) instead of every weight"""

    type: Literal["lora"] = "lora"
    """The method; LoRA is the one supported"""
    r: int = Field(8, ge=1, le=1024)
    """Rank of the low-rank update matrices"""
    alpha: float = Field(16, gt=0, le=4096)
    """Scaling of the update (the update is multiplied by alpha / r)"""
    dropout: float = Field(0.05, ge=0, lt=1)
    """Dropout on the adapter's input"""
    target_modules: list[ShortText] | None = bounded_list(64, default=None, min_length=1)
    """Names of the modules that get an adapter (e.g. q_proj, v_proj); peft's default for
    the architecture when omitted"""
    merge_on_export: bool = False
    """Also export the adapter merged into the base weights (output's merged/), a plain
    Transformers model that loads without peft"""


class DatasetFiles(ApiModel):
    """Data files by local path (ftjob run) or storage URI"""

    train: LongText
    """The training data file"""
    eval: LongText | None = None
    """The evaluation data file"""


class DatasetSplits(ApiModel):
    """Which splits of a hub dataset to use"""

    train: ShortText = "train"
    """The training split"""
    eval: ShortText | None = "validation"
    """The evaluation split"""


EVAL_SPLIT_TWICE = "files.eval is the eval data; validationSplitPercentage makes it from train"


class DatasetSpec(ApiModel):
    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            ("has(self.name) != has(self.files)", "set exactly one of name and files"),
            ("!has(self.config) || has(self.name)", "config needs a hub dataset name"),
            ("!has(self.validationSplitPercentage) || !has(self.files) || "
             "!has(self.files.eval)", EVAL_SPLIT_TWICE),
        )
    }

    name: LongText | None = Field(None, description="Hugging Face hub dataset id or local dir")
    config: ShortText | None = Field(None, description="Hub dataset configuration, e.g. mrpc")
    files: DatasetFiles | None = Field(
        None, description="Data files by path or storage URI: csv, json, jsonl or parquet"
    )
    format: Literal["csv", "json", "parquet"] | None = Field(
        None, description="File format; inferred from the file extension when omitted"
    )
    text_columns: list[ShortText] = bounded_list(3, min_length=1, default=["text"],
                                                 description=(
        "The columns the task reads: one or two texts (a sentence pair) for classification "
        "and causal-lm; one for masked-lm and token-classification (its words); [messages] "
        "or [prompt, completion] for sft; [prompt, chosen, rejected] for dpo"))
    label_column: ShortText | None = "label"
    """The column holding the labels (classification) or tags (token-classification)"""
    splits: DatasetSplits = Field(default_factory=DatasetSplits)
    max_length: int = Field(128, ge=8, le=131_072)
    """Tokens per example; longer texts are truncated"""
    max_train_samples: int | None = Field(None, ge=1)
    """Use only the first N training rows (a quick trial run)"""
    max_eval_samples: int | None = Field(None, ge=1)
    """Use only the first N evaluation rows"""
    validation_split_percentage: int | None = Field(None, ge=1, le=50, description=(
        "Without eval data (no files.eval, or a hub dataset without splits.eval), the first "
        "N% of the train rows become the eval split (run_mlm's validation_split_percentage)"))

    @model_validator(mode="after")
    def _one_source(self):
        if (self.name is None) == (self.files is None):
            raise ValueError("set exactly one of name and files")
        if self.config is not None and self.name is None:
            raise ValueError("config needs a hub dataset name")
        if self.validation_split_percentage and self.files and self.files.eval:
            raise ValueError(EVAL_SPLIT_TWICE)
        return self


class DeepSpeedSpec(ApiModel):
    """DeepSpeed ZeRO settings (strategy deepspeed); ftjob generates the DeepSpeed config"""

    zero_stage: Literal[0, 1, 2, 3] = 2
    """ZeRO stage: 1 shards optimizer states, 2 also gradients, 3 also parameters"""
    offload_optimizer: bool = False
    """Keep optimizer states in CPU memory"""
    offload_params: bool = False
    """Keep parameters in CPU memory (needs zeroStage 3)"""
    config: dict[str, Any] | None = Field(
        None, description="A complete DeepSpeed config; replaces the generated one"
    )

    @model_validator(mode="after")
    def _offload_params_needs_stage3(self):
        if self.offload_params and self.zero_stage != 3:
            raise ValueError("offloadParams needs zeroStage 3")
        return self


class FsdpSpec(ApiModel):
    """PyTorch FSDP settings (strategy fsdp)"""

    sharding: Literal["full_shard", "shard_grad_op", "hybrid_shard", "no_shard"] = "full_shard"
    """What is sharded across ranks: full_shard (parameters, gradients, optimizer states),
    shard_grad_op (gradients and optimizer states), hybrid_shard (full within a node,
    replicated across nodes), no_shard (like DDP)"""
    auto_wrap: bool = True
    """Wrap each transformer layer as its own FSDP unit"""
    offload: bool = False
    """Keep parameters and gradients in CPU memory"""


ELASTIC_REMOVED = (
    "elastic was removed: no pod replaced a lost node, so an elastic job behaved like a "
    "fixed-size one; a lost node restarts the attempt from the newest complete checkpoint "
    "(runPolicy.backoffLimit counts it). Remove distributed.elastic")


class ElasticSpec(ApiModel):
    """Removed: refused with a message saying so (kept only to recognise old specs)"""

    min_nodes: int | None = Field(None, ge=1, le=1000)
    """Removed"""
    max_nodes: int | None = Field(None, ge=1, le=1000)
    """Removed"""
    max_restarts: int | None = Field(None, ge=0, le=100)
    """Removed"""


class DistributedSpec(ApiModel):
    """How many nodes and processes train, and how the model is spread over them"""

    model_config = ApiModel.model_config | {
        "json_schema_extra": cel(
            ("!has(self.deepspeed) || self.strategy == 'deepspeed'",
             "deepspeed settings need strategy deepspeed"),
            ("!has(self.fsdp) || self.strategy == 'fsdp'", "fsdp settings need strategy fsdp"),
            ("!has(self.elastic)", ELASTIC_REMOVED),
        )
    }

    nodes: int = Field(1, ge=1, le=1000)
    """Pods (one per node) in each attempt"""
    gpus_per_node: int = Field(0, ge=0, le=64)
    """nvidia.com/gpu each pod requests; 0 trains on CPU"""
    procs_per_node: int | None = Field(
        None, ge=1, le=64, description="Processes per node; defaults to gpusPerNode, or 1 on CPU"
    )
    launcher: Launcher = "torchrun"
    """What starts the processes on each node: torchrun or accelerate launch"""
    strategy: Strategy = "ddp"
    """ddp (every rank holds the whole model), fsdp or deepspeed (sharded)"""
    deepspeed: DeepSpeedSpec | None = None
    fsdp: FsdpSpec | None = None
    elastic: ElasticSpec | None = None
    """Removed: a spec that sets it is refused, saying so"""

    @model_validator(mode="after")
    def _strategy_settings(self):
        if self.deepspeed is not None and self.strategy != "deepspeed":
            raise ValueError("deepspeed settings need strategy deepspeed")
        if self.fsdp is not None and self.strategy != "fsdp":
            raise ValueError("fsdp settings need strategy fsdp")
        if self.elastic is not None:
            raise ValueError(ELASTIC_REMOVED)
        return self

    @property
    def nproc_per_node(self) -> int:
        return self.procs_per_node or self.gpus_per_node or 1


class CheckpointSpec(ApiModel):
    """Where checkpoints are stored; each attempt resumes from the newest complete one"""

    uri: StorageUri | None = Field(
        None, description="Where checkpoints go; default from the operator's settings"
    )
    credentials_secret: Name | None = Field(
        None, description="Secret with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the "
        "provider's variables), mounted as environment variables"
    )
    endpoint_url: EndpointUrl | None = Field(
        None, description="S3-compatible endpoint, e.g. http://minio.storage:9000")
    keep: int = Field(3, ge=1, le=100, description="Complete checkpoints kept in storage")


class PushToHubSpec(ApiModel):
    """After the export, the final model, tokenizer and metrics are also uploaded to a
    Hugging Face Hub model repository (created if missing)."""

    repo: ShortText = Field(description="Hub model repository, e.g. my-org/minilm-mrpc")
    token_secret: Name = Field(description="Secret whose key `token` holds a Hub token with "
                                           "write access (on the cluster; `ftjob run` uses "
                                           "HF_TOKEN or the `hf auth login` token)")
    private: bool = Field(True, description="Create the repository as private")


class OutputSpec(ApiModel):
    """Where the trained model goes"""

    uri: StorageUri | None = Field(None, description="Where the final model is exported")
    credentials_secret: Name | None = None
    """Secret with the storage credentials of output.uri; default
    checkpoints.credentialsSecret"""
    endpoint_url: EndpointUrl | None = Field(
        None, description="S3-compatible endpoint of output.uri; default checkpoints.endpointUrl")
    push_to_hub: PushToHubSpec | None = None


class RunPolicy(ApiModel):
    """Restarts, deadlines, queueing and checks around the run"""

    backoff_limit: int = Field(3, ge=0, le=100)
    """Failed attempts restarted (from the newest checkpoint) before the job fails"""
    preflight: Literal["enforce", "warn", "off"] = Field("enforce", description=(
        "Checks before the first attempt requests a GPU. The data is loaded and prepared by "
        "the task's own code in a CPU-only pod (same image and credentials; storage is "
        "checked writable too), reported as the DataChecked condition; a GPU job is also "
        "sized against the GPU memory its nodes report (MemoryFit condition). enforce: a "
        "failed check ends the job Failed (InvalidDataset, NotFound, StorageAccessDenied, "
        "DoesNotFitMemory, ...) before any GPU pod exists; warn: the condition says so and "
        "training starts anyway; off: no check. A spec.script job has no task to check its "
        "data with"))
    active_deadline_seconds: int | None = Field(None, ge=1)
    """Seconds after the first attempt started at which the job fails (DeadlineExceeded)"""
    ttl_seconds_after_finished: int | None = Field(None, ge=0)
    """Seconds after the job finished at which it is deleted, with all it owns"""
    suspend: bool = False
    """true stops the pods (their checkpoints stay); false resumes from the newest one"""
    queue_name: Name | None = None
    """Kueue LocalQueue that admits the job"""
    priority_class_name: Name | None = None
    """PriorityClass of the pods (and Kueue's workload priority)"""


# What a running job is made of cannot change under it; these stay editable: suspend to
# pause, and the limits around the run.
MUTABLE_RUN_POLICY = ("suspend", "backoffLimit", "activeDeadlineSeconds",
                      "ttlSecondsAfterFinished")
IMMUTABLE_SPEC_FIELDS = ("model", "peft", "dataset", "training", "metrics", "distributed",
                         "checkpoints", "output", "resources", "image", "podTemplate",
                         *(to_camel(section) for section in SETTINGS_FIELDS))


def _immutable(path: str) -> tuple[str, str]:
    return (f"has(self.{path}) == has(oldSelf.{path}) && "
            f"(!has(self.{path}) || self.{path} == oldSelf.{path})",
            f"spec.{path} cannot change once created; only runPolicy."
            f"{{{','.join(MUTABLE_RUN_POLICY)}}} can")


def _immutable_run_policy(name: str) -> tuple[str, str]:
    """runPolicy itself may be absent on either side, so compare with '' for unset."""
    def value(obj: str) -> str:
        return (f"(has({obj}.runPolicy) && has({obj}.runPolicy.{name}) ? "
                f"{obj}.runPolicy.{name} : '')")
    return (f"{value('self')} == {value('oldSelf')}",
            f"spec.runPolicy.{name} cannot change once created")


def settings_for_task(field: str) -> str:
    return f"spec.{to_camel(field)} is for task {SETTINGS_FIELDS[field]} only"


def _settings_match_task(field: str) -> tuple[str, str]:
    task = "(has(self.model.task) ? self.model.task : 'sequence-classification')"
    return (f"!has(self.{to_camel(field)}) || {task} == '{SETTINGS_FIELDS[field]}'",
            settings_for_task(field))


TASK_FIELDS = ("training", "metrics", "peft", *(to_camel(f) for f in SETTINGS_FIELDS))
MODEL_AND_DATA_NEEDED = "spec.model and spec.dataset are required for a built-in task " \
    "(or give spec.script, your own program)"
SCRIPT_EXCLUDES = f"spec.script runs your own program: {', '.join(TASK_FIELDS)}, " \
    "model.task, output.pushToHub and a distributed.strategy other than ddp are for the " \
    "built-in tasks; pass your settings in spec.script.args"


class FineTuneJobSpec(ApiModel):
    """What to fine-tune, on which data, how, on how many nodes, and where the results go"""

    model_config = ApiModel.model_config | {"json_schema_extra": cel(
        *[_immutable(field) for field in IMMUTABLE_SPEC_FIELDS],
        *[_immutable_run_policy(field) for field in ("queueName", "priorityClassName")],
        *[_settings_match_task(field) for field in SETTINGS_FIELDS],
        ("has(self.script) || (has(self.model) && has(self.dataset))",
         MODEL_AND_DATA_NEEDED),
        ("!has(self.script) || !(" + " || ".join(
            [f"has(self.{field})" for field in TASK_FIELDS]
            + ["(has(self.model) && self.model.task != 'sequence-classification')",
               "(has(self.output) && has(self.output.pushToHub))",
               "(has(self.distributed) && has(self.distributed.strategy) && "
               "self.distributed.strategy != 'ddp')"]) + ")", SCRIPT_EXCLUDES))}

    model: ModelSpec | None = Field(None, description=(
        "The model to fine-tune; with spec.script, only its name reaches the script "
        "(FTJOB_MODEL)"))
    script: ScriptSpec | None = None
    peft: LoraSpec | None = None
    dataset: DatasetSpec | None = Field(None, description=(
        "The data; with spec.script, its name or files reach the script (FTJOB_DATASET, "
        "FTJOB_TRAIN_FILE, FTJOB_EVAL_FILE)"))
    training: dict[str, Any] = Field(
        default_factory=dict,
        description="Hugging Face TrainingArguments, camelCase or snake_case names",
    )
    metrics: list[ShortText] = bounded_list(16, default_factory=list)
    """Evaluation metrics: for sequence-classification any evaluate metric (accuracy, f1,
    ...); token-classification precision, recall, f1, accuracy; masked-lm and causal-lm
    perplexity, accuracy; sft perplexity; none for dpo"""
    masked_lm: MaskedLmSpec | None = None
    causal_lm: CausalLmSpec | None = None
    token_classification: TokenClassificationSpec | None = None
    sft: SftSpec | None = None
    dpo: DpoSpec | None = None
    distributed: DistributedSpec = Field(default_factory=DistributedSpec)
    checkpoints: CheckpointSpec = Field(default_factory=CheckpointSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    run_policy: RunPolicy = Field(default_factory=RunPolicy)
    resources: Resources | None = None
    image: ShortText | None = Field(None, description="Trainer image; default from the operator")
    pod_template: PodTemplate | None = None

    @field_validator("training")
    @classmethod
    def _training_arguments(cls, training):
        return check_training_arguments(training)

    @model_validator(mode="after")
    def _task_fits(self):
        if self.script is not None:
            given = [f for f in TASK_FIELDS if to_snake(f) in self.model_fields_set]
            # The API server fills in model.task's default, so only another task counts.
            if given or (self.model and self.model.task != "sequence-classification") or \
                    self.output.push_to_hub or self.distributed.strategy != "ddp":
                raise ValueError(SCRIPT_EXCLUDES)
            return self
        if self.model is None or self.dataset is None:
            raise ValueError(MODEL_AND_DATA_NEEDED)
        problems = [settings_for_task(field) for field in SETTINGS_FIELDS
                    if getattr(self, field) is not None
                    and SETTINGS_FIELDS[field] != self.model.task]
        problems += task_fits(self.model.task, self.metrics, self.dataset.text_columns)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def task_settings(self) -> ApiModel | None:
        """The task's settings, defaults filled in; None for a task without settings (or a
        script)."""
        if self.model is None:
            return None
        info = TASKS[self.model.task]
        if info.settings is None:
            return None
        return getattr(self, info.section) or info.settings()


class ObjectMeta(ApiModel):
    """metav1.ObjectMeta: what ftjob reads is typed; the rest of its fields pass as they
    are (the API server sets or checks them), and any other name is an unknown field, as
    the API server's strict decoding refuses it."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=JOB_NAME_MAX_LENGTH,
                                           pattern=JOB_NAME)]
    namespace: Name | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    generate_name: Any = None
    self_link: Any = None
    uid: Any = None
    resource_version: Any = None
    generation: Any = None
    creation_timestamp: Any = None
    deletion_timestamp: Any = None
    deletion_grace_period_seconds: Any = None
    owner_references: Any = None
    finalizers: Any = None
    managed_fields: Any = None


class FineTuneJob(ApiModel):
    api_version: Literal["ftjob.dev/v1alpha1"]
    kind: Literal["FineTuneJob"]
    metadata: ObjectMeta
    spec: FineTuneJobSpec
    status: Any = None  # the operator's and the trainer's (api/status.py), never the user's
