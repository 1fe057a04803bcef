"""The Kubernetes side: load the user's credentials, read and write EngineClusters and their
connection Secret, and turn API failures into messages that name what is missing."""
import base64
import json
import os

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

GROUP, VERSION, PLURAL = "ipp.dev", "v1alpha1", "engineclusters"
CLIENT_KEY, ENGINE_KEY = "ipcontroller-client.json", "ipcontroller-engine.json"
FIELD_MANAGER = "ipp-operator-launchers"
SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class KubeError(Exception):
    """An API failure the user can act on (the message names the object and what is missing)."""


def load(kubeconfig=None, context=None):
    """An ApiClient with the user's credentials (kubeconfig, or the pod's service account) and the
    default namespace (the context's, the pod's, else "default")."""
    namespace = None
    try:
        if kubeconfig or os.environ.get("KUBECONFIG") or os.path.exists(os.path.expanduser("~/.kube/config")):
            api = k8s_config.new_client_from_config(config_file=kubeconfig, context=context)
            _, active = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
            if context is None and active:
                namespace = (active.get("context") or {}).get("namespace")
        else:
            k8s_config.load_incluster_config()
            api = k8s.ApiClient()
            if os.path.exists(SA_NAMESPACE):
                with open(SA_NAMESPACE) as f:
                    namespace = f.read().strip()
    except (ConfigException, OSError) as e:
        raise KubeError(f"cannot load the Kubernetes configuration: {e}") from None
    return api, namespace or "default"


def _status_message(e):
    try:
        return json.loads(e.body).get("message") or e.reason
    except Exception:
        return e.reason


def describe(e, what, hint=""):
    """An ApiException about `what` as a KubeError."""
    if not isinstance(e, ApiException):
        return KubeError(f"{what}: cannot reach the Kubernetes API server: {e}")
    msg = _status_message(e)
    if e.status == 404:
        if "could not find the requested resource" in (msg or ""):
            return KubeError(f"{what}: the API server has no EngineCluster resource — is ipp-operator installed (helm install ipp charts/ipp-operator)?")
        return KubeError(f"{what} not found")
    if e.status == 403:
        return KubeError(f"{what}: permission denied — {msg}. {hint}".rstrip(". ") + ".")
    if e.status == 401:
        return KubeError(f"{what}: the API server rejected the credentials (401): check the kubeconfig's user")
    if e.status == 409:
        return KubeError(f"{what} already exists")
    if e.status == 422:
        return KubeError(f"{what} is invalid: {msg}")
    return KubeError(f"{what}: the API server answered {e.status}: {msg}")


class EngineClusters:
    def __init__(self, api_client):
        self.custom = k8s.CustomObjectsApi(api_client)
        self.core = k8s.CoreV1Api(api_client)

    def create(self, namespace, body):
        name = body["metadata"]["name"]
        try:
            return self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, field_manager=FIELD_MANAGER)
        except ApiException as e:
            raise describe(e, f"EngineCluster {namespace}/{name}", f"Your user needs 'create' on engineclusters.ipp.dev in namespace {namespace}") from None

    def get(self, namespace, name):
        """The object, or None when it does not exist."""
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as e:
            if e.status == 404 and "could not find the requested resource" not in (_status_message(e) or ""):
                return None
            raise describe(e, f"EngineCluster {namespace}/{name}", f"Your user needs 'get' on engineclusters.ipp.dev in namespace {namespace}") from None

    def scale(self, namespace, name, replicas):
        try:
            return self.custom.patch_namespaced_custom_object_scale(
                GROUP, VERSION, namespace, PLURAL, name, {"spec": {"replicas": int(replicas)}},
                field_manager=FIELD_MANAGER, _content_type="application/merge-patch+json")
        except ApiException as e:
            raise describe(e, f"EngineCluster {namespace}/{name} (scale)", f"Your user needs 'patch' on engineclusters.ipp.dev/scale in namespace {namespace}") from None

    def delete(self, namespace, name):
        """Deletes it; False when it was already gone."""
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise describe(e, f"EngineCluster {namespace}/{name}", f"Your user needs 'delete' on engineclusters.ipp.dev in namespace {namespace}") from None

    def connection(self, namespace, secret):
        """(client info, engine info) from the connection Secret."""
        try:
            s = self.core.read_namespaced_secret(secret, namespace)
        except ApiException as e:
            raise describe(e, f"connection Secret {namespace}/{secret}", f"Your user needs 'get' on the Secret {secret} in namespace {namespace}") from None
        data = s.data or {}
        if CLIENT_KEY not in data:
            raise KubeError(f"Secret {namespace}/{secret} has no key {CLIENT_KEY}")
        decode = lambda k: json.loads(base64.b64decode(data[k]).decode("utf-8"))  # noqa: E731
        return decode(CLIENT_KEY), (decode(ENGINE_KEY) if ENGINE_KEY in data else {})


def condition(ec, ctype):
    for c in ((ec or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None
