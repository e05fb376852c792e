"""The one module that talks to the Kubernetes API (writes; reads come from kopf's
watch-fed indices). Already-exists means adopt, not-found on delete means done, and a
resourceVersion conflict on the status means "decide again with fresh state"."""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from .. import GROUP, PLURAL, VERSION
from . import metrics

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_api: client.ApiClient | None = None
# Independent calls of one reconcile go out together.
_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="ftjob-api")
# Events leave the critical path and go out one at a time, in order, as client-go's event
# broadcaster sends them: a burst of transitions must not crowd out the creates.
_events = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ftjob-events")


def api_client() -> client.ApiClient:
    global _api
    with _lock:
        if _api is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            configuration = client.Configuration.get_default_copy()
            # Every thread that may call at once (reconcile workers, this module's pool) keeps
            # its connection: a connection dropped for want of room costs the API server a
            # new TLS handshake on the next call.
            configuration.connection_pool_maxsize = 64
            _api = client.ApiClient(configuration)
        return _api


def _call(verb: str, function, *args, **kwargs):
    """Calls the API without turning the response into client model objects: at hundreds
    of jobs that deserialization, not the network, is what the operator spends CPU on."""
    kwargs["_preload_content"] = False
    try:
        response = function(*args, **kwargs)
        # Read the body and hand the connection back to the pool: an unread response keeps
        # its connection, and the next call pays a new TLS handshake.
        result = response.data
        response.release_conn()
    except ApiException as error:
        metrics.API_REQUESTS.labels(verb).inc()
        if error.status not in (404, 409):
            metrics.API_ERRORS.labels(verb).inc()
        raise
    metrics.API_REQUESTS.labels(verb).inc()
    return result


# kind -> (API class, the suffix of its create_namespaced_*/read_namespaced_* methods)
_KINDS = {
    "ConfigMap": (client.CoreV1Api, "config_map"),
    "Service": (client.CoreV1Api, "service"),
    "ServiceAccount": (client.CoreV1Api, "service_account"),
    "Role": (client.RbacAuthorizationV1Api, "role"),
    "RoleBinding": (client.RbacAuthorizationV1Api, "role_binding"),
    "Job": (client.BatchV1Api, "job"),
}


def _method(kind: str, verb: str):
    api_class, suffix = _KINDS[kind]
    return getattr(api_class(api_client()), f"{verb}_namespaced_{suffix}")


class OwnedByAnother(RuntimeError):
    """A same-named object belongs to an earlier FineTuneJob that is still being deleted."""


def create_or_adopt(manifest: dict) -> bool:
    """Creates `manifest`; if it already exists and is ours (same owner uid), that is the
    same object created by an earlier reconcile. Returns True when it was created now."""
    kind = manifest["kind"]
    namespace = manifest["metadata"]["namespace"]
    try:
        _call("create", _method(kind, "create"), namespace, manifest)
        return True
    except ApiException as error:
        if error.status != 409:
            raise
    existing = json.loads(_call("get", _method(kind, "read"), manifest["metadata"]["name"],
                                namespace))
    owners = {ref["uid"] for ref in existing["metadata"].get("ownerReferences", [])}
    wanted = {ref["uid"] for ref in manifest["metadata"]["ownerReferences"]}
    if not owners & wanted:
        raise OwnedByAnother(f"{kind} {namespace}/{manifest['metadata']['name']} belongs to "
                             "another object")
    return False


def create_all(manifests: list[dict]) -> list[bool]:
    """create_or_adopt for objects that do not depend on each other, concurrently."""
    return list(_pool.map(create_or_adopt, manifests))


def delete_job(namespace: str, name: str) -> None:
    """Foreground propagation: the pods get SIGTERM (and save a checkpoint) and the Job,
    marked for deletion, stays until they are gone, so the Job watch alone tells when the
    next attempt may start."""
    try:
        _call("delete", client.BatchV1Api(api_client()).delete_namespaced_job, name, namespace,
              propagation_policy="Foreground")
        logger.info("Deleted Job %s/%s", namespace, name)
    except ApiException as error:
        if error.status != 404:
            raise


def list_pods(namespace: str, selector: str) -> list[dict]:
    return json.loads(_call("list", client.CoreV1Api(api_client()).list_namespaced_pod,
                            namespace, label_selector=selector))["items"]


def patch_status(namespace: str, name: str, resource_version: str,
                 status: dict) -> dict | None:
    """A merge patch of the status guarded by the resourceVersion the decision was made on.
    Returns the object as written, or None if it changed since (decide again)."""
    body = {"metadata": {"resourceVersion": resource_version}, "status": status}
    try:
        return json.loads(_call("patch", client.CustomObjectsApi(api_client())
                                .patch_namespaced_custom_object_status, GROUP, VERSION,
                                namespace, PLURAL, name, body))
    except ApiException as error:
        if error.status in (404, 409):
            return None
        raise


def get_finetunejob(namespace: str, name: str) -> dict | None:
    try:
        return json.loads(_call("get", client.CustomObjectsApi(api_client())
                                .get_namespaced_custom_object, GROUP, VERSION, namespace,
                                PLURAL, name))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def delete_finetunejob(namespace: str, name: str) -> None:
    try:
        _call("delete", client.CustomObjectsApi(api_client()).delete_namespaced_custom_object,
              GROUP, VERSION, namespace, PLURAL, name, propagation_policy="Background")
    except ApiException as error:
        if error.status != 404:
            raise


def post_event(owner: dict, event_type: str, reason: str, message: str) -> None:
    """A core/v1 Event on the FineTuneJob, as `kubectl describe` shows them; sent in the
    background (nothing waits for it)."""
    _events.submit(_post_event, owner, event_type, reason, message)


def _post_event(owner: dict, event_type: str, reason: str, message: str) -> None:
    metadata = owner["metadata"]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "metadata": {"generateName": f"{metadata['name']}.",
                     "namespace": metadata["namespace"]},
        "involvedObject": {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                           "name": metadata["name"], "namespace": metadata["namespace"],
                           "uid": metadata["uid"]},
        "type": event_type, "reason": reason, "message": message[:1024],
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        "source": {"component": "ftjob-operator"},
        "reportingComponent": "ftjob.dev/operator", "reportingInstance": "ftjob-operator"}
    try:
        _call("create", client.CoreV1Api(api_client()).create_namespaced_event,
              metadata["namespace"], event)
    except ApiException as error:  # an Event is never worth failing a reconcile for
        logger.warning("Could not post event %s: %s", reason, error.reason)
