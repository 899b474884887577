# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""k8s_apply and pod_info against the simulated cluster: server-side apply with a real rollout wait, a
truthful check/diff, field-manager conflicts, deletes that wait, pods found and waited for; and the same
module run as a module process (async) gives the same answer as the run inside the controller."""

import json
import sys
from pathlib import Path

import pytest

APP = "web"


def objects(namespace, data="one", replicas=1):
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": APP, "namespace": namespace},
         "data": {"value": data}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": APP, "namespace": namespace},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": APP}},
                  "template": {"metadata": {"labels": {"app": APP}},
                               "spec": {"containers": [{"name": APP, "image": "registry.k8s.io/pause:3.10"}]}}}},
    ]


def task_playbook(tmp_path, task, name="Run the task"):
    path = tmp_path / "task.yml"
    path.write_text(json.dumps([{
        "name": "Run one task", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "module_defaults": {"group/llmops.ollama.cluster": {"kubeconfig": "{{ ollama_kubeconfig }}"}},
        "tasks": [dict(task, name=name, register="out"),
                  {"name": "Show the result", "ansible.builtin.debug": {"var": "out"}}]}]))
    return str(path)


def result_of(run):
    return run.task_results("Run the task")[0]


@pytest.mark.profile("k3s")
def test_apply_waits_for_the_rollout_and_a_repeat_changes_nothing(playbook, cluster, namespace, tmp_path):
    task = {"llmops.ollama.k8s_apply": {"definition": objects(namespace, replicas=2), "wait": True,
                                        "wait_timeout": 120}}
    first = playbook(task_playbook(tmp_path, task))
    assert first.rc == 0 and first.changed == 1, first
    deployment = next(r for r in result_of(first)["results"] if r["kind"] == "Deployment")
    assert deployment["changed"] and deployment["object"]["status"]["availableReplicas"] == 2
    managers = {m["manager"] for m in cluster.get("deployment", APP, "-n", namespace, "--show-managed-fields")["metadata"]["managedFields"]}
    assert "llmops-ollama" in managers
    again = playbook(task_playbook(tmp_path, task))
    assert again.rc == 0 and again.changed == 0, again
    assert [r["changed"] for r in result_of(again)["results"]] == [False, False]


@pytest.mark.profile("k3s")
def test_check_diff_tells_the_truth_and_writes_nothing(playbook, cluster, namespace, tmp_path):
    assert playbook(task_playbook(tmp_path, {"llmops.ollama.k8s_apply": {"definition": objects(namespace)}})).rc == 0
    version = cluster.get("configmap", APP, "-n", namespace)["metadata"]["resourceVersion"]
    dry = playbook(task_playbook(tmp_path, {"llmops.ollama.k8s_apply": {"definition": objects(namespace, "two")}}),
                   check=True, diff=True)
    assert dry.rc == 0 and dry.changed == 1, dry
    result = result_of(dry)
    assert [r["changed"] for r in result["results"]] == [True, False]
    (diff,) = result["diff"]
    assert diff["before"]["data"] == {"value": "one"} and diff["after"]["data"] == {"value": "two"}
    assert cluster.get("configmap", APP, "-n", namespace)["metadata"]["resourceVersion"] == version


@pytest.mark.profile("k3s")
def test_a_field_owned_by_another_manager_is_a_conflict_unless_forced(playbook, cluster, namespace, tmp_path):
    first, _ = objects(namespace)
    other = dict(first, data={"value": "theirs"})
    cluster.kubectl("apply", "--server-side", "--field-manager=someone-else", "-f", "-", input=json.dumps(other))
    refused = playbook(task_playbook(tmp_path, {"llmops.ollama.k8s_apply": {"definition": [first]}}))
    assert refused.rc != 0 and "force_conflicts" in refused.failure, refused
    assert cluster.get("configmap", APP, "-n", namespace)["data"] == {"value": "theirs"}
    forced = playbook(task_playbook(tmp_path, {"llmops.ollama.k8s_apply": {"definition": [first],
                                                                           "force_conflicts": True}}))
    assert forced.rc == 0 and forced.changed == 1, forced
    assert cluster.get("configmap", APP, "-n", namespace)["data"] == {"value": "one"}


@pytest.mark.profile("k3s")
def test_delete_waits_until_gone_and_a_repeat_changes_nothing(playbook, cluster, namespace, tmp_path):
    assert playbook(task_playbook(tmp_path, {"llmops.ollama.k8s_apply": {"definition": objects(namespace),
                                                                         "wait": True}})).rc == 0
    delete = {"llmops.ollama.k8s_apply": {"definition": objects(namespace), "state": "absent", "wait": True,
                                          "propagation_policy": "Foreground", "wait_timeout": 120}}
    gone = playbook(task_playbook(tmp_path, delete))
    assert gone.rc == 0 and gone.changed == 1, gone
    assert cluster.get("configmaps,deployments,replicasets", "-n", namespace, "-l", f"app={APP}")["items"] == []
    assert cluster.kubectl("get", "deployment", APP, "-n", namespace, check=False).returncode != 0
    assert playbook(task_playbook(tmp_path, delete)).changed == 0


@pytest.mark.profile("k3s")
def test_an_unknown_kind_fails_before_any_write(playbook, cluster, namespace, tmp_path):
    bad = objects(namespace) + [{"apiVersion": "example.com/v1", "kind": "Widget",
                                 "metadata": {"name": "w", "namespace": namespace}}]
    run = playbook(task_playbook(tmp_path, {"llmops.ollama.k8s_apply": {"definition": bad}}))
    assert run.rc != 0 and "does not serve example.com/v1" in run.failure, run
    assert cluster.kubectl("get", "configmap", APP, "-n", namespace, check=False).returncode != 0


@pytest.mark.profile("k3s")
def test_a_module_process_gives_the_same_answer_as_the_controller(playbook, cluster, namespace, tmp_path):
    # async cannot run inside the controller, so the action falls back to an ordinary module process.
    task = {"llmops.ollama.k8s_apply": {"definition": objects(namespace)}}
    in_controller = playbook(task_playbook(tmp_path, dict(task, check_mode=True)))
    as_process = playbook(task_playbook(tmp_path, dict(task, check_mode=True, **{"async": 60, "poll": 1})))
    assert in_controller.rc == 0 and as_process.rc == 0, as_process
    strip = [{k: r[k] for k in ("kind", "name", "namespace", "changed")} for r in result_of(in_controller)["results"]]
    assert strip == [{k: r[k] for k in ("kind", "name", "namespace", "changed")}
                     for r in result_of(as_process)["results"]]
    assert "ansible_job_id" in result_of(as_process) and "ansible_job_id" not in result_of(in_controller)


@pytest.mark.profile("k3s")
def test_pod_info_waits_for_running_pods_and_names_their_nodes(playbook, cluster, namespace, tmp_path):
    assert playbook(task_playbook(tmp_path, {"llmops.ollama.k8s_apply": {"definition": objects(namespace, replicas=2)}})).rc == 0
    found = playbook(task_playbook(tmp_path, {"llmops.ollama.pod_info": {
        "namespace": namespace, "label_selector": {"app": APP}, "wait_running": 2, "wait_ready": True,
        "wait_timeout": 120}}))
    assert found.rc == 0, found
    pods = result_of(found)["pods"]
    nodes = {p["metadata"]["name"]: p["spec"]["nodeName"]
             for p in cluster.get("pods", "-n", namespace, "-l", f"app={APP}")["items"]}
    assert {p["name"]: p["node"] for p in pods} == nodes and all(p["ready"] for p in pods)
    assert result_of(found)["running"] == sorted(nodes)
    short = playbook(task_playbook(tmp_path, {"llmops.ollama.pod_info": {
        "namespace": namespace, "label_selector": f"app={APP}", "wait_running": 3, "wait_timeout": 3}}))
    assert short.rc != 0 and "2 of 3 pods matching app=web" in short.failure, short


@pytest.mark.profile("k3s")
def test_the_task_environment_reaches_a_module_run_in_the_controller(playbook, cluster, namespace, tmp_path):
    # K8S_AUTH_KUBECONFIG from the task's environment, as a module process would get it; no kubeconfig option.
    path = tmp_path / "env.yml"
    path.write_text(json.dumps([{
        "name": "Read pods with the credentials from the environment", "hosts": "localhost", "connection": "local",
        "gather_facts": False,
        "tasks": [{"name": "Run the task", "llmops.ollama.pod_info": {"namespace": namespace,
                                                                       "label_selector": "app=none"},
                   "environment": {"K8S_AUTH_KUBECONFIG": "{{ ollama_kubeconfig }}"}, "register": "out"},
                  {"name": "Run without it", "llmops.ollama.pod_info": {"namespace": namespace,
                                                                         "label_selector": "app=none"},
                   "environment": {"K8S_AUTH_KUBECONFIG": "/nonexistent/kubeconfig"}, "ignore_errors": True},
                  {"name": "Plan with it", "llmops.ollama.plan": {"fail_on_error": False},
                   "environment": {"K8S_AUTH_KUBECONFIG": "{{ ollama_kubeconfig }}"}}]}]))
    run = playbook(str(path))
    assert run.rc == 0, run
    assert result_of(run)["pods"] == [] and not result_of(run).get("failed")
    nodes = cluster.get("nodes")["items"]
    assert run.task_results("Plan with it")[0]["cluster"]["node_count"] == len(nodes)
    assert "/nonexistent/kubeconfig does not exist" in run.task_results("Run without it")[0]["msg"]


@pytest.mark.profile("k3s")
def test_the_built_in_kinds_are_what_the_api_server_serves(cluster):
    # k8s_apply skips discovery for these kinds; the real API server must agree on each plural and scope.
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / ".collections"))
    from ansible_collections.llmops.ollama.plugins.module_utils.apply import BUILT_IN
    served = {}
    for api_version in {version for version, _kind in BUILT_IN}:
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        listing = json.loads(cluster.kubectl("get", "--raw", path).stdout)
        served.update({(api_version, r["kind"]): (r["name"], r["namespaced"])
                       for r in listing["resources"] if "/" not in r["name"]})
    assert {key: served.get(key) for key in BUILT_IN} == BUILT_IN


@pytest.mark.profile("k3s")
def test_absent_objects_go_first_and_a_repeat_changes_nothing(playbook, cluster, namespace, tmp_path):
    config_map, deployment = objects(namespace)
    assert playbook(task_playbook(tmp_path, {"llmops.ollama.k8s_apply": {"definition": [deployment],
                                                                         "wait": True}})).rc == 0
    # As ollama_workload removes the workload of the other kind before it applies its own: here the Deployment
    # goes and a ConfigMap comes, in one call.
    task = {"llmops.ollama.k8s_apply": {"definition": [config_map], "absent": [deployment], "wait": True,
                                        "propagation_policy": "Foreground", "wait_timeout": 120}}
    swapped = playbook(task_playbook(tmp_path, task))
    assert swapped.rc == 0 and swapped.changed == 1, swapped
    assert [(r["kind"], r["changed"]) for r in result_of(swapped)["results"]] == [("Deployment", True),
                                                                                  ("ConfigMap", True)]
    assert cluster.kubectl("get", "deployment", APP, "-n", namespace, check=False).returncode != 0
    assert cluster.get("configmap", APP, "-n", namespace)["data"] == {"value": "one"}
    again = playbook(task_playbook(tmp_path, task))
    assert again.rc == 0 and again.changed == 0, again
