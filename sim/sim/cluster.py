"""Bring the simulated control plane up and down: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, the KWOK controller and the simulator's own controller (volumes, Ollama pods)."""

import base64
import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import build, hosts, models, netpol, network, pki, profiles, registry, runtime, traefik
from .errors import SimError
from .kube import Kube, wait_for
from .paths import SIM_ROOT, cache_dir, read_versions, state_dir

HOST = "127.0.0.1"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
DEFAULT_POD_CIDR = "10.244.0.0/16"
# Inside the pod network namespace: docker-registry on the namespace's loopback, its proxy on a pod-CIDR address.
REGISTRY_PORT, REGISTRY_PROXY_PORT = 5001, 5000
DEFAULT_PORTS = {"etcd": 23790, "etcd_peer": 23800, "apiserver": 26443, "kwok": 26447,
                 "ingress": traefik.DEFAULT_INGRESS_PORT}
PORT_ENV = {"etcd": "LLMOPS_SIM_ETCD_PORT", "etcd_peer": "LLMOPS_SIM_ETCD_PEER_PORT",
            "apiserver": "LLMOPS_SIM_API_PORT", "kwok": "LLMOPS_SIM_KWOK_PORT", "ingress": traefik.INGRESS_PORT_ENV}
# Components in start order; down stops them in reverse.
COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "api-relay", "simctl"]


def _state_file() -> Path:
    return state_dir() / "state.json"


def read_state() -> dict:
    try:
        return json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return {}


def _write_state(state: dict) -> None:
    # Atomic: the simulator's controller may read the file while it is rewritten.
    partial = _state_file().with_suffix(".json.partial")
    # Root-only: it holds each component's environment (for restarts in place).
    with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        handle.write(json.dumps(state, indent=2))
    partial.chmod(0o600)
    partial.replace(_state_file())


@contextlib.contextmanager
def locked_state():
    """Read, change and write state.json with no other command of the simulator in between."""
    with open(state_dir() / "state.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state = read_state()
            yield state
            if state:
                _write_state(state)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _ports() -> dict:
    ports = {}
    for name, default in DEFAULT_PORTS.items():
        raw = os.environ.get(PORT_ENV[name], str(default))
        if not raw.isdigit() or not 1 <= int(raw) <= 65535:
            raise SimError(f"{PORT_ENV[name]}={raw!r} is not a port", f"set {PORT_ENV[name]} to a number from 1 to 65535")
        ports[name] = int(raw)
    return ports


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def node_grace_seconds(node_count: int) -> int:
    """How long a node may miss its heartbeat before it is NotReady."""
    return 20 if node_count <= 500 else min(300, 20 + node_count // 25)


def _check_port_free(name: str, port: int, grace: float = 10.0) -> None:
    # A cluster stopped a moment ago may still be closing its listeners.
    deadline = time.monotonic() + grace
    while not _port_free(port):
        if time.monotonic() >= deadline:
            raise SimError(f"port {port} on {HOST} ({name}) is already in use",
                           f"stop what holds it (`ss -ltnp sport = :{port}`), run make sim-down, "
                           f"or set {PORT_ENV[name]} to a free port")
        time.sleep(0.5)


OWNER_ENV = "LLMOPS_SIM_OWNER"


def _alive(pid: int, marker: str, exec_grace: float = 2.0) -> bool:
    """A pid counts as ours only while its environment carries our owner mark (pids get reused).

    A process in the middle of execve (`ip netns exec` becoming kube-router, say) shows an empty environment
    for a moment, longer on a loaded machine: while it is not a zombie, read again for up to exec_grace seconds.
    """
    mark = f"{OWNER_ENV}={marker}".encode()
    deadline = time.monotonic() + exec_grace
    while True:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        if environ or state in ("Z", "X") or time.monotonic() >= deadline:
            return mark in environ.split(b"\0")
        time.sleep(0.05)


def _pid_of_ours(marker: str) -> list:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and _alive(int(entry.name), marker, exec_grace=0):
            pids.append(int(entry.name))
    return pids


def _live_owner_suffixes(scans: int = 2, pause: float = 0.5) -> set:
    """The network suffixes of every simulated cluster with a process alive now (any state directory).

    Scanned twice: a process in the middle of execve shows an empty environment for a moment."""
    prefix = f"{OWNER_ENV}=".encode()
    owners = set()
    for scan in range(scans):
        if scan:
            time.sleep(pause)
        owners |= _owner_marks(prefix)
    return {network.suffix(owner) for owner in owners}


def _owner_marks(prefix: bytes) -> set:
    owners = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        owners.update(v[len(prefix):].decode(errors="replace") for v in environ.split(b"\0") if v.startswith(prefix))
    return owners


def kubeconfig_text(ports: dict, pki_dir: Path, client: str, context: str, server_host: str = HOST) -> str:
    def data(path):
        return base64.b64encode(path.read_bytes()).decode()

    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "llmops-sim", "cluster": {"server": f"https://{server_host}:{ports['apiserver']}",
                                                          "certificate-authority-data": data(pki_dir / "ca.crt")}}],
        "users": [{"name": context, "user": {"client-certificate-data": data(pki_dir / f"{client}.crt"),
                                             "client-key-data": data(pki_dir / f"{client}.key")}}],
        "contexts": [{"name": context, "context": {"cluster": "llmops-sim", "user": context}}],
    }, indent=2)


class Cluster:
    def __init__(self, log=print):
        self.dir = state_dir()
        self.pki = self.dir / "pki"
        self.logs = self.dir / "logs"
        self.log = log

    @property
    def marker(self) -> str:
        return str(self.dir.resolve())

    # ---- lifecycle -------------------------------------------------------------------------
    def up(self, profile_name: str) -> dict:
        profile = profiles.load(profile_name)
        if profile.get("scale"):
            profiles.scale_node_count()
        if profile.get("ssh_hosts"):
            hosts.check_prerequisites(self.dir)
        state = read_state()
        if state and self._all_running(state):
            if state["profile"] != profile_name:
                raise SimError(f"the simulated cluster is already up with profile '{state['profile']}'",
                               "run make sim-down first, then make sim-up PROFILE=" + profile_name)
            self.log(f"simulated cluster already up (profile {profile_name})")
            self._apply_profile(state, profile)
            self._start_hosts(state, profile)
            return state
        if state or _pid_of_ours(self.marker):
            self.log("cleaning up a previous simulated cluster that is no longer whole")
            self.down(quiet=True)
        binaries = build.build_all(log=self.log)
        ports = _ports()
        for name, port in ports.items():
            _check_port_free(name, port)
        started = time.monotonic()
        state = {"profile": profile_name, "ports": ports, "pids": {}, "marker": self.marker, "pod_cidr": _pod_cidr(),
                 "kubernetes_version": read_versions()["KUBERNETES_VERSION"]}
        try:
            self._prepare_dirs(ports)
            self._start_control_plane(state, binaries, profiles.node_count(profile))
            self._apply_profile(state, profile)
            if netpol.enabled(profile):
                self._start_policy_engine(state, binaries)
            self._start_hosts(state, profile)
        except BaseException:
            self._keep_failed_logs()
            self.down(quiet=True)
            raise
        state["ready_seconds"] = round(time.monotonic() - started, 1)
        _write_state(state)
        self.log(f"simulated cluster up (profile {profile_name}) in {state['ready_seconds']}s; "
                 f"KUBECONFIG={self.dir / 'kubeconfig'}")
        return state

    def _keep_failed_logs(self) -> None:
        """A failed start removes its state; its logs move to the cache so the cause stays readable."""
        kept = cache_dir() / "failed-start-logs"
        shutil.rmtree(kept, ignore_errors=True)
        if self.logs.exists():
            shutil.copytree(self.logs, kept)

    def down(self, quiet: bool = False) -> None:
        state = read_state()
        pids = [p for p in (state.get("pids") or {}).values()]
        for pid in reversed(pids):
            self._terminate(pid)
        for pid in _pid_of_ours(self.marker):
            self._terminate(pid)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _pid_of_ours(self.marker):
            time.sleep(0.2)
        for pid in _pid_of_ours(self.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        hosts.stop(self.dir)
        runtime.cleanup(self.dir)
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
        if not quiet:
            self.log("simulated cluster down; no processes or state left")

    def _terminate(self, pid: int) -> None:
        if _alive(pid, self.marker):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _all_running(self, state: dict) -> bool:
        pids = state.get("pids") or {}
        return set(COMPONENTS) <= set(pids) and all(_alive(pid, self.marker) for pid in pids.values())

    # ---- start -----------------------------------------------------------------------------
    def _prepare_dirs(self, ports: dict) -> None:
        for sub in ("etcd", "logs", "volumes", "config"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / ".gitignore").write_text("*\n")
        pki.create_all(self.pki, SERVICE_IP, network.NODE_IP)
        (self.dir / "kubeconfig").write_text(kubeconfig_text(ports, self.pki, "admin", "llmops-sim"))
        (self.dir / "kubeconfig").chmod(0o600)
        (self.dir / "kubeconfig-user").write_text(kubeconfig_text(ports, self.pki, "user", "llmops-sim-user"))
        (self.dir / "kubeconfig-user").chmod(0o600)
        for client in ("controller-manager", "scheduler", "kwok"):
            (self.dir / "config" / f"{client}.kubeconfig").write_text(
                kubeconfig_text(ports, self.pki, client, f"sim-{client}"))
        # kube-router runs in the node namespace: it reaches the API server through the node-address relay.
        (self.dir / "config" / "kube-router.kubeconfig").write_text(
            kubeconfig_text(ports, self.pki, "kube-router", "sim-kube-router", server_host=network.NODE_IP))

    def _spawn(self, state: dict, name: str, argv: list, env=None) -> None:
        env = dict(env or os.environ, **{OWNER_ENV: self.marker})
        state["pids"][name] = self.popen(name, argv, env)
        # `sim restart` starts it again from these, in place.
        state.setdefault("spawn", {})[name] = {"argv": [str(a) for a in argv], "env": env}
        _write_state(state)

    def popen(self, name: str, argv: list, env: dict) -> int:
        with open(self.logs / f"{name}.log", "ab") as logfile:
            proc = subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=env, cwd=self.dir)
        return proc.pid

    def _check_exited(self, state: dict, name: str) -> None:
        if not _alive(state["pids"][name], self.marker):
            lines = (self.logs / f"{name}.log").read_text(errors="replace").strip().splitlines()
            cause = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else "no output")
            raise SimError(f"{name} exited during start: {cause.strip()[:300]}",
                           f"read {cache_dir() / 'failed-start-logs' / (name + '.log')}, mend the cause, "
                           "then run make sim-up again")

    def _wait(self, state, name, predicate, timeout, interval=0.5):
        def check():
            self._check_exited(state, name)
            return predicate()
        try:
            return wait_for(check, timeout, interval=interval, what=f"{name} to become ready")
        except SimError as exc:
            self._check_exited(state, name)
            raise exc

    def _start_control_plane(self, state: dict, binaries: dict, node_count: int) -> None:
        ports, p, d, cfg = state["ports"], self.pki, self.dir, self.dir / "config"
        self._spawn(state, "etcd", [
            str(binaries["etcd"]), "--name=sim", f"--data-dir={d / 'etcd'}",
            f"--listen-client-urls=http://{HOST}:{ports['etcd']}", f"--advertise-client-urls=http://{HOST}:{ports['etcd']}",
            f"--listen-peer-urls=http://{HOST}:{ports['etcd_peer']}",
            f"--initial-advertise-peer-urls=http://{HOST}:{ports['etcd_peer']}",
            f"--initial-cluster=sim=http://{HOST}:{ports['etcd_peer']}",
            "--quota-backend-bytes=4294967296", "--unsafe-no-fsync", "--log-level=warn"])
        self._wait(state, "etcd", lambda: _http_ok(f"http://{HOST}:{ports['etcd']}/health"), 30)
        self._spawn(state, "kube-apiserver", [
            str(binaries["kube-apiserver"]),
            f"--etcd-servers=http://{HOST}:{ports['etcd']}",
            f"--bind-address={HOST}", f"--advertise-address={HOST}", f"--secure-port={ports['apiserver']}",
            f"--tls-cert-file={p / 'apiserver.crt'}", f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p / 'sa.pub'}", f"--service-account-signing-key-file={p / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            "--enable-admission-plugins=NodeRestriction,PodSecurity",
            "--allow-privileged=true",
            # Short eviction grace so node-loss tests finish in seconds, not five minutes.
            "--default-not-ready-toleration-seconds=20", "--default-unreachable-toleration-seconds=20",
            "--profiling=false", "--v=0"])
        api = Kube(HOST, ports["apiserver"], p)
        self._wait(state, "kube-apiserver", lambda: api.request("GET", "/readyz")[0] == 200, 90)
        kube = read_versions()["KUBERNETES_VERSION"]
        self._spawn(state, "kube-controller-manager", [
            str(binaries["kube-controller-manager"]), f"--kubeconfig={cfg / 'controller-manager.kubeconfig'}",
            f"--authentication-kubeconfig={cfg / 'controller-manager.kubeconfig'}",
            f"--authorization-kubeconfig={cfg / 'controller-manager.kubeconfig'}",
            f"--service-account-private-key-file={p / 'sa.key'}", f"--root-ca-file={p / 'ca.crt'}",
            f"--cluster-signing-cert-file={p / 'ca.crt'}", f"--cluster-signing-key-file={p / 'ca.key'}",
            "--use-service-account-credentials=true", "--leader-elect=false", "--secure-port=0",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # 20 s makes node-loss tests quick; KWOK renewing thousands of leases on two cores needs longer.
            f"--node-monitor-grace-period={node_grace_seconds(node_count)}s", "--concurrent-deployment-syncs=10",
            # The default 20 QPS makes lifting the not-ready taint of thousands of nodes take minutes.
            "--kube-api-qps=1000", "--kube-api-burst=2000", "--v=0"])
        self._spawn(state, "kube-scheduler", [
            str(binaries["kube-scheduler"]), f"--kubeconfig={cfg / 'scheduler.kubeconfig'}",
            f"--authentication-kubeconfig={cfg / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={cfg / 'scheduler.kubeconfig'}",
            "--leader-elect=false", "--secure-port=0", "--kube-api-qps=1000", "--kube-api-burst=2000", "--v=0"])
        # KWOK's stages leave the pods the simulator runs (sim/sim/images.py) to the simulator's kubelet.
        from .images import write_kwok_config
        self._spawn(state, "kwok", [
            str(binaries["kwok"]), f"--kubeconfig={cfg / 'kwok.kubeconfig'}",
            f"--config={write_kwok_config(cfg / 'kwok.yaml')}",
            f"--manage-nodes-with-annotation-selector={profiles.FAKE_NODE_ANNOTATION}=fake",
            f"--cidr={_first_host_cidr(state['pod_cidr'])}", f"--node-ip={network.NODE_IP}",
            f"--server-address={HOST}:{ports['kwok']}",
            f"--node-lease-duration-seconds={2 * node_grace_seconds(node_count)}",
            # INFO logs every node patch: at thousands of nodes that is most of its CPU.
            "--v=WARN"])
        self._start_pod_network_and_registry(state)
        # Pods reach the API server on the node address, as in-cluster clients reach the `kubernetes` Service.
        self._spawn(state, "api-relay", ["socat", f"TCP-LISTEN:{ports['apiserver']},bind={network.NODE_IP},fork,reuseaddr",
                                         f"TCP:{HOST}:{ports['apiserver']}"])
        self._spawn(state, "simctl", [sys.executable, "-m", "sim", "controller", "--state", str(self.dir)],
                    env=dict(os.environ, PYTHONPATH=str(SIM_ROOT)))
        self.log(f"control plane (Kubernetes {kube}) started; waiting for controllers")
        # The ServiceAccount controller creates `default` once the controller manager runs.
        self._wait(state, "kube-controller-manager",
                   lambda: api.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200, 60)
        for name in ("kube-scheduler", "kwok", "simctl"):
            self._check_exited(state, name)

    def _start_pod_network_and_registry(self, state: dict) -> None:
        state["network"] = network.setup(self.dir, state["pod_cidr"], _live_owner_suffixes)
        _write_state(state)
        reg = registry.start(self.dir / "registry", REGISTRY_PORT, REGISTRY_PROXY_PORT,
                             storage_dir=cache_dir() / "registry-storage", listen_host=state["network"]["registry_ip"],
                             netns=state["network"]["registry_netns"], extra_env={OWNER_ENV: self.marker})
        generated = models.generate(cache_dir() / "models")
        state["registry"] = reg["url"].split("://", 1)[1]
        state["models"] = registry.publish(reg["url"], generated)
        _write_state(state)

    def _start_policy_engine(self, state: dict, binaries: dict) -> None:
        netpol.check_tools()
        api = Kube(HOST, state["ports"]["apiserver"], self.pki)
        api.create(netpol.CLUSTER_ROLE)
        api.create(netpol.CLUSTER_ROLE_BINDING)
        node = api.list_all("/api/v1/nodes")[0][0]["metadata"]["name"]
        self._spawn(state, "kube-router", netpol.argv(binaries["kube-router"], self.dir,
                                                      self.dir / "config" / "kube-router.kubeconfig", node,
                                                      SERVICE_CIDR))
        netpol.wait_synced(self.dir, lambda: self._check_exited(state, "kube-router"))

    # ---- profile ---------------------------------------------------------------------------
    def _apply_profile(self, state: dict, profile: dict) -> None:
        api = Kube(HOST, state["ports"]["apiserver"], self.pki)
        nodes = profiles.nodes(profile, state["kubernetes_version"])
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(api.create, nodes))
        want = {n["metadata"]["name"] for n in nodes}
        timeout = 60 + len(want) * 0.2

        def all_ready():
            items, _ = api.list_all("/api/v1/nodes")
            # Ready, and the node lifecycle controller has lifted its not-ready taint; a node downed on
            # purpose (sim node NAME --state down) stays down.
            ready = set(state.get("down_nodes") or []) | {n["metadata"]["name"] for n in items
                     if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
                     and not any(t["key"].startswith("node.kubernetes.io/") for t in n["spec"].get("taints", []))}
            return want <= ready
        # Each poll lists every node: at thousands of nodes, poll rarely so the poll does not starve KWOK.
        self._wait(state, "kwok", all_ready, timeout, interval=0.5 if len(want) < 500 else max(3, len(want) / 500))
        # Only now: DaemonSet pods tolerate not-ready nodes, and the node lifecycle controller marks the
        # pods of a node that is still coming up NotReady for good.
        for obj in profiles.objects(profile):
            api.create(obj)
        for plugin in profiles.device_plugin(profile):
            path = "/apis/apps/v1/namespaces/kube-system/daemonsets/" + plugin["metadata"]["name"]

            def plugin_ready():
                status = api.get(path).get("status", {})
                return 0 < status.get("desiredNumberScheduled", 0) == status.get("numberReady", -1)
            self._wait(state, "kwok", plugin_ready, timeout, interval=0.5 if len(want) < 500 else 3)
        traefik.apply(api, profile, state)
        state["nodes"] = len(want)

    def _start_hosts(self, state: dict, profile: dict) -> None:
        if not profile.get("ssh_hosts"):
            return
        nodes = hosts.gpu_node_names(profiles.nodes(profile, state["kubernetes_version"]))
        if not nodes:
            return
        hosts.start(self.dir, state, nodes, {OWNER_ENV: self.marker}, log=self.log)
        _write_state(state)


def _pod_cidr() -> str:
    raw = os.environ.get("LLMOPS_SIM_POD_CIDR", DEFAULT_POD_CIDR)
    try:
        net = ipaddress.ip_network(raw)
    except ValueError:
        net = None
    if net is None or net.version != 4 or not 12 <= net.prefixlen <= 24:
        raise SimError(f"LLMOPS_SIM_POD_CIDR={raw!r} is not an IPv4 network from /12 to /24",
                       "set it to a private range such as 10.244.0.0/16")
    return str(net)


def _first_host_cidr(cidr: str) -> str:
    """KWOK's --cidr takes the first address with the prefix (10.244.0.1/16)."""
    net = ipaddress.ip_network(cidr)
    return f"{net.network_address + 1}/{net.prefixlen}"


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def status() -> str:
    state = read_state()
    if not state:
        return "simulated cluster is down (no state in .sim)"
    cluster = Cluster()
    running = {name: _alive(pid, cluster.marker) for name, pid in state["pids"].items()}
    api = Kube(HOST, state["ports"]["apiserver"], cluster.pki)
    lines = [f"profile: {state['profile']}   kubeconfig: {cluster.dir / 'kubeconfig'}   "
             f"api: https://{HOST}:{state['ports']['apiserver']}",
             "components: " + ", ".join(f"{n}={'up' if ok else 'DOWN'}" for n, ok in running.items())]
    if not running.get("kube-apiserver"):
        return "\n".join(lines)
    nodes, _ = api.list_all("/api/v1/nodes")
    lines.append(f"{'NODE':<16} {'READY':<6} {'GPU':<4} {'ZONE':<12} {'PRODUCT':<26} TAINTS")
    for node in nodes[:50]:
        labels = node["metadata"].get("labels", {})
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
        taints = ",".join(f"{t['key']}:{t['effect']}" for t in node["spec"].get("taints", []))
        lines.append(f"{node['metadata']['name']:<16} {str(ready):<6} "
                     f"{node['status'].get('allocatable', {}).get('nvidia.com/gpu', '0'):<4} "
                     f"{labels.get('topology.kubernetes.io/zone', '-'):<12} "
                     f"{labels.get('nvidia.com/gpu.product', '-'):<26} {taints or '-'}")
    if len(nodes) > 50:
        lines.append(f"... and {len(nodes) - 50} more nodes")
    lines += [line for line in [traefik.status_line(state, profiles.load(state["profile"]))] if line]
    if state.get("down_nodes"):
        lines.append("down on purpose (make sim-node NODE=... STATE=up): " + ", ".join(state["down_nodes"]))
    for node, host in (state.get("hosts") or {}).items():
        lines.append(f"GPU host {node}: ssh -i {host['key']} -o UserKnownHostsFile={host['known_hosts']} "
                     f"{host['user']}@{host['ip']}" + ("" if hosts.running(host) else "   (sshd DOWN)"))
    if state.get("registry"):
        lines.append(f"model registry: {state['registry']} (pull with insecure: true); models: "
                     + ", ".join(ref.split("/", 1)[1] for ref in state.get("models", {})))
    return "\n".join(lines)
