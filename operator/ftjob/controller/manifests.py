"""Pure builders for everything the operator creates for a FineTuneJob: no I/O, no clock,
deterministic names. The reconcile decides *whether* to create; these decide *what*."""

from __future__ import annotations

import json
import math

from dataclasses import dataclass, field


from ftjob_trainer.memory_fit import FIT_REQUEST_ENV

from .. import API_VERSION, EXIT_PREEMPTED, GROUP, KIND, PLURAL, launch, render
from ..api.pod import FTJOB_MOUNTS
from ..api.spec import FineTuneJob, script_path_on_cluster

CONFIG_DIR = FTJOB_MOUNTS["config"]
SCRATCH_DIR = FTJOB_MOUNTS["scratch"]
TERMINATION_LOG = "/dev/termination-log"
RENDEZVOUS_PORT = launch.RENDEZVOUS_PORT
CONTAINER = "trainer"
GPU_RESOURCE = "nvidia.com/gpu"
# Save + upload of the SIGTERM checkpoint must fit in this; torchrun itself SIGKILLs its
# workers 30 s after forwarding SIGTERM.
TERMINATION_GRACE_SECONDS = 60

JOB_NAME_LABEL = f"{GROUP}/job-name"
ATTEMPT_LABEL = f"{GROUP}/attempt"
RESUME_ANNOTATION = f"{GROUP}/resume-from"
KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_VERSION = "v1beta2"
# How long whether the cluster serves Kueue's API is trusted before discovery is asked again.
KUEUE_RECHECK_SECONDS = 60.0
KUEUE_QUEUE_LABEL = f"{KUEUE_GROUP}/queue-name"


# Enough to tokenize and prepare a dataset's first rows; no GPU.
DATA_CHECK_RESOURCES = {"requests": {"cpu": "1", "memory": "2Gi"},
                        "limits": {"memory": "8Gi"}}


@dataclass(frozen=True)
class Defaults:
    """What the operator fills in where a spec is silent (the Helm chart's defaults)."""

    image: str = "ghcr.io/ftjob/trainer:0.1.0"
    checkpoint_uri: str | None = None  # a job's checkpoints go under <this>/<ns>/<name>
    credentials_secret: str | None = None
    endpoint_url: str | None = None
    queue_name: str | None = None
    resources: dict = field(default_factory=dict)
    data_check_resources: dict = field(default_factory=lambda: dict(DATA_CHECK_RESOURCES))
    data_check_timeout_seconds: int = 900


class SpecProblem(ValueError):
    """A valid spec that this operator still cannot run; names the field."""


ATTEMPT_INFIX = "-attempt-"


@dataclass(frozen=True)
class Names:
    job: str

    @property
    def config_map(self) -> str:
        return f"{self.job}-trainer-config"

    @property
    def service(self) -> str:
        return self.job

    @property
    def service_account(self) -> str:
        return f"{self.job}-trainer"

    role = role_binding = service_account

    def attempt(self, attempt: int) -> str:
        return f"{self.job}{ATTEMPT_INFIX}{attempt}"

    @staticmethod
    def finetunejob_of(job_name: str) -> str | None:
        """The FineTuneJob an attempt's Job is named after, or None for another name."""
        job, infix, attempt = job_name.rpartition(ATTEMPT_INFIX)
        return job if infix and job and attempt.isdigit() else None

    @property
    def data_check(self) -> str:
        return f"{self.job}-data-check"


def labels(job: FineTuneJob, attempt: int | None = None) -> dict:
    found = {
        "app.kubernetes.io/name": "ftjob-trainer",
        "app.kubernetes.io/instance": job.metadata.name,
        "app.kubernetes.io/managed-by": "ftjob",
        JOB_NAME_LABEL: job.metadata.name,
    }
    if attempt is not None:
        found[ATTEMPT_LABEL] = str(attempt)
    return found


def owner_reference(job: FineTuneJob, uid: str) -> dict:
    return {"apiVersion": API_VERSION, "kind": KIND, "name": job.metadata.name, "uid": uid,
            "controller": True, "blockOwnerDeletion": True}


def _metadata(job: FineTuneJob, uid: str, name: str, attempt: int | None = None) -> dict:
    return {"name": name, "namespace": job.metadata.namespace,
            "labels": labels(job, attempt), "ownerReferences": [owner_reference(job, uid)]}


def check_for_cluster(job: FineTuneJob, defaults: Defaults) -> None:
    """What a valid spec still needs to run on this cluster (SpecProblem names the field):
    the API server checks the script path too; this covers objects admitted before."""
    checkpoint_uri(job, defaults)
    if job.spec.script and (problem := script_path_on_cluster(job.spec.script.path)):
        raise SpecProblem(problem)


def checkpoint_uri(job: FineTuneJob, defaults: Defaults) -> str:
    if job.spec.checkpoints.uri:
        return job.spec.checkpoints.uri
    if defaults.checkpoint_uri:
        return f"{defaults.checkpoint_uri.rstrip('/')}/{job.metadata.namespace}/{job.metadata.name}"
    raise SpecProblem("spec.checkpoints.uri is required: this operator has no default "
                      "checkpoint storage (Helm value storage.checkpointUri)")


def placement(job: FineTuneJob, defaults: Defaults) -> render.Placement:
    checkpoints = checkpoint_uri(job, defaults)
    return render.Placement(
        work_dir=SCRATCH_DIR,
        checkpoint_uri=checkpoints,
        output_uri=job.spec.output.uri or f"{checkpoints.rstrip('/')}/model",
        # <checkpoints.uri>/events.jsonl: the metric history, written first to the work dir
        events_uri=checkpoints,
        terminal=False,
        kubernetes_status=True,
        termination_log=TERMINATION_LOG,
    )


def build_config_map(job: FineTuneJob, uid: str, defaults: Defaults) -> dict:
    spec = job.spec
    job = job.model_copy(update={"spec": spec.model_copy(update={
        "checkpoints": spec.checkpoints.model_copy(
            update={"endpoint_url": spec.checkpoints.endpoint_url or defaults.endpoint_url})})})
    # The rendezvous host changes with every attempt: the launch command passes it.
    data = render.trainer_files(job, placement(job, defaults), RENDEZVOUS_PORT)
    names = Names(job.metadata.name)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _metadata(job, uid, names.config_map), "data": data}


def build_service(job: FineTuneJob, uid: str) -> dict:
    """Headless, so every pod of an attempt gets a DNS name and index 0 is the rendezvous."""
    names = Names(job.metadata.name)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _metadata(job, uid, names.service),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": {JOB_NAME_LABEL: job.metadata.name},
                     "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT}]}}


def build_service_account(job: FineTuneJob, uid: str) -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": _metadata(job, uid, Names(job.metadata.name).service_account)}


def build_role(job: FineTuneJob, uid: str) -> dict:
    """The trainer may read and patch the status of its own FineTuneJob, nothing else."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": _metadata(job, uid, Names(job.metadata.name).role),
            "rules": [{"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"],
                       "resourceNames": [job.metadata.name], "verbs": ["get", "patch"]}]}


def build_role_binding(job: FineTuneJob, uid: str) -> dict:
    names = Names(job.metadata.name)
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": _metadata(job, uid, names.role_binding),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": names.role},
            "subjects": [{"kind": "ServiceAccount", "name": names.service_account,
                          "namespace": job.metadata.namespace}]}


def rendezvous_host(job: FineTuneJob, attempt: int) -> str:
    """Index 0 of the attempt: Indexed Job pods are named <job>-<index> in the subdomain."""
    names = Names(job.metadata.name)
    return f"{names.attempt(attempt)}-0.{names.service}"


def launch_command(job: FineTuneJob, attempt: int) -> list[str]:
    return launch.launch_command(job, launch.in_pod(
        CONFIG_DIR, "$(JOB_COMPLETION_INDEX)", rendezvous_host(job, attempt)))


def _resources(job: FineTuneJob, defaults: Defaults) -> dict:
    given = job.spec.resources
    resources = {"requests": dict((given.requests if given else None)
                                  or defaults.resources.get("requests", {})),
                 "limits": dict((given.limits if given else None)
                                or defaults.resources.get("limits", {}))}
    gpus = job.spec.distributed.gpus_per_node
    if gpus:
        resources["limits"][GPU_RESOURCE] = str(gpus)
        resources["requests"].pop(GPU_RESOURCE, None)
    return {key: value for key, value in resources.items() if value}


def _credential_sources(job: FineTuneJob, defaults: Defaults) -> list[dict]:
    """Storage credentials stay in their Secrets: the pod reads them as environment
    variables (AWS_ACCESS_KEY_ID, ... whatever keys the Secret holds)."""
    secrets = [job.spec.checkpoints.credentials_secret or defaults.credentials_secret,
               job.spec.output.credentials_secret]
    unique = [name for index, name in enumerate(secrets) if name and name not in secrets[:index]]
    return [{"secretRef": {"name": name}} for name in unique]


def _pod_template(job: FineTuneJob, defaults: Defaults, attempt: int, command: list[str],
                  resources: dict) -> dict:
    """The pod of an attempt (or of the data check, attempt 0): the job's image,
    credentials, volumes and placement, the user's pod template merged in."""
    spec = job.spec
    names = Names(job.metadata.name)
    template = spec.pod_template
    env = [
        {"name": "FTJOB_ATTEMPT", "value": str(attempt)},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    if spec.output.push_to_hub:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": spec.output.push_to_hub.token_secret, "key": "token"}}})
    env += [item.to_wire() for item in (template.env if template and template.env else [])]
    mounts = [{"name": name, "mountPath": path, **({"readOnly": True} if name == "config"
                                                    else {})}
              for name, path in FTJOB_MOUNTS.items()]
    volumes = [{"name": "config", "configMap": {"name": names.config_map}},
               {"name": "scratch", "emptyDir": {}},
               {"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    tolerations = [t.to_wire() for t in template.tolerations or []] if template else []
    if spec.distributed.gpus_per_node:
        # The data check may land on a GPU node too (some clusters have no other kind); it
        # requests no GPU.
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    container = {
        "name": CONTAINER,
        "image": spec.image or defaults.image,
        "command": command,
        "env": env,
        "envFrom": _credential_sources(job, defaults),
        "resources": resources,
        "volumeMounts": mounts + [m.to_wire() for m in
                                  (template.volume_mounts or [] if template else [])],
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }
    pod_labels = {**(template.labels or {} if template else {}), **labels(job, attempt)}
    annotations = dict(template.annotations or {}) if template else {}
    pod_spec = {
        "restartPolicy": "Never",
        "serviceAccountName": names.service_account,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                            "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes + [v.to_wire() for v in (template.volumes or [] if template else [])],
    }
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if template and template.node_selector:
        pod_spec["nodeSelector"] = dict(template.node_selector)
    if template and template.affinity:
        pod_spec["affinity"] = template.affinity.to_wire()
    if template and template.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in template.image_pull_secrets]
    if template and template.scheduler_name:
        pod_spec["schedulerName"] = template.scheduler_name
    if spec.run_policy.priority_class_name:
        pod_spec["priorityClassName"] = spec.run_policy.priority_class_name
    return {"metadata": {"labels": pod_labels, "annotations": annotations}, "spec": pod_spec}


def build_job(job: FineTuneJob, uid: str, attempt: int, defaults: Defaults,
              resume_from: str | None = None, grace_seconds: float = 0) -> dict:
    """One Indexed Job per attempt: completions = parallelism = nodes, no retries of its own
    (the operator restarts the whole group), pods named so index 0 is the rendezvous.
    `grace_seconds`: what a final save was measured to need; the pods' termination grace
    period is at least that, so a preemption or a drain leaves a complete checkpoint."""
    spec = job.spec
    names = Names(job.metadata.name)
    template = _pod_template(job, defaults, attempt, launch_command(job, attempt),
                             _resources(job, defaults))
    template["spec"]["terminationGracePeriodSeconds"] = max(
        TERMINATION_GRACE_SECONDS, math.ceil(grace_seconds))
    template["spec"]["subdomain"] = names.service
    template["spec"]["containers"][0]["ports"] = [
        {"name": "rendezvous", "containerPort": RENDEZVOUS_PORT}]
    metadata = _metadata(job, uid, names.attempt(attempt), attempt)
    queue = spec.run_policy.queue_name or defaults.queue_name
    if queue:
        metadata["labels"][KUEUE_QUEUE_LABEL] = queue
    if resume_from:
        metadata["annotations"] = {RESUME_ANNOTATION: resume_from}
    nodes = spec.distributed.nodes
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": metadata,
        "spec": {
            "completionMode": "Indexed", "completions": nodes, "parallelism": nodes,
            "backoffLimit": 0,
            # A trainer that saved and stopped on SIGTERM is preempted, not failed: when
            # Kueue suspends the Job to preempt it, or a node is drained, the Job counts no
            # failure (so backoffLimit 0 does not fail it) and replaces the pods once they
            # have exited, which resume from that checkpoint. Any other failure fails the
            # Job, and the operator restarts the whole group.
            "podFailurePolicy": {"rules": [{"action": "Ignore", "onExitCodes": {
                "containerName": CONTAINER, "operator": "In", "values": [EXIT_PREEMPTED]}}]},
            # Kueue admits a queued Job by unsuspending it.
            "suspend": bool(queue),
            "template": template,
        },
    }


def data_check_command() -> list[str]:
    return ["python", "-m", "ftjob_trainer.data_check", f"{CONFIG_DIR}/{render.TRAINER_CONFIG}"]


GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB, set by GPU feature discovery


def gpu_memory_of(job: FineTuneJob, nodes: list[dict]) -> tuple[int, str] | None:
    """The GPU memory (bytes) the job can count on, and where that figure comes from: the
    smallest of the GPU nodes its nodeSelector allows (the scheduler may pick any of
    them), or None for a CPU job or when no such node says."""
    if job.spec.distributed.gpus_per_node == 0:
        return None
    wanted = (job.spec.pod_template.node_selector if job.spec.pod_template else None) or {}
    sizes = {}
    for node in nodes:
        node_labels = node["metadata"].get("labels") or {}
        if all(node_labels.get(k) == v for k, v in wanted.items()) and \
                str(node_labels.get(GPU_MEMORY_LABEL, "")).isdigit():
            sizes[node["metadata"]["name"]] = int(node_labels[GPU_MEMORY_LABEL])
    if not sizes:
        return None
    smallest = min(sizes, key=sizes.get)
    return sizes[smallest] * 2**20, f"{GPU_MEMORY_LABEL} of node {smallest} (the smallest " \
        f"of {len(sizes)} the job may land on)"


def memory_fit_input(job: FineTuneJob, gpu_memory: tuple[int, str] | None) -> dict | None:
    """What the data check sizes the job with (FTJOB_MEMORY_FIT), or None."""
    if gpu_memory is None or job.spec.script is not None:
        return None
    from dataclasses import asdict

    from ..memory import layout_of

    return {"layout": asdict(layout_of(job)), "gpuMemoryBytes": gpu_memory[0],
            "gpuMemorySource": gpu_memory[1]}


def build_data_check(job: FineTuneJob, uid: str, defaults: Defaults,
                     gpu_memory: tuple[int, str] | None = None) -> dict:
    """The preflight before the first attempt (attempt 0): one CPU-only pod that loads and
    prepares the data with the trainer's own code and checks storage, and sizes the job
    against `gpu_memory` when known. It is not queued: it holds no GPU, and it must answer
    before the job waits in a queue for GPUs."""
    template = _pod_template(job, defaults, 0, data_check_command(),
                             dict(defaults.data_check_resources))
    fit = memory_fit_input(job, gpu_memory)
    if fit is not None:
        template["spec"]["containers"][0]["env"].append(
            {"name": FIT_REQUEST_ENV, "value": json.dumps(fit, sort_keys=True)})
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": _metadata(job, uid, Names(job.metadata.name).data_check, 0),
        "spec": {"completions": 1, "parallelism": 1, "backoffLimit": 0,
                 "activeDeadlineSeconds": defaults.data_check_timeout_seconds,
                 "template": template},
    }


def build_all(job: FineTuneJob, uid: str, defaults: Defaults) -> list[dict]:
    """The objects that live as long as the FineTuneJob, in creation order."""
    return [build_config_map(job, uid, defaults), build_service(job, uid),
            build_service_account(job, uid), build_role(job, uid),
            build_role_binding(job, uid)]
