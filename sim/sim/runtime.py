"""The simulator's kubelet: it runs, for real, every pod with a container whose image is in sim.images.

Per pod: a network sandbox (network.py), the volumes (volumes.py), then init containers one after another
to completion, native sidecars (init containers with restartPolicy Always) started and, with a startup
probe, started before the next, then every container; each a process started by the launcher
(container.py) in the pod's network namespace and a mount namespace of its own. Exits restart per the
pod's restartPolicy with a bounded back-off; probes (probes.py) decide started and ready, and a failing
liveness or startup probe restarts the container. Conditions, phase and container statuses are patched on
the status subresource, so EndpointSlices follow readiness. Deletion: SIGTERM, SIGKILL after the grace
period (capped), sandbox removed, then the pod object is deleted, as the kubelet finishes a deletion.
Pods on a node in state.json's `down_nodes` lose their processes and sandbox until the node is back.

KWOK only hands these pods their address (images.kwok_pod_stages); everything else is here.
"""

import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import images, network, podenv, probes, services, volumes
from .errors import SimError
from .paths import SIM_ROOT

# Grace on deletion: the pod's own, at most this (tests delete pods all the time).
GRACE_CAP = 10.0
# Restart back-off: 1, 2, 4 ... 30 s (a kubelet: 10 s to 5 min), reset after a minute of running.
BACKOFF_BASE, BACKOFF_CAP, BACKOFF_RESET = 1.0, 30.0, 60.0
# A container that cannot be created (config error, unknown image) is retried this often.
RETRY_CREATE = 5.0
REFRESH_PERIOD = 10.0
EVENT_DEDUP = 30.0
DOWN_NODES_READ = 1.0


def cleanup(state_dir: Path) -> None:
    """Called by `sim down`: the processes go with the owner-mark sweep; the network goes here."""
    from . import registry
    registry.stop(Path(state_dir) / "registry")
    network.cleanup(state_dir)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _version(obj: dict) -> int:
    try:
        return int(obj["metadata"].get("resourceVersion") or 0)
    except ValueError:
        return 0


def _log_tail(path, lines: int = 80, limit: int = 2048) -> str:
    try:
        data = Path(path).read_bytes()[-64 * 1024:]
    except (OSError, TypeError):
        return ""
    text = b"\n".join(data.splitlines()[-lines:])[-limit:]
    return text.decode(errors="replace").strip()


def backoff_delay(step: int) -> float:
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** step)


@dataclass
class Run:
    """One container of a pod, across its restarts."""
    name: str
    kind: str  # init, sidecar, app
    spec: dict
    state: str = "waiting"  # waiting, running, terminated
    waiting: tuple = ("ContainerCreating", "")
    terminated: dict = None
    last: dict = None
    restarts: int = 0
    runs: int = 0  # starts so far; a probe result counts only for the run it was made for
    proc: subprocess.Popen = None
    pid: int = 0
    mntns: str = ""
    cid: str = ""
    log_path: Path = None
    started_at: str = ""
    started_mono: float = 0.0
    next_start: float = 0.0
    backoff: int = 0
    started: bool = False
    ready: bool = False
    probes: dict = field(default_factory=dict)
    killing: dict = None
    error_file: Path = None
    exec_env: dict = None
    ids: dict = None

    @property
    def field_path(self) -> str:
        return f"spec.{'containers' if self.kind == 'app' else 'initContainers'}{{{self.name}}}"


@dataclass
class PodRun:
    uid: str
    pod: dict
    scratch: Path
    runs: dict = field(default_factory=dict)
    init_order: list = field(default_factory=list)
    app_order: list = field(default_factory=list)
    netns: str = ""
    sandbox: bool = False
    vols: volumes.PodVolumes = None
    volumes_ready: bool = False
    next_volume_try: float = 0.0
    next_refresh: float = 0.0
    initialized: bool = False
    terminal: str = ""
    cleaned: bool = False
    deleting: dict = None
    finalized: bool = False
    gone: bool = False
    node_down: bool = False
    last_status: str = ""

    @property
    def meta(self):
        return self.pod["metadata"]

    @property
    def label(self):
        return f"{self.meta['namespace']}/{self.meta['name']}"

    def all(self):
        return [self.runs[n] for n in self.init_order + self.app_order]


class Runtime:
    def __init__(self, api, state_dir: Path, state: dict, log=print, wake=None):
        self.api = api
        self.state_dir = Path(state_dir)
        self.state = state
        self.pods_dir = self.state_dir / "pods"
        self.logs_dir = self.state_dir / "logs" / "pods"
        self.log = log
        self.wake = wake
        self.pods = {}
        self.results = queue.Queue()
        self.pool = probes.Pool(self._probe_done)
        self.node_netns = network.node_netns(self.state_dir)
        self.api_host, self.api_port = network.api_endpoint(state)
        self.lookup = volumes.env_lookup(api)
        self.service_names = None  # [(ClusterIP, namespace, name)] from the service proxy's pass
        self.events = {}
        self.down = set()
        self.down_read = 0.0
        self.own_mntns = os.readlink("/proc/self/ns/mnt")

    # ---- loop ------------------------------------------------------------------------------------
    def sync(self, pods=None) -> None:
        if pods is None:
            pods, _ = self.api.list_all("/api/v1/pods")
        self._read_down_nodes()
        self._drain_results()
        seen = set()
        for pod in pods:
            if not pod.get("spec", {}).get("nodeName") or not images.runs_for_real(pod):
                continue
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            entry = self.pods.get(uid)
            if entry is None:
                entry = self.pods[uid] = self._new(pod)
            if _version(pod) >= _version(entry.pod):
                entry.pod = pod  # a status patch's answer may be newer than the cache
            try:
                self._sync_pod(entry)
            except SimError as exc:
                self.log(f"{entry.label}: {exc.cause}")
        for uid in [u for u in self.pods if u not in seen]:
            entry = self.pods[uid]
            entry.gone = True
            self._sync_gone(entry)

    def next_wakeup(self) -> float:
        """Seconds until something is due (a probe, a restart, a kill); the loop waits at most this."""
        now, soon = time.monotonic(), 5.0
        for entry in self.pods.values():
            for run in entry.all():
                if run.state == "waiting" and run.next_start:
                    soon = min(soon, run.next_start - now)
                if run.killing:
                    soon = min(soon, run.killing["deadline"] - now)
                for state in run.probes.values():
                    soon = min(soon, state.next_due - now)
        return max(0.05, soon)

    def shutdown(self) -> None:
        self.pool.shutdown()
        for entry in self.pods.values():
            for run in entry.all():
                self._signal(run, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for entry in self.pods.values():
            for run in entry.all():
                if run.proc is not None:
                    try:
                        run.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        self._signal(run, signal.SIGKILL)
            if not entry.pod.get("spec", {}).get("hostNetwork"):
                network.delete_pod_sandbox(self.state_dir, entry.uid)

    def _read_down_nodes(self) -> None:
        if time.monotonic() - self.down_read < DOWN_NODES_READ:
            return
        self.down_read = time.monotonic()
        try:
            down = json.loads((self.state_dir / "state.json").read_text()).get("down_nodes") or []
        except (OSError, ValueError):
            return
        self.down = set(down)

    # ---- one pod ---------------------------------------------------------------------------------
    def _new(self, pod: dict) -> PodRun:
        meta, spec = pod["metadata"], pod["spec"]
        entry = PodRun(uid=meta["uid"], pod=pod, scratch=self.pods_dir / meta["uid"])
        for c in spec.get("initContainers") or []:
            kind = "sidecar" if c.get("restartPolicy") == "Always" else "init"
            entry.runs[c["name"]] = Run(c["name"], kind, c, waiting=("PodInitializing", ""))
            entry.init_order.append(c["name"])
        for c in spec.get("containers") or []:
            waiting = ("PodInitializing", "") if entry.init_order else ("ContainerCreating", "")
            entry.runs[c["name"]] = Run(c["name"], "app", c, waiting=waiting)
            entry.app_order.append(c["name"])
        entry.vols = volumes.PodVolumes(self.api, pod, entry.scratch, self.log)
        return entry

    def _sync_pod(self, entry: PodRun) -> None:
        now = time.monotonic()
        self._reap(entry)
        if entry.pod["spec"]["nodeName"] in self.down:
            self._node_down(entry)
            return
        if entry.node_down:
            self._node_back(entry)
        if entry.pod["metadata"].get("deletionTimestamp"):
            self._delete(entry)
            return
        if entry.terminal:
            self._finish_terminal(entry)
            return
        if not entry.pod.get("status", {}).get("podIP"):
            return  # KWOK hands out the address first
        if not entry.sandbox:
            if entry.pod["spec"].get("hostNetwork"):
                entry.netns = self.node_netns
            else:
                entry.netns = network.create_pod_sandbox(self.state_dir, entry.uid, entry.pod["status"]["podIP"])
            entry.sandbox = True
            self._write_etc(entry)
        if not entry.volumes_ready:
            if now < entry.next_volume_try:
                self._patch_status(entry)
                return
            try:
                entry.vols.pod = entry.pod
                entry.vols.setup()
                entry.volumes_ready = True
                entry.next_refresh = now + REFRESH_PERIOD
            except volumes.VolumeError as exc:
                entry.next_volume_try = now + RETRY_CREATE
                self._event(entry, None, "Warning", "FailedMount", f"MountVolume.SetUp failed: {exc}")
                self._patch_status(entry)
                return
        if now >= entry.next_refresh:
            entry.vols.pod = entry.pod
            entry.vols.refresh()
            entry.next_refresh = now + REFRESH_PERIOD
        self._check_kills(entry)
        self._advance(entry)
        self._schedule_probes(entry)
        self._patch_status(entry)

    def _sync_gone(self, entry: PodRun) -> None:
        """The pod object is gone (force-deleted, or we deleted it): stop what still runs, then forget it."""
        self._reap(entry)
        running = [r for r in entry.all() if r.proc is not None]
        for run in running:
            if not run.killing:
                self._kill(run, "the pod is gone", 2.0)
        self._check_kills(entry)
        if not running:
            self._cleanup(entry)
            self.pods.pop(entry.uid, None)

    # ---- starting and stopping containers --------------------------------------------------------------
    def _advance(self, entry: PodRun) -> None:
        now = time.monotonic()
        if not entry.initialized:
            done = True
            for name in entry.init_order:
                run = entry.runs[name]
                if run.kind == "sidecar":
                    if run.state == "waiting" and now >= run.next_start:
                        self._start(entry, run)
                    if not run.started:
                        done = False
                        break
                    continue
                if run.state == "terminated" and run.terminated.get("exitCode") == 0:
                    continue
                if run.state == "waiting" and now >= run.next_start:
                    self._start(entry, run)
                done = False
                break
            if not done:
                return
            entry.initialized = True
        for run in entry.all():
            if run.kind != "init" and run.state == "waiting" and now >= run.next_start:
                self._start(entry, run)
        if self._policy(entry) != "Always":
            apps = [entry.runs[n] for n in entry.app_order]
            if apps and all(r.state == "terminated" for r in apps):
                failed = any(r.terminated.get("exitCode") != 0 for r in apps)
                entry.terminal = "Failed" if failed else "Succeeded"
                self._finish_terminal(entry)

    def _policy(self, entry: PodRun) -> str:
        return entry.pod["spec"].get("restartPolicy") or "Always"

    def _start(self, entry: PodRun, run: Run) -> None:
        now = time.monotonic()
        try:
            spec = self._container_spec(entry, run)
        except _Blocked as exc:
            run.state, run.waiting = "waiting", (exc.reason, exc.message)
            run.next_start = now + RETRY_CREATE
            self._event(entry, run, "Warning", "Failed", f"Error: {exc.message}")
            return
        if run.runs:
            run.restarts += 1
        run.runs += 1
        run.cid = "sim://" + hashlib.sha1(f"{entry.uid}/{run.name}/{run.runs}".encode()).hexdigest()[:32]
        log_dir = self.logs_dir / f"{entry.meta['namespace']}_{entry.meta['name']}_{entry.uid}" / run.name
        log_dir.mkdir(parents=True, exist_ok=True)
        spec_file = Path(spec["rootfs"]).parent / "spec.json"
        spec_file.write_text(json.dumps(spec))
        env = {"PATH": os.environ.get("PATH", images.DEFAULT_PATH), "PYTHONPATH": str(SIM_ROOT)}
        if os.environ.get("LLMOPS_SIM_OWNER"):
            env["LLMOPS_SIM_OWNER"] = os.environ["LLMOPS_SIM_OWNER"]
        log_path = run.log_path = log_dir / f"{run.restarts}.log"
        with open(log_path, "ab") as log:
            # The container's user may reopen /dev/stdout (nginx's access_log does), as it may a runtime's pipe.
            os.chown(log_path, spec["uid"], spec["gid"])
            run.proc = subprocess.Popen([sys.executable, "-m", "sim.container", str(spec_file)], env=env,
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True, cwd="/")
        run.pid, run.mntns = run.proc.pid, ""
        run.state, run.terminated, run.killing = "running", None, None
        run.started_at, run.started_mono = now_iso(), now
        run.probes = {kind: probes.ProbeState(kind, run.spec[kind], now) for kind in probes.KINDS if run.spec.get(kind)}
        run.started = "startupProbe" not in run.probes
        run.ready = run.started and "readinessProbe" not in run.probes
        if run.runs == 1:
            self._event(entry, run, "Normal", "Pulled",
                        f'Container image "{run.spec.get("image")}" already present on machine')
        self._event(entry, run, "Normal", "Created", f"Created container: {run.name}")
        self._event(entry, run, "Normal", "Started", f"Started container {run.name}")
        self.log(f"{entry.label}: started {run.name} (pid {run.pid}): {' '.join(spec['argv'])[:200]}")

    def _container_spec(self, entry: PodRun, run: Run) -> dict:
        """What the launcher needs; _Blocked when the kubelet would not create this container."""
        pod, c = entry.pod, run.spec
        img = images.lookup(c.get("image", ""))
        if img is None:
            known = ", ".join(sorted(images.IMAGES))
            raise _Blocked("ImageNotRunnable", f'image "{c.get("image")}" has no program in the simulator '
                           f"(it runs images of the repositories {known})")
        try:
            program = images.host_program(img)
        except SimError as exc:
            raise _Blocked("ImageNotRunnable", f"{exc.cause}; fix: {exc.fix}") from None
        for kind in probes.KINDS:
            if c.get(kind) and probes.action(c[kind]) not in ("httpGet", "tcpSocket", "exec"):
                raise _Blocked("CreateContainerConfigError",
                               f"{kind} of type {probes.action(c[kind])} is not run by the simulator "
                               "(httpGet, tcpSocket and exec are)")
        try:
            ids = podenv.security(pod, c, img.uid, img.gid)
            kubelet_env = podenv.service_env(self.api_host, self.api_port)
            pod_env = podenv.resolve(pod, c, kubelet_env, self.lookup)
        except (podenv.ConfigError, volumes.VolumeError) as exc:
            raise _Blocked("CreateContainerConfigError", str(exc)) from None
        env = dict(img.env)
        env["HOSTNAME"] = self._hostname(pod)
        env.update(pod_env)
        env.setdefault("HOME", "/root" if ids["uid"] == 0 else "/")
        if os.environ.get("LLMOPS_SIM_OWNER"):
            env["LLMOPS_SIM_OWNER"] = os.environ["LLMOPS_SIM_OWNER"]  # how `sim down` finds what is left
        argv = podenv.expand_argv(images.argv(img, c), pod_env)
        mounts = []
        for mount in c.get("volumeMounts") or []:
            volume = entry.vols.volumes.get(mount["name"])
            if volume is None:
                raise _Blocked("CreateContainerConfigError", f"volumeMount {mount['name']!r} names no volume of the pod")
            try:
                source, read_only = volumes.mount_source(volume, mount, pod_env)
            except volumes.VolumeError as exc:
                raise _Blocked("CreateContainerConfigError", str(exc)) from None
            mounts.append({"source": str(source), "target": mount["mountPath"], "read_only": read_only})
        etc = entry.scratch / "etc"
        for name in ("hosts", "hostname"):
            if not any(m["target"] == f"/etc/{name}" for m in mounts):
                mounts.append({"source": str(etc / name), "target": f"/etc/{name}", "read_only": False})
        base = entry.scratch / "containers" / run.name
        shutil.rmtree(base, ignore_errors=True)  # a restarted container gets a fresh writable layer
        for sub in ("rootfs", "upper", "work"):
            (base / sub).mkdir(parents=True)
        run.error_file = base / "start-error"
        run.exec_env, run.ids = env, ids
        return {
            "netns": str(network.NETNS_DIR / entry.netns), "hostname": self._hostname(pod),
            "rootfs": str(base / "rootfs"), "upper": str(base / "upper"), "work": str(base / "work"),
            "program": str(program), "program_paths": list(img.paths),
            "files": [{"path": p, "content": t} for p, t in img.files.items()],
            "owned_dirs": [{"path": p, "uid": img.uid, "gid": img.gid} for p in img.owned_dirs],
            "mounts": mounts, "env": sorted(env.items()), "argv": argv, "cwd": c.get("workingDir") or "/",
            "uid": ids["uid"], "gid": ids["gid"], "groups": ids["groups"], "no_new_privs": ids["no_new_privs"],
            "read_only_root": bool((c.get("securityContext") or {}).get("readOnlyRootFilesystem")),
            "error_file": str(run.error_file),
        }

    def _hostname(self, pod: dict) -> str:
        return (pod["spec"].get("hostname") or pod["metadata"]["name"])[:63]

    def _hosts_text(self, entry: PodRun) -> str:
        host = self._hostname(entry.pod)
        sub = entry.pod["spec"].get("subdomain")
        fqdn = f"{host}.{sub}.{entry.meta['namespace']}.svc.cluster.local {host}" if sub else host
        return ("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"
                "::1\tlocalhost ip6-localhost ip6-loopback\n"
                f"{entry.pod['status']['podIP']}\t{fqdn}\n"
                # No cluster DNS here: the Services' names as CoreDNS would answer them (services.hosts_lines).
                + services.hosts_lines(self.service_names or [], entry.meta["namespace"]))

    def _write_etc(self, entry: PodRun) -> None:
        etc = entry.scratch / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(self._hosts_text(entry))
        (etc / "hostname").write_text(self._hostname(entry.pod) + "\n")

    def set_service_names(self, names) -> None:
        """New Service names reach every running pod's /etc/hosts, rewritten in place (the file is bind-mounted)."""
        if names is None or names == self.service_names:
            return
        self.service_names = names
        for entry in list(self.pods.values()):
            hosts = entry.scratch / "etc" / "hosts"
            if not entry.sandbox or not hosts.exists():
                continue
            try:
                with open(hosts, "r+") as fh:
                    fh.write(self._hosts_text(entry))
                    fh.truncate()
            except (OSError, KeyError):
                pass

    def _reap(self, entry: PodRun) -> None:
        for run in entry.all():
            if run.proc is None:
                continue
            if not run.mntns:
                try:
                    ns = os.readlink(f"/proc/{run.pid}/ns/mnt")
                    if ns != self.own_mntns:
                        run.mntns = ns
                except OSError:
                    pass
            code = run.proc.poll()
            if code is not None:
                self._exited(entry, run, code)

    def _exited(self, entry: PodRun, run: Run, code: int) -> None:
        now = time.monotonic()
        error = ""
        if run.error_file and run.error_file.exists():
            error = run.error_file.read_text(errors="replace").strip()
        code = 128 - code if code < 0 else code  # killed by a signal: 128 + its number
        term = {"exitCode": code, "reason": "StartError" if error else ("Completed" if code == 0 else "Error"),
                "startedAt": run.started_at, "finishedAt": now_iso(), "containerID": run.cid}
        if error:
            term["message"] = error
        elif code != 0 and run.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            # As the kubelet: the log's tail (at most 80 lines, 2048 bytes) when the container failed.
            tail = _log_tail(run.log_path)
            if tail:
                term["message"] = tail
        if code >= 128 and not error:
            term["signal"] = code - 128
        ran = now - run.started_mono
        killing = run.killing
        run.proc, run.killing, run.started, run.ready, run.probes = None, None, False, False, {}
        run.state, run.terminated = "terminated", term
        self.log(f"{entry.label}: {run.name} exited with {code}"
                 + (f" ({killing['reason']})" if killing else "") + (f": {error}" if error else ""))
        if error:
            self._event(entry, run, "Warning", "Failed", f"Error: {error}")
        if entry.node_down or entry.deleting or entry.gone or entry.terminal:
            return
        policy = self._policy(entry)
        if run.kind == "sidecar":
            restart = True
        elif run.kind == "init":
            restart = code != 0 and policy != "Never"
            if code != 0 and policy == "Never":
                entry.terminal = "Failed"
        else:
            restart = policy == "Always" or (policy == "OnFailure" and code != 0)
        if not restart:
            return
        if ran >= BACKOFF_RESET:
            run.backoff = 0
        delay = backoff_delay(run.backoff)
        run.backoff += 1
        run.last, run.terminated = term, None
        run.state = "waiting"
        pod = f"{entry.meta['name']}_{entry.meta['namespace']}({entry.uid})"
        run.waiting = ("CrashLoopBackOff", f"back-off {delay:g}s restarting failed container={run.name} pod={pod}")
        run.next_start = now + delay
        self._event(entry, run, "Warning", "BackOff",
                    f"Back-off restarting failed container {run.name} in pod {pod}: exited with {code}, "
                    f"restart {run.restarts + 1} in {delay:g}s")

    def _kill(self, run: Run, reason: str, grace: float) -> None:
        if run.proc is None or run.killing:
            return
        run.killing = {"reason": reason, "deadline": time.monotonic() + grace}
        self._signal(run, signal.SIGTERM)

    def _check_kills(self, entry: PodRun) -> None:
        now = time.monotonic()
        for run in entry.all():
            if run.proc is not None and run.killing and now >= run.killing["deadline"] and not run.killing.get("hard"):
                run.killing["hard"] = True
                self._signal(run, signal.SIGKILL)

    def _signal(self, run: Run, sig: int) -> None:
        """The container's process group, and every process left in its mount namespace."""
        if not run.pid:
            return
        if run.proc is not None and run.proc.poll() is None:
            try:
                os.killpg(run.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        if not run.mntns:
            return
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if os.readlink(proc / "ns" / "mnt") == run.mntns:
                    os.kill(int(proc.name), sig)
            except (OSError, ProcessLookupError):
                continue

    def _grace(self, entry: PodRun) -> float:
        meta, spec = entry.pod["metadata"], entry.pod["spec"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        return float(min(GRACE_CAP, max(0, grace)))

    # ---- deletion, terminal pods, node loss --------------------------------------------------------
    def _delete(self, entry: PodRun) -> None:
        now = time.monotonic()
        if entry.finalized:
            return
        if entry.deleting is None:
            entry.deleting = {"deadline": now + self._grace(entry), "phase": "containers"}
            for run in entry.all():
                run.probes = {}
                if run.kind != "sidecar":
                    self._kill(run, "the pod is deleted", self._grace(entry))
        self._check_kills(entry)
        if entry.deleting["phase"] == "containers":
            if any(r.proc is not None for r in entry.all() if r.kind != "sidecar"):
                self._patch_status(entry)
                return
            entry.deleting["phase"] = "sidecars"
            rest = max(2.0, entry.deleting["deadline"] - now)
            for name in reversed(entry.init_order):
                if entry.runs[name].kind == "sidecar":
                    self._kill(entry.runs[name], "the pod is deleted", rest)
        if any(r.proc is not None for r in entry.all()):
            self._patch_status(entry)
            return
        for run in entry.all():
            if run.state != "terminated" and run.runs:
                run.state, run.terminated = "terminated", run.terminated or {
                    "exitCode": 137, "reason": "Error", "startedAt": run.started_at, "finishedAt": now_iso()}
        ran = [r for r in entry.all() if r.terminated]
        entry.terminal = "Failed" if any(r.terminated.get("exitCode") != 0 for r in ran if r.kind == "app") \
            else "Succeeded"
        self._patch_status(entry)
        self._cleanup(entry)
        meta = entry.pod["metadata"]
        status, body = self.api.request(
            "DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
            {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
             "preconditions": {"uid": entry.uid}})
        if status not in (200, 202, 404, 409):
            self.log(f"{entry.label}: deleting answered {status}: {body.get('message', body)}")
            return
        entry.finalized = True
        self.log(f"{entry.label}: deleted after its containers stopped")

    def _finish_terminal(self, entry: PodRun) -> None:
        """restartPolicy Never/OnFailure: every container done; sidecars stop, the sandbox goes."""
        for run in entry.all():
            run.probes = {}
            if run.proc is not None:
                self._kill(run, f"the pod {entry.terminal.lower()}", self._grace(entry))
        self._check_kills(entry)
        if any(r.proc is not None for r in entry.all()):
            self._patch_status(entry)
            return
        self._patch_status(entry)
        if not entry.cleaned:
            self._cleanup(entry)

    def _cleanup(self, entry: PodRun) -> None:
        if entry.sandbox and not entry.pod["spec"].get("hostNetwork"):
            network.delete_pod_sandbox(self.state_dir, entry.uid)
        entry.sandbox = False
        shutil.rmtree(entry.scratch, ignore_errors=True)
        entry.cleaned = True

    def _node_down(self, entry: PodRun) -> None:
        if not entry.node_down:
            entry.node_down = True
            self.log(f"{entry.label}: node {entry.pod['spec']['nodeName']} is down; its processes go")
            for run in entry.all():
                run.probes = {}
                if run.proc is not None:
                    run.killing = {"reason": "the node is down", "deadline": 0, "hard": True}
                    self._signal(run, signal.SIGKILL)
        if any(r.proc is not None for r in entry.all()):
            return
        if entry.sandbox and not entry.pod["spec"].get("hostNetwork"):
            network.delete_pod_sandbox(self.state_dir, entry.uid)
            entry.sandbox = False

    def _node_back(self, entry: PodRun) -> None:
        """As after a node reboot: a new sandbox, init containers again, every container restarted."""
        entry.node_down = False
        entry.initialized = False
        for run in entry.all():
            if run.runs and run.state == "terminated":
                run.last = dict(run.terminated, exitCode=255, reason="Unknown", message="the node was down")
            run.state, run.terminated, run.next_start = "waiting", None, 0.0
            run.waiting = ("PodInitializing", "") if run.kind == "app" and entry.init_order else ("ContainerCreating", "")
        self.log(f"{entry.label}: node {entry.pod['spec']['nodeName']} is back; starting the pod again")

    # ---- probes ------------------------------------------------------------------------------------
    def _schedule_probes(self, entry: PodRun) -> None:
        now = time.monotonic()
        for run in entry.all():
            if run.state != "running" or run.killing:
                continue
            for kind, state in run.probes.items():
                if not state.due(now, gated=kind != "startupProbe" and not run.started):
                    continue
                state.begin(now)
                target = {"netns": self.node_netns, "ip": entry.pod["status"]["podIP"], "container": run.spec,
                          "pid": run.pid, "env": run.exec_env, **run.ids}
                self.pool.submit((entry.uid, run.name, run.runs, kind), state.spec, target)

    def _probe_done(self, key, ok: bool, message: str) -> None:
        self.results.put((key, ok, message))
        if self.wake is not None:
            self.wake.set()

    def _drain_results(self) -> None:
        while True:
            try:
                (uid, name, runs, kind), ok, message = self.results.get_nowait()
            except queue.Empty:
                return
            entry = self.pods.get(uid)
            run = entry.runs.get(name) if entry else None
            if run is None or run.runs != runs or run.state != "running" or kind not in run.probes:
                continue
            state = run.probes[kind]
            turned = state.record(ok, message)
            label = {"startupProbe": "Startup", "livenessProbe": "Liveness", "readinessProbe": "Readiness"}[kind]
            if not ok and not run.killing:
                self._event(entry, run, "Warning", "Unhealthy", f"{label} probe failed: {message}")
            now = time.monotonic()
            if kind == "startupProbe" and turned == "passed":
                run.started = True
                for other, other_state in run.probes.items():
                    if other != kind:
                        other_state.ungate(now)
            elif kind in ("startupProbe", "livenessProbe") and turned == "failed":
                grace = run.spec[kind].get("terminationGracePeriodSeconds")
                grace = self._grace(entry) if grace is None else min(GRACE_CAP, grace)
                self._event(entry, run, "Normal", "Killing",
                            f"Container {run.name} failed {label.lower()} probe, will be restarted")
                self._kill(run, f"{label.lower()} probe failed", grace)
            readiness = run.probes.get("readinessProbe")
            run.ready = run.started and (readiness.result if readiness else True)

    # ---- status ------------------------------------------------------------------------------------
    def _container_status(self, run: Run) -> dict:
        status = {"name": run.name, "image": run.spec.get("image", ""), "imageID": "",
                  "ready": bool(run.ready and run.state == "running"), "restartCount": run.restarts,
                  "started": bool(run.started and run.state == "running"), "lastState": {}}
        if run.cid:
            status["containerID"] = run.cid
        if run.state == "running":
            status["state"] = {"running": {"startedAt": run.started_at}}
        elif run.state == "terminated":
            status["state"] = {"terminated": run.terminated}
        else:
            waiting = {"reason": run.waiting[0]}
            if run.waiting[1]:
                waiting["message"] = run.waiting[1]
            status["state"] = {"waiting": waiting}
        if run.last:
            status["lastState"] = {"terminated": run.last}
        return status

    def pod_status(self, entry: PodRun) -> dict:
        inits = [entry.runs[n] for n in entry.init_order]
        apps = [entry.runs[n] for n in entry.app_order]
        sidecars = [r for r in inits if r.kind == "sidecar"]
        initialized = entry.initialized or entry.terminal != ""
        unready = [r.name for r in apps + sidecars if not (r.ready and r.state == "running")]
        if entry.terminal:
            phase = entry.terminal
        elif not entry.initialized:
            phase = "Pending"
        elif any(r.state == "running" or r.runs for r in apps):
            phase = "Running"
        else:
            phase = "Pending"
        gates = [g["conditionType"] for g in entry.pod["spec"].get("readinessGates") or []]
        current = {c["type"]: c for c in entry.pod.get("status", {}).get("conditions") or []}
        gates_ok = all(current.get(g, {}).get("status") == "True" for g in gates)
        incomplete = [r.name for r in inits if not (r.kind == "sidecar" and r.started)
                      and not (r.state == "terminated" and (r.terminated or {}).get("exitCode") == 0)]

        def condition(kind, ok, reason="", message=""):
            status = "True" if ok else "False"
            cond = {"type": kind, "status": status, "lastProbeTime": None}
            old = current.get(kind)
            cond["lastTransitionTime"] = old["lastTransitionTime"] if old and old.get("status") == status \
                and old.get("lastTransitionTime") else now_iso()
            # null deletes a field in a strategic merge patch: a True condition keeps no old reason
            cond["reason"] = reason if not ok and reason else None
            cond["message"] = message if not ok and reason and message else None
            return cond
        ready_reason, ready_message = "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]"
        if entry.terminal:
            ready_reason, ready_message = "PodCompleted", ""
        conditions = [
            condition("PodReadyToStartContainers", entry.sandbox or entry.terminal != ""),
            condition("Initialized", initialized, "ContainersNotInitialized",
                      f"containers with incomplete status: [{' '.join(incomplete)}]"),
            condition("ContainersReady", not unready and not entry.terminal, ready_reason, ready_message),
            condition("Ready", not unready and not entry.terminal and gates_ok,
                      ready_reason if unready or entry.terminal else "ReadinessGatesNotReady",
                      ready_message if unready or entry.terminal else
                      f"corresponding condition of pod readiness gate \"{gates[0] if gates else ''}\" does not exist."),
        ]
        status = {"phase": phase, "conditions": conditions,
                  "containerStatuses": [self._container_status(r) for r in apps]}
        if inits:
            status["initContainerStatuses"] = [self._container_status(r) for r in inits]
        return status

    def _patch_status(self, entry: PodRun) -> None:
        if entry.node_down or entry.gone:
            return
        status = self.pod_status(entry)
        text = json.dumps(status, sort_keys=True)
        current = entry.pod.get("status", {})
        drift = {c["type"]: c.get("status") for c in current.get("conditions") or []}
        wanted = {c["type"]: c["status"] for c in status["conditions"]}
        if text == entry.last_status and all(drift.get(k) == v for k, v in wanted.items()) \
                and current.get("phase") == status["phase"]:
            return
        meta = entry.pod["metadata"]
        code, body = self.api.request("PATCH", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                                      {"status": status}, content_type="application/strategic-merge-patch+json")
        if code == 200:
            entry.last_status = text
            entry.pod = body
        elif code != 404:
            self.log(f"{entry.label}: status patch answered {code}: {body.get('message', body)}")

    def _event(self, entry: PodRun, run, kind: str, reason: str, message: str) -> None:
        meta = entry.pod["metadata"]
        field_path = run.field_path if run else ""
        key = (entry.uid, field_path, reason, message)
        now = time.monotonic()
        if now - self.events.get(key, -EVENT_DEDUP) < EVENT_DEDUP:
            return
        self.events[key] = now
        if len(self.events) > 5000:
            self.events = {k: t for k, t in self.events.items() if now - t < EVENT_DEDUP}
        if kind == "Warning":
            self.log(f"{entry.label}: {reason}: {message}")
        stamp = now_iso()
        involved = {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"],
                    "apiVersion": "v1"}
        if field_path:
            involved["fieldPath"] = field_path
        node = entry.pod["spec"].get("nodeName", "")
        self.api.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": meta["name"] + ".", "namespace": meta["namespace"]},
            "involvedObject": involved, "reason": reason, "message": message, "type": kind,
            "source": {"component": "kubelet", "host": node}, "reportingComponent": "kubelet",
            "reportingInstance": node, "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        })


class _Blocked(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message
