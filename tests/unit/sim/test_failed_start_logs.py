"""Two clusters side by side keep the logs of their failed starts apart (real directories, no mocks)."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "sim"))

from sim import cluster  # noqa: E402
from sim.paths import failed_start_logs  # noqa: E402


def _fail_a_start(monkeypatch, state: Path, line: str) -> Path:
    monkeypatch.setenv("LLMOPS_SIM_STATE", str(state))
    (state / "logs").mkdir(parents=True)
    (state / "logs" / "etcd.log").write_text(line)
    cluster.Cluster(log=lambda *_: None)._keep_failed_logs()
    return failed_start_logs(state)


def test_each_state_directory_keeps_its_own_failed_start_logs(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMOPS_SIM_CACHE", str(tmp_path / "cache"))
    first = _fail_a_start(monkeypatch, tmp_path / "a" / ".sim-test", "first cluster")
    second = _fail_a_start(monkeypatch, tmp_path / "b" / ".sim-test", "second cluster")
    assert first != second and first.parent == second.parent == tmp_path / "cache" / "failed-start-logs"
    assert first.name.startswith("sim-test-")
    assert (first / "etcd.log").read_text() == "first cluster"
    assert (second / "etcd.log").read_text() == "second cluster"


def test_a_later_failed_start_of_the_same_cluster_replaces_its_logs(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMOPS_SIM_CACHE", str(tmp_path / "cache"))
    state = tmp_path / ".sim"
    _fail_a_start(monkeypatch, state, "old")
    (state / "logs" / "etcd.log").unlink()
    (state / "logs" / "kwok.log").write_text("new")
    cluster.Cluster(log=lambda *_: None)._keep_failed_logs()
    assert sorted(p.name for p in failed_start_logs(state).iterdir()) == ["kwok.log"]
