"""Controller and engine-set launchers that drive an ipp-operator EngineCluster.

- EngineClusterControllerLauncher.start creates the EngineCluster (its spec from `manifest`, a YAML
  file, and/or the inline `spec` dict); get_connection_info waits until the cluster's controller is
  available, then writes the client (and engine) connection files from the connection Secret into
  the profile's security directory (0600, atomically); stop deletes the EngineCluster.
- EngineClusterEngineSetLauncher.start(n) sets spec.engines through the scale subresource.

Both use the user's own Kubernetes credentials (kubeconfig or the pod's service account): RBAC
decides what a notebook user may do.
"""
import asyncio
import copy
import json
import os
import re
import time

import yaml
from ipyparallel.cluster.launcher import ControllerLauncher, EngineLauncher, LauncherError, NotRunning
from traitlets import Bool, Dict, Float, Unicode
from traitlets.config import LoggingConfigurable

from . import kube

NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 40


class EngineClusterError(LauncherError):
    """A clear, user-facing failure (missing cluster, Secret, permission, timeout...)."""


def _cluster_name(profile_dir, cluster_id):
    """A valid EngineCluster name from the profile (and the cluster id, when there is one)."""
    profile = os.path.basename(os.path.normpath(profile_dir or "")) or "default"
    if profile.startswith("profile_"):
        profile = profile[len("profile_"):]
    raw = f"{profile}-{cluster_id}" if cluster_id else profile
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"ipp-{name}".strip("-")
    return name[:MAX_NAME].rstrip("-")


def _write_private(path, text):
    """Write `text` to `path` so no reader sees half of it: temp file (0600) + rename."""
    d = os.path.dirname(path)
    os.makedirs(d, mode=0o700, exist_ok=True)
    tmp = os.path.join(d, f".{os.path.basename(path)}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _deep_merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


class _KubeTraits(LoggingConfigurable):
    """Where the EngineCluster lives and how to reach the API (shared by both launchers)."""

    cluster_name = Unicode("", config=True, help="EngineCluster name (default: the profile name, plus the cluster id when set).").tag(to_dict=True)
    namespace = Unicode("", config=True, help="Namespace (default: the manifest's, else the kubeconfig context's or the pod's).").tag(to_dict=True)
    kubeconfig = Unicode("", config=True, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else the pod's service account).").tag(to_dict=True)
    context = Unicode("", config=True, help="kubeconfig context (default: the current one).").tag(to_dict=True)

    _api = None

    def _clusters(self):
        if self._api is None:
            try:
                api, default_ns = kube.load(self.kubeconfig or None, self.context or None)
            except kube.KubeError as e:
                raise EngineClusterError(str(e)) from None
            self._api = kube.EngineClusters(api)
            if not self.namespace:
                self.namespace = default_ns
        return self._api

    async def _call(self, fn, *args):
        try:
            return await asyncio.to_thread(fn, *args)
        except kube.KubeError as e:
            raise EngineClusterError(str(e)) from None


class EngineClusterControllerLauncher(_KubeTraits, ControllerLauncher):
    """Creates an EngineCluster; its controller is the ipyparallel controller of this Cluster."""

    entrypoint_name = "EngineCluster"

    manifest = Unicode("", config=True, help="Path to an EngineCluster YAML manifest: its spec (backend, template, controller) is used.")
    spec = Dict(config=True, help="EngineCluster spec fields, merged over the manifest's (e.g. {'backend': {'mpi': {'image': ...}}}).")
    client_address = Unicode("", config=True, help="Address clients use instead of the controller Service's DNS name (a LoadBalancer or NodePort address, or 127.0.0.1 behind a forward).")
    ready_timeout = Float(600, config=True, help="Seconds to wait for the controller to become available.")
    poll_interval = Float(1.0, config=True, help="Seconds between status reads while waiting.")
    created = Bool(False).tag(to_dict=True)

    def find_args(self):
        return [f"EngineCluster {self.namespace or '?'}/{self.cluster_name or '?'}"]

    def _body(self):
        manifest = {}
        if self.manifest:
            try:
                with open(os.path.expanduser(self.manifest)) as f:
                    docs = [d for d in yaml.safe_load_all(f) if d]
            except OSError as e:
                raise EngineClusterError(f"EngineClusterControllerLauncher.manifest: cannot read {self.manifest}: {e.strerror}") from None
            except yaml.YAMLError as e:
                raise EngineClusterError(f"EngineClusterControllerLauncher.manifest: {self.manifest} is not YAML: {e}") from None
            ecs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "EngineCluster"]
            if len(ecs) != 1:
                raise EngineClusterError(f"EngineClusterControllerLauncher.manifest: {self.manifest} must hold one EngineCluster, found {len(ecs)}")
            manifest = ecs[0]
        meta = manifest.get("metadata") or {}
        spec = _deep_merge(manifest.get("spec") or {}, self.spec)
        if not spec.get("backend"):
            raise EngineClusterError("EngineClusterControllerLauncher: no backend — set manifest (an EngineCluster YAML) or spec={'backend': {...}} in the profile's ipcluster_config.py")
        if "engines" not in spec:
            # the Cluster's n, so the cluster starts at its final size (engines then only confirm it)
            spec["engines"] = max(1, int(getattr(self.parent, "n", None) or 1))
        if not self.cluster_name:
            self.cluster_name = meta.get("name") or _cluster_name(self.profile_dir, self.cluster_id)
        if not NAME_RE.match(self.cluster_name) or len(self.cluster_name) > MAX_NAME:
            raise EngineClusterError(f"EngineCluster name '{self.cluster_name}' is not a DNS label of at most {MAX_NAME} characters starting with a letter")
        if not self.namespace and meta.get("namespace"):
            self.namespace = meta["namespace"]
        labels = dict(meta.get("labels") or {})
        labels["app.kubernetes.io/created-by"] = "ipp-operator-launchers"
        return {"apiVersion": f"{kube.GROUP}/{kube.VERSION}", "kind": "EngineCluster",
                "metadata": {"name": self.cluster_name, "labels": labels}, "spec": spec}

    @property
    def cluster_id_string(self):
        return f"{self.namespace}/{self.cluster_name}"

    async def start(self):
        body = self._body()
        clusters = self._clusters()
        await self._call(clusters.create, self.namespace, body)
        self.created = True
        self.log.info("Created EngineCluster %s (%s engines)", self.cluster_id_string, body["spec"]["engines"])
        self.notify_start({"namespace": self.namespace, "name": self.cluster_name})

    async def _wait_controller(self, timeout):
        clusters = self._clusters()
        deadline = time.monotonic() + timeout
        while True:
            ec = await self._call(clusters.get, self.namespace, self.cluster_name)
            if ec is None:
                raise EngineClusterError(f"EngineCluster {self.cluster_id_string} not found (deleted?)")
            status = ec.get("status") or {}
            ctl = kube.condition(ec, "ControllerReady")
            if ctl is not None and ctl.get("status") == "True":
                return ec
            if status.get("phase") == "Failed":
                ready = kube.condition(ec, "Ready") or {}
                raise EngineClusterError(f"EngineCluster {self.cluster_id_string} failed: {ready.get('reason')}: {ready.get('message')}")
            if time.monotonic() > deadline:
                ready = kube.condition(ec, "Ready") or {}
                why = f"{ready.get('reason')}: {ready.get('message')}" if ready else "the operator has not reported on it (is it running?)"
                raise EngineClusterError(f"EngineCluster {self.cluster_id_string}: controller not available after {timeout:.0f}s (phase {status.get('phase', 'none')}; {why})")
            await asyncio.sleep(self.poll_interval)

    async def get_connection_info(self, timeout=None):
        """Waits for the controller, then writes the connection files from the Secret."""
        ec = await self._wait_controller(self.ready_timeout if timeout is None or timeout < 0 else max(timeout, self.ready_timeout))
        secret = ((ec.get("status") or {}).get("controller") or {}).get("connectionSecret") or f"{self.cluster_name}-connection"
        client, engine = await self._call(self._clusters().connection, self.namespace, secret)
        if self.client_address:
            for info in (client, engine):
                if info:
                    info["interface"] = f"tcp://{self.client_address}"
                    info["location"] = self.client_address
        files = self.connection_files
        try:
            _write_private(files["client"], json.dumps(client, indent=2) + "\n")
            _write_private(files["engine"], json.dumps(engine, indent=2) + "\n")
        except OSError as e:
            raise EngineClusterError(f"cannot write the connection files into {os.path.dirname(files['client'])}: {e.strerror}") from None
        return {"client": client, "engine": engine}

    def poll(self):
        return None if self.state == "running" else (self.stop_data or {}).get("exit_code", 0)

    def signal(self, sig):
        self.log.warning("EngineCluster %s: signals are not forwarded to the controller pod", self.cluster_id_string)

    async def stop(self):
        """Deletes the EngineCluster and waits until it is gone (the operator cleans up)."""
        clusters = self._clusters()
        if self.created or self.state == "running":
            existed = await self._call(clusters.delete, self.namespace, self.cluster_name)
            if existed:
                self.log.info("Deleting EngineCluster %s", self.cluster_id_string)
                deadline = time.monotonic() + self.stop_timeout
                while await self._call(clusters.get, self.namespace, self.cluster_name) is not None:
                    if time.monotonic() > deadline:
                        raise EngineClusterError(f"EngineCluster {self.cluster_id_string} still there {self.stop_timeout}s after delete: is the operator running (it removes its finalizer)?")
                    await asyncio.sleep(self.poll_interval)
        for path in self.connection_files.values():
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        return self.notify_stop({"exit_code": 0})

    async def join(self, timeout=None):
        clusters = self._clusters()
        deadline = None if timeout is None else time.monotonic() + timeout
        while await self._call(clusters.get, self.namespace, self.cluster_name) is not None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"EngineCluster {self.cluster_id_string} still exists")
            await asyncio.sleep(self.poll_interval)
        self.notify_stop({"exit_code": 0})

    @classmethod
    def from_dict(cls, d, **kwargs):
        launcher = super().from_dict(d, **kwargs)
        if launcher._clusters().get(launcher.namespace, launcher.cluster_name) is None:
            raise NotRunning(f"EngineCluster {launcher.cluster_id_string} is gone")
        return launcher


class EngineClusterEngineSetLauncher(_KubeTraits, EngineLauncher):
    """Sets the EngineCluster's engine count (spec.engines) through the scale subresource."""

    entrypoint_name = "EngineCluster"

    def find_args(self):
        return [f"EngineCluster {self.namespace or '?'}/{self.cluster_name or '?'} engines"]

    def _target(self):
        controller = getattr(self.parent, "controller", None)
        if isinstance(controller, EngineClusterControllerLauncher):
            self.cluster_name = self.cluster_name or controller.cluster_name
            self.namespace = self.namespace or controller.namespace
            self.kubeconfig = self.kubeconfig or controller.kubeconfig
            self.context = self.context or controller.context
        if not self.cluster_name:
            raise EngineClusterError("EngineClusterEngineSetLauncher: no EngineCluster to scale — use controller_launcher_class='EngineCluster' or set EngineClusterEngineSetLauncher.cluster_name")
        return self._clusters()

    async def start(self, n):
        clusters = self._target()
        others = sum(getattr(s, "n", 0) for s in getattr(self.parent, "engines", {}).values()
                     if s is not self and isinstance(s, EngineClusterEngineSetLauncher) and s.running)
        total = others + int(n)
        await self._call(clusters.scale, self.namespace, self.cluster_name, total)
        self.n = int(n)
        self.log.info("EngineCluster %s/%s scaled to %d engines", self.namespace, self.cluster_name, total)
        self.notify_start({"namespace": self.namespace, "name": self.cluster_name, "engines": total})

    def poll(self):
        return None if self.state == "running" else 0

    def signal(self, sig):
        self.log.warning("EngineCluster %s/%s: signals are not forwarded to engine pods", self.namespace, self.cluster_name)

    async def stop(self):
        # An EngineCluster has at least one engine: engines go when the controller launcher deletes
        # the cluster. Other engine sets of this Cluster keep theirs.
        others = sum(getattr(s, "n", 0) for s in getattr(self.parent, "engines", {}).values()
                     if s is not self and isinstance(s, EngineClusterEngineSetLauncher) and s.running)
        controller = getattr(self.parent, "controller", None)
        if others > 0 and controller is not None and controller.running:
            await self._call(self._target().scale, self.namespace, self.cluster_name, others)
        return self.notify_stop({"exit_code": 0})

    async def join(self, timeout=None):
        self.notify_stop({"exit_code": 0})
