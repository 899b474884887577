"""The simulator's controller process: provisions volumes and runs Ollama pods (runtime.py)."""

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
from .traefik import IngressForwarder

INTERVAL = 0.5


def _watch_pods(api: Kube, wake: threading.Event, stopping: threading.Event, log) -> None:
    """Wake the loop on every pod change: KWOK hands a deleted pod's IP to the next pod at once,
    so the old Ollama must stop before the new pod can be reached on that address."""
    while not stopping.is_set():
        try:
            version = api.get("/api/v1/pods", limit="1")["metadata"]["resourceVersion"]
            for _event in api.watch("/api/v1/pods", version, timeout_seconds=50):
                wake.set()
                if stopping.is_set():
                    return
        except Exception as exc:  # reconnect after API hiccups; the periodic loop still runs
            log(f"pod watch restarting: {exc}")
            stopping.wait(1.0)


def run(state_dir: Path) -> None:
    state = json.loads((state_dir / "state.json").read_text())
    api = Kube("127.0.0.1", state["ports"]["apiserver"], state_dir / "pki", client="simctl")
    stopping, wake = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: (stopping.set(), wake.set()))

    def log(message):
        print(time.strftime("%H:%M:%S"), message, flush=True)

    loops = [Provisioner(api, state_dir, log), Runtime(api, state_dir, state, log), IngressForwarder(api, state, log)]
    threading.Thread(target=_watch_pods, args=(api, wake, stopping, log), daemon=True).start()
    while not stopping.is_set():
        wake.clear()
        for loop in loops:
            try:
                loop.sync()
            except Exception:  # keep serving; a kubelet-like loop must survive API hiccups
                log(traceback.format_exc(limit=3))
        wake.wait(INTERVAL)
    for loop in loops:
        if hasattr(loop, "shutdown"):
            loop.shutdown()
    sys.exit(0)
