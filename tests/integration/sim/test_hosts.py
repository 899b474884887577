"""The simulator's SSH GPU hosts (k3s and baremetal profiles): real sshd, real SSH, the recorded H200's
nvidia-smi, k3s's root-only containerd config, and the collection's host checks over them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "sim"))
sys.path.insert(0, str(REPO / ".collections"))  # make collection

from ansible_collections.llmops.ollama.plugins.module_utils.nvidia_smi import (  # noqa: E402
    QUERY_COMMAND, containerd_has_nvidia_runtime, gpu_facts)

CONFIG = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml"


def sim_hosts(cluster):
    if cluster.external:
        pytest.skip("SSH GPU hosts exist only in the simulator")
    from sim import cluster as sim_cluster
    hosts = sim_cluster.read_state().get("hosts") or {}
    assert hosts, "the profile has ssh_hosts but the simulator started no GPU host"
    return hosts


def ssh(host, command, *options, timeout=60):
    return subprocess.run(["ssh", "-i", host["key"], "-o", "UserKnownHostsFile=" + host["known_hosts"],
                           "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                           *options, f"{host['user']}@{host['ip']}", command],
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_nvidia_smi_over_ssh_lists_the_recorded_h200(cluster):
    for node, host in sim_hosts(cluster).items():
        listed = ssh(host, "nvidia-smi -L")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout == "GPU 0: NVIDIA H200 (UUID: GPU-6b45ccf5-a6cb-5197-2e4a-60db141726b7)\n"
        query = ssh(host, " ".join(QUERY_COMMAND))
        facts = gpu_facts(query.stdout, ssh(host, "nvidia-smi").stdout)
        assert facts["products"] == ["NVIDIA H200"] and facts["memory_min_mib"] == 143771
        assert facts["driver_version"] == "580.159.04" and facts["cuda_version"] == "13.0"
        # A host of its own: its name, its user, its address only.
        assert ssh(host, "hostname").stdout.strip() == node
        assert ssh(host, "id -un").stdout.strip() == host["user"] != "root"
        listening = ssh(host, "ss -Hltn").stdout.split()
        assert f"{host['ip']}:22" in listening and "0.0.0.0:22" not in listening
    # The hosts' overlays live in their own mount namespaces: nothing shows on this machine.
    assert " llmsim-host" not in Path("/proc/self/mountinfo").read_text()


def test_containerd_config_is_readable_with_become_and_its_directory_is_not_without(cluster):
    for host in sim_hosts(cluster).values():
        denied = ssh(host, "ls /var/lib/rancher/k3s/agent/etc")
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
        assert "Permission denied" in ssh(host, f"cat {CONFIG}").stderr
        assert ssh(host, "stat -c '%a %U' /var/lib/rancher/k3s/agent/etc").stdout.strip() == "700 root"
        become = ssh(host, f"sudo -n cat {CONFIG}")
        assert become.returncode == 0, become.stderr
        assert containerd_has_nvidia_runtime(become.stdout)
        assert become.stderr == ""  # no "unable to resolve host" or other sudo noise


def test_hosts_take_keys_only_and_check_their_host_key(cluster, tmp_path):
    host = next(iter(sim_hosts(cluster).values()))
    password = ssh(host, "true", "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password")
    assert password.returncode == 255 and "Permission denied (publickey)" in password.stderr
    # A known_hosts that holds another key for the host's address: the connection is refused.
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    kind, key = (tmp_path / "other.pub").read_text().split()[:2]
    (tmp_path / "known_hosts").write_text(f"{host['ip']} {kind} {key}\n")
    refused = ssh(dict(host, known_hosts=str(tmp_path / "known_hosts")), "true")
    assert refused.returncode == 255 and "HOST IDENTIFICATION HAS CHANGED" in refused.stderr


def test_the_sim_inventory_lists_the_hosts_in_gpu_hosts(cluster):
    hosts = sim_hosts(cluster)
    out = subprocess.run([str(REPO / ".venv/bin/ansible-inventory"), "-i", str(REPO / "inventories/sim"), "--list"],
                         capture_output=True, text=True, check=True, cwd=REPO, timeout=120,
                         env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))).stdout
    inventory = json.loads(out)
    assert sorted(inventory["gpu_hosts"]["hosts"]) == sorted(hosts)
    for name, host in hosts.items():
        assert inventory["_meta"]["hostvars"][name]["ansible_host"] == host["ip"]


def test_preflight_runs_the_host_checks_over_ssh(cluster, playbook):
    hosts = sim_hosts(cluster)
    run = playbook("preflight.yml")
    assert run.rc == 0, run
    results = run.task_results("Read the GPU host")
    assert len(results) == len(hosts)
    for result in results:
        gpu = result["gpu"]
        assert gpu["products"] == ["NVIDIA H200"] and gpu["containerd_config_found"] is True
        assert gpu["containerd_nvidia_runtime"] is True
    stats = run.report["stats"]
    assert all(stats[name]["failures"] == 0 and stats[name]["unreachable"] == 0 for name in hosts)


def test_preflight_without_become_fails_with_the_fix_instead_of_passing(cluster, playbook):
    sim_hosts(cluster)
    run = playbook("preflight.yml", {"gpu_preflight_host_become": False})
    assert run.rc != 0, run
    assert "cannot read the containerd configuration" in run.failure
    assert "become" in run.failure and "Permission denied" in run.failure


@pytest.mark.profile("baremetal")
def test_baremetal_gpu_hosts_answer_over_ssh(cluster):
    hosts = sim_hosts(cluster)
    assert sorted(hosts) == ["gpu-0", "gpu-1"]
    for host in hosts.values():
        assert ssh(host, "nvidia-smi -L").stdout.startswith("GPU 0: NVIDIA H200 (UUID: ")
        assert containerd_has_nvidia_runtime(ssh(host, f"sudo -n cat {CONFIG}").stdout)


def test_up_without_sshd_names_the_fix_and_starts_nothing(tmp_path):
    env = dict(os.environ, LLMOPS_SIM_STATE=str(tmp_path / "s"), LLMOPS_SIM_SSHD=str(tmp_path / "no-sshd"))
    result = subprocess.run([sys.executable, "-m", "sim", "up", "--profile", "k3s"], cwd=REPO / "sim", env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert "sshd is missing" in result.stderr and "make deps (installs openssh-server)" in result.stderr
    assert not (tmp_path / "s").exists()


def test_down_leaves_no_host_process_namespace_mount_or_sudoers_file(cluster, sim_manager):
    hosts = sim_hosts(cluster)
    from sim import cluster as sim_cluster
    marker = sim_cluster.Cluster(log=lambda *_: None).marker
    sim_cluster.Cluster(log=lambda *_: None).down(quiet=True)
    sim_manager.profile = None  # the next test starts the cluster again
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    mounts = Path("/proc/self/mountinfo").read_text()
    for host in hosts.values():
        assert host["netns"] not in spaces and host["netns"] not in mounts
    assert " llmsim-host" not in mounts  # the hosts' tmpfs and overlay mounts
    # This cluster's sshd (another simulator beside it runs its own).
    sshd = [p for p in Path("/proc").iterdir() if p.name.isdigit() and b"/run/llmsim/ssh/sshd_config" in _cmdline(p)
            and f"LLMOPS_SIM_OWNER={marker}".encode() in _environ(p)]
    assert sshd == []
    assert not Path("/etc/sudoers.d/llmsim").exists() and not Path("/home/llmsim").exists()
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False).stdout
    assert os.environ["LLMOPS_SIM_POD_CIDR"].split("/")[0].rsplit(".", 2)[0] not in rules and "llmsim" not in rules
    assert not Path(os.environ["LLMOPS_SIM_STATE"]).exists()


def _environ(proc: Path) -> bytes:
    try:
        return (proc / "environ").read_bytes()
    except OSError:
        return b""


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""
