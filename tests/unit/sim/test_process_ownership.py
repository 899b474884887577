"""Whether a pid is one of this simulator's processes, read from real processes (no mocks)."""

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "sim"))

from sim.cluster import OWNER_ENV, _alive  # noqa: E402

MARKER = "/tmp/llmops-test-owner"


def _spawn(argv, env):
    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)


def test_a_process_carrying_the_mark_is_ours():
    proc = _spawn(["sleep", "5"], {OWNER_ENV: MARKER, "PATH": "/usr/bin:/bin"})
    try:
        assert _alive(proc.pid, MARKER)
        assert not _alive(proc.pid, MARKER + "-other", exec_grace=0)
    finally:
        proc.kill()
        proc.wait()


def test_a_process_still_becoming_ours_counts_once_it_carries_the_mark():
    # Starts with an empty environment and only then execs with the mark, as `ip netns exec` does while it
    # becomes kube-router: the empty environment in between is not the end of the process.
    proc = _spawn(["/bin/sh", "-c", f"sleep 0.4; exec /usr/bin/env {OWNER_ENV}={MARKER} sleep 5"], {})
    try:
        assert _alive(proc.pid, MARKER, exec_grace=30)
    finally:
        proc.kill()
        proc.wait()


def test_a_zombie_is_not_alive_and_is_told_at_once():
    proc = _spawn(["/bin/sh", "-c", "exit 0"], {OWNER_ENV: MARKER})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "Z" not in Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1]:
        time.sleep(0.05)
    started = time.monotonic()
    assert not _alive(proc.pid, MARKER, exec_grace=30)
    assert time.monotonic() - started < 10, "a zombie waited out the exec grace"
    proc.wait()
    assert not _alive(proc.pid, MARKER)
