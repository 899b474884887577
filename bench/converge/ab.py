#!/usr/bin/env python3
"""No-op site.yml of two checkouts, back to back and interleaved on one simulated cluster: a before/after figure
that a busy machine's load does not bias toward either side.

    bench/converge/ab.py --before /path/to/other/checkout [--runs 8] [--profile k3s]

Each checkout converges once into a namespace of its own (bench-before, bench-after; one replica, no models),
then the no-op runs alternate, before first. Each checkout runs with its own ansible.cfg and collection link
(`make collection` there), both with this checkout's .venv. The cluster is run.py's (its LLMOPS_BENCH_* ports).
Results: bench/results/converge-ab-<profile>.json (ignored by git).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "sim"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from sim import cluster  # noqa: E402
from run import ENV, _seconds  # noqa: E402


def converge(checkout, variables, env):
    """(wall seconds, CPU seconds of the run's processes, task seconds, tasks, changed) of one site.yml run."""
    cmd = [str(REPO / ".venv/bin/ansible-playbook"), "playbooks/site.yml", "-i", "inventories/sim",
           "-e", json.dumps(variables)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=checkout, check=False,
                          env=dict(env, ANSIBLE_CONFIG=str(Path(checkout) / "ansible.cfg"),
                                   ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json"))
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"site.yml failed in {checkout}:\n{done.stdout[-4000:]}{done.stderr[-2000:]}")
    report = json.loads(done.stdout[done.stdout.index("{"):])
    tasks = [t for play in report["plays"] for t in play["tasks"]]
    task_time = sum(_seconds(t["task"]["duration"]["end"]) - _seconds(t["task"]["duration"]["start"]) for t in tasks)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, task_time, len(tasks), report["stats"]["localhost"]["changed"]


def summary(runs):
    return {"wall_median": round(statistics.median(r[0] for r in runs), 2),
            "wall_fastest": round(min(r[0] for r in runs), 2),
            "cpu_median": round(statistics.median(r[1] for r in runs), 2),
            "task_time_median": round(statistics.median(r[2] for r in runs), 2),
            "tasks": sorted(set(r[3] for r in runs)), "runs": len(runs)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the other checkout (its collection linked)")
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--profile", default="k3s")
    args = parser.parse_args()
    checkouts = {"before": str(Path(args.before).resolve()), "after": str(REPO)}
    for name, checkout in checkouts.items():
        if not (Path(checkout) / ".collections/ansible_collections/llmops/ollama").exists():
            raise SystemExit(f"{checkout} has no collection link: run `make collection` there")

    os.environ.update(ENV)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    sim = cluster.Cluster(log=lambda *_: None)
    sim.down(quiet=True)
    state = sim.up(args.profile)
    kubeconfig = str(Path(ENV["LLMOPS_SIM_STATE"]) / "kubeconfig")
    registry = next(iter(state.get("models") or {}), "/").split("/", 1)[0]
    env.update(K8S_AUTH_KUBECONFIG=kubeconfig, LLMOPS_SIM_REGISTRY=registry)
    variables = {name: {"ollama_kubeconfig": kubeconfig, "ollama_namespace": "bench-" + name, "ollama_replicas": 1,
                        "ollama_models": []} for name in checkouts}
    runs = {name: [] for name in checkouts}
    try:
        for name, checkout in checkouts.items():
            converge(checkout, variables[name], env)  # the first converge, not measured
        for _round in range(args.runs):
            for name, checkout in checkouts.items():
                result = converge(checkout, variables[name], env)
                if result[4]:
                    raise SystemExit(f"the no-op of {name} reported {result[4]} changes")
                runs[name].append(result)
    finally:
        sim.down(quiet=True)
    result = {"profile": args.profile, "before": checkouts["before"], "after": checkouts["after"],
              "load_average": os.getloadavg(), **{name: summary(r) for name, r in runs.items()}}
    out = REPO / "bench" / "results" / f"converge-ab-{args.profile}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
