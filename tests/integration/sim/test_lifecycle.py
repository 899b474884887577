"""Starting, failing and stopping the simulator leaves nothing behind."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def sim(state, *args, ports_base=27000, timeout=300):
    env = dict(os.environ, LLMOPS_SIM_STATE=str(state), LLMOPS_SIM_API_PORT=str(ports_base + 1),
               LLMOPS_SIM_ETCD_PORT=str(ports_base + 2), LLMOPS_SIM_ETCD_PEER_PORT=str(ports_base + 3),
               LLMOPS_SIM_KWOK_PORT=str(ports_base + 4))
    return subprocess.run([sys.executable, "-m", "sim", *args], cwd=REPO / "sim", env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def owned_pids(state):
    mark = f"LLMOPS_SIM_OWNER={Path(state).resolve()}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and mark in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


def test_unknown_profile_names_the_known_ones(tmp_path):
    result = sim(tmp_path / "s", "up", "--profile", "gke")
    assert result.returncode == 2
    assert "unknown profile 'gke'" in result.stderr and "k3s" in result.stderr and "fix:" in result.stderr
    assert not (tmp_path / "s").exists()


def test_port_in_use_is_named_and_nothing_is_left(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 27101))
        blocker.listen()
        result = sim(tmp_path / "s", "up", "--profile", "k3s", ports_base=27100)
    assert result.returncode == 2
    assert "port 27101 on 127.0.0.1 (apiserver) is already in use" in result.stderr
    assert "LLMOPS_SIM_API_PORT" in result.stderr
    assert owned_pids(tmp_path / "s") == []


def test_down_after_a_crash_removes_every_process_and_the_state(tmp_path):
    state = tmp_path / "s"
    started = time.monotonic()
    up = sim(state, "up", "--profile", "no-gpu", ports_base=27200)
    assert up.returncode == 0, up.stderr
    print(f"warm up took {time.monotonic() - started:.1f}s")
    pids = owned_pids(state)
    assert len(pids) >= 6
    for pid in pids[:2]:  # a crash: processes gone without a clean down
        os.kill(pid, signal.SIGKILL)
    again = sim(state, "status", ports_base=27200)
    assert "DOWN" in again.stdout
    down = sim(state, "down", ports_base=27200)
    assert down.returncode == 0, down.stderr
    assert owned_pids(state) == []
    assert not state.exists()
