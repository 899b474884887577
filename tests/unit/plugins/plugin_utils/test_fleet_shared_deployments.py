"""The fleet rule (pure logic, no cluster): two hosts of one run must not converge one workload of one cluster."""

from ansible_collections.llmops.ollama.plugins.plugin_utils.fleet import deployment_key, shared_deployments


def test_hosts_with_their_own_kubeconfig_or_context_pass():
    hosts = {"lab": {"ollama_kubeconfig": "/k/lab"}, "prod": {"ollama_kubeconfig": "/k/prod"},
             "eu": {"ollama_kubeconfig": "/k/prod", "ollama_context": "eu"}}
    assert all(shared_deployments(h, hosts) == [] for h in hosts)


def test_a_second_ollama_in_one_cluster_needs_its_own_namespace_or_name_only():
    hosts = {"a": {"ollama_kubeconfig": "/k/x", "ollama_namespace": "team-a"},
             "b": {"ollama_kubeconfig": "/k/x", "ollama_namespace": "team-b"},
             "c": {"ollama_kubeconfig": "/k/x", "ollama_namespace": "team-a", "ollama_name": "big"}}
    assert all(shared_deployments(h, hosts) == [] for h in hosts)


def test_two_hosts_on_one_workload_are_an_error_naming_both_and_the_fix():
    hosts = {"lab": {"ollama_kubeconfig": "/k/x"}, "staging": {"ollama_kubeconfig": "/k/../k/x"},
             "prod": {"ollama_kubeconfig": "/k/prod"}}
    errors = shared_deployments("lab", hosts)
    assert len(errors) == 1 and errors[0]["variable"] == "ollama_kubeconfig"
    assert errors[0]["message"].startswith("lab and staging of this run reach the same cluster (ollama_kubeconfig /k/x")
    assert "ollama/ollama" in errors[0]["message"]
    assert "host_vars/lab.yml" in errors[0]["fix"]
    assert shared_deployments("prod", hosts) == []


def test_unset_credentials_count_as_the_same_cluster():
    # Both fall back to K8S_AUTH_KUBECONFIG or ~/.kube/config: the same cluster for every host.
    hosts = {"a": {}, "b": {"ollama_context": None}}
    assert "unset" in shared_deployments("a", hosts)[0]["message"]
    assert deployment_key({}) == ("", "", "", "ollama", "ollama")
