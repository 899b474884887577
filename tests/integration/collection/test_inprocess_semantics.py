# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a collection module runs: a plain local task (delegated to localhost or not) in the controller, a
become or async task, or one delegated to an ssh host, as an ordinary module process, in one real playbook on localhost against the simulated cluster's API server.

Two signs tell the paths apart. A module run in the controller never starts ansible_python_interpreter, so a
task whose interpreter does not exist still succeeds in process and fails as a module process. And credentials
follow the user the module runs as: ansible-playbook's HOME holds a kubeconfig for the simulator, root's
(`become` through sudo, which sets HOME to /root and drops the controller's environment) holds none, so a become
task that reads the controller's kubeconfig ran as the wrong user."""

import json
import os
import pwd
import socket
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
APP = "inproc"
MISSING_PYTHON = "/nonexistent/python3"


@pytest.fixture
def pod(cluster, namespace):
    cluster.create({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "inproc-pod", "namespace": namespace, "labels": {"app": APP}},
                    "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}})
    return "inproc-pod"


def closed_port():
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_playbook(tmp_path, namespace, home):
    """Every case as one task (failures ignored) of one play; the json callback's report by task name."""
    good_python = (REPO / ".venv" / "bin" / "python").as_posix()

    def task(name, python=good_python, **keywords):
        entry = {"name": name, "llmops.ollama.pod_info": {"namespace": namespace, "label_selector": {"app": APP},
                                                           "request_timeout": 20},
                 "vars": {"ansible_python_interpreter": python}, "ignore_errors": True}
        entry.update(keywords)
        return entry
    become = {"become": True, "become_method": "ansible.builtin.sudo", "become_user": "root"}
    tasks = [
        task("Plain, missing interpreter", MISSING_PYTHON),
        task("Plain", good_python),
        task("Become, missing interpreter", MISSING_PYTHON, **become),
        task("Become", good_python, **become),
        task("Async, missing interpreter", MISSING_PYTHON, **{"async": 60, "poll": 1}),
        task("Async", good_python, **{"async": 60, "poll": 1}),
        task("Delegated to localhost", MISSING_PYTHON, delegate_to="localhost"),
        # An ssh host on a closed port: a module process cannot reach it; in process it would have succeeded.
        task("Delegated to an ssh host", good_python, delegate_to="far", ignore_unreachable=True),
    ]
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {
        "localhost": {"ansible_connection": "local"},
        "far": {"ansible_connection": "ansible.builtin.ssh", "ansible_host": "127.0.0.1", "ansible_port": closed_port(),
                "ansible_ssh_common_args": "-o ConnectTimeout=5 -o StrictHostKeyChecking=no"}}}}))
    play = tmp_path / "play.yml"
    play.write_text(json.dumps([{"name": "Where modules run", "hosts": "localhost", "connection": "local",
                                 "gather_facts": False, "tasks": tasks}]))
    env = dict((k, v) for k, v in os.environ.items() if k != "KUBECONFIG" and not k.startswith("K8S_AUTH_"))
    env.update(HOME=str(home), ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "local-tmp"),
               # async_status looks in ~remote_user, the job writes under $HOME: one absolute place for both.
               ANSIBLE_ASYNC_DIR=str(tmp_path / "async"),
               # This machine runs as root; without it, ansible leaves out sudo from root to root altogether.
               ANSIBLE_BECOME_ALLOW_SAME_USER="true")
    playbook = str(Path(sys.executable).parent / "ansible-playbook")
    done = subprocess.run([playbook, "-i", str(inventory), str(play)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    try:
        report = json.loads(done.stdout[done.stdout.index("{"):])
    except ValueError:
        pytest.fail(f"no report: rc={done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return dict((t["task"]["name"], t["hosts"]["localhost"]) for t in report["plays"][0]["tasks"])


def lists_the_pod(result, pod):
    return not result.get("failed") and [p["name"] for p in result.get("pods", [])] == [pod]


@pytest.mark.profile("k3s")
def test_plain_tasks_run_in_process_become_and_async_as_module_processes(cluster, namespace, pod, tmp_path):
    if not shutil.which("sudo"):
        pytest.skip("become through sudo needs sudo")
    root_home = Path(pwd.getpwnam("root").pw_dir)
    if (root_home / ".kube" / "config").exists():
        pytest.skip(f"{root_home}/.kube/config exists: a become task would read it and succeed either way")
    if subprocess.run(["sudo", "-n", "true"], capture_output=True, check=False).returncode != 0:
        pytest.skip("sudo -n does not work for this user")
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    flat = cluster.kubectl("config", "view", "--raw", "--minify", "--flatten").stdout
    (home / ".kube" / "config").write_text(flat)

    results = run_playbook(tmp_path, namespace, home)

    # In process: the controller's HOME and its kubeconfig; the interpreter is never started.
    for name in ("Plain, missing interpreter", "Plain"):
        assert lists_the_pod(results[name], pod), (name, results[name])
        assert "ansible_job_id" not in results[name]

    # Become: a module process (the missing interpreter fails it) as root, whose HOME has no kubeconfig.
    missing = results["Become, missing interpreter"]
    assert missing.get("failed") and MISSING_PYTHON in json.dumps(missing), missing
    become = results["Become"]
    assert become.get("failed") and "pods" not in become, become
    assert f"no kubeconfig at {root_home}/.kube/config" in become["msg"], become

    # Async: a module process in the background (a job id, the interpreter started), as the controller user.
    missing = results["Async, missing interpreter"]
    assert missing.get("failed") and MISSING_PYTHON in json.dumps(missing), missing
    assert lists_the_pod(results["Async"], pod) and results["Async"].get("ansible_job_id"), results["Async"]

    # delegate_to: localhost stays in process; an ssh host gets a module process over ssh, which cannot connect.
    assert lists_the_pod(results["Delegated to localhost"], pod), results["Delegated to localhost"]
    far = results["Delegated to an ssh host"]
    assert far.get("unreachable") and "pods" not in far, far
