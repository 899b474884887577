"""The settings of the runbooks, verify.yml and status.yml (playbooks/vars/playbook_settings.yml) are checked
by type before the playbook sends a request: each wrong one is named with what it takes.

Each case runs the real playbook on the simulator and reads what it ran (the json callback) and the cluster.
"""

import uuid

import pytest

CHECK_TASKS = {"Check the types of the playbook's settings", "Stop with each wrong setting and what it takes"}


@pytest.fixture(autouse=True)
def cluster_auth(monkeypatch, cluster):
    monkeypatch.setenv("K8S_AUTH_KUBECONFIG", str(cluster.kubeconfig))


def tasks_run(run):
    return [task["task"]["name"] for play in run.report.get("plays", []) for task in play.get("tasks", [])]


def stop_message(run):
    (stop,) = run.task_results("Stop with each wrong setting and what it takes")
    return stop["msg"]


WRONG = [
    ("uninstall-purge-not-a-bool", "uninstall.yml", {"ollama_purge": "maybe"},
     ["argument 'ollama_purge' is of type", "ollama_purge (bool: Delete the claims too"]),
    ("drain-without-a-node", "drain.yml", {},
     ["missing required arguments: ollama_drain_node", "ollama_drain_node (str, required: The GPU node to drain"]),
    ("drain-timeout-not-a-number", "drain.yml", {"ollama_drain_node": "k3s-gpu-0", "ollama_drain_timeout": "soon"},
     ["argument 'ollama_drain_timeout' is of type", "ollama_drain_timeout (int: Seconds the eviction"]),
    ("lost-node-confirm-not-a-bool", "lost_node.yml", {"ollama_lost_node": "k3s-gpu-0",
                                                       "ollama_lost_node_confirm": "perhaps"},
     ["argument 'ollama_lost_node_confirm' is of type", "ollama_lost_node_confirm (bool: Delete the claims"]),
    ("verify-timeout-not-a-number", "verify.yml", {"ollama_verify_timeout": "abc"},
     ["argument 'ollama_verify_timeout' is of type", "ollama_verify_timeout (int: Seconds a generation"]),
    ("status-measure-not-a-bool", "status.yml", {"ollama_status_measure": "sometimes"},
     ["argument 'ollama_status_measure' is of type", "ollama_status_measure (bool: Run one short generation"]),
]


@pytest.mark.parametrize("name, variables, fragments", [c[1:] for c in WRONG], ids=[c[0] for c in WRONG])
def test_a_wrong_setting_stops_the_playbook_before_any_request(playbook, cluster, namespace, name, variables,
                                                               fragments):
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ollama-gate", "namespace": namespace}})
    run = playbook(name, dict({"ollama_namespace": namespace}, **variables))
    assert run.rc != 0, run
    message = stop_message(run)
    for fragment in fragments:
        assert fragment in message, message
    assert "Nothing was changed. Fix: set " in message and "playbooks/vars/playbook_settings.yml" in message
    # Nothing but the check ran: no plan, no read, no write (uninstall's ConfigMap is still there).
    assert set(tasks_run(run)) <= CHECK_TASKS, tasks_run(run)
    assert cluster.get("configmap", "ollama-gate", "-n", namespace)["metadata"]["name"] == "ollama-gate"


@pytest.mark.profile("k3s")
def test_site_checks_the_verification_settings_before_its_first_write(playbook, cluster):
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    run = playbook("site.yml", {"ollama_namespace": namespace, "ollama_models": [],
                                "ollama_verify_num_predict": "many"})
    assert run.rc != 0, run
    message = stop_message(run)
    assert "argument 'ollama_verify_num_predict' is of type" in message, message
    assert "ollama_verify_num_predict (int: Tokens to generate.)" in message, message
    assert cluster.kubectl("get", "namespace", namespace, check=False).returncode != 0, f"{namespace} was created"


def test_good_settings_given_as_strings_pass_the_check(playbook, cluster, namespace):
    # -e on the command line gives strings: "true" and "300" are a bool and an int.
    run = playbook("drain.yml", {"ollama_namespace": namespace, "ollama_drain_node": "no-such-node",
                                 "ollama_drain_uncordon": "true", "ollama_drain_timeout": "300"})
    assert run.rc != 0, run
    assert "ollama_drain_node: node \"no-such-node\" does not exist" in run.failure, run
    (stop,) = run.task_results("Stop with each wrong setting and what it takes")
    assert stop.get("skipped"), stop
