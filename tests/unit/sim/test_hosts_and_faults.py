"""Pure parts of the SSH GPU hosts, the stand-in nvidia-smi, the sim inventory and the fault commands.
No mocks: each function is called on real inputs (the recorded H200 output, the profile files)."""

import importlib.util
import ipaddress
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "sim"))

from sim import fake_nvidia_smi, faults, hosts, profiles  # noqa: E402
from sim.errors import SimError  # noqa: E402

from ansible_collections.llmops.ollama.plugins.module_utils.nvidia_smi import (  # noqa: E402
    QUERY_COMMAND, containerd_has_nvidia_runtime, containerd_runtimes, gpu_facts)

DATA = REPO / "sim" / "data"


@pytest.fixture(scope="module")
def recording():
    return fake_nvidia_smi.load((DATA / "h200-nvidia-smi.txt").read_text(), (DATA / "h200-nvidia-smi-query.csv").read_text())


def run(recording, *argv):
    return fake_nvidia_smi.answer(list(argv), recording)


def test_the_collection_reads_the_recorded_h200_from_the_stand_in(recording):
    code, query, _ = run(recording, *QUERY_COMMAND[1:])
    assert code == 0
    assert query == "0, GPU-6b45ccf5-a6cb-5197-2e4a-60db141726b7, NVIDIA H200, 143771, 580.159.04, Enabled\n"
    code, header, _ = run(recording)
    facts = gpu_facts(query, header)
    assert facts["products"] == ["NVIDIA H200"] and facts["memory_min_mib"] == 143771
    assert facts["driver_version"] == "580.159.04" and facts["cuda_version"] == "13.0"
    assert facts["persistence_mode_all"] is True and facts["gpu_count"] == 1


def test_plain_and_list_output_are_as_nvidia_smi_prints_them(recording):
    assert run(recording)[1] == (DATA / "h200-nvidia-smi.txt").read_text()
    assert run(recording, "-L")[1] == "GPU 0: NVIDIA H200 (UUID: GPU-6b45ccf5-a6cb-5197-2e4a-60db141726b7)\n"
    assert run(recording, "--list-gpus", "-i", "0")[1] == run(recording, "-L")[1]
    assert run(recording, "-L", "-i", "3")[:2] == (6, "No devices were found\n")


def test_the_recorded_query_replays_byte_for_byte(recording):
    fields = "index,name,uuid,memory.total,memory.used,driver_version,persistence_mode,compute_cap"
    code, out, _ = run(recording, f"--query-gpu={fields}", "--format=csv")
    assert code == 0 and out == (DATA / "h200-nvidia-smi-query.csv").read_text()
    assert run(recording, "--query-gpu", "gpu_name,pci.bus_id,count", "--format", "csv,noheader")[1] == \
        "NVIDIA H200, 00000000:00:06.0, 1\n"


def test_unknown_and_unrecorded_fields_fail_as_nvidia_smi_does(recording):
    code, out, _ = run(recording, "--query-gpu=bogus", "--format=csv")
    assert code == 2 and 'Field "bogus" is not a valid field to query.' in out
    code, _, err = run(recording, "--query-gpu=power.draw", "--format=csv")
    assert code == 2 and "was not recorded" in err
    assert run(recording, "--query-gpu=index")[0] == 2
    assert run(recording, "--bogus")[0] == 2


def test_k3s_containerd_config_registers_the_nvidia_runtimes_for_the_collection():
    assert containerd_has_nvidia_runtime(hosts.K3S_CONTAINERD_TOML)
    assert set(containerd_runtimes(hosts.K3S_CONTAINERD_TOML)) >= {"runc", "nvidia", "nvidia-cdi"}


def test_host_addresses_sit_below_the_registry_and_stay_in_the_cidr():
    assert hosts.addresses("10.248.0.0/16", 2) == ["10.248.255.249", "10.248.255.248"]
    for ip in hosts.addresses("10.245.0.0/24", 8):
        assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.245.0.0/24")
    with pytest.raises(SimError) as err:
        hosts.addresses("10.245.0.0/24", 200)
    assert "too small" in err.value.cause and "LLMOPS_SIM_POD_CIDR" in err.value.fix


@pytest.mark.parametrize("profile, expected", [("k3s", ["k3s-gpu-0", "k3s-gpu-1"]), ("baremetal", ["gpu-0", "gpu-1"]),
                                               ("no-gpu", [])])
def test_one_host_per_gpu_node(profile, expected):
    loaded = profiles.load(profile)
    assert hosts.gpu_node_names(profiles.nodes(loaded, "v1.34.4")) == expected
    assert bool(loaded.get("ssh_hosts")) == (profile in ("k3s", "baremetal", "no-gpu"))


def test_sshd_listens_on_the_host_address_only_with_keys_only():
    config = hosts.sshd_config("10.248.255.249")
    assert [line for line in config.splitlines() if line.startswith("ListenAddress")] == ["ListenAddress 10.248.255.249:22"]
    for line in ("PasswordAuthentication no", "KbdInteractiveAuthentication no", "PermitRootLogin no",
                 "AuthenticationMethods publickey", "AllowUsers llmsim"):
        assert line in config.splitlines()


def test_the_start_script_creates_nothing_outside_its_own_tmpfs():
    script = hosts.start_script("gpu-0", "10.248.255.249", Path("/work/x/.sim/hosts/gpu-0"), "/usr/sbin/sshd")
    for line in script.splitlines():
        if line.strip().startswith("mkdir"):
            assert all(arg.startswith(("-", '"/run/', "/run/", "0")) for arg in line.split()[1:]), line
    assert script.index("mount -t tmpfs -o mode=0755,size=64m llmsim-host-run /run") < script.index("cp -a")
    assert script.rstrip().endswith("-D -e -f /run/llmsim/ssh/sshd_config")
    for target in hosts.OVERLAYS:
        assert target in script


def test_a_missing_sshd_is_named_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("LLMOPS_SIM_SSHD", str(tmp_path / "sshd"))
    with pytest.raises(SimError) as err:
        hosts.check_prerequisites(tmp_path)
    assert "sshd is missing" in err.value.cause and "make deps" in err.value.fix and "openssh-server" in err.value.fix


def load_inventory_script():
    spec = importlib.util.spec_from_file_location("sim_hosts", REPO / "inventories" / "sim" / "sim_hosts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inventory_lists_the_hosts_with_strict_host_keys_of_the_simulator():
    inventory = load_inventory_script().inventory({"hosts": {"gpu-0": {
        "ip": "10.248.255.249", "user": "llmsim", "key": "/s/hosts/id_ed25519", "known_hosts": "/s dir/hosts/known_hosts"}}})
    assert inventory["gpu_hosts"] == {"hosts": ["gpu-0"]}
    host = inventory["_meta"]["hostvars"]["gpu-0"]
    assert host["ansible_host"] == "10.248.255.249" and host["ansible_user"] == "llmsim"
    assert host["ansible_ssh_private_key_file"] == "/s/hosts/id_ed25519"
    assert "StrictHostKeyChecking=yes" in host["ansible_ssh_common_args"]
    assert "UserKnownHostsFile='/s dir/hosts/known_hosts'" in host["ansible_ssh_common_args"]


def test_inventory_is_empty_without_a_simulator(monkeypatch, tmp_path, capsys):
    script = load_inventory_script()
    monkeypatch.setenv("LLMOPS_SIM_STATE", str(tmp_path / "absent"))
    assert script.main(["sim_hosts.py", "--list"]) == 0
    assert '"hosts": []' in capsys.readouterr().out
    assert script.inventory({}) == {"_meta": {"hostvars": {}}, "gpu_hosts": {"hosts": []}}


def test_unknown_component_and_node_state_name_the_valid_ones():
    with pytest.raises(SimError) as err:
        faults.restart("kube-proxy")
    assert err.value.fix == "use one of: etcd, kube-apiserver, kube-controller-manager, kube-scheduler"
    with pytest.raises(SimError) as err:
        faults.set_node("gpu-0", "sideways")
    assert "STATE=down or STATE=up" in err.value.fix


def test_the_down_policy_refuses_only_kwoks_writes_for_the_down_nodes():
    policy, binding = faults.down_policy(["k3s-gpu-1", "k3s-gpu-0"])
    assert policy["spec"]["matchConditions"] == [{"name": "kwok-only", "expression": 'request.userInfo.username == "sim-kwok"'}]
    assert {"name": "down", "expression": '["k3s-gpu-0", "k3s-gpu-1"]'} in policy["spec"]["variables"]
    resources = {r for rule in policy["spec"]["matchConstraints"]["resourceRules"] for r in rule["resources"]}
    assert resources == {"nodes", "nodes/status", "pods", "pods/status", "leases"}
    assert binding["spec"] == {"policyName": faults.POLICY, "validationActions": ["Deny"]}
