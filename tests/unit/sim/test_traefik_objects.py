"""Traefik's objects as k3s's chart renders them, and the pure parts of its build and readiness wait."""

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "sim"))

from sim import build, profiles, traefik  # noqa: E402
from sim.errors import SimError  # noqa: E402

VERSIONS = {"TRAEFIK_VERSION": "v3.7.10", "GATEWAY_API_VERSION": "v1.6.1"}


def test_args_are_the_charts_defaults_for_k3s_with_the_gateway_provider_on():
    # Traefik's chart test "should set default values for args", plus publishedService (k3s's values) and the
    # Gateway provider with its default status address (the chart's tests for providers.kubernetesGateway).
    assert traefik.args() == [
        "--entryPoints.metrics.address=:9100/tcp",
        "--entryPoints.traefik.address=:8080/tcp",
        "--entryPoints.web.address=:8000/tcp",
        "--entryPoints.websecure.address=:8443/tcp",
        "--api.dashboard=true",
        "--ping=true",
        "--metrics.prometheus=true",
        "--metrics.prometheus.entrypoint=metrics",
        "--providers.kubernetescrd",
        "--providers.kubernetescrd.allowEmptyServices=true",
        "--providers.kubernetesingress",
        "--providers.kubernetesingress.allowEmptyServices=true",
        "--providers.kubernetesingress.ingressendpoint.publishedservice=kube-system/traefik",
        "--providers.kubernetesgateway",
        "--providers.kubernetesgateway.statusaddress.service.name=traefik",
        "--providers.kubernetesgateway.statusaddress.service.namespace=kube-system",
        "--entryPoints.websecure.http.tls=true",
        "--log.level=INFO",
    ]


def test_deployment_runs_k3s_image_in_cluster_with_the_charts_probes_and_security():
    deploy = traefik.deployment(VERSIONS)
    pod = deploy["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["image"] == "docker.io/rancher/mirrored-library-traefik:3.7.10"
    assert deploy["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["serviceAccountName"] == "traefik" and pod["spec"]["automountServiceAccountToken"] is True
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    assert container["readinessProbe"]["httpGet"] == {"path": "/ping", "port": 8080, "scheme": "HTTP"}
    assert container["readinessProbe"]["failureThreshold"] == 1 and container["livenessProbe"]["failureThreshold"] == 3
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "metrics": 9100, "traefik": 8080, "web": 8000, "websecure": 8443}
    assert pod["spec"]["securityContext"]["runAsUser"] == 65532
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/data", "/tmp"]
    # No kubeconfig, endpoint or token flag: the in-cluster configuration is all it uses.
    assert not any("endpoint=" in a or "token" in a.lower() for a in container["args"])


def test_service_ingress_class_and_gateway_objects():
    svc = traefik.service()
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["spec"]["selector"] == traefik.deployment(VERSIONS)["spec"]["selector"]["matchLabels"]
    ic = traefik.ingress_class()
    assert ic["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"
    assert ic["spec"]["controller"] == "traefik.io/ingress-controller"
    gateway_class, gateway = traefik.gateway_objects()
    assert gateway_class["spec"]["controllerName"] == "traefik.io/gateway-controller"
    assert (gateway["metadata"]["namespace"], gateway["metadata"]["name"]) == ("kube-system", "traefik-gateway")
    assert gateway["spec"]["listeners"] == [{"name": "web", "port": 8000, "protocol": "HTTP"}]


def test_rbac_grants_what_the_three_providers_read_and_update():
    sa, role, binding = traefik.rbac()
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    for need in [("networking.k8s.io", "ingresses", "watch"), ("networking.k8s.io", "ingresses/status", "update"),
                 ("traefik.io", "middlewares", "list"), ("discovery.k8s.io", "endpointslices", "watch"),
                 ("", "secrets", "get"), ("gateway.networking.k8s.io", "httproutes", "watch"),
                 ("gateway.networking.k8s.io", "gateways/status", "update")]:
        assert need in granted, need
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "kube-system"}]


def test_collection_paths():
    assert traefik.collection_path(traefik.service()) == "/api/v1/namespaces/kube-system/services"
    assert traefik.collection_path(traefik.ingress_class()) == "/apis/networking.k8s.io/v1/ingressclasses"
    assert traefik.collection_path(traefik.gateway_objects()[1]) == \
        "/apis/gateway.networking.k8s.io/v1/namespaces/kube-system/gateways"


def test_profiles_that_model_k3s_have_traefik():
    assert traefik.enabled(profiles.load("k3s")) and traefik.enabled(profiles.load("k3s-nfs"))
    assert not traefik.enabled(profiles.load("eks")) and not traefik.enabled(profiles.load("baremetal"))
    state = {"ports": {"ingress": 26480}}
    assert traefik.status_line(state, profiles.load("k3s")) == "ingress: http://127.0.0.1:26480"
    assert traefik.status_line(state, profiles.load("eks")) == ""


class _NotReadyApi:
    """Stub API (pure logic of the wait): the Deployment never becomes available."""

    def get(self, path, **query):
        if path.endswith("/deployments/traefik"):
            return {"status": {}}
        return {"items": [{"metadata": {"name": "traefik-abc"}, "status": {"phase": "Running", "containerStatuses": [
            {"name": "traefik", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}}]}}]}


def test_not_ready_within_the_bound_ends_with_the_cause_and_the_fix():
    with pytest.raises(SimError) as err:
        traefik.wait_ready(_NotReadyApi(), 1, timeout=0, interval=0)
    assert err.value.cause == ("Traefik (kube-system/traefik) was not Ready within 0s: pod traefik-abc: "
                               "container traefik waiting (CrashLoopBackOff: back-off 10s)")
    assert "the Traefik pod's log in" in err.value.fix and "make sim-up" in err.value.fix


def test_replace_directives_single_line_and_block():
    gomod = ("module x\n\nreplace a/b => ./local/b // why\n\nreplace (\n\tc/d => e/f v1.2.3\n"
             "\tg/h v1.0.0 => ../h\n)\n")
    assert build._replace_directives(gomod) == [("a/b", "./local/b"), ("c/d", "e/f v1.2.3"), ("g/h v1.0.0", "../h")]


def test_a_nested_module_the_zip_lacks_gets_empty_struct_stand_ins(tmp_path):
    module = tmp_path / "mod"
    (module / "pkg").mkdir(parents=True)
    (module / "pkg" / "a.go").write_text('package pkg\n\nimport (\n\t"fmt"\n\t"example.com/m/ext"\n)\n\n'
                                         'type T struct {\n\text.HTTP\n\text.Router `yaml:",inline"`\n}\n')
    (module / "pkg" / "b.go").write_text('package pkg\n\nimport x "example.com/m/ext"\n\nvar _ x.Extra\n')
    target = build._stand_in_module(module, "example.com/m/ext", tmp_path / "out")
    assert (target / "go.mod").read_text().startswith("module example.com/m/ext\n")
    source = (target / "ext.go").read_text()
    assert "package ext" in source
    assert [line for line in source.splitlines() if line.startswith("type ")] == [
        "type Extra struct{}", "type HTTP struct{}", "type Router struct{}"]


def test_traefik_is_built_from_its_module_with_its_replaces_and_the_pinned_gateway_api():
    program = next(p for p in build.programs(dict(build.read_versions(), **VERSIONS)) if p.name == "traefik")
    assert program.module == "github.com/traefik/traefik/v3" and program.needs_module_replaces
    assert program.pinned_requires == {"sigs.k8s.io/gateway-api": "GATEWAY_API_VERSION"}
    assert "{{ .APIUrl }}" in program.added_files["webui/static/index.html"]
    assert build.binary_path("traefik", dict(build.read_versions(), **VERSIONS)).name == "traefik-v3.7.10"


class _SliceApi:
    """Stub API (the forwarder's logic on real sockets): one ready endpoint, no Service yet."""

    def __init__(self, port):
        self.port = port

    def get(self, path, **query):
        return {"items": [{"addressType": "IPv4", "ports": [{"name": "web", "port": self.port}],
                           "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]}]}

    def request(self, method, path, body=None):
        return 404, {}


def _free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_forwarder_relays_both_ways_bounds_its_connections_and_closes(monkeypatch):
    import socket
    import threading
    monkeypatch.setattr(traefik, "MAX_CONNECTIONS", 2)
    backend = socket.create_server(("127.0.0.1", 0))
    served = []

    def echo(conn):
        for data in iter(lambda: conn.recv(100), b""):
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)

    def accept():
        while True:
            try:
                conn, _ = backend.accept()
            except OSError:
                return
            served.append(conn)
            threading.Thread(target=echo, args=(conn,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    port = _free_port()
    forwarder = traefik.IngressForwarder(_SliceApi(backend.getsockname()[1]), {"ports": {"ingress": port},
                                                                              "profile": "k3s"}, log=lambda _: None)
    forwarder.sync()
    try:
        first = socket.create_connection(("127.0.0.1", port), timeout=5)
        first.sendall(b"ping")
        first.shutdown(socket.SHUT_WR)  # the half-close reaches the backend, its answer still comes back
        assert first.recv(100) == b"ping" and first.recv(100) == b""
        first.close()
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        time.sleep(1)
        assert len(served) == 1 + 2  # the third waits in the backlog while two are served
        held[0].close()
        deadline = time.monotonic() + 5
        while len(served) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(served) == 4
    finally:
        forwarder.shutdown()
        backend.close()
    assert not any(thread.is_alive() for thread in forwarder.threads)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
