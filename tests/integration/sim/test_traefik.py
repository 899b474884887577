"""Traefik, k3s's bundled ingress controller: installed as k3s's chart installs it, and serving through the
simulator's ingress listener (127.0.0.1:<ingress port>, k3s's service load balancer) an Ingress, an HTTPRoute
on kube-system/traefik-gateway and a basicAuth Middleware, in front of a real Ollama pod."""

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from test_ollama_pods import ollama_deployment, running_pod

pytestmark = pytest.mark.profile("k3s")
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def ingress(cluster):
    """The ingress's base URL: the simulator's listener in front of the Traefik pod."""
    if cluster.external:
        url = os.environ.get("LLMOPS_TEST_INGRESS_URL")
        if not url:
            pytest.skip("set LLMOPS_TEST_INGRESS_URL to the cluster's Traefik (http://host:port)")
        return url.rstrip("/")
    from sim import cluster as sim_cluster
    state = sim_cluster.read_state()
    return f"http://127.0.0.1:{state['ports']['ingress']}"


def http(url, host, path="/api/version", auth=None):
    headers = {"Host": host}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    request = urllib.request.Request(url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace"), dict(err.headers)


def wait_status(cluster, url, host, want, auth=None, timeout=45):
    def answered():
        try:
            status, body, headers = http(url, host, auth=auth)
        except OSError as exc:
            return None if want else exc
        return (status, body, headers) if status == want else None
    return cluster.wait_for(answered, timeout=timeout, what=f"{want} from {host} through {url}")


def ollama_behind_service(cluster, namespace):
    cluster.apply(ollama_deployment(namespace, "ollama", gpus=0))
    cluster.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ollama", "namespace": namespace},
                   "spec": {"selector": {"app": "ollama"}, "ports": [{"name": "http", "port": 11434}]}})
    running_pod(cluster, namespace, "ollama")


def ingress_for(namespace, host, annotations=None):
    # No ingressClassName: the default class (traefik on k3s) takes it.
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": "ollama", "namespace": namespace, "annotations": annotations or {}},
            "spec": {"rules": [{"host": host, "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "ollama", "port": {"number": 11434}}}}]}}]}}


def condition(obj, kind):
    """A condition of an object's status, or of a route's parent status (conditions at its top)."""
    conditions = obj["conditions"] if "conditions" in obj else obj.get("status", {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == kind), {})


def test_traefik_is_installed_as_k3s_installs_it(cluster, ingress):
    from sim.paths import read_versions
    versions = read_versions() if not cluster.external else {}
    ic = cluster.get("ingressclass", "traefik")
    assert ic["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"
    assert ic["spec"]["controller"] == "traefik.io/ingress-controller"
    deploy = cluster.get("deployment", "traefik", "-n", "kube-system")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].rsplit("/", 1)[-1].startswith("mirrored-library-traefik:")
    if versions:
        assert container["image"].endswith(":" + versions["TRAEFIK_VERSION"].lstrip("v"))
    for arg in ("--providers.kubernetesingress", "--providers.kubernetescrd", "--providers.kubernetesgateway",
                "--entryPoints.web.address=:8000/tcp", "--entryPoints.websecure.address=:8443/tcp",
                "--providers.kubernetesingress.ingressendpoint.publishedservice=kube-system/traefik"):
        assert arg in container["args"]
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == "traefik"
    svc = cluster.get("service", "traefik", "-n", "kube-system")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert {(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == {("web", 80, "web"),
                                                                                       ("websecure", 443, "websecure")}
    for crd in ("middlewares.traefik.io", "ingressroutes.traefik.io", "gateways.gateway.networking.k8s.io",
                "httproutes.gateway.networking.k8s.io"):
        assert condition(cluster.get("crd", crd), "Established")["status"] == "True", crd
    gateway_crd = cluster.get("crd", "gateways.gateway.networking.k8s.io")["metadata"]["annotations"]
    assert gateway_crd["gateway.networking.k8s.io/channel"] == "standard"
    if versions:
        assert gateway_crd["gateway.networking.k8s.io/bundle-version"] == versions["GATEWAY_API_VERSION"]
    binding = cluster.get("clusterrolebinding", "traefik-kube-system")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "traefik", "namespace": "kube-system"}]
    # Traefik itself accepts the class and programs the chart's Gateway.
    gc = cluster.wait_for(lambda: condition(cluster.get("gatewayclass", "traefik"), "Accepted").get("status") == "True"
                          and cluster.get("gatewayclass", "traefik"), timeout=60, what="GatewayClass traefik Accepted")
    assert gc["spec"]["controllerName"] == "traefik.io/gateway-controller"
    gw = cluster.wait_for(lambda: condition(g := cluster.get("gateway", "traefik-gateway", "-n", "kube-system"),
                                            "Programmed").get("status") == "True" and g,
                          timeout=60, what="Gateway traefik-gateway Programmed")
    listener = gw["spec"]["listeners"][0]
    assert (listener["name"], listener["port"], listener["protocol"]) == ("web", 8000, "HTTP")
    # The chart sets no namespacePolicy: routes only from the Gateway's own namespace.
    assert listener.get("allowedRoutes", {}).get("namespaces", {}).get("from", "Same") == "Same"


def test_an_ingress_of_the_default_class_routes_to_ollama(cluster, namespace, ingress):
    ollama_behind_service(cluster, namespace)
    host = f"ollama.{namespace}.sim.test"
    cluster.apply(ingress_for(namespace, host))
    assert cluster.get("ingress", "ollama", "-n", namespace)["spec"]["ingressClassName"] == "traefik"
    status, body, _ = wait_status(cluster, ingress, host, 200)
    assert json.loads(body) == {"version": "0.11.4"}
    assert http(ingress, f"other.{namespace}.sim.test")[0] == 404
    # Traefik publishes its Service's load-balancer address on the Ingress, as on k3s.
    published = cluster.wait_for(
        lambda: cluster.get("ingress", "ollama", "-n", namespace)["status"].get("loadBalancer", {}).get("ingress"),
        timeout=30, what="the Ingress's published address")
    assert published[0]["ip"] == cluster.get("service", "traefik", "-n", "kube-system")[
        "status"]["loadBalancer"]["ingress"][0]["ip"]


def test_an_httproute_on_traefik_gateway_routes_to_ollama_once_the_gateway_allows_its_namespace(
        cluster, namespace, ingress):
    ollama_behind_service(cluster, namespace)
    host = f"route.{namespace}.sim.test"
    cluster.apply({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                   "metadata": {"name": "ollama", "namespace": namespace},
                   "spec": {"parentRefs": [{"name": "traefik-gateway", "namespace": "kube-system"}],
                            "hostnames": [host], "rules": [{"backendRefs": [{"name": "ollama", "port": 11434}]}]}})

    def route_accepted():
        parents = cluster.get("httproute", "ollama", "-n", namespace).get("status", {}).get("parents", [])
        return parents and condition(parents[0], "Accepted")
    # The chart's Gateway takes routes from kube-system only.
    refused = cluster.wait_for(route_accepted, timeout=60, what="Traefik's verdict on the HTTPRoute")
    assert (refused["status"], refused["reason"]) == ("False", "NotAllowedByListeners")
    assert http(ingress, host)[0] == 404
    # What `gateway.listeners.web.namespacePolicy: {from: All}` in a HelmChartConfig renders.
    patch = '[{"op": "add", "path": "/spec/listeners/0/allowedRoutes", "value": {"namespaces": {"from": "%s"}}}]'
    cluster.kubectl("patch", "gateway", "traefik-gateway", "-n", "kube-system", "--type=json", "-p", patch % "All")
    try:
        cluster.wait_for(lambda: route_accepted().get("status") == "True", timeout=60, what="the HTTPRoute Accepted")
        status, body, _ = wait_status(cluster, ingress, host, 200)
        assert json.loads(body) == {"version": "0.11.4"}
    finally:
        cluster.kubectl("patch", "gateway", "traefik-gateway", "-n", "kube-system", "--type=json", "-p", patch % "Same")


def test_a_basic_auth_middleware_refuses_without_credentials_and_passes_with_them(cluster, namespace, ingress):
    ollama_behind_service(cluster, namespace)
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
                   "metadata": {"name": "ollama-users", "namespace": namespace},
                   "stringData": {"username": "alice", "password": "s3cret-pass"}})
    cluster.apply({"apiVersion": "traefik.io/v1alpha1", "kind": "Middleware",
                   "metadata": {"name": "auth", "namespace": namespace},
                   "spec": {"basicAuth": {"secret": "ollama-users", "realm": "ollama"}}})
    host = f"auth.{namespace}.sim.test"
    cluster.apply(ingress_for(namespace, host, {
        "traefik.ingress.kubernetes.io/router.middlewares": f"{namespace}-auth@kubernetescrd"}))
    _, _, headers = wait_status(cluster, ingress, host, 401)
    assert headers.get("Www-Authenticate") == 'Basic realm="ollama"'
    assert http(ingress, host, auth=("alice", "wrong"))[0] == 401
    status, body, _ = wait_status(cluster, ingress, host, 200, auth=("alice", "s3cret-pass"))
    assert json.loads(body) == {"version": "0.11.4"}


def test_an_ingress_port_in_use_is_named_and_nothing_is_left(tmp_path, cluster):
    if cluster.external:
        pytest.skip("starts a simulator of its own")
    from test_lifecycle import owned_pids
    base = 27300
    env = dict(os.environ, LLMOPS_SIM_STATE=str(tmp_path / "s"), LLMOPS_SIM_API_PORT=str(base + 1),
               LLMOPS_SIM_ETCD_PORT=str(base + 2), LLMOPS_SIM_ETCD_PEER_PORT=str(base + 3),
               LLMOPS_SIM_KWOK_PORT=str(base + 4), LLMOPS_SIM_INGRESS_PORT=str(base + 5),
               LLMOPS_SIM_POD_CIDR="10.246.0.0/16")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", base + 5))
        blocker.listen()
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "sim", "up", "--profile", "k3s"], cwd=REPO / "sim", env=env,
                                capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert f"port {base + 5} on 127.0.0.1 (ingress) is already in use" in result.stderr
    assert "LLMOPS_SIM_INGRESS_PORT" in result.stderr
    assert time.monotonic() - started < 60
    assert owned_pids(tmp_path / "s") == []
