"""The k8s_dry_run action plugin's argument-spec check (plain ArgumentSpecValidator over a role's options; no
cluster): each error names the variable and says where its type and choices are."""

import pytest
import yaml

from ansible_collections.llmops.ollama.plugins.action.k8s_dry_run import spec_problems

from pathlib import Path

ROLES = Path(__file__).resolve().parents[4] / "roles"


def options(role):
    return yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]


BAD = [
    ("ollama_workload", {"ollama_workload_pod_security_level": "strict"}, "ollama_workload_pod_security_level",
     "restricted, baseline, privileged"),
    ("ollama_workload", {"ollama_workload_uid": "root"}, "ollama_workload_uid", "int"),
    ("ollama_workload", {"ollama_workload_env": 5}, "ollama_workload_env", "dict"),
    ("ollama_workload", {"ollama_workload_allowed_pods": [5]}, "ollama_workload_allowed_pods", "dict"),
    ("ollama_workload", {"ollama_workload_network_policy": "maybe"}, "ollama_workload_network_policy", "bool"),
    ("ha_policy", {"ha_policy_plan": "x"}, "ha_policy_plan", "dict"),
    ("storage_provisioner", {"storage_provisioner_wait_timeout": "soon"}, "storage_provisioner_wait_timeout", "int"),
]


@pytest.mark.parametrize("role, values, variable, words", BAD, ids=[case[2] for case in BAD])
def test_a_value_against_the_spec_names_the_variable_and_the_fix(role, values, variable, words):
    (problem,) = spec_problems(role, options(role), values)
    assert variable in problem and words in problem, problem
    assert problem.endswith("Fix: give it the type and one of the choices that roles/%s/README.md "
                            "(meta/argument_specs.yml) lists" % role)


@pytest.mark.parametrize("role", ["ollama_workload", "ha_policy", "storage_provisioner"])
def test_the_defaults_satisfy_the_spec(role):
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    plain = {k: v for k, v in defaults.items() if not (isinstance(v, str) and "{{" in v)}
    assert spec_problems(role, options(role), plain) == []


def test_no_spec_no_problem():
    assert spec_problems("ollama_workload", {}, {"anything": 1}) == []
