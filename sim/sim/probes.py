"""Probes as the kubelet runs them: timing and thresholds (ProbeState, pure), and the checks themselves
(httpGet and tcpSocket from the node's network namespace, exec inside the container's namespaces as its
user), run in one bounded pool with every check under its own timeout.

Timing: the first check comes initialDelaySeconds after the container started, then one every
periodSeconds (a kubelet ticks from the moment it admits the pod, so its first check may come up to one
period later). Liveness and readiness wait until the startup probe has succeeded; the readiness probe runs
at once when it has. A readiness result turns after successThreshold passes in a row or failureThreshold
failures in a row; a container starts NotReady. grpc probes are refused (the runtime says so in an event).
"""

import http.client
import os
import signal
import socket
import ssl
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import network

KINDS = ("startupProbe", "livenessProbe", "readinessProbe")
USER_AGENT = "kube-probe/1.34"
MAX_OUTPUT = 10 * 1024
WORKERS = 8


@dataclass
class Timing:
    initial_delay: float = 0
    period: float = 10
    timeout: float = 1
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def of(cls, spec: dict) -> "Timing":
        return cls(initial_delay=spec.get("initialDelaySeconds", 0), period=max(1, spec.get("periodSeconds", 10)),
                   timeout=max(1, spec.get("timeoutSeconds", 1)), success_threshold=max(1, spec.get("successThreshold", 1)),
                   failure_threshold=max(1, spec.get("failureThreshold", 3)))


def action(spec: dict) -> str:
    for name in ("httpGet", "tcpSocket", "exec", "grpc"):
        if name in spec:
            return name
    return "none"


class ProbeState:
    """One probe of one container run. `result` is what the kubelet reports: started (startup), alive
    (liveness), ready (readiness)."""

    def __init__(self, kind: str, spec: dict, started: float):
        self.kind = kind
        self.spec = spec
        self.timing = Timing.of(spec)
        self.started = started
        self.next_due = started + self.timing.initial_delay
        self.successes = 0
        self.failures = 0
        self.result = kind == "livenessProbe"
        self.in_flight = False
        self.last_message = ""

    def due(self, now: float, gated: bool) -> bool:
        """gated: liveness and readiness wait for the startup probe."""
        return not gated and not self.in_flight and now >= self.next_due

    def ungate(self, now: float) -> None:
        """The startup probe passed: readiness runs at once (liveness keeps its ticker)."""
        earliest = self.started + self.timing.initial_delay
        if self.kind == "readinessProbe":
            self.next_due = max(now, earliest)
        else:
            self.next_due = max(now + self.timing.period, earliest)

    def begin(self, now: float) -> None:
        self.in_flight = True
        # A tick skipped while a check runs is lost, as with the kubelet's ticker.
        while self.next_due <= now:
            self.next_due += self.timing.period

    def record(self, ok: bool, message: str = "") -> str:
        """Count one result; returns 'passed' or 'failed' when the result turns, else ''."""
        self.in_flight = False
        self.last_message = message
        if ok:
            self.successes += 1
            self.failures = 0
            threshold = self.timing.success_threshold if self.kind == "readinessProbe" else 1
            if not self.result and self.successes >= threshold:
                self.result = True
                return "passed"
        else:
            self.failures += 1
            self.successes = 0
            if self.failures >= self.timing.failure_threshold and (self.result or self.kind == "startupProbe"):
                self.result = False
                if self.kind == "startupProbe":
                    self.failures = 0
                return "failed"
        return ""


# ---- the checks ---------------------------------------------------------------------------------
def resolve_port(port, container: dict) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for item in container.get("ports") or []:
        if item.get("name") == port:
            return int(item["containerPort"])
    raise ValueError(f"port {port!r} is not a named port of container {container.get('name')}")


def _dial(netns: str, host: str, port: int, timeout: float) -> socket.socket:
    try:
        return network.connect_in_netns(netns, host, port, timeout)
    except socket.timeout:
        raise OSError(f"dial tcp {host}:{port}: i/o timeout") from None
    except OSError as exc:
        raise OSError(f"dial tcp {host}:{port}: connect: {(exc.strerror or str(exc)).lower()}") from None


def http_get(netns: str, host: str, port: int, path: str, scheme: str, headers: list, timeout: float):
    deadline = time.monotonic() + timeout
    url = f"{scheme.lower()}://{host}:{port}{path or '/'}"
    try:
        sock = _dial(netns, host, port, timeout)
    except OSError as exc:
        return False, f'Get "{url}": {exc}'
    try:
        if scheme.upper() == "HTTPS":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # as the kubelet: no verification
            sock = context.wrap_socket(sock, server_hostname=host)
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.sock = sock
        sent = {"User-Agent": USER_AGENT, "Accept": "*/*"}
        for header in headers or []:
            sent[header["name"]] = header["value"]
        conn.request("GET", path or "/", headers=sent)
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        resp = conn.getresponse()
        resp.read(MAX_OUTPUT)
        if 200 <= resp.status < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {resp.status}"
    except socket.timeout:
        return False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    except (OSError, http.client.HTTPException) as exc:
        return False, f'Get "{url}": {exc or exc.__class__.__name__}'
    finally:
        sock.close()


def tcp_socket(netns: str, host: str, port: int, timeout: float):
    try:
        _dial(netns, host, port, timeout).close()
    except OSError as exc:
        return False, str(exc)
    return True, ""


def exec_command(pid: int, command: list, env: dict, uid: int, gid: int, groups: list, timeout: float):
    """Run the command in the container's mount, network and UTS namespaces, as its user."""
    ids = ["--reuid", str(uid), "--regid", str(gid)]
    ids += ["--groups", ",".join(map(str, groups))] if groups else ["--clear-groups"]
    argv = ["nsenter", "--target", str(pid), "--mount", "--net", "--uts", "--wd", "--",
            "setpriv", *ids, "--", *command]
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        return False, f"command timed out after {timeout:g}s"
    text = out[:MAX_OUTPUT].decode(errors="replace").strip()
    if proc.returncode == 0:
        return True, text
    return False, f"command {command!r} exited with {proc.returncode}: {text}"


def run_check(spec: dict, target: dict):
    """One check; target has netns (the node's), ip, container, pid, env, uid, gid, groups."""
    timeout = Timing.of(spec).timeout
    kind = action(spec)
    try:
        if kind == "httpGet":
            get = spec["httpGet"]
            port = resolve_port(get.get("port"), target["container"])
            return http_get(target["netns"], get.get("host") or target["ip"], port, get.get("path", "/"),
                            get.get("scheme", "HTTP"), get.get("httpHeaders"), timeout)
        if kind == "tcpSocket":
            tcp = spec["tcpSocket"]
            port = resolve_port(tcp.get("port"), target["container"])
            return tcp_socket(target["netns"], tcp.get("host") or target["ip"], port, timeout)
        if kind == "exec":
            return exec_command(target["pid"], spec["exec"].get("command") or [], target["env"], target["uid"],
                                target["gid"], target["groups"], timeout)
        return False, f"{kind} probes are not run by the simulator"
    except socket.timeout:
        return False, f"probe timed out after {timeout:g}s"
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return False, str(exc) or exc.__class__.__name__


class Pool:
    """One pool for every probe of every pod; results come back through on_result (from a worker)."""

    def __init__(self, on_result, workers: int = WORKERS):
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe")
        self.on_result = on_result

    def submit(self, key, spec: dict, target: dict) -> None:
        def work():
            try:
                ok, message = run_check(spec, target)
            except Exception as exc:  # a check must never take its worker down
                ok, message = False, f"probe error: {exc}"
            self.on_result(key, ok, message)
        self.executor.submit(work)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
