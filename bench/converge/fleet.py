#!/usr/bin/env python3
"""A fleet against one cluster: site.yml's first converge and no-op over three simulated clusters in one run
(the inventory group ollama_clusters, docs/fleet.md), each as a ratio to the same run over one of them, all
measured in one run of this script on the same three clusters (issue 14: target at most 1.5x).

    bench/converge/fleet.py                  # three k3s clusters, one replica each, no models
    bench/converge/fleet.py --models         # with a tiny model per cluster (pull and verification)
    bench/converge/fleet.py --profiles k3s,baremetal,eks

The one-cluster runs converge namespace bench-one of the first cluster, the fleet runs namespace bench-fleet of
all three, so both first converges start from nothing while the same three clusters run; the no-ops take turns
(one, fleet, one, ...), so the machine's load falls on both alike. Results go to bench/results/converge-fleet.json.

State, ports and pod networks: LLMOPS_BENCH_FLEET_STATE (a prefix, 1..3 appended), LLMOPS_BENCH_FLEET_PORT_BASES
(three, each cluster uses base+1..base+5), LLMOPS_BENCH_FLEET_POD_CIDRS (three).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REPEAT = 3
TARGET = 1.5
STATE = os.environ.get("LLMOPS_BENCH_FLEET_STATE", str(REPO / ".sim-bench-fleet"))
BASES = [int(p) for p in os.environ.get("LLMOPS_BENCH_FLEET_PORT_BASES", "28340,28350,28360").split(",")]
CIDRS = os.environ.get("LLMOPS_BENCH_FLEET_POD_CIDRS", "10.233.0.0/16,10.234.0.0/16,10.235.0.0/16").split(",")


def sim_env(index):
    base = BASES[index]
    return dict(os.environ, LLMOPS_SIM_STATE=f"{STATE}{index + 1}", LLMOPS_SIM_API_PORT=str(base + 1),
                LLMOPS_SIM_ETCD_PORT=str(base + 2), LLMOPS_SIM_ETCD_PEER_PORT=str(base + 3),
                LLMOPS_SIM_KWOK_PORT=str(base + 4), LLMOPS_SIM_INGRESS_PORT=str(base + 5),
                LLMOPS_SIM_POD_CIDR=CIDRS[index])


def sim_all(verbs, timeout=600):
    """`python -m sim VERB` for each cluster at once; raises with the output of any that failed."""
    procs = {i: subprocess.Popen([sys.executable, "-m", "sim", *verb], cwd=REPO / "sim", env=sim_env(i),
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i, verb in verbs.items()}
    failed = {}
    deadline = time.monotonic() + timeout
    for i, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        if proc.returncode != 0:
            failed[i] = out[-2000:]
    if failed:
        raise SystemExit(f"sim {verbs}: {failed}")


def _seconds(stamp):
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def site(inventory, hosts):
    """Wall seconds, {host: changed}, the sum of task seconds and the task count (json callback)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_NOCOLOR="1")
    for key in [k for k in env if k.startswith(("LLMOPS_SIM_", "K8S_AUTH_"))]:
        env.pop(key)
    cmd = [str(REPO / ".venv/bin/ansible-playbook"), str(REPO / "playbooks/site.yml"), "-i", str(inventory),
           "--limit", ",".join(hosts)]
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"site.yml over {hosts} failed:\n{done.stdout[-4000:]}{done.stderr[-2000:]}")
    report = json.loads(done.stdout[done.stdout.index("{"):])
    tasks = [_seconds(t["task"]["duration"]["end"]) - _seconds(t["task"]["duration"]["start"])
             for play in report["plays"] for t in play["tasks"]]
    return elapsed, {h: report["stats"][h]["changed"] for h in hosts}, round(sum(tasks), 2), len(tasks)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", default="k3s,k3s,k3s", help="three simulator profiles")
    parser.add_argument("--models", action="store_true", help="a tiny model per cluster (pull and verification)")
    parser.add_argument("--keep", action="store_true", help="leave the clusters running (for a second look)")
    args = parser.parse_args()
    profiles = args.profiles.split(",")
    if len(profiles) != 3:
        raise SystemExit("--profiles names three profiles")
    names = [f"c{i + 1}-{p}" for i, p in enumerate(profiles)]
    down = {i: ["down"] for i in range(3)}
    sim_all(down, 300)
    try:
        sim_all({i: ["up", "--profile", p] for i, p in enumerate(profiles)})
        hosts = {}
        for i, (name, profile) in enumerate(zip(names, profiles)):
            state = json.loads((Path(f"{STATE}{i + 1}") / "state.json").read_text())
            registry = next(iter(state["models"])).split("/", 1)[0]
            hosts[name] = {"ollama_kubeconfig": f"{STATE}{i + 1}/kubeconfig", "ollama_replicas": 1,
                           "ollama_models": [{"name": f"{registry}/library/tiny-a:latest"}] if args.models else [],
                           "ollama_insecure_registries": [registry], "ollama_verify_allow_cpu": True,
                           "gpu_preflight_check_hosts": False}
            if profile.startswith("eks"):
                hosts[name]["ollama_gpu_label_nodes"] = True
            if profile == "baremetal":
                hosts[name]["ollama_storage_install_local_path"] = True
        # The same three clusters, two inventories: namespace bench-one (first cluster only) and bench-fleet.
        inventories = {}
        for label, namespace in (("one", "bench-one"), ("fleet", "bench-fleet")):
            path = Path(f"{STATE}1") / f"inventory-{label}.json"
            path.write_text(json.dumps({"all": {"children": {"ollama_clusters": {
                "hosts": {h: dict(v, ollama_namespace=namespace) for h, v in hosts.items()},
                "vars": {"ansible_connection": "local",
                         "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}}}}))
            inventories[label] = path
        one_first = site(inventories["one"], names[:1])
        fleet_first = site(inventories["fleet"], names)
        one_noops, fleet_noops = [], []
        for _ in range(REPEAT):
            one_noops.append(site(inventories["one"], names[:1]))
            fleet_noops.append(site(inventories["fleet"], names))
        changed = [r[1] for r in one_noops + fleet_noops if any(r[1].values())]
        if changed:
            raise SystemExit(f"a no-op reported changes: {changed}")
    finally:
        if not args.keep:
            sim_all(down, 300)

    def git(*a):
        return subprocess.run(["git", *a], capture_output=True, text=True, cwd=REPO, check=False).stdout.strip()
    one_noop = statistics.median(r[0] for r in one_noops)
    fleet_noop = statistics.median(r[0] for r in fleet_noops)
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "commit": git("rev-parse", "--short", "HEAD") + ("-dirty" if git("status", "--porcelain",
                                                                         "--untracked-files=no") else ""),
        "profiles": profiles, "models": args.models, "replicas": 1,
        "seconds": {"one_first": round(one_first[0], 2), "fleet_first": round(fleet_first[0], 2),
                    "one_noop_median": round(one_noop, 2), "fleet_noop_median": round(fleet_noop, 2),
                    "one_noop_runs": [round(r[0], 2) for r in one_noops],
                    "fleet_noop_runs": [round(r[0], 2) for r in fleet_noops]},
        # Task seconds (json callback; a task's time is its slowest cluster's) and task counts.
        "task_seconds": {"one_first": one_first[2], "fleet_first": fleet_first[2],
                         "one_noop": sorted(one_noops, key=lambda r: r[0])[REPEAT // 2][2],
                         "fleet_noop": sorted(fleet_noops, key=lambda r: r[0])[REPEAT // 2][2]},
        "tasks": {"one_noop": one_noops[0][3], "fleet_noop": fleet_noops[0][3]},
        "first_changed": {"one": one_first[1], "fleet": fleet_first[1]},
        "ratio_first": round(fleet_first[0] / one_first[0], 2),
        "ratio_noop": round(fleet_noop / one_noop, 2),
        "target": TARGET,
    }
    out = REPO / "bench" / "results" / "converge-fleet.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if max(result["ratio_first"], result["ratio_noop"]) <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
