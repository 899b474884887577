"""Integration fixtures: the simulated GPU cluster, or any cluster given by LLMOPS_TEST_KUBECONFIG.

With LLMOPS_TEST_KUBECONFIG set, the simulator is skipped; tests marked for a simulator profile
run only when LLMOPS_TEST_PROFILE names that profile (what the given cluster looks like).
"""

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "sim"))

# The test cluster lives beside (not in) a demo cluster: its own state directory, ports and pod network.
# Parallel runs pick their own with LLMOPS_TEST_SIM_STATE, LLMOPS_TEST_SIM_PORT_BASE, LLMOPS_TEST_SIM_POD_CIDR.
_PORT_BASE = int(os.environ.get("LLMOPS_TEST_SIM_PORT_BASE", "26540"))
TEST_ENV = {
    "LLMOPS_SIM_STATE": os.environ.get("LLMOPS_TEST_SIM_STATE", str(REPO / ".sim-test")),
    "LLMOPS_SIM_API_PORT": str(_PORT_BASE + 1),
    "LLMOPS_SIM_ETCD_PORT": str(_PORT_BASE + 2),
    "LLMOPS_SIM_ETCD_PEER_PORT": str(_PORT_BASE + 3),
    "LLMOPS_SIM_KWOK_PORT": str(_PORT_BASE + 4),
    "LLMOPS_SIM_INGRESS_PORT": str(_PORT_BASE + 5),
    "LLMOPS_SIM_POD_CIDR": os.environ.get("LLMOPS_TEST_SIM_POD_CIDR", "10.245.0.0/16"),
}


def pytest_collection_modifyitems(items):
    # Group tests by profile so the simulator restarts as rarely as possible.
    # Within a profile, the simulator's own checks come first: they look at the cluster as the profile made
    # it, before the collection's tests install anything (local-path on baremetal, labels on eks).
    def key(item):
        marker = item.get_closest_marker("profile")
        return (marker.args[0] if marker else "k3s", "/integration/sim/" not in item.nodeid.replace("\\", "/"))
    items.sort(key=key)


# A client inside a pod's network namespace: one bounded TCP connect and HTTP GET; prints the outcome.
POD_CLIENT = textwrap.dedent("""
    import socket, sys
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    try:
        with socket.create_connection((host, port), timeout=3) as sock:
            sock.settimeout(5)
            sock.sendall(f"GET {path} HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n".encode())
            print(sock.recv(64).split(b"\\r\\n")[0].decode())
    except OSError as exc:
        print("blocked:", type(exc).__name__)
""")


class Cluster:
    def __init__(self, kubeconfig: Path, user_kubeconfig, profile, kubectl_bin, external, models=None):
        self.kubeconfig = Path(kubeconfig)
        # model reference -> manifest digest, as the simulator's registry holds them
        self.models = models or {}
        self._api = None
        self.user_kubeconfig = user_kubeconfig
        self.profile = profile
        self.kubectl_bin = kubectl_bin
        self.external = external

    def kubectl(self, *args, kubeconfig=None, check=True, input=None, timeout=120):
        cmd = [self.kubectl_bin, f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        result = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
        return result

    def get(self, *args, **kwargs):
        return json.loads(self.kubectl("get", "-o", "json", *args, **kwargs).stdout)

    def apply(self, obj, **kwargs):
        return self.kubectl("apply", "-f", "-", input=json.dumps(obj), **kwargs)

    def create(self, obj, **kwargs):
        return self.kubectl("create", "-f", "-", input=json.dumps(obj), **kwargs)

    def wait_for(self, predicate, timeout=60, interval=0.5, what="condition"):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")

    def model(self, short_name):
        """The full reference of a registry model by its short name (tiny-a)."""
        for ref in self.models:
            if ref.rsplit("/", 1)[-1].split(":")[0] == short_name:
                return ref
        pytest.skip(f"no registry model {short_name} (set LLMOPS_TEST_MODELS for an external cluster)")

    def api_client(self):
        from kubernetes import config
        if self._api is None:
            self._api = config.new_client_from_config(str(self.kubeconfig))
        return self._api

    def gate_keys(self, namespace, name="ollama"):
        """The gate's keys of the workload `name`: {"admin": key, "clients": [keys]} (clients empty when the Secret
        NAME-api-keys does not exist), read from the Secrets the collection writes."""
        import base64
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        core = client.CoreV1Api(self.api_client())

        def data(secret, key):
            try:
                value = core.read_namespaced_secret(secret, namespace).data or {}
            except ApiException as exc:
                if exc.status == 404:
                    return ""
                raise
            return base64.b64decode(value.get(key) or "").decode()

        clients = [k.strip() for k in data(f"{name}-api-keys", "keys").splitlines()
                   if k.strip() and not k.startswith("#")]
        return {"admin": data(f"{name}-gate-admin", "key"), "clients": clients}

    def _ollama_route(self, namespace, pod):
        """(port, headers) to reach Ollama in a pod: a pod of the collection (a container named gate) through the
        gate's port with its admin key (kube-apiserver consumes Authorization, so it travels in
        X-Llmops-Admin-Key); any other pod (the simulator's own Ollama pods) on Ollama's 11434."""
        from kubernetes import client
        spec = client.CoreV1Api(self.api_client()).read_namespaced_pod(pod, namespace)
        gate = next((c for c in spec.spec.containers if c.name == "gate"), None)
        if gate is None:
            return 11434, {}
        port = next(p.container_port for p in gate.ports or [] if p.name == "http")
        instance = (spec.metadata.labels or {}).get("app.kubernetes.io/instance", "ollama")
        return port, {"X-Llmops-Admin-Key": self.gate_keys(namespace, instance)["admin"]}

    def ollama(self, namespace, pod, path, body=None, check=True, timeout=300, port=None, headers=None):
        """Call Ollama's API in a pod through the API server's pod proxy.

        The collection's pods are reached through their gate with the admin key, other pods on 11434 (see
        _ollama_route); port and headers replace that choice (headers={} calls the gate without a key).
        Returns the decoded JSON answer; with check=False an error answer comes back as
        {"error": ..., "http_status": N} instead of raising.
        """
        from kubernetes.client.exceptions import ApiException
        api = self.api_client()
        resource = f"/api/v1/namespaces/{namespace}/pods/{pod}"
        try:
            if port is None or headers is None:
                route_port, route_headers = self._ollama_route(namespace, pod)
                port = route_port if port is None else port
                headers = route_headers if headers is None else headers
            resource = f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}"
            response = api.call_api(
                resource, "POST" if body is not None else "GET", body=body,
                header_params=dict({"Content-Type": "application/json", "Accept": "application/json"}, **headers),
                auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
                _request_timeout=timeout)
            return json.loads(response.data)
        except ApiException as exc:
            if check:
                raise AssertionError(f"{resource} answered {exc.status}: {exc.body}") from None
            try:
                answer = json.loads(exc.body)
            except (TypeError, ValueError):
                answer = {"error": str(exc.body)}
            return dict(answer, http_status=exc.status)

    def call_from_pod(self, namespace, pod, host, port, path="/api/version", timeout=30):
        """From inside a simulator pod's network namespace, as a process of the pod would: the HTTP status line,
        or `blocked: <error>` when the connection is refused or times out."""
        from sim import network
        uid = self.get("pod", "-n", namespace, pod)["metadata"]["uid"]
        netns = network.pod_netns(self.kubeconfig.parent, uid)
        result = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", POD_CLIENT, host, str(port), path],
                                capture_output=True, text=True, timeout=timeout, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def gpu_nodes(self):
        return [n["metadata"]["name"] for n in self.get("nodes")["items"]
                if int(n["status"].get("allocatable", {}).get("nvidia.com/gpu", "0")) > 0]


class SimManager:
    def __init__(self):
        self.profile = None
        self.saved_env = {k: os.environ.get(k) for k in TEST_ENV}
        os.environ.update(TEST_ENV)

    def ensure(self, profile):
        from sim import build, cluster
        if self.profile != profile:
            cluster.Cluster(log=lambda *_: None).down(quiet=True)
            cluster.Cluster(log=lambda *_: None).up(profile)
            self.profile = profile
        state = Path(TEST_ENV["LLMOPS_SIM_STATE"])
        return Cluster(state / "kubeconfig", state / "kubeconfig-user", profile, str(build.binary_path("kubectl")), False,
                       models=cluster.read_state().get("models"))

    def close(self):
        from sim import cluster
        cluster.Cluster(log=lambda *_: None).down(quiet=True)
        for k, v in self.saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="session")
def sim_manager():
    if os.environ.get("LLMOPS_TEST_KUBECONFIG"):
        yield None
        return
    manager = SimManager()
    try:
        yield manager
    finally:
        manager.close()


@pytest.fixture
def cluster(request, sim_manager):
    marker = request.node.get_closest_marker("profile")
    profile = marker.args[0] if marker else "k3s"
    if sim_manager is None:
        wanted = os.environ.get("LLMOPS_TEST_PROFILE", "k3s")
        if wanted != profile:
            pytest.skip(f"needs a cluster like the simulator's '{profile}' profile (LLMOPS_TEST_PROFILE={wanted})")
        models = json.loads(os.environ.get("LLMOPS_TEST_MODELS", "{}"))
        return Cluster(os.environ["LLMOPS_TEST_KUBECONFIG"], os.environ.get("LLMOPS_TEST_USER_KUBECONFIG"),
                       profile, os.environ.get("KUBECTL", "kubectl"), True, models=models)
    return sim_manager.ensure(profile)


@pytest.fixture
def namespace(cluster):
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
    # Terminating pods still hold their GPUs; the next test's plan must not count them.
    cluster.kubectl("wait", "--for=delete", "pods", "--all", "-n", name, "--timeout=90s", check=False, timeout=120)


class PlaybookRun:
    def __init__(self, completed):
        self.rc = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        try:
            self.report = json.loads(completed.stdout[completed.stdout.index("{"):])
        except ValueError:
            self.report = {}

    @property
    def stats(self):
        return self.report.get("stats", {}).get("localhost", {})

    @property
    def changed(self):
        return self.stats.get("changed", 0)

    def task_results(self, name_part):
        """The localhost results of every task whose name contains name_part."""
        out = []
        for play in self.report.get("plays", []):
            for task in play.get("tasks", []):
                if name_part in task["task"]["name"]:
                    out.extend(task["hosts"].values())
        return out

    @property
    def failure(self):
        """Message of the first failed task."""
        for play in self.report.get("plays", []):
            for task in play.get("tasks", []):
                for result in task["hosts"].values():
                    if result.get("failed"):
                        return result.get("msg", "")
        return None

    def __repr__(self):
        return f"rc={self.rc} stats={self.stats} failure={self.failure!r} stderr={self.stderr[-2000:]}"


@pytest.fixture
def playbook(cluster):
    """Run a playbook of the collection against the test cluster, with the sim inventory."""
    def run(name, extra_vars=None, check=False, diff=False, kubeconfig=None, inventory="inventories/sim", timeout=900):
        variables = {"ollama_kubeconfig": str(kubeconfig or cluster.kubeconfig)}
        variables.update(extra_vars or {})
        cmd = [str(REPO / ".venv" / "bin" / "ansible-playbook"), str(REPO / "playbooks" / name),
               "-i", str(REPO / inventory), "-e", json.dumps(variables)]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        registry = next(iter(cluster.models), "10.245.255.250:5000/").split("/", 1)[0]
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
                   ANSIBLE_NOCOLOR="1", LLMOPS_SIM_REGISTRY=registry)
        completed = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout, check=False)
        return PlaybookRun(completed)
    return run
