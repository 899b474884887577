"""A small REST client for the simulator's own API calls (admin certificate, no discovery)."""

import http.client
import json
import ssl
import threading
import time
import urllib.parse
from pathlib import Path

from .errors import SimError

# Collection paths of the kinds the simulator creates.
_PATHS = {
    ("v1", "Namespace"): "/api/v1/namespaces",
    ("v1", "Node"): "/api/v1/nodes",
    ("v1", "PersistentVolume"): "/api/v1/persistentvolumes",
    ("v1", "PersistentVolumeClaim"): "/api/v1/namespaces/{ns}/persistentvolumeclaims",
    ("v1", "Pod"): "/api/v1/namespaces/{ns}/pods",
    ("v1", "Event"): "/api/v1/namespaces/{ns}/events",
    ("v1", "ServiceAccount"): "/api/v1/namespaces/{ns}/serviceaccounts",
    ("apps/v1", "DaemonSet"): "/apis/apps/v1/namespaces/{ns}/daemonsets",
    ("storage.k8s.io/v1", "StorageClass"): "/apis/storage.k8s.io/v1/storageclasses",
    ("storage.k8s.io/v1", "CSIDriver"): "/apis/storage.k8s.io/v1/csidrivers",
    ("node.k8s.io/v1", "RuntimeClass"): "/apis/node.k8s.io/v1/runtimeclasses",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
}


def collection_path(obj: dict) -> str:
    template = _PATHS[(obj["apiVersion"], obj["kind"])]
    return template.format(ns=obj.get("metadata", {}).get("namespace", "default"))


class Kube:
    def __init__(self, host: str, port: int, pki: Path, client: str = "simctl", timeout: float = 30):
        self.host, self.port, self.timeout = host, port, timeout
        self.context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.context.load_cert_chain(str(pki / f"{client}.crt"), str(pki / f"{client}.key"))
        self.local = threading.local()

    def _connection(self, timeout=None):
        return http.client.HTTPSConnection(self.host, self.port, context=self.context,
                                           timeout=timeout or self.timeout)

    def request(self, method: str, path: str, body=None, content_type="application/json", query=None):
        if query:
            path += "?" + urllib.parse.urlencode(query)
        payload = json.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        # One kept-alive connection per thread: a TLS handshake per request dominates bulk node creation.
        for attempt in (1, 2):
            conn = getattr(self.local, "conn", None) or self._connection()
            self.local.conn = conn
            try:
                conn.request(method, path, body=payload, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        try:
            decoded = json.loads(data) if data else {}
        except ValueError:
            decoded = {"raw": data.decode(errors="replace")}
        return resp.status, decoded

    def get(self, path, **query):
        status, body = self.request("GET", path, query=query or None)
        if status != 200:
            raise SimError(f"GET {path} answered {status}: {body.get('message', body)}", "check the simulator logs under .sim/logs")
        return body

    def create(self, obj: dict, ignore_exists=True) -> dict:
        status, body = self.request("POST", collection_path(obj), obj)
        if status in (200, 201) or (status == 409 and ignore_exists):
            return body
        raise SimError(f"creating {obj['kind']} {obj['metadata'].get('name')} answered {status}: {body.get('message', body)}",
                       "check the simulator's profile file and the API server log under .sim/logs")

    def list_all(self, path, **query):
        """All items of a collection, following continue tokens."""
        items, token = [], None
        for _ in range(10000):
            params = dict(query, limit=500)
            if token:
                params["continue"] = token
            page = self.get(path, **params)
            items.extend(page.get("items", []))
            token = page.get("metadata", {}).get("continue")
            if not token:
                return items, page.get("metadata", {}).get("resourceVersion")
        raise SimError(f"listing {path} did not end", "report this as a simulator bug")

    def watch(self, path, resource_version, timeout_seconds=60):
        """Yield watch events until the server closes the stream."""
        query = {"watch": "1", "resourceVersion": resource_version, "timeoutSeconds": str(timeout_seconds),
                 "allowWatchBookmarks": "true"}
        conn = self._connection(timeout=timeout_seconds + 15)
        try:
            conn.request("GET", path + "?" + urllib.parse.urlencode(query), headers={"Accept": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise SimError(f"watch {path} answered {resp.status}", "restart the simulator")
            while True:
                line = resp.readline()
                if not line:
                    return
                yield json.loads(line)
        finally:
            conn.close()


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except (OSError, SimError, http.client.HTTPException) as exc:
            last_error = exc
        time.sleep(interval)
    raise SimError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""),
                   "check the logs under .sim/logs, then run make sim-down and make sim-up again")
