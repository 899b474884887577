"""The simulator's controller process: provisions volumes (provisioner.py), runs pods (runtime.py) and keeps
the ClusterIP rules on the ready endpoints (services.py).

Pods come from one list-and-watch cache (as an informer keeps them): the kubelet loop reads it on every
pass instead of listing every pod, and every pod change wakes the loop at once — KWOK hands a deleted
pod's IP to the next pod immediately, and readiness must reach the EndpointSlices without delay.
"""

import json
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from .kube import Kube
from .provisioner import Provisioner
from .runtime import Runtime
from .services import ServiceProxy
from .traefik import IngressForwarder

INTERVAL = 0.5
PROVISION_INTERVAL = 0.5


class PodCache:
    def __init__(self, api: Kube, wake: threading.Event, stopping: threading.Event, log):
        self.api, self.wake, self.stopping, self.log = api, wake, stopping, log
        self.lock = threading.Lock()
        self.pods = {}
        self.synced = threading.Event()

    def items(self) -> list:
        with self.lock:
            return list(self.pods.values())

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                items, version = self.api.list_all("/api/v1/pods")
                with self.lock:
                    self.pods = {p["metadata"]["uid"]: p for p in items}
                self.synced.set()
                self.wake.set()
                self._watch(version)
            except Exception as exc:  # relist after API hiccups (a restarted API server, an expired version)
                self.log(f"pod watch restarting: {exc}")
                self.stopping.wait(1.0)

    def _watch(self, version: str) -> None:
        while not self.stopping.is_set():
            for event in self.api.watch("/api/v1/pods", version, timeout_seconds=50):
                kind, obj = event.get("type"), event.get("object", {})
                if kind == "ERROR":
                    raise RuntimeError(obj.get("message", "watch error"))
                version = obj.get("metadata", {}).get("resourceVersion", version)
                if kind == "BOOKMARK":
                    continue
                uid = obj["metadata"]["uid"]
                with self.lock:
                    if kind == "DELETED":
                        self.pods.pop(uid, None)
                    else:
                        self.pods[uid] = obj
                self.wake.set()
                if self.stopping.is_set():
                    return


def run(state_dir: Path) -> None:
    state = json.loads((state_dir / "state.json").read_text())
    api = Kube("127.0.0.1", state["ports"]["apiserver"], state_dir / "pki", client="simctl")
    stopping, wake = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: (stopping.set(), wake.set()))

    def log(message):
        print(time.strftime("%H:%M:%S"), message, flush=True)

    provisioner = Provisioner(api, state_dir, log)
    service_proxy = ServiceProxy(api, state_dir, log)  # throttles itself to a pass a second
    kubelet = Runtime(api, state_dir, state, log, wake=wake)
    # The host's ingress listener follows the Traefik pod's EndpointSlice.
    ingress = IngressForwarder(api, state, log)
    cache = PodCache(api, wake, stopping, log)
    threading.Thread(target=cache.run, daemon=True, name="pod-watch").start()
    next_provision = 0.0
    while not stopping.is_set():
        wake.clear()
        if time.monotonic() >= next_provision:
            next_provision = time.monotonic() + PROVISION_INTERVAL
            for loop in (provisioner, service_proxy):
                try:
                    loop.sync()
                except Exception:  # keep serving; a kubelet-like loop must survive API hiccups
                    log(traceback.format_exc(limit=3))
        kubelet.set_service_names(service_proxy.names)
        if cache.synced.is_set():
            try:
                kubelet.sync(cache.items())
            except Exception:
                log(traceback.format_exc(limit=5))
        try:
            ingress.sync()
        except Exception:
            log(traceback.format_exc(limit=3))
        wake.wait(min(INTERVAL, kubelet.next_wakeup()))
    kubelet.shutdown()
    ingress.shutdown()
    sys.exit(0)
