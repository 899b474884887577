"""Traefik, k3s's bundled ingress controller, installed the way k3s installs it.

k3s deploys Traefik's Helm chart into kube-system (HelmChart `traefik-crd` and `traefik`); the objects here
are what that chart renders with k3s's values and the Gateway provider on: Traefik's CRDs, the Gateway API
CRDs (standard channel), RBAC, the `traefik` Deployment and LoadBalancer Service, the default IngressClass,
the GatewayClass and the Gateway `traefik-gateway`. The Deployment's pod runs the pinned Traefik build
(image `rancher/mirrored-library-traefik`) with its in-cluster configuration.

On the host, `IngressForwarder` stands in for k3s's service load balancer: 127.0.0.1:<ingress port>
forwards each connection to the web port of the Traefik pod's ready endpoint.
"""

import os
import selectors
import socket
import threading
import time
from pathlib import Path

import yaml

from .errors import SimError
from .kube import wait_for
from .paths import failed_start_logs

NAMESPACE = "kube-system"
NAME = "traefik"
IMAGE_REPOSITORY = "docker.io/rancher/mirrored-library-traefik"
# The chart whose templates these objects follow (Traefik's Helm chart, as k3s packages it).
CHART = "traefik-41.3.0"
PORTS = {"metrics": 9100, "traefik": 8080, "web": 8000, "websecure": 8443}
SERVICE_PORTS = {"web": 80, "websecure": 443}
GATEWAY_NAME = "traefik-gateway"
GATEWAY_CONTROLLER = "traefik.io/gateway-controller"
INGRESS_CONTROLLER = "traefik.io/ingress-controller"
DEFAULT_INGRESS_PORT = 26480
INGRESS_PORT_ENV = "LLMOPS_SIM_INGRESS_PORT"
READY_TIMEOUT = 120
CRD_TIMEOUT = 60

SELECTOR = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": f"{NAME}-{NAMESPACE}"}
LABELS = dict(SELECTOR, **{"helm.sh/chart": CHART, "app.kubernetes.io/managed-by": "Helm"})
HELM_ANNOTATIONS = {"meta.helm.sh/release-name": NAME, "meta.helm.sh/release-namespace": NAMESPACE}

# kind -> (plural, namespaced): the kinds this module creates.
_KINDS = {
    "CustomResourceDefinition": ("customresourcedefinitions", False),
    "ValidatingAdmissionPolicy": ("validatingadmissionpolicies", False),
    "ValidatingAdmissionPolicyBinding": ("validatingadmissionpolicybindings", False),
    "ServiceAccount": ("serviceaccounts", True),
    "ClusterRole": ("clusterroles", False),
    "ClusterRoleBinding": ("clusterrolebindings", False),
    "Deployment": ("deployments", True),
    "Service": ("services", True),
    "IngressClass": ("ingressclasses", False),
    "GatewayClass": ("gatewayclasses", False),
    "Gateway": ("gateways", True),
}


def enabled(profile: dict) -> bool:
    return profile.get("ingress") == "traefik"


def image(versions: dict) -> str:
    # Rancher mirrors Traefik's tags without the leading v.
    return f"{IMAGE_REPOSITORY}:{versions['TRAEFIK_VERSION'].lstrip('v')}"


def _meta(name: str, namespaced: bool = True, **extra) -> dict:
    meta = {"name": name, "labels": dict(LABELS), "annotations": dict(HELM_ANNOTATIONS)}
    if namespaced:
        meta["namespace"] = NAMESPACE
    meta.update(extra)
    return meta


def args() -> list:
    """The container args Traefik's chart renders for k3s's values with the Gateway provider on."""
    service = f"{NAMESPACE}/{NAME}"
    return [
        *(f"--entryPoints.{name}.address=:{port}/tcp" for name, port in sorted(PORTS.items())),
        "--api.dashboard=true",
        "--ping=true",
        "--metrics.prometheus=true",
        "--metrics.prometheus.entrypoint=metrics",
        "--providers.kubernetescrd",
        "--providers.kubernetescrd.allowEmptyServices=true",
        "--providers.kubernetesingress",
        "--providers.kubernetesingress.allowEmptyServices=true",
        f"--providers.kubernetesingress.ingressendpoint.publishedservice={service}",
        "--providers.kubernetesgateway",
        f"--providers.kubernetesgateway.statusaddress.service.name={NAME}",
        f"--providers.kubernetesgateway.statusaddress.service.namespace={NAMESPACE}",
        "--entryPoints.websecure.http.tls=true",
        "--log.level=INFO",
    ]


def _probe(failure_threshold: int) -> dict:
    return {"httpGet": {"path": "/ping", "port": PORTS["traefik"], "scheme": "HTTP"},
            "failureThreshold": failure_threshold, "initialDelaySeconds": 2, "periodSeconds": 10,
            "successThreshold": 1, "timeoutSeconds": 2}


def deployment(versions: dict) -> dict:
    container = {
        "name": NAME,
        "image": image(versions),
        "imagePullPolicy": "IfNotPresent",
        "resources": {},
        "readinessProbe": _probe(1),
        "livenessProbe": _probe(3),
        "lifecycle": {},
        "ports": [{"name": name, "containerPort": port, "protocol": "TCP"} for name, port in sorted(PORTS.items())],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}],
        "args": args(),
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "USER", "value": "traefik"},
        ],
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(NAME),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(SELECTOR)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "minReadySeconds": 0,
            "template": {
                "metadata": {"labels": dict(LABELS),
                             "annotations": {"prometheus.io/scrape": "true", "prometheus.io/path": "/metrics",
                                             "prometheus.io/port": str(PORTS["metrics"])}},
                "spec": {
                    "serviceAccountName": NAME,
                    "automountServiceAccountToken": True,
                    "terminationGracePeriodSeconds": 60,
                    "hostNetwork": False,
                    "priorityClassName": "system-cluster-critical",
                    "containers": [container],
                    "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
                    "securityContext": {"runAsGroup": 65532, "runAsNonRoot": True, "runAsUser": 65532,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    # k3s's values: Traefik may run on a tainted server node.
                    "tolerations": [
                        {"key": "CriticalAddonsOnly", "operator": "Exists"},
                        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "node-role.kubernetes.io/master", "operator": "Exists", "effect": "NoSchedule"},
                    ],
                },
            },
        },
    }


def service() -> dict:
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(NAME),
        "spec": {
            "type": "LoadBalancer",
            "ipFamilyPolicy": "PreferDualStack",
            "selector": dict(SELECTOR),
            "ports": [{"port": port, "name": name, "targetPort": name, "protocol": "TCP"}
                      for name, port in SERVICE_PORTS.items()],
        },
    }


def rbac() -> list:
    """ServiceAccount and ClusterRole as the chart grants them for the Ingress, CRD and Gateway providers."""
    read = ["get", "list", "watch"]
    rules = [
        {"apiGroups": [""], "resources": ["configmaps", "nodes", "services"], "verbs": read},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": read},
        {"apiGroups": ["extensions", "networking.k8s.io"], "resources": ["ingressclasses", "ingresses"], "verbs": read},
        {"apiGroups": ["extensions", "networking.k8s.io"], "resources": ["ingresses/status"], "verbs": ["update"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["traefik.io"], "verbs": read,
         "resources": ["ingressroutes", "ingressroutetcps", "ingressrouteudps", "middlewares", "middlewaretcps",
                       "serverstransports", "serverstransporttcps", "tlsoptions", "tlsstores", "traefikservices"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["gateway.networking.k8s.io"], "verbs": read,
         "resources": ["backendtlspolicies", "gatewayclasses", "gateways", "grpcroutes", "httproutes",
                       "referencegrants", "tcproutes", "tlsroutes"]},
        {"apiGroups": ["gateway.networking.k8s.io"], "verbs": ["update"],
         "resources": ["backendtlspolicies/status", "gatewayclasses/status", "gateways/status", "grpcroutes/status",
                       "httproutes/status", "tcproutes/status", "tlsroutes/status"]},
    ]
    role_name = f"{NAME}-{NAMESPACE}"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME), "automountServiceAccountToken": False},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": _meta(role_name, namespaced=False), "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": _meta(role_name, namespaced=False),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role_name},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]},
    ]


def ingress_class() -> dict:
    meta = _meta(NAME, namespaced=False)
    meta["annotations"]["ingressclass.kubernetes.io/is-default-class"] = "true"
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": meta,
            "spec": {"controller": INGRESS_CONTROLLER}}


def gateway_objects() -> list:
    """The GatewayClass and the chart's default Gateway: one HTTP listener `web` on the web entry point.

    The chart sets no namespacePolicy by default, so the listener has no allowedRoutes and the
    Gateway API default applies: routes only from the Gateway's own namespace (kube-system).
    """
    return [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
         "metadata": _meta(NAME, namespaced=False), "spec": {"controllerName": GATEWAY_CONTROLLER}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": _meta(GATEWAY_NAME),
         "spec": {"gatewayClassName": NAME,
                  "listeners": [{"name": "web", "port": PORTS["web"], "protocol": "HTTP"}]}},
    ]


def crd_documents(versions: dict) -> list:
    """Traefik's CRDs and the Gateway API standard-channel install, from the build cache."""
    from .build import manifest_path
    docs = []
    for name in ("traefik-crds", "gateway-api-standard"):
        path = manifest_path(name, versions)
        if not path.exists():
            raise SimError(f"{path.name} is not in the build cache", "run make sim-build (it caches the CRDs with Traefik)")
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def objects(versions: dict) -> list:
    """Everything but the CRDs and the Gateway API objects, in the order they are created."""
    return rbac() + [deployment(versions), service(), ingress_class()]


def collection_path(obj: dict) -> str:
    plural, namespaced = _KINDS[obj["kind"]]
    base = "/api/v1" if obj["apiVersion"] == "v1" else f"/apis/{obj['apiVersion']}"
    if namespaced:
        base += f"/namespaces/{obj['metadata'].get('namespace', NAMESPACE)}"
    return f"{base}/{plural}"


def _create(api, obj: dict) -> None:
    status, body = api.request("POST", collection_path(obj), obj)
    if status not in (200, 201, 409):
        raise SimError(f"creating {obj['kind']} {obj['metadata']['name']} answered {status}: {body.get('message', body)}",
                       "check the API server log under .sim/logs; the cached CRDs may not fit this Kubernetes version")


def _established(api, names: list) -> bool:
    for name in names:
        status, crd = api.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conditions = crd.get("status", {}).get("conditions", []) if status == 200 else []
        if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return False
    return True


def apply(api, profile: dict, state: dict, versions: dict = None, timeout: float = READY_TIMEOUT) -> None:
    """Install Traefik as k3s does and wait until its pod is Ready behind the ingress listener."""
    if not enabled(profile):
        return
    from .paths import read_versions
    versions = versions or read_versions()
    crds = crd_documents(versions)
    for doc in crds:
        _create(api, doc)
    names = [d["metadata"]["name"] for d in crds if d["kind"] == "CustomResourceDefinition"]
    wait_for(lambda: _established(api, names), CRD_TIMEOUT, what="Traefik's and the Gateway API CRDs to be Established")
    for obj in objects(versions) + gateway_objects():
        _create(api, obj)
    wait_ready(api, state["ports"].get("ingress", DEFAULT_INGRESS_PORT), timeout)


def not_ready_reason(api, ingress_port: int) -> str:
    """Empty when Traefik serves: its pod Ready in the Service's endpoints and the ingress listener up."""
    deploy = api.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{NAME}")
    if deploy.get("status", {}).get("availableReplicas", 0) < 1:
        return _pod_reason(api)
    if ready_endpoint(api) is None:
        return f"the Service {NAMESPACE}/{NAME} has no ready endpoint"
    try:
        socket.create_connection(("127.0.0.1", ingress_port), timeout=2).close()
    except OSError as exc:
        return f"the ingress listener 127.0.0.1:{ingress_port} does not accept ({exc.strerror or exc})"
    return ""


def _pod_reason(api) -> str:
    selector = ",".join(f"{k}={v}" for k, v in SELECTOR.items())
    pods = api.get(f"/api/v1/namespaces/{NAMESPACE}/pods", labelSelector=selector).get("items", [])
    if not pods:
        return "no pod of the Deployment exists"
    pod = pods[0]
    status, name = pod.get("status", {}), pod["metadata"]["name"]
    for cs in status.get("containerStatuses", []):
        for state_name in ("waiting", "terminated"):
            detail = cs.get("state", {}).get(state_name)
            if detail:
                return f"pod {name}: container {cs['name']} {state_name} ({detail.get('reason', '')}: " \
                       f"{detail.get('message', '').strip()[:200]})"
    for cond in status.get("conditions", []):
        if cond.get("status") != "True" and cond.get("message"):
            return f"pod {name} is {status.get('phase')}: {cond['message'][:200]}"
    return f"pod {name} is {status.get('phase', 'unknown')} and not Ready"


def wait_ready(api, ingress_port: int, timeout: float = READY_TIMEOUT, interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    reason = "not checked"
    while True:
        try:
            reason = not_ready_reason(api, ingress_port)
        except (OSError, SimError) as exc:
            reason = str(exc).splitlines()[0]
        if not reason:
            return
        if time.monotonic() >= deadline:
            # A failed start moves the state's logs to the cache.
            logs = failed_start_logs()
            where = f"{logs / 'simctl.log'} (the ingress listener's log)" if "ingress listener" in reason else \
                f"the Traefik pod's log in {logs / 'pods'}"
            raise SimError(f"Traefik ({NAMESPACE}/{NAME}) was not Ready within {timeout:.0f}s: {reason}",
                           f"read {where}, mend the cause, then run make sim-up again")
        time.sleep(interval)


def ready_endpoint(api):
    """(ip, port) of the web port of a ready endpoint of the traefik Service, or None."""
    slices = api.get(f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices",
                     labelSelector=f"kubernetes.io/service-name={NAME}").get("items", [])
    for eps in slices:
        port = next((p.get("port") for p in eps.get("ports") or [] if p.get("name") == "web"), None)
        if port is None or eps.get("addressType") != "IPv4":
            continue
        for endpoint in eps.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") and endpoint.get("addresses"):
                return endpoint["addresses"][0], port
    return None


def status_line(state: dict, profile: dict) -> str:
    port = (state.get("ports") or {}).get("ingress")
    return f"ingress: http://127.0.0.1:{port}" if port and enabled(profile) else ""


# ---- the host's entry: k3s's service load balancer --------------------------------------------
MAX_CONNECTIONS = 64
CONNECT_TIMEOUT = 5.0
REFRESH_SECONDS = 1.0
BUFFER = 65536


class IngressForwarder:
    """127.0.0.1:<ingress port> -> the web port of the Traefik pod's ready endpoint, one connection each.

    The simulator's controller calls sync() in its loop: it opens the listener once and follows the
    EndpointSlice. At most MAX_CONNECTIONS connections are served at once (one thread each); more wait
    in the listen backlog. The Service's load-balancer status names the host, as ServiceLB names nodes.
    """

    def __init__(self, api, state: dict, log=print):
        from . import profiles
        self.api = api
        self.log = log
        self.port = (state.get("ports") or {}).get("ingress")
        try:
            self.active = bool(self.port) and enabled(profiles.load(state["profile"]))
        except SimError:
            self.active = False  # a profile this checkout does not know
        self.backend = None
        self.listener = None
        self.stopping = threading.Event()
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.lock = threading.Lock()
        self.conns = set()
        self.threads = set()
        self.next_refresh = 0.0
        self.next_listen = 0.0

    def sync(self) -> None:
        if not self.active or self.stopping.is_set():
            return
        if self.listener is None:
            if time.monotonic() < self.next_listen:
                return
            self.next_listen = time.monotonic() + 5.0
            self._listen()
        if time.monotonic() < self.next_refresh:
            return
        self.next_refresh = time.monotonic() + REFRESH_SECONDS
        backend = ready_endpoint(self.api)
        if backend != self.backend:
            self.log(f"ingress 127.0.0.1:{self.port} -> {backend[0]}:{backend[1]}" if backend
                     else f"ingress 127.0.0.1:{self.port}: no ready Traefik endpoint")
            self.backend = backend
        self._publish_status()

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", self.port))
        except OSError as exc:
            sock.close()
            raise SimError(f"port {self.port} on 127.0.0.1 (ingress) is already in use: {exc.strerror}",
                           f"stop what holds it or set {INGRESS_PORT_ENV} to a free port") from None
        sock.listen(128)
        sock.settimeout(0.5)
        self.listener = sock
        thread = threading.Thread(target=self._accept_loop, name="ingress-accept", daemon=True)
        thread.start()
        self.threads.add(thread)
        self.log(f"ingress listening on 127.0.0.1:{self.port}")

    def _publish_status(self) -> None:
        path = f"/api/v1/namespaces/{NAMESPACE}/services/{NAME}"
        code, svc = self.api.request("GET", path)
        if code != 200:
            return  # not created yet
        want = [{"ip": "127.0.0.1", "ipMode": "VIP"}]
        if svc.get("status", {}).get("loadBalancer", {}).get("ingress") == want:
            return
        svc["status"] = {"loadBalancer": {"ingress": want}}
        self.api.request("PUT", path + "/status", svc)

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            # A free slot first: past MAX_CONNECTIONS, clients wait in the backlog instead of a thread each.
            if not self.slots.acquire(timeout=0.5):
                continue
            try:
                client, _ = self.listener.accept()
            except (socket.timeout, OSError):
                self.slots.release()
                continue
            thread = threading.Thread(target=self._serve, args=(client,), name="ingress-conn", daemon=True)
            with self.lock:
                self.threads.add(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            backend = self.backend
            if backend is None:
                return
            upstream = socket.create_connection(backend, timeout=CONNECT_TIMEOUT)
            with self.lock:
                self.conns.update((client, upstream))
            _pump(client, upstream, self.stopping)
        except OSError:
            pass
        finally:
            with self.lock:
                self.conns.discard(client)
                self.conns.discard(upstream)
                self.threads.discard(threading.current_thread())
            for sock in (client, upstream):
                if sock is not None:
                    sock.close()
            self.slots.release()

    def shutdown(self) -> None:
        self.stopping.set()
        if self.listener is not None:
            self.listener.close()
        with self.lock:
            for sock in list(self.conns):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            threads = list(self.threads)
        # One deadline for all: the connections see the stop within their 0.5 s select.
        deadline = time.monotonic() + 3
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def _pump(a: socket.socket, b: socket.socket, stopping: threading.Event) -> None:
    """Copy both ways until both sides have closed; a half-close is passed on."""
    sel = selectors.DefaultSelector()
    peer = {a: b, b: a}
    for sock in (a, b):
        sock.settimeout(30)
        sel.register(sock, selectors.EVENT_READ)
    open_reads = 2
    try:
        while open_reads and not stopping.is_set():
            for key, _ in sel.select(timeout=0.5):
                src = key.fileobj
                data = src.recv(BUFFER)
                if data:
                    peer[src].sendall(data)
                    continue
                sel.unregister(src)
                open_reads -= 1
                try:
                    peer[src].shutdown(socket.SHUT_WR)
                except OSError:
                    pass
    finally:
        sel.close()
