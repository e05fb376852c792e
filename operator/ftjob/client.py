"""The Python SDK: FineTuneJobs on a cluster from a laptop or a notebook.

    from ftjob import Client
    client = Client()                      # kubeconfig (or in-cluster), its namespace
    client.submit("examples/quickstart.yaml", overrides=["training.maxSteps=20"])
    for event in client.watch("quickstart"):
        print(event)
    client.wait("quickstart")              # JobFailed if it failed instead
    client.history("quickstart").training("loss")   # the loss curve, every attempt
    client.download("quickstart", "model/")         # the exported model

Storage (history, download) is read with this machine's credentials (AWS_ACCESS_KEY_ID, ...,
as the provider's own tools read them) at the endpoint the job names, unless endpoint_url=
or AWS_ENDPOINT_URL says where this machine reaches it. Jobs are validated here first, with the messages `ftjob validate` prints; what the API
server still refuses comes back as the same kind of field-path message (SpecError). Every
request has a timeout. No kopf: this is a client of the API, nothing more.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as kube, config, watch as kube_watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from . import GROUP, PLURAL, VERSION
from .api.load import SpecError, apply_overrides, parse_job, read_document
from .api.spec import FineTuneJob, script_path_on_cluster
from .api.status import CheckpointStatus, FineTuneJobStatus, Progress
from .history import History

REQUEST_TIMEOUT = 30  # seconds, every request
TERMINAL = ("Succeeded", "Failed")
NODE_LABEL = "batch.kubernetes.io/job-completion-index"
JOB_LABEL = f"{GROUP}/job-name"
ATTEMPT_LABEL = f"{GROUP}/attempt"
CONTAINER = "trainer"
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class ClientError(Exception):
    """The cluster could not do what was asked; the message says what and why."""


class NotFound(ClientError):
    pass


class JobFailed(ClientError):
    """wait() saw the job end otherwise than asked."""

    def __init__(self, view: "JobView"):
        super().__init__(f"{view.name} is {view.status.phase}: {view.status.message}")
        self.view = view


@dataclass(frozen=True)
class JobView:
    """A FineTuneJob as the cluster has it: its spec (None if this ftjob cannot read it,
    `spec_error` then says why), typed status and metadata."""

    name: str
    namespace: str
    uid: str
    created: str
    status: FineTuneJobStatus
    job: FineTuneJob | None = None
    spec_error: str | None = None

    def condition(self, kind: str):
        return next((c for c in self.status.conditions if c.type == kind), None)


# What watch() yields: what changed on the status, in the order the status changed.
@dataclass(frozen=True)
class PhaseChanged:
    phase: str
    reason: str | None
    message: str | None
    attempt: int


@dataclass(frozen=True)
class Progressed:
    progress: Progress


@dataclass(frozen=True)
class Evaluated:
    step: int | None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckpointSaved:
    checkpoint: CheckpointStatus


Event = PhaseChanged | Progressed | Evaluated | CheckpointSaved


def changes(old: FineTuneJobStatus | None, new: FineTuneJobStatus) -> list[Event]:
    """The events between two statuses of one job (pure)."""
    events: list[Event] = []
    old = old or FineTuneJobStatus()
    if new.phase and (new.phase, new.attempt) != (old.phase, old.attempt):
        reason = next((c.reason for c in new.conditions if c.type == new.phase), None)
        events.append(PhaseChanged(new.phase, reason, new.message, new.attempt))
    if new.progress and (old.progress is None or new.progress.step != old.progress.step):
        events.append(Progressed(new.progress))
    evals = {k: v for k, v in (new.metrics or {}).items() if k.startswith("eval_")}
    if evals and evals != {k: v for k, v in (old.metrics or {}).items()
                           if k.startswith("eval_")}:
        events.append(Evaluated(new.progress.step if new.progress else None, evals))
    if new.checkpoint and new.checkpoint != old.checkpoint:
        events.append(CheckpointSaved(new.checkpoint))
    return events


def _refusal(error: ApiException, name: str, namespace: str) -> Exception:
    """An API error as a message a user can act on."""
    try:
        body = json.loads(error.body or "{}")
    except ValueError:
        body = {}
    message = body.get("message") or error.reason
    if error.status == 422:
        causes = (body.get("details") or {}).get("causes") or []
        problems = [(cause.get("field") or "spec", cause.get("message") or "")
                    for cause in causes]
        return SpecError(problems or [("spec", message)])
    if error.status == 404:
        if (body.get("details") or {}).get("kind") == "namespaces":
            return NotFound(f"no namespace {namespace}")
        return NotFound(f"no FineTuneJob {name} in namespace {namespace}")
    if error.status == 409:
        return ClientError(f"FineTuneJob {name} already exists in namespace {namespace}")
    if error.status in (401, 403):
        return ClientError(f"the cluster refused: {message}")
    return ClientError(f"the API server answered {error.status}: {message}")


class Client:
    def __init__(self, namespace: str | None = None, kubeconfig: str | None = None,
                 context: str | None = None):
        try:
            if kubeconfig or context or not IN_CLUSTER_NAMESPACE.exists():
                api = config.new_client_from_config(config_file=kubeconfig, context=context)
                contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
                chosen = next(c for c in contexts if c["name"] == (context or active["name"]))
                default_namespace = chosen["context"].get("namespace") or "default"
            else:
                config.load_incluster_config()
                api = kube.ApiClient()
                default_namespace = IN_CLUSTER_NAMESPACE.read_text().strip()
        except (config.ConfigException, OSError, StopIteration, TypeError) as error:
            raise ClientError(f"no cluster to talk to: {error or 'no kubeconfig'} "
                              "(set KUBECONFIG or pass kubeconfig=)") from None
        self.namespace = namespace or default_namespace
        self.custom = kube.CustomObjectsApi(api)
        self.core = kube.CoreV1Api(api)

    # -- calls ----------------------------------------------------------------------------
    def _call(self, name: str, method, *args, namespace: str | None = None, **kwargs):
        """One request, timed out; errors as ClientError or SpecError. `namespace` is
        the one the request is about, when not the client's."""
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        try:
            return method(*args, **kwargs)
        except ApiException as error:
            raise _refusal(error, name, namespace or self.namespace) from None
        except (HTTPError, OSError) as error:
            raise ClientError(f"cannot reach the API server: {error}") from None

    def _object(self, name: str) -> dict:
        return self._call(name, self.custom.get_namespaced_custom_object, GROUP, VERSION,
                          self.namespace, PLURAL, name)

    def _patch_spec(self, name: str, patch: dict) -> JobView:
        return self._view(self._call(name, self.custom.patch_namespaced_custom_object, GROUP,
                                     VERSION, self.namespace, PLURAL, name, {"spec": patch}))

    def _view(self, body: dict) -> JobView:
        metadata = body["metadata"]
        job, spec_error = None, None
        try:
            job = parse_job({key: body.get(key) for key in ("apiVersion", "kind", "spec")}
                            | {"metadata": {"name": metadata["name"],
                                            "namespace": metadata["namespace"]}})
        except SpecError as error:
            spec_error = str(error)
        return JobView(name=metadata["name"], namespace=metadata["namespace"],
                       uid=metadata["uid"], created=metadata["creationTimestamp"],
                       status=FineTuneJobStatus.model_validate(body.get("status") or {}),
                       job=job, spec_error=spec_error)

    # -- verbs ----------------------------------------------------------------------------
    def submit(self, job: FineTuneJob | dict | str | Path, overrides: list[str] = ()
               ) -> JobView:
        """Creates the job after validating it here (SpecError names the fields)."""
        if isinstance(job, FineTuneJob):
            document = job.model_dump(by_alias=True, exclude_unset=True, mode="json")
        elif isinstance(job, dict):
            document = json.loads(json.dumps(job))
        else:
            document = read_document(job)
        document = apply_overrides(document, list(overrides))
        parsed = parse_job(document)
        if parsed.spec.script and (problem := script_path_on_cluster(parsed.spec.script.path)):
            path, _, message = problem.partition(": ")
            raise SpecError([(path, message)])
        namespace = parsed.metadata.namespace or self.namespace
        document.setdefault("metadata", {})["namespace"] = namespace
        created = self._call(parsed.metadata.name, self.custom.create_namespaced_custom_object,
                             GROUP, VERSION, namespace, PLURAL, document,
                             field_validation="Strict", namespace=namespace)
        return self._view(created)

    def get(self, name: str) -> JobView:
        return self._view(self._object(name))

    def list(self) -> list[JobView]:
        listed = self._call("", self.custom.list_namespaced_custom_object, GROUP, VERSION,
                            self.namespace, PLURAL)
        return sorted((self._view(item) for item in listed["items"]),
                      key=lambda view: view.created)

    def suspend(self, name: str) -> JobView:
        """The pods save a checkpoint and stop; resume() continues from it."""
        return self._patch_spec(name, {"runPolicy": {"suspend": True}})

    def resume(self, name: str) -> JobView:
        return self._patch_spec(name, {"runPolicy": {"suspend": False}})

    def delete(self, name: str) -> None:
        """The job and everything it owns; checkpoints and the model in storage stay."""
        self._call(name, self.custom.delete_namespaced_custom_object, GROUP, VERSION,
                   self.namespace, PLURAL, name, propagation_policy="Background")

    def watch(self, name: str, timeout: float | None = None) -> Iterator[Event]:
        """What changes on the job's status, as typed events, until it finishes (or
        `timeout` seconds pass: then it just stops)."""
        last: FineTuneJobStatus | None = None
        for view in self._versions(name, timeout):
            yield from changes(last, view.status)
            last = view.status

    def _versions(self, name: str, timeout: float | None) -> Iterator[JobView]:
        """Every version of the job from now on, until it finishes, is deleted or
        `timeout` seconds pass."""
        deadline = None if timeout is None else time.monotonic() + timeout
        body = self._object(name)
        while body is not None:
            view = self._view(body)
            yield view
            left = None if deadline is None else deadline - time.monotonic()
            if view.status.phase in TERMINAL or (left is not None and left <= 0):
                return
            body = self._next_version(name, body["metadata"]["resourceVersion"], left)

    def _next_version(self, name: str, resource_version: str, left: float | None) -> dict:
        """The object's next version, from a watch that ends within a minute (a watch
        that stops answering is then simply started again)."""
        seconds = int(min(left, 60)) + 1 if left is not None else 60
        stream = kube_watch.Watch()
        try:
            for event in stream.stream(
                    self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                    PLURAL, field_selector=f"metadata.name={name}",
                    resource_version=resource_version, timeout_seconds=seconds,
                    _request_timeout=seconds + REQUEST_TIMEOUT):
                if event["type"] == "DELETED":
                    return None
                if event["type"] in ("ADDED", "MODIFIED"):
                    return event["object"]
        except ApiException as error:
            if error.status != 410:  # 410: too old; read it again below
                raise _refusal(error, name, self.namespace) from None
        except (HTTPError, OSError) as error:
            raise ClientError(f"cannot reach the API server: {error}") from None
        finally:
            stream.stop()
        return self._object(name)

    def wait(self, name: str, condition: str = "Succeeded",
             timeout: float | None = None) -> JobView:
        """Until the condition is True; JobFailed if the job finishes without it, and
        TimeoutError after `timeout` seconds."""
        started = time.monotonic()
        view = None
        for view in self._versions(name, timeout):
            found = view.condition(condition)
            if found is not None and found.status == "True":
                return view
        if view.status.phase in TERMINAL:
            raise JobFailed(view)
        if timeout is not None and time.monotonic() - started >= timeout:
            raise TimeoutError(f"{name}: no condition {condition} after {timeout} s "
                               f"(phase {view.status.phase})")
        raise NotFound(f"FineTuneJob {name} was deleted while waiting")

    def pod(self, name: str, node: int = 0, attempt: int | None = None) -> dict[str, Any]:
        """The pod of one node of an attempt (default: the current one; attempt 0 is the
        data check)."""
        if attempt is None:
            attempt = self.get(name).status.attempt
        selector = f"{JOB_LABEL}={name},{ATTEMPT_LABEL}={attempt}"
        pods = self._call(name, self.core.list_namespaced_pod, self.namespace,
                          label_selector=selector).items
        if attempt:
            pods = [p for p in pods if (p.metadata.labels or {}).get(NODE_LABEL) == str(node)]
        if not pods:
            raise NotFound(f"{name} has no pod for node {node} of attempt {attempt}")
        return max(pods, key=lambda p: p.metadata.creation_timestamp)

    def logs(self, name: str, node: int = 0, attempt: int | None = None,
             follow: bool = False) -> Iterator[str]:
        """The trainer's output on one node, line by line; with `follow`, until it ends."""
        pod = self.pod(name, node, attempt)
        response = self._call(
            name, self.core.read_namespaced_pod_log, pod.metadata.name, self.namespace,
            container=CONTAINER, follow=follow, _preload_content=False,
            # Following has no end to wait for: only connecting is timed.
            _request_timeout=(REQUEST_TIMEOUT, None) if follow else REQUEST_TIMEOUT)
        pending = b""
        try:
            for chunk in response.stream(4096):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode(errors="replace")
        except (HTTPError, OSError) as error:
            raise ClientError(f"the log stream broke: {error}") from None
        finally:
            response.release_conn()
        if pending:
            yield pending.decode(errors="replace")

    # -- storage --------------------------------------------------------------------------
    def storage(self, name: str) -> dict[str, Any]:
        """Where the job's checkpoints, history and model are: the storage section of the
        trainer config the operator rendered for it."""
        self._object(name)  # NotFound for a job that does not exist
        config_map = f"{name}-trainer-config"
        try:
            found = self.core.read_namespaced_config_map(config_map, self.namespace,
                                                         _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status == 404:
                raise ClientError(f"{name} has not started yet: its storage is not "
                                  "decided") from None
            raise _refusal(error, name, self.namespace) from None
        except (HTTPError, OSError) as error:
            raise ClientError(f"cannot reach the API server: {error}") from None
        return json.loads(found.data["config.json"])["storage"]

    @staticmethod
    def _location(uri: str, job_endpoint: str | None, endpoint_url: str | None):
        from ftjob_trainer.storage import Location

        return Location(uri, endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or job_endpoint)

    def history(self, name: str, endpoint_url: str | None = None) -> History:
        """Every logged step, evaluation, checkpoint and attempt of the job so far, from
        <checkpoints.uri>/events.jsonl (empty before the first step is logged)."""
        from ftjob_trainer.errors import TrainerError

        storage = self.storage(name)
        location = self._location(storage["checkpoint_uri"],
                                  storage.get("checkpoint_endpoint_url"), endpoint_url)
        try:
            return History.parse(location.read_text("events.jsonl"))
        except FileNotFoundError:
            return History([])
        except TrainerError as error:
            raise ClientError(f"cannot read {name}'s history: {error}") from None

    def download(self, name: str, dest: str | Path, endpoint_url: str | None = None) -> Path:
        """Copies the job's exported model (status.output.uri) into `dest`."""
        from ftjob_trainer.errors import TrainerError

        view = self.get(name)
        if view.status.output is None:
            raise ClientError(f"{name} has no exported model (phase "
                              f"{view.status.phase or 'new'}): the model is exported when "
                              "training succeeds")
        storage = self.storage(name)
        location = self._location(view.status.output.uri, storage.get("output_endpoint_url"),
                                  endpoint_url)
        dest = Path(dest)
        try:
            location.download_folder(dest)
        except FileNotFoundError:
            raise ClientError(f"{view.status.output.uri} is empty or gone") from None
        except TrainerError as error:
            raise ClientError(f"cannot download {name}'s model: {error}") from None
        return dest
