"""Pod network and pod runtime for Ollama pods.

Pod IPs (from KWOK's CIDR) live in one network namespace that the simulator creates; the host routes
the pod CIDR to it over a veth pair, so the API server's pod and service proxy reach them. Every running
pod whose container image is an Ollama image gets a real `ollama serve` in that namespace, bound to the
pod IP, with OLLAMA_MODELS on the directory behind the volume mounted at the container's model path.
"""

import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SimError
from .provisioner import PATH_ANNOTATION

HOST_IP = "169.254.77.1"
OLLAMA_PORT = 11434
MAX_RESTARTS = 5
MAX_BACKOFF = 30.0
STOP_GRACE = 5.0


def _suffix(state_dir: Path) -> str:
    return hashlib.sha1(str(Path(state_dir).resolve()).encode()).hexdigest()[:6]


def network_names(state_dir: Path) -> dict:
    suffix = _suffix(state_dir)
    return {"netns": f"llmsim-{suffix}", "host_if": f"lsh{suffix}", "ns_if": f"lsp{suffix}"}


def registry_ip(pod_cidr: str) -> str:
    """The last usable address of the pod CIDR: KWOK hands out pod IPs from the start."""
    net = ipaddress.ip_network(pod_cidr)
    return str(net.broadcast_address - 5)


def _ip(*args, check=True):
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise SimError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}",
                       "run as root with iproute2 installed (make deps); network namespaces need CAP_NET_ADMIN")
    return result


def setup_network(state_dir: Path, pod_cidr: str) -> dict:
    names = network_names(state_dir)
    ns, host_if, ns_if = names["netns"], names["host_if"], names["ns_if"]
    cleanup_network(state_dir)
    _ip("netns", "add", ns)
    _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
    _ip("link", "set", ns_if, "netns", ns)
    _ip("addr", "add", f"{HOST_IP}/32", "dev", host_if)
    _ip("link", "set", host_if, "up")
    _ip("route", "add", pod_cidr, "dev", host_if)
    _ip("-n", ns, "link", "set", "lo", "up")
    _ip("-n", ns, "link", "set", ns_if, "up")
    _ip("-n", ns, "route", "add", HOST_IP, "dev", ns_if)
    _ip("-n", ns, "route", "add", "default", "via", HOST_IP, "dev", ns_if)
    reg_ip = registry_ip(pod_cidr)
    _ip("-n", ns, "addr", "add", f"{reg_ip}/32", "dev", ns_if)
    return dict(names, registry_ip=reg_ip)


def cleanup_network(state_dir: Path) -> None:
    names = network_names(state_dir)
    _ip("netns", "del", names["netns"], check=False)
    _ip("link", "del", names["host_if"], check=False)


def cleanup(state_dir: Path) -> None:
    """Called by `sim down`: the processes go with the owner-mark sweep; the network goes here."""
    from . import registry
    registry.stop(Path(state_dir) / "registry")
    cleanup_network(state_dir)


def _down_nodes(state_dir: Path) -> set:
    try:
        return set(json.loads((Path(state_dir) / "state.json").read_text()).get("down_nodes") or [])
    except (OSError, ValueError):
        return set()


def is_ollama_image(image: str) -> bool:
    repository = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return repository.split(":", 1)[0] == "ollama"


def _bind_port(env: dict) -> int:
    host = env.get("OLLAMA_HOST", "")
    host = host.split("://", 1)[-1].rstrip("/")
    if ":" in host:
        port = host.rsplit(":", 1)[1]
        if port.isdigit():
            return int(port)
    return OLLAMA_PORT


@dataclass
class PodProcess:
    uid: str
    name: str
    ip: str
    models_dir: Path
    scratch: Path
    log: Path
    argv: list
    env: dict
    proc: subprocess.Popen = None
    restarts: int = 0
    next_start: float = 0.0
    gave_up: bool = False
    history: list = field(default_factory=list)


class Runtime:
    def __init__(self, api, state_dir: Path, state: dict, log=print):
        from .build import binary_path
        self.api = api
        self.state_dir = Path(state_dir)
        self.netns = state["network"]["netns"]
        self.ns_if = state["network"]["ns_if"]
        self.ollama = str(binary_path("ollama"))
        self.pods_dir = self.state_dir / "pods"
        self.log = log
        self.procs = {}

    # ---- loop ------------------------------------------------------------------------------
    def sync(self) -> None:
        pods, _ = self.api.list_all("/api/v1/pods")
        down = _down_nodes(self.state_dir)
        wanted = {}
        for pod in pods:
            container = next((c for c in pod["spec"].get("containers", []) if is_ollama_image(c.get("image", ""))), None)
            # A node that is down (sim node NAME --state down) runs nothing: its pods lose their processes.
            if container is None or pod["metadata"].get("deletionTimestamp") or pod["spec"].get("nodeName") in down:
                continue
            if pod.get("status", {}).get("phase") == "Running" and pod["status"].get("podIP"):
                wanted[pod["metadata"]["uid"]] = (pod, container)
        for uid in [u for u in self.procs if u not in wanted]:
            self._remove(uid)
        for uid, (pod, container) in wanted.items():
            entry = self.procs.get(uid)
            if entry is None:
                entry = self._prepare(pod, container)
                if entry is None:
                    continue
                self.procs[uid] = entry
                self._start(entry)
            elif entry.proc is not None and entry.proc.poll() is not None:
                self._crashed(entry, pod)
            elif entry.proc is None and not entry.gave_up and time.monotonic() >= entry.next_start:
                self._start(entry)

    def shutdown(self) -> None:
        for uid in list(self.procs):
            self._remove(uid)

    # ---- one pod ---------------------------------------------------------------------------
    def _prepare(self, pod, container):
        meta = pod["metadata"]
        literal_env = {e["name"]: e.get("value", "") for e in container.get("env", []) if "valueFrom" not in e}
        scratch = self.pods_dir / meta["uid"]
        models_dir = self._models_dir(pod, container, literal_env, scratch)
        if models_dir is None:
            return None
        models_dir.mkdir(parents=True, exist_ok=True)
        (scratch / "home").mkdir(parents=True, exist_ok=True)
        ip = pod["status"]["podIP"]
        env = {k: v for k, v in literal_env.items() if k.startswith("OLLAMA_")}
        env.update({
            "OLLAMA_HOST": f"{ip}:{_bind_port(literal_env)}",
            "OLLAMA_MODELS": str(models_dir),
            "HOME": str(scratch / "home"),
            "PATH": "/usr/local/bin:/usr/bin:/bin",
        })
        owner = os.environ.get("LLMOPS_SIM_OWNER")
        if owner:
            env["LLMOPS_SIM_OWNER"] = owner
        logs = self.state_dir / "logs" / "pods"
        logs.mkdir(parents=True, exist_ok=True)
        return PodProcess(uid=meta["uid"], name=f"{meta['namespace']}/{meta['name']}", ip=ip, models_dir=models_dir,
                          scratch=scratch, log=logs / f"{meta['namespace']}_{meta['name']}.log",
                          argv=["ip", "netns", "exec", self.netns, self.ollama, "serve"], env=env)

    def _models_dir(self, pod, container, env, scratch):
        """The host directory behind the container's model path; a scratch dir when no volume holds it."""
        home = env.get("HOME", "/root")
        path = env.get("OLLAMA_MODELS") or f"{home.rstrip('/')}/.ollama/models"
        mounts = [m for m in container.get("volumeMounts", [])
                  if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
        if not mounts:
            return scratch / "container" / path.lstrip("/")
        mount = max(mounts, key=lambda m: len(m["mountPath"]))
        volume = next((v for v in pod["spec"].get("volumes", []) if v["name"] == mount["name"]), {})
        rest = path[len(mount["mountPath"].rstrip("/")):].lstrip("/")
        sub = mount.get("subPath", "")
        if "persistentVolumeClaim" in volume:
            ns = pod["metadata"]["namespace"]
            claim = self.api.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/"
                                 f"{volume['persistentVolumeClaim']['claimName']}")
            pv_name = claim["spec"].get("volumeName")
            if not pv_name:
                return None  # not bound yet; try again next round
            pv = self.api.get(f"/api/v1/persistentvolumes/{pv_name}")
            base = (pv["metadata"].get("annotations") or {}).get(PATH_ANNOTATION) or \
                (pv["spec"].get("hostPath") or {}).get("path")
            if not base:
                self.log(f"{pod['metadata']['name']}: volume {pv_name} has no directory on this host; using scratch")
                return scratch / "volumes" / mount["name"] / sub / rest
            return Path(base) / sub / rest
        return scratch / "volumes" / mount["name"] / sub / rest

    def _start(self, entry: PodProcess) -> None:
        _ip("-n", self.netns, "addr", "replace", f"{entry.ip}/32", "dev", self.ns_if)
        with open(entry.log, "ab") as log:
            entry.proc = subprocess.Popen(entry.argv, env=entry.env, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self.log(f"started ollama for {entry.name} on {entry.ip} (models in {entry.models_dir})")

    def _crashed(self, entry: PodProcess, pod) -> None:
        code = entry.proc.returncode
        entry.proc = None
        entry.restarts += 1
        if entry.restarts > MAX_RESTARTS:
            entry.gave_up = True
            self._event(pod, "Warning", "BackOff", f"ollama exited with {code}; gave up after {MAX_RESTARTS} restarts")
            return
        delay = min(MAX_BACKOFF, 2.0 ** (entry.restarts - 1))
        entry.next_start = time.monotonic() + delay
        self._event(pod, "Warning", "BackOff",
                    f"ollama exited with {code}; restart {entry.restarts}/{MAX_RESTARTS} in {delay:.0f}s")

    def _remove(self, uid: str) -> None:
        entry = self.procs.pop(uid)
        if entry.proc is not None and entry.proc.poll() is None:
            try:
                os.killpg(entry.proc.pid, signal.SIGTERM)
                entry.proc.wait(timeout=STOP_GRACE)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(entry.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                entry.proc.wait(timeout=STOP_GRACE)
        _ip("-n", self.netns, "addr", "del", f"{entry.ip}/32", "dev", self.ns_if, check=False)
        shutil.rmtree(entry.scratch, ignore_errors=True)
        self.log(f"stopped ollama for {entry.name}")

    def _event(self, pod, kind, reason, message) -> None:
        meta = pod["metadata"]
        self.log(f"{meta['namespace']}/{meta['name']}: {message}")
        self.api.create({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": meta["name"] + ".", "namespace": meta["namespace"]},
            "involvedObject": {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"],
                               "uid": meta["uid"], "apiVersion": "v1", "fieldPath": "spec.containers{ollama}"},
            "reason": reason, "message": message, "type": kind, "source": {"component": "llmops-sim-runtime"},
        })
