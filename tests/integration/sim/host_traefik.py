"""Dev-only stand-in for the kubelet's run of the Traefik pod, for simulators whose kubelet cannot run it yet.

Runs the pinned Traefik build on the host as the pod would run: the Deployment's own args, the in-cluster
configuration (a ServiceAccount token, ca.crt and namespace at /var/run/secrets/kubernetes.io/serviceaccount
in a private mount namespace, KUBERNETES_SERVICE_HOST/PORT at the API server). The pod has no network
namespace of its own here, so the host takes the pod's IP on the simulator's host-side veth and the entry
points bind that address: the simulator's ingress listener, which forwards to the pod's endpoint, reaches it.
"""

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

TOKEN_DIR = "/run/secrets/kubernetes.io/serviceaccount"  # /var/run is /run on Debian


def kubelet_runs_traefik() -> bool:
    """The simulator's kubelet maps Traefik's image to the pinned build once it has sim.images."""
    import importlib.util
    return importlib.util.find_spec("sim.images") is not None


class HostTraefik:
    def __init__(self, state_dir: Path, kubectl):
        from sim import build, cluster
        self.state_dir = Path(state_dir).resolve()
        self.state = cluster.read_state()
        self.marker = self.state["marker"]
        self.binary = str(build.binary_path("traefik"))
        self.kubectl = kubectl  # (*args) -> CompletedProcess, as the admin
        self.dir = self.state_dir / "host-traefik"
        self.proc = None
        self.pod_ip = None

    def start(self, timeout: float = 60) -> "HostTraefik":
        deploy = json.loads(self.kubectl("get", "deployment", "traefik", "-n", "kube-system", "-o", "json").stdout)
        pods = json.loads(self.kubectl("get", "pods", "-n", "kube-system", "-l", "app.kubernetes.io/name=traefik",
                                       "-o", "json").stdout)["items"]
        pod = next(p for p in pods if p["status"].get("podIP") and not p["metadata"].get("deletionTimestamp"))
        self.pod_ip = pod["status"]["podIP"]
        container = deploy["spec"]["template"]["spec"]["containers"][0]
        args = [a.replace("address=:", f"address={self.pod_ip}:") if a.startswith("--entryPoints.") else a
                for a in container["args"]]
        self.dir.mkdir(parents=True, exist_ok=True)
        secrets = self.dir / "serviceaccount"
        secrets.mkdir(exist_ok=True)
        token = self.kubectl("create", "token", "traefik", "-n", "kube-system", "--duration=2h").stdout.strip()
        (secrets / "token").write_text(token)
        (secrets / "namespace").write_text("kube-system")
        (secrets / "ca.crt").write_bytes((self.state_dir / "pki" / "ca.crt").read_bytes())
        subprocess.run(["ip", "addr", "replace", f"{self.pod_ip}/32", "dev", self.state["network"]["host_if"]],
                       check=True, capture_output=True)
        script = (f"mount --make-rprivate / && mount -t tmpfs tmpfs /run && mkdir -p {TOKEN_DIR} && "
                  f"mount --bind {secrets} {TOKEN_DIR} && exec \"$@\"")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.dir), "USER": "traefik",
               "POD_NAME": pod["metadata"]["name"], "POD_NAMESPACE": "kube-system",
               "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.state["ports"]["apiserver"]),
               "LLMOPS_SIM_OWNER": self.marker}  # `sim down` stops it with the rest of the cluster
        log = open(self.state_dir / "logs" / "host-traefik.log", "ab")
        self.proc = subprocess.Popen(["unshare", "--mount", "sh", "-c", script, "traefik", self.binary, *args],
                                     env=env, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"host Traefik exited with {self.proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"http://{self.pod_ip}:8080/ping", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise AssertionError(f"host Traefik did not answer /ping within {timeout}s; see {log.name}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self.pod_ip:
            subprocess.run(["ip", "addr", "del", f"{self.pod_ip}/32", "dev", self.state["network"]["host_if"]],
                           check=False, capture_output=True)
