#!/usr/bin/env python3
"""Preflight over the simulator's scale profile, as a ratio to `kubectl get nodes -o json` plus an empty
ansible-playbook run, measured in one run at each node count. Also the cluster_facts module's peak memory.

    make bench-preflight            # 100, 1000 and 5000 nodes
    bench/preflight/run.py 100 1000 # chosen counts
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "sim"))
from sim import build, cluster  # noqa: E402

ENV = {
    "LLMOPS_SIM_STATE": str(REPO / ".sim-bench"),
    "LLMOPS_SIM_API_PORT": "26641", "LLMOPS_SIM_ETCD_PORT": "26642", "LLMOPS_SIM_ETCD_PEER_PORT": "26643",
    "LLMOPS_SIM_KWOK_PORT": "26644", "LLMOPS_SIM_INGRESS_PORT": "26645", "LLMOPS_SIM_POD_CIDR": "10.252.0.0/16",
}
REPEAT = 3


def timed(cmd, env=None):
    """Best of REPEAT wall-clock runs (the machine has two cores and other work on them)."""
    best = None
    for _ in range(REPEAT):
        started = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
        elapsed = time.monotonic() - started
        best = elapsed if best is None else min(best, elapsed)
    return best


def facts_module_peak_mb(kubeconfig):
    """Run the module on its own (AnsibleModule reads its arguments from a file) and read its peak RSS."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as args:
        # The arguments preflight passes: only GPU nodes, with the labels the plan reads.
        json.dump({"ANSIBLE_MODULE_ARGS": {"kubeconfig": str(kubeconfig), "namespace": "ollama",
                                           "label_keys": ["nvidia.com/gpu.present"]}}, args)
    env = dict(os.environ, PYTHONPATH=str(REPO / ".collections"))
    # A wrapper process of its own, so the peak is the module's and not kubectl's or ansible-playbook's.
    wrapper = ("import json, resource, subprocess, sys; out = subprocess.run(sys.argv[1:], capture_output=True, text=True, "
               "check=True).stdout; print(json.dumps([resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, out]))")
    module = "ansible_collections.llmops.ollama.plugins.modules.cluster_facts"
    result = subprocess.run([sys.executable, "-c", wrapper, str(REPO / ".venv/bin/python"), "-m", module, args.name],
                            capture_output=True, text=True, env=env, check=True)
    peak_kb, out = json.loads(result.stdout)
    return peak_kb / 1024, json.loads(out)["cluster"]["node_count"]


def main(counts):
    os.environ.update(ENV)
    kubeconfig = Path(ENV["LLMOPS_SIM_STATE"]) / "kubeconfig"
    kubectl = str(build.binary_path("kubectl"))
    playbook = str(REPO / ".venv/bin/ansible-playbook")
    empty = REPO / "bench/preflight/empty.yml"
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    rows = []
    for count in counts:
        os.environ["LLMOPS_SIM_NODES"] = str(count)
        cluster.Cluster(log=lambda *_: None).down(quiet=True)
        cluster.Cluster(log=print).up("scale")
        try:
            baseline_get = timed([kubectl, f"--kubeconfig={kubeconfig}", "get", "nodes", "-o", "json"])
            baseline_empty = timed([playbook, "-i", "inventories/sim", str(empty)], env=env)
            preflight = timed([playbook, "-i", "inventories/sim", "playbooks/preflight.yml",
                               "-e", json.dumps({"ollama_kubeconfig": str(kubeconfig), "ollama_models": []})], env=env)
            peak_mb, seen = facts_module_peak_mb(kubeconfig)
        finally:
            cluster.Cluster(log=lambda *_: None).down(quiet=True)
        ratio = preflight / (baseline_get + baseline_empty)
        rows.append((count, seen, baseline_get, baseline_empty, preflight, ratio, peak_mb))
        print(f"{count} nodes: preflight {preflight:.2f}s, kubectl get nodes {baseline_get:.2f}s + empty playbook "
              f"{baseline_empty:.2f}s -> ratio {ratio:.2f}; cluster_facts peak {peak_mb:.0f} MB ({seen} nodes)", flush=True)
    print("\n| nodes | kubectl get nodes -o json (s) | empty playbook (s) | preflight.yml (s) | ratio | cluster_facts peak RSS (MB) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for count, _seen, get, empty_s, pre, ratio, peak in rows:
        print(f"| {count} | {get:.2f} | {empty_s:.2f} | {pre:.2f} | {ratio:.2f} | {peak:.0f} |")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100, 1000, 5000])
