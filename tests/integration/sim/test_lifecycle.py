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
               LLMOPS_SIM_KWOK_PORT=str(ports_base + 4), LLMOPS_SIM_POD_CIDR="10.246.0.0/16")
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
    # The simulator waits a few seconds for a port to free up before it gives up.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 27101))
        blocker.listen()
        result = sim(tmp_path / "s", "up", "--profile", "k3s", ports_base=27100)
    assert result.returncode == 2
    assert "port 27101 on 127.0.0.1 (apiserver) is already in use" in result.stderr
    assert "LLMOPS_SIM_API_PORT" in result.stderr
    assert owned_pids(tmp_path / "s") == []


def ollama_running(state):
    def cmdline(pid):
        try:
            return (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")[:2]
        except OSError:
            return []
    return any(cmdline(pid) == [b"/bin/ollama", b"serve"] for pid in owned_pids(state))


def test_down_after_a_crash_removes_every_process_network_and_state(tmp_path):
    sys.path.insert(0, str(REPO / "sim"))
    from sim import build, network
    state = tmp_path / "s"
    started = time.monotonic()
    up = sim(state, "up", "--profile", "no-gpu", ports_base=27200)
    assert up.returncode == 0, up.stderr
    print(f"warm up took {time.monotonic() - started:.1f}s")
    pod = ('{"apiVersion":"v1","kind":"Pod","metadata":{"name":"ollama","namespace":"default"},'
           '"spec":{"containers":[{"name":"ollama","image":"ollama/ollama:0.11.4"}]}}')
    subprocess.run([str(build.binary_path("kubectl")), f"--kubeconfig={state / 'kubeconfig'}", "create", "-f", "-"],
                   input=pod, text=True, check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ollama_running(state):
        time.sleep(0.5)
    assert ollama_running(state), "the pod runtime started no Ollama"
    netns = network.names(state)["netns"]
    assert netns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    control_plane = [pid for pid in owned_pids(state) if b"kube-apiserver" in (Path("/proc") / str(pid) / "cmdline").read_bytes()
                     or b"etcd" in (Path("/proc") / str(pid) / "cmdline").read_bytes()]
    for pid in control_plane:  # a crash: processes gone without a clean down
        os.kill(pid, signal.SIGKILL)
    assert "DOWN" in sim(state, "status", ports_base=27200).stdout
    down = sim(state, "down", ports_base=27200)
    assert down.returncode == 0, down.stderr
    assert owned_pids(state) == []
    assert not state.exists()
    assert netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "10.246.0.0/16" not in subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
