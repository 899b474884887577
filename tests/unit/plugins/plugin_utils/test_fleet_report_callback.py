"""The fleet_report callback's outcome per host, from Ansible's own AggregateStats and stand-in results (pure
logic: the events are built here, no playbook runs; tests/integration/collection/test_fleet.py runs it for real)."""

from types import SimpleNamespace

from ansible.executor.stats import AggregateStats

from ansible_collections.llmops.ollama.plugins.callback.fleet_report import CallbackModule


def result(host, task, **res):
    return SimpleNamespace(_host=SimpleNamespace(get_name=lambda: host), _task=SimpleNamespace(get_name=lambda: task),
                           _result=res)


def callback(clusters):
    cb = CallbackModule()
    cb._clusters = clusters
    cb._play = "Plan the Ollama deployment"
    return cb


def test_each_cluster_ok_failed_or_not_run_and_a_failed_gpu_host_too():
    stats = AggregateStats()
    cb = callback(["lab", "prod", "eu"])
    for host in ("lab", "prod", "gpu-1"):
        stats.increment("ok", host)
    stats.increment("changed", "lab")
    cb.v2_runner_on_failed(result("prod", "Read the cluster", msg="connection refused\nFix: start it"))
    stats.increment("failures", "prod")
    cb.v2_runner_on_failed(result("gpu-1", "Check the host", msg="no GPU"))
    stats.increment("failures", "gpu-1")
    report = cb.report(stats)
    assert report["lab"] == {"status": "ok", "changed": 1, "cluster": True}
    assert report["prod"]["status"] == "failed" and report["prod"]["task"] == "Read the cluster"
    assert report["prod"]["msg"] == "connection refused\nFix: start it"
    assert report["eu"] == {"status": "not run", "cluster": True}
    assert report["gpu-1"]["cluster"] is False and report["gpu-1"]["msg"] == "no GPU"


def test_an_ignored_or_rescued_failure_leaves_the_cluster_ok_and_a_loop_reports_its_item():
    stats = AggregateStats()
    cb = callback(["lab", "prod"])
    cb.v2_runner_on_failed(result("lab", "Probe", msg="ignored"), ignore_errors=True)
    cb.v2_runner_on_failed(result("lab", "Rescued", msg="rescued"))
    stats.increment("ok", "lab")
    stats.increment("rescued", "lab")
    cb.v2_runner_item_on_failed(result("prod", "Pull", msg="manifest unknown"))
    cb.v2_runner_on_failed(result("prod", "Pull", msg="One or more items failed"))
    stats.increment("failures", "prod")
    report = cb.report(stats)
    assert report["lab"]["status"] == "ok"
    assert report["prod"]["msg"] == "manifest unknown"


def test_no_fleet_group_no_report(capsys):
    cb = callback([])
    cb.v2_playbook_on_stats(AggregateStats())
    assert capsys.readouterr() == ("", "")
