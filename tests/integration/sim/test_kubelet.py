"""The simulator's kubelet: pods whose images it runs are run as a kubelet runs them — probes decide
readiness (and EndpointSlices follow), liveness restarts, init containers and native sidecars, volumes as
files, the pod's env, an nginx gate in front of Ollama, and the kube-api-access token.

These tests look at the simulator's own processes and state directory: they skip on an external cluster.
"""

import base64
import json
import os
import threading
import time
from pathlib import Path

import pytest

OLLAMA = "docker.io/ollama/ollama:0.11.4"
GATE = "docker.io/nginxinc/nginx-unprivileged:1.27"


@pytest.fixture(autouse=True)
def simulator_only(cluster):
    if cluster.external:
        pytest.skip("looks at the simulator's processes and state directory")


def state_of(cluster) -> Path:
    return Path(cluster.kubeconfig).parent


def client(cluster):
    from kubernetes import config
    return config.new_client_from_config(str(cluster.kubeconfig))


def pod(name, containers, init=(), volumes=(), labels=None, **spec):
    body = {"containers": list(containers), "terminationGracePeriodSeconds": 5, **spec}
    if init:
        body["initContainers"] = list(init)
    if volumes:
        body["volumes"] = list(volumes)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {"app": name}},
            "spec": body}


def ollama(name="ollama", **extra):
    return dict({"name": name, "image": OLLAMA, "ports": [{"name": "http", "containerPort": 11434}]}, **extra)


def create(cluster, namespace, obj):
    obj = json.loads(json.dumps(obj))
    obj["metadata"]["namespace"] = namespace
    cluster.create(obj)
    return obj["metadata"]["name"]


def get_pod(cluster, namespace, name):
    return cluster.get("pod", name, "-n", namespace)


def condition(p, kind):
    return next((c["status"] for c in p["status"].get("conditions", []) if c["type"] == kind), None)


def wait_ready(cluster, namespace, name, timeout=60):
    return cluster.wait_for(lambda: (lambda p: p if condition(p, "Ready") == "True" else None)(
        get_pod(cluster, namespace, name)), timeout=timeout, what=f"pod {name} Ready")


def shared_file(cluster, p, volume, name, timeout=60):
    """A file a container wrote into an emptyDir, read through the state directory."""
    path = state_of(cluster) / "pods" / p["metadata"]["uid"] / "volumes" / volume / name
    cluster.wait_for(lambda: path.exists() and path.stat().st_size > 0, timeout=timeout, what=f"{path}")
    time.sleep(0.2)  # the writer may still be writing
    return path.read_text()


def events(cluster, namespace, name):
    return cluster.get("events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]


def proxy(cluster, namespace, name, port, path):
    return cluster.kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{name}:{port}/proxy{path}",
                           check=False)


class Recorder:
    """Every version of the namespace's pods and EndpointSlices, from a watch started before the pods exist."""

    def __init__(self, cluster, namespace):
        from kubernetes import client as k8s
        self.api = client(cluster)
        self.core, self.discovery = k8s.CoreV1Api(self.api), k8s.DiscoveryV1Api(self.api)
        self.namespace = namespace
        self.pods, self.slices = [], []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(self.core.list_namespaced_pod, self.pods), daemon=True),
                        threading.Thread(target=self._run, args=(self.discovery.list_namespaced_endpoint_slice,
                                                                 self.slices), daemon=True)]
        for thread in self.threads:
            thread.start()
        time.sleep(1)  # both watches are open before the test creates anything

    def _run(self, lister, sink):
        # Raw events: the client's models refuse an EndpointSlice without endpoints.
        version = None
        while not self.stop.is_set():
            response = lister(self.namespace, watch=True, timeout_seconds=2, resource_version=version,
                              _preload_content=False, _request_timeout=10)
            for line in response:
                event = json.loads(line)
                version = event["object"]["metadata"].get("resourceVersion", version)
                sink.append(event["object"])

    def close(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)


def test_readiness_404_stays_out_of_the_endpoints_and_an_answering_probe_is_in(cluster, namespace):
    recorder = Recorder(cluster, namespace)
    try:
        cluster.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "probed", "namespace": namespace},
                       "spec": {"selector": {"group": "probed"}, "ports": [{"port": 11434, "targetPort": "http"}]}})
        probe = {"periodSeconds": 1, "failureThreshold": 1, "timeoutSeconds": 2}
        create(cluster, namespace, pod("missing", [ollama(readinessProbe=dict(
            probe, httpGet={"path": "/not-there", "port": "http"}))], labels={"group": "probed"}))
        create(cluster, namespace, pod("answers", [ollama(readinessProbe=dict(
            probe, httpGet={"path": "/api/version", "port": 11434}))], labels={"group": "probed"}))
        good = wait_ready(cluster, namespace, "answers")
        time.sleep(6)  # several periods of the failing probe
        bad = get_pod(cluster, namespace, "missing")
    finally:
        recorder.close()
    assert bad["status"]["phase"] == "Running" and condition(bad, "Ready") == "False"
    assert bad["status"]["containerStatuses"][0]["started"] is True
    assert bad["status"]["containerStatuses"][0]["ready"] is False
    assert proxy(cluster, namespace, "missing", 11434, "/api/version").stdout.strip() == '{"version":"0.11.4"}'
    # Never Ready, in any version of the pod the API server held.
    versions = [p for p in recorder.pods if p["metadata"]["name"] == "missing"]
    assert len(versions) >= 2
    assert all(condition(p, "Ready") != "True" for p in versions if p.get("status"))
    # Never a ready endpoint; the answering pod is one.
    bad_ip, good_ip = bad["status"]["podIP"], good["status"]["podIP"]
    ready_ips = {address for s in recorder.slices for e in s.get("endpoints") or []
                 if (e.get("conditions") or {}).get("ready") for address in e["addresses"]}
    assert good_ip in ready_ips and bad_ip not in ready_ips
    unhealthy = [e["message"] for e in events(cluster, namespace, "missing") if e["reason"] == "Unhealthy"]
    assert "Readiness probe failed: HTTP probe failed with statuscode: 404" in unhealthy


def test_a_failing_liveness_probe_restarts_the_container(cluster, namespace):
    create(cluster, namespace, pod("lively", [ollama(livenessProbe={
        "httpGet": {"path": "/not-there", "port": "http"}, "initialDelaySeconds": 1, "periodSeconds": 1,
        "failureThreshold": 2, "terminationGracePeriodSeconds": 2})]))
    first = cluster.wait_for(lambda: (lambda p: p if p["status"].get("containerStatuses", [{}])[0].get("containerID")
                                      else None)(get_pod(cluster, namespace, "lively")), what="a container")
    first_id = first["status"]["containerStatuses"][0]["containerID"]

    def restarted():
        status = get_pod(cluster, namespace, "lively")["status"]["containerStatuses"][0]
        return status if status["restartCount"] >= 1 and status["state"].get("running") else None
    status = cluster.wait_for(restarted, timeout=60, what="a restart")
    assert status["containerID"] != first_id
    assert status["lastState"]["terminated"]["containerID"] == first_id
    reasons = {e["reason"]: e["message"] for e in events(cluster, namespace, "lively")}
    assert "failed liveness probe, will be restarted" in reasons["Killing"]
    assert "Liveness probe failed: HTTP probe failed with statuscode: 404" in reasons["Unhealthy"]


def test_an_exec_probe_runs_in_the_container_as_its_user(cluster, namespace):
    check = ("id -u > /probe/uid; hostname > /probe/host; ollama list > /probe/list; "
             "touch /tmp/x 2>/dev/null || echo read-only > /probe/root")
    create(cluster, namespace, pod("execd", [ollama(
        securityContext={"runAsUser": 1000, "readOnlyRootFilesystem": True},
        env=[{"name": "HOME", "value": "/home/ollama"}],
        volumeMounts=[{"name": "probe", "mountPath": "/probe"}, {"name": "home", "mountPath": "/home/ollama"}],
        readinessProbe={"exec": {"command": ["sh", "-c", check]}, "periodSeconds": 1})],
        volumes=[{"name": "probe", "emptyDir": {}}, {"name": "home", "emptyDir": {}}],
        securityContext={"runAsUser": 2000, "runAsGroup": 2000}))
    p = wait_ready(cluster, namespace, "execd")
    assert shared_file(cluster, p, "probe", "uid").strip() == "1000"  # the container's user, over the pod's
    assert shared_file(cluster, p, "probe", "host").strip() == "execd"
    assert shared_file(cluster, p, "probe", "list").startswith("NAME")
    # readOnlyRootFilesystem: even /tmp (mode 1777) is read-only without a volume there
    assert shared_file(cluster, p, "probe", "root").strip() == "read-only"


def test_init_containers_run_in_order_and_a_failing_one_restarts_with_back_off(cluster, namespace):
    once = "test -f /shared/failed-once || { touch /shared/failed-once; exit 3; }; echo second >> /shared/order"
    shared = [{"name": "shared", "mountPath": "/shared"}]
    create(cluster, namespace, pod(
        "inits", [ollama(volumeMounts=shared)],
        init=[{"name": "first", "image": OLLAMA, "command": ["sh", "-c", "echo first > /shared/order"], "volumeMounts": shared},
              {"name": "second", "image": OLLAMA, "command": ["sh", "-c", once], "volumeMounts": shared}],
        volumes=[{"name": "shared", "emptyDir": {}}]))
    pending = cluster.wait_for(lambda: (lambda p: p if p["status"].get("initContainerStatuses", [{}, {}])[1]
                                        .get("lastState", {}).get("terminated") else None)(
        get_pod(cluster, namespace, "inits")), what="the second init container's first failure")
    assert pending["status"]["phase"] == "Pending" and condition(pending, "Initialized") == "False"
    assert pending["status"]["initContainerStatuses"][1]["lastState"]["terminated"]["exitCode"] == 3
    p = wait_ready(cluster, namespace, "inits")
    inits = p["status"]["initContainerStatuses"]
    assert [s["state"]["terminated"]["reason"] for s in inits] == ["Completed", "Completed"]
    assert inits[0]["restartCount"] == 0 and inits[1]["restartCount"] == 1
    assert shared_file(cluster, p, "shared", "order").split() == ["first", "second"]
    assert any(e["reason"] == "BackOff" for e in events(cluster, namespace, "inits"))


def test_a_native_sidecar_shares_the_pods_network_env_and_volumes(cluster, namespace):
    from sim import network
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": namespace},
                   "data": {"greeting": "hello", "unused": "x"}})
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": namespace},
                   "stringData": {"api-key": "s3cret"}})
    script = ("until ollama list > /shared/list.tmp 2>&1; do sleep 0.5; done; mv /shared/list.tmp /shared/list; "
              "readlink /proc/self/ns/net > /shared/netns; env > /shared/env; "
              "stat -L -c '%a' /etc/sim-secret/key > /shared/secret-mode; cat /etc/sim-secret/key > /shared/secret; "
              "touch /etc/sim-config/new 2>/dev/null || echo read-only > /shared/config-ro; "
              "while true; do cat /etc/sim-config/greet.txt > /shared/greeting.tmp; "
              "mv /shared/greeting.tmp /shared/greeting; sleep 0.5; done")
    sidecar = {"name": "puller", "image": OLLAMA, "restartPolicy": "Always", "command": ["sh", "-c", script],
               "env": [{"name": "OLLAMA_HOST", "value": "127.0.0.1:11434"},
                       {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                       {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                       {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}},
                       {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "api-key"}}},
                       {"name": "COMBINED", "value": "$(POD_NAME)-$(GREETING)"}],
               "volumeMounts": [{"name": "shared", "mountPath": "/shared"},
                                {"name": "config", "mountPath": "/etc/sim-config"},
                                {"name": "secret", "mountPath": "/etc/sim-secret", "readOnly": True}]}
    create(cluster, namespace, pod(
        "sidecar", [ollama(env=[{"name": "OLLAMA_HOST", "value": "127.0.0.1:11434"}])], init=[sidecar],
        volumes=[{"name": "shared", "emptyDir": {}},
                 {"name": "config", "configMap": {"name": "settings", "items": [{"key": "greeting", "path": "greet.txt"}]}},
                 {"name": "secret", "secret": {"secretName": "keys", "defaultMode": 0o400,
                                               "items": [{"key": "api-key", "path": "key"}]}}]))
    p = wait_ready(cluster, namespace, "sidecar")
    sidecar_status = p["status"]["initContainerStatuses"][0]
    assert sidecar_status["started"] is True and sidecar_status["state"].get("running")
    assert shared_file(cluster, p, "shared", "list").startswith("NAME")
    netns = network.pod_netns(state_of(cluster), p["metadata"]["uid"])
    inode = os.stat(network.NETNS_DIR / netns).st_ino
    assert shared_file(cluster, p, "shared", "netns").strip() == f"net:[{inode}]"
    env = dict(line.split("=", 1) for line in shared_file(cluster, p, "shared", "env").splitlines() if "=" in line)
    assert env["POD_NAME"] == "sidecar" and env["POD_IP"] == p["status"]["podIP"]
    assert env["GREETING"] == "hello" and env["API_KEY"] == "s3cret" and env["COMBINED"] == "sidecar-hello"
    assert env["KUBERNETES_SERVICE_HOST"] == network.NODE_IP
    assert shared_file(cluster, p, "shared", "secret") == "s3cret"
    assert shared_file(cluster, p, "shared", "secret-mode").strip() == "400"
    assert shared_file(cluster, p, "shared", "config-ro").strip() == "read-only"
    assert shared_file(cluster, p, "shared", "greeting") == "hello"
    # Ollama honours the pod's OLLAMA_HOST: loopback only, so the pod proxy finds nothing on :11434.
    assert proxy(cluster, namespace, "sidecar", 11434, "/api/version").returncode != 0
    # A changed ConfigMap reaches the mounted file, as the kubelet's sync brings it.
    cluster.kubectl("patch", "configmap", "settings", "-n", namespace, "-p", '{"data":{"greeting":"changed"}}')
    cluster.wait_for(lambda: shared_file(cluster, p, "shared", "greeting") == "changed", timeout=40,
                     what="the changed ConfigMap in the container")


GATE_CONF = """
pid /tmp/nginx.pid;
error_log stderr notice;
events {}
http {
    access_log /dev/stdout;
    client_body_temp_path /tmp/client_body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    server {
        listen 8080;
        location = /healthz { return 200 "ok\\n"; }
        location / { proxy_pass http://127.0.0.1:11434; }
    }
}
"""


def test_an_nginx_gate_proxies_to_ollama_on_localhost(cluster, namespace):
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gate", "namespace": namespace},
                   "data": {"nginx.conf": GATE_CONF}})
    gate = {"name": "gate", "image": GATE, "ports": [{"name": "gate", "containerPort": 8080}],
            "command": ["nginx", "-c", "/etc/gate/nginx.conf", "-g", "daemon off;"],
            "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
            "volumeMounts": [{"name": "gate", "mountPath": "/etc/gate", "readOnly": True}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "gate"}, "periodSeconds": 1}}
    create(cluster, namespace, pod("gated", [ollama(env=[{"name": "OLLAMA_HOST", "value": "127.0.0.1:11434"}]), gate],
                                   volumes=[{"name": "gate", "configMap": {"name": "gate"}}]))
    p = wait_ready(cluster, namespace, "gated")
    answer = cluster.wait_for(lambda: proxy(cluster, namespace, "gated", 8080, "/api/version").stdout.strip(),
                              what="Ollama through the gate")
    assert answer == '{"version":"0.11.4"}'
    assert proxy(cluster, namespace, "gated", 11434, "/api/version").returncode != 0
    log = state_of(cluster) / "logs" / "pods" / f"{namespace}_gated_{p['metadata']['uid']}" / "gate" / "0.log"
    assert '"GET /api/version HTTP/1.1" 200' in log.read_text()
    workers = [line for line in log.read_text().splitlines() if "start worker process" in line]
    assert workers, log.read_text()


TOKEN_CLIENT = r"""
import json, os, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(sa + "/token").read()
namespace = open(sa + "/namespace").read()
url = "https://%s:%s/api/v1/namespaces/%s/pods/%s" % (os.environ["KUBERNETES_SERVICE_HOST"],
      os.environ["KUBERNETES_SERVICE_PORT"], namespace, os.environ["HOSTNAME"])
context = ssl.create_default_context(cafile=sa + "/ca.crt")
request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
with urllib.request.urlopen(request, context=context, timeout=10) as response:
    body = json.load(response)
out = {"name": body["metadata"]["name"], "uid": body["metadata"]["uid"], "token": token}
with open("/shared/me.tmp", "w") as fh:
    json.dump(out, fh)
os.rename("/shared/me.tmp", "/shared/me.json")
import time
time.sleep(3600)
"""


def test_the_kube_api_access_token_reads_the_pods_own_object(cluster, namespace):
    # python3 is the host's (the containers' /usr is the host's, under an overlay); a real nginx image has
    # none. It stands in for any in-pod client of the API server.
    cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": "read-pods", "namespace": namespace},
                   "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
    cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "read-pods", "namespace": namespace},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-pods"},
                   "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}]})
    client_container = {"name": "client", "image": GATE, "command": ["python3", "-c", TOKEN_CLIENT],
                        "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}
    create(cluster, namespace, pod("whoami", [client_container], volumes=[{"name": "shared", "emptyDir": {}}]))
    p = wait_ready(cluster, namespace, "whoami")
    assert any(v["name"].startswith("kube-api-access-") for v in p["spec"]["volumes"])
    me = json.loads(shared_file(cluster, p, "shared", "me.json"))
    assert me["name"] == "whoami" and me["uid"] == p["metadata"]["uid"]
    claims = json.loads(base64.urlsafe_b64decode(me["token"].split(".")[1] + "=="))
    assert claims["kubernetes.io"]["pod"]["name"] == "whoami"
    assert claims["sub"] == f"system:serviceaccount:{namespace}:default"


def test_what_the_simulator_cannot_run_waits_with_a_reason_and_an_event(cluster, namespace):
    create(cluster, namespace, pod("mixed", [ollama(), {"name": "other", "image": "docker.io/library/redis:7"}]))
    create(cluster, namespace, pod("hostpath", [ollama(volumeMounts=[{"name": "host", "mountPath": "/host"}])],
                                   volumes=[{"name": "host", "hostPath": {"path": "/etc"}}]))

    def waiting():
        statuses = {s["name"]: s for s in get_pod(cluster, namespace, "mixed")["status"].get("containerStatuses", [])}
        return statuses if statuses.get("ollama", {}).get("state", {}).get("running") else None
    statuses = cluster.wait_for(waiting, what="the runnable container running")
    assert statuses["other"]["state"]["waiting"]["reason"] == "ImageNotRunnable"
    assert "redis:7" in statuses["other"]["state"]["waiting"]["message"]
    assert condition(get_pod(cluster, namespace, "mixed"), "Ready") == "False"
    assert any(e["reason"] == "Failed" and "redis:7" in e["message"] for e in events(cluster, namespace, "mixed"))
    refused = cluster.wait_for(lambda: [e for e in events(cluster, namespace, "hostpath") if e["reason"] == "FailedMount"],
                               what="a FailedMount event")
    assert "hostPath" in refused[0]["message"]
    assert get_pod(cluster, namespace, "hostpath")["status"]["phase"] == "Pending"


def test_deletion_stops_every_container_and_removes_the_sandbox(cluster, namespace):
    from sim import network
    create(cluster, namespace, pod("doomed", [ollama()]))
    p = wait_ready(cluster, namespace, "doomed")
    netns = network.pod_netns(state_of(cluster), p["metadata"]["uid"])
    assert (network.NETNS_DIR / netns).exists()
    started = time.monotonic()
    cluster.kubectl("delete", "pod", "doomed", "-n", namespace, "--wait=true", timeout=60)
    assert time.monotonic() - started < 15
    assert not (network.NETNS_DIR / netns).exists()
    assert not (state_of(cluster) / "pods" / p["metadata"]["uid"]).exists()


def set_down_nodes(cluster, nodes):
    """The simulator's interface for a lost node: state.json's down_nodes (what `sim node NAME down` sets)."""
    path = state_of(cluster) / "state.json"
    state = json.loads(path.read_text())
    state["down_nodes"] = list(nodes)
    partial = path.with_suffix(".json.test-partial")
    partial.write_text(json.dumps(state, indent=2))
    partial.replace(path)


def test_pods_on_a_down_node_lose_their_processes_until_it_is_back(cluster, namespace):
    from sim import network
    create(cluster, namespace, pod("stranded", [ollama(readinessProbe={
        "httpGet": {"path": "/api/version", "port": "http"}, "periodSeconds": 1})]))
    p = wait_ready(cluster, namespace, "stranded")
    netns = network.NETNS_DIR / network.pod_netns(state_of(cluster), p["metadata"]["uid"])
    try:
        set_down_nodes(cluster, [p["spec"]["nodeName"]])
        cluster.wait_for(lambda: not netns.exists(), timeout=20, what="the sandbox gone with the node")
        assert proxy(cluster, namespace, "stranded", 11434, "/api/version").returncode != 0
    finally:
        set_down_nodes(cluster, [])

    def back():
        status = get_pod(cluster, namespace, "stranded")["status"]["containerStatuses"][0]
        return status if status["restartCount"] == 1 and status["ready"] else None
    status = cluster.wait_for(back, timeout=30, what="the pod running again")
    assert status["lastState"]["terminated"]["reason"] == "Unknown"
    assert netns.exists()
    assert proxy(cluster, namespace, "stranded", 11434, "/api/version").stdout.strip() == '{"version":"0.11.4"}'
