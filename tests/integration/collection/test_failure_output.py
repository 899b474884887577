"""Failures that read in one screen: a plan failure prints its problems with their fixes and nothing else (the
plan with -v), and a kubeconfig path is printed, never masked, in the controller and in a module process."""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def fatal_block(stdout):
    """The lines the default callback prints for the failed task, from `fatal:` to the next blank line."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("fatal: [localhost]: FAILED!"))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


@pytest.mark.profile("k3s")
def test_a_plan_failure_prints_the_problems_and_their_fixes_alone(playbook, namespace):
    bad = {"ollama_namespace": namespace + "-f", "ollama_replicas": 0, "ollama_image_tag": "latest"}
    run = playbook("preflight.yml", bad, stdout_callback="ansible.builtin.default")
    assert run.rc != 0
    block = fatal_block(run.stdout)
    text = "\n".join(block)
    assert "The plan found 2 problem(s); nothing was changed in the cluster." in text, text
    assert "- ollama_replicas:" in text and "- ollama_image_tag:" in text and text.count("Fix:") == 2, text
    # Nothing of the plan or the cluster facts around them.
    for part in ("workload_kind", "eligible_nodes", "node_count", "ansible_facts", "gpu_preflight_plan"):
        assert part not in text, text
    assert len(block) <= 8, text
    verbose = playbook("preflight.yml", bad, stdout_callback="ansible.builtin.default", verbosity=1)
    assert verbose.rc != 0
    assert "workload_kind" in "\n".join(fatal_block(verbose.stdout))


@pytest.mark.parametrize("mode", ["in the controller", "as a module process"])
def test_a_missing_kubeconfig_path_is_printed_not_masked(tmp_path, mode):
    # kubernetes.core marks the kubeconfig option no_log; a path is no secret. async runs the module as a process.
    missing = tmp_path / "no-such-kubeconfig"
    cmd = [str(REPO / ".venv/bin/ansible"), "localhost", "-m", "llmops.ollama.pod_info",
           "-a", json.dumps({"kubeconfig": str(missing), "namespace": "default", "label_selector": "app=none"})]
    if mode == "as a module process":
        cmd += ["-B", "60", "-P", "1"]
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False)
    assert done.returncode != 0
    assert f"the kubeconfig {missing} does not exist" in done.stdout, done.stdout + done.stderr
    assert "********" not in done.stdout
