"""Preflight and storage on the simulated cluster: the plan's decisions, every bad input stopped
before the first write, storage the plan asks for, idempotence and check mode."""

import json

import pytest

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def namespace_absent(cluster, name):
    return cluster.kubectl("get", "namespace", name, check=False).returncode != 0


def plan_of(run):
    return run.task_results("decide every choice before any change (the plan)")[0]["ansible_facts"]["gpu_preflight_plan"]


@pytest.mark.profile("k3s")
def test_k3s_plan_uses_bundled_local_path_and_the_nvidia_runtime_class(playbook, cluster, namespace):
    run = playbook("preflight.yml", {"ollama_namespace": namespace})
    assert run.rc == 0, run
    plan = plan_of(run)
    assert plan["workload_kind"] == "Deployment" and plan["strategy"] == "Recreate"
    assert plan["storage"]["class"] == "local-path" and not plan["storage"]["install_local_path"]
    assert plan["runtime_class"] == "nvidia"
    assert sorted(plan["eligible_nodes"]) == sorted(cluster.gpu_nodes())
    assert run.changed == 0


@pytest.mark.profile("k3s")
def test_storage_creates_the_claim_once_and_check_mode_creates_nothing(playbook, cluster, namespace):
    fresh = namespace + "-s"
    alone = playbook("storage.yml", {"ollama_namespace": fresh})
    assert alone.rc != 0 and "gpu_preflight_plan" in alone.failure
    dry = run_chain(playbook, {"ollama_namespace": fresh}, check=True, diff=True)
    assert dry.rc == 0, dry
    assert namespace_absent(cluster, fresh)
    applied = run_chain(playbook, {"ollama_namespace": fresh})
    assert applied.rc == 0 and applied.changed == 2, applied
    claim = cluster.get("pvc", "ollama-models", "-n", fresh)
    assert claim["spec"]["storageClassName"] == "local-path"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    again = run_chain(playbook, {"ollama_namespace": fresh})
    assert again.rc == 0 and again.changed == 0, again
    cluster.kubectl("delete", "namespace", fresh, "--wait=false")


def run_chain(playbook, extra_vars, **kwargs):
    """preflight.yml then storage.yml in one ansible-playbook run (the plan is a fact of the run)."""
    return playbook("../tests/integration/collection/chain-preflight-storage.yml", extra_vars, **kwargs)


BAD_INPUT = [
    ({"ollama_replicas": 0}, "ollama_replicas"),
    ({"ollama_storage_mode": "tiered"}, "ollama_storage_mode"),
    # tiny-big (58 MB, its size read from the simulator's registry) cannot fit a 1Mi claim.
    ({"ollama_claim_size": "1Mi", "ollama_models": [{"name": "{{ sim_registry }}/library/tiny-big:latest"}]},
     "ollama_claim_size"),
    ({"ollama_storage_class": "fast-nvme"}, "ollama_storage_class"),
    ({"ollama_replicas": 2, "ollama_storage_mode": "shared"}, "ollama_storage_mode"),
    ({"ollama_gpus_per_pod": 4}, "ollama_gpus_per_pod"),
    ({"ollama_replicas": 3}, "ollama_replicas"),
    ({"ollama_image_tag": "latest"}, "ollama_image_tag"),
    ({"ollama_namespace": "Not_A_Label"}, "ollama_namespace"),
]


@pytest.mark.profile("k3s")
@pytest.mark.parametrize("variables,variable", BAD_INPUT, ids=[v for _, v in BAD_INPUT])
def test_bad_input_stops_before_any_write_naming_the_variable_and_fix(playbook, cluster, namespace, variables, variable):
    target = variables.get("ollama_namespace", namespace + "-x")
    run = run_chain(playbook, dict({"ollama_namespace": target}, **variables))
    assert run.rc != 0
    # Either the role's argument_specs (a wrong choice or type) or the plan stops it, before any task writes.
    if "Validation of arguments failed" in run.failure:
        assert variable in run.failure and "must be one of" in run.failure, run.failure
    else:
        assert f"- {variable}:" in run.failure and "Fix:" in run.failure, run.failure
        assert "nothing was changed" in run.failure
    assert run.changed == 0
    assert namespace_absent(cluster, target)


@pytest.mark.profile("k3s")
def test_every_error_is_reported_at_once(playbook, namespace):
    run = playbook("preflight.yml", {"ollama_namespace": namespace, "ollama_replicas": 0, "ollama_image_tag": "latest",
                                     "ollama_storage_class": "nope"})
    assert run.rc != 0
    for variable in ("ollama_replicas", "ollama_image_tag", "ollama_storage_class"):
        assert f"- {variable}:" in run.failure


@pytest.mark.profile("k3s")
def test_all_gpus_taken_is_refused(playbook, cluster, namespace):
    for node in cluster.gpu_nodes():
        cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"hog-{node}", "namespace": namespace},
                        "spec": {"nodeName": node, "tolerations": [GPU_TOLERATION], "containers": [
                            {"name": "c", "image": "registry.invalid/hog:1", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}})
    try:
        run = playbook("preflight.yml", {"ollama_namespace": namespace + "-x"})
        assert run.rc != 0 and "- ollama_replicas:" in run.failure and "free" in run.failure.lower(), run.failure
    finally:  # give the GPUs back before the next test plans on them
        cluster.kubectl("delete", "pods", "--all", "-n", namespace, "--wait=true", "--timeout=60s")


@pytest.mark.profile("k3s")
def test_missing_kubeconfig_context_and_unreachable_server_fail_clearly(playbook, cluster, namespace, tmp_path):
    missing = playbook("preflight.yml", {"ollama_namespace": namespace}, kubeconfig=tmp_path / "nope")
    assert missing.rc != 0 and "does not exist" in missing.failure and "ollama_kubeconfig" in missing.failure
    # The path itself, not ******** (kubernetes.core marks the option no_log).
    assert f"the kubeconfig {tmp_path / 'nope'} does not exist" in missing.failure, missing.failure
    context = playbook("preflight.yml", {"ollama_namespace": namespace, "ollama_context": "no-such-context"})
    assert context.rc != 0 and "ollama_context" in context.failure, context
    config = json.loads(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(json.dumps(config))
    unreachable = playbook("preflight.yml", {"ollama_namespace": namespace}, kubeconfig=dead)
    assert unreachable.rc != 0 and "cannot reach the Kubernetes API server" in unreachable.failure, unreachable
    assert "Traceback" not in unreachable.stdout


@pytest.mark.profile("baremetal")
def test_baremetal_without_storage_class_needs_the_local_path_opt_in(playbook, cluster, namespace):
    refused = playbook("preflight.yml", {"ollama_namespace": namespace + "-x"})
    assert refused.rc != 0 and "ollama_storage_install_local_path: true" in refused.failure
    run = run_chain(playbook, {"ollama_namespace": namespace, "ollama_storage_install_local_path": True})
    assert run.rc == 0, run
    assert cluster.get("deployment", "local-path-provisioner", "-n", "local-path-storage")["spec"]["replicas"] == 1
    assert cluster.get("storageclass", "local-path")["provisioner"] == "rancher.io/local-path"
    assert cluster.get("pvc", "ollama-models", "-n", namespace)["spec"]["storageClassName"] == "local-path"
    again = run_chain(playbook, {"ollama_namespace": namespace, "ollama_storage_install_local_path": True})
    assert again.rc == 0 and again.changed == 0, again


@pytest.mark.profile("eks")
def test_eks_without_feature_discovery_needs_the_label_opt_in(playbook, cluster, namespace):
    refused = playbook("preflight.yml", {"ollama_namespace": namespace})
    assert refused.rc != 0 and "ollama_gpu_label_nodes" in refused.failure, refused.failure
    labelled = playbook("preflight.yml", {"ollama_namespace": namespace, "ollama_gpu_label_nodes": True,
                                          "ollama_replicas": 2})
    assert labelled.rc == 0, labelled
    plan = plan_of(labelled)
    assert plan["workload_kind"] == "StatefulSet" and plan["affinity"]["zone_spread"] is True
    for node in cluster.gpu_nodes():
        assert cluster.get("node", node)["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"


@pytest.mark.profile("eks")
def test_eks_efs_class_without_the_efs_driver_is_refused(playbook, namespace):
    run = playbook("preflight.yml", {"ollama_namespace": namespace, "ollama_gpu_label_nodes": True,
                                     "ollama_storage_class": "efs-sc",
                                     "ollama_storage_classes": [{"name": "efs-sc", "provisioner": "efs.csi.aws.com",
                                                                 "binding_mode": "Immediate"}]})
    assert run.rc != 0 and "aws-efs-csi-driver" in run.failure


@pytest.mark.profile("eks-efs")
def test_eks_shared_models_on_efs_bind_at_once(playbook, cluster, namespace):
    run = run_chain(playbook, {"ollama_namespace": namespace, "ollama_gpu_label_nodes": True, "ollama_replicas": 2,
                                   "ollama_storage_class": "efs-sc"})
    assert run.rc == 0, run
    claim = cluster.get("pvc", "ollama-models", "-n", namespace)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"] and claim["status"]["phase"] == "Bound"


@pytest.mark.profile("no-gpu")
def test_no_gpu_nodes_is_refused(playbook, namespace):
    run = playbook("preflight.yml", {"ollama_namespace": namespace})
    assert run.rc != 0 and run.failure and "Fix:" in run.failure


@pytest.mark.profile("no-device-plugin")
def test_missing_device_plugin_is_refused(playbook, namespace):
    run = playbook("preflight.yml", {"ollama_namespace": namespace})
    assert run.rc != 0 and "device plugin" in run.failure.lower(), run.failure


@pytest.mark.profile("k3s")
def test_kubeconfig_is_fetched_from_the_k3s_server_and_pointed_at_it(playbook, cluster, namespace, tmp_path):
    import yaml
    config = json.loads(cluster.kubeconfig.read_text())
    port = config["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1]
    # What k3s writes on its server: the API on loopback, default port.
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:6443"
    server_file = tmp_path / "k3s.yaml"
    server_file.write_text(yaml.safe_dump(config))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "hosts": {"localhost": {"ansible_connection": "local",
                                "ansible_python_interpreter": "{{ ansible_playbook_python }}"}},
        "children": {"k3s_server": {"hosts": {"k3s-1": {"ansible_connection": "local", "ansible_host": "127.0.0.1",
                                                         "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}},
                     "gpu_hosts": {"hosts": {}}}}}))
    fetched = tmp_path / "fetched.kubeconfig"
    run = playbook("preflight.yml", {"ollama_namespace": namespace, "ollama_kubeconfig": str(fetched),
                                     "gpu_preflight_fetch_kubeconfig": True, "gpu_preflight_k3s_become": False,
                                     "gpu_preflight_k3s_kubeconfig_path": str(server_file),
                                     "gpu_preflight_k3s_api_port": int(port)}, inventory=str(inventory))
    assert run.rc == 0, run
    assert yaml.safe_load(fetched.read_text())["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{port}"
    assert oct(fetched.stat().st_mode & 0o777) == "0o600"
    assert plan_of(run)["eligible_nodes"]


@pytest.mark.profile("k3s")
def test_a_misspelt_variable_warns_with_the_closest_name_and_strict_mode_stops(playbook, cluster, namespace):
    target = namespace + "-v"
    lenient = playbook("preflight.yml", {"ollama_namespace": target, "ollama_replica": 3})
    assert lenient.rc == 0, lenient
    result = lenient.task_results("decide every choice before any change (the plan)")[0]
    assert ("unknown variable ollama_replica is ignored (did you mean ollama_replicas?); "
            "ollama_strict_variables: true makes this an error") in result["warnings"], result["warnings"]
    assert result["ansible_facts"]["gpu_preflight_plan"]["replicas"] == 1
    strict = run_chain(playbook, {"ollama_namespace": target, "ollama_replica": 3, "ollama_strict_variables": True})
    assert strict.rc != 0
    assert ("- ollama_replica: no role or playbook of llmops.ollama reads ollama_replica (did you mean "
            "ollama_replicas?). Fix: rename it to ollama_replicas, or remove it") in strict.failure, strict.failure
    assert namespace_absent(cluster, target)
