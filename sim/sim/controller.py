"""The simulator's controller process: provisions volumes and (see runtime.py) runs Ollama pods."""

import json
import signal
import sys
import time
import traceback
from pathlib import Path

from .kube import Kube
from .provisioner import Provisioner

INTERVAL = 0.5


def run(state_dir: Path) -> None:
    state = json.loads((state_dir / "state.json").read_text())
    api = Kube("127.0.0.1", state["ports"]["apiserver"], state_dir / "pki", client="simctl")
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))

    def log(message):
        print(time.strftime("%H:%M:%S"), message, flush=True)

    loops = [Provisioner(api, state_dir, log)]
    try:
        from .runtime import Runtime
        loops.append(Runtime(api, state_dir, state, log))
    except ImportError:
        pass
    while not stopping:
        for loop in loops:
            try:
                loop.sync()
            except Exception:  # keep serving; a kubelet-like loop must survive API hiccups
                log(traceback.format_exc(limit=3))
        time.sleep(INTERVAL)
    for loop in loops:
        if hasattr(loop, "shutdown"):
            loop.shutdown()
    sys.exit(0)
