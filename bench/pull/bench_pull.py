#!/usr/bin/env python3
"""Pull one model to 1 replica, then to 4 replicas, with the model_pull role; report the times.

Runs against the simulated cluster (or any cluster with the model in a registry its pods reach):
    LLMOPS_SIM_STATE=/path/to/.sim .venv/bin/python bench/pull/bench_pull.py [--model tiny-big] [--replicas 4]
Creates a namespace with a 4-replica Ollama StatefulSet (a claim each, no GPU request so that 4 replicas fit
on the simulator's 2 GPU nodes), times the role's whole run for 1 replica (pull scope "once") and for all
replicas (scope "each_replica") from an empty store each time, and reads the simulator registry's access
log to show that each replica downloaded the model once. Target: 4 replicas in at most 1.3x the time of 1.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SELECTOR = {"app.kubernetes.io/name": "ollama", "app.kubernetes.io/instance": "ollama"}


def kubectl(kubeconfig, *args, input=None, check=True):
    kubectl_bin = os.environ.get("KUBECTL") or _sim_kubectl() or "kubectl"
    done = subprocess.run([kubectl_bin, f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True,
                          input=input, check=False, timeout=300)
    if check and done.returncode:
        raise SystemExit(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _sim_kubectl():
    sys.path.insert(0, str(REPO / "sim"))
    try:
        from sim import build
        return str(build.binary_path("kubectl"))
    except Exception:
        return None


def statefulset(namespace, replicas):
    container = {"name": "ollama", "image": "docker.io/ollama/ollama:0.32.15",
                 "volumeMounts": [{"name": "models", "mountPath": "/root/.ollama"}]}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "ollama", "namespace": namespace},
            "spec": {"replicas": replicas, "podManagementPolicy": "Parallel", "serviceName": "ollama",
                     "selector": {"matchLabels": SELECTOR},
                     "template": {"metadata": {"labels": SELECTOR}, "spec": {
                         "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                         "containers": [container]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "models"}, "spec": {
                         "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}]}}


def run_role(kubeconfig, plan, registry, extra=None):
    variables = {"gpu_preflight_plan": plan, "ollama_kubeconfig": str(kubeconfig),
                 "ollama_insecure_registries": [registry], "model_pull_poll_interval": 1}
    variables.update(extra or {})
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               K8S_AUTH_KUBECONFIG=str(kubeconfig))
    started = time.monotonic()
    done = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), str(Path(__file__).parent / "pull.yml"),
                           "-i", str(REPO / "inventories" / "sim"), "-e", json.dumps(variables)],
                          capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=1800)
    wall = time.monotonic() - started
    report = json.loads(done.stdout[done.stdout.index("{"):])
    if done.returncode:
        raise SystemExit(f"the role failed: {done.stdout[-3000:]}")
    jobs = []
    for play in report["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].endswith("Collect each replica's result"):
                jobs = task["hosts"]["localhost"]["ansible_facts"]["model_pull_results"]
    return wall, [j["elapsed"] for j in jobs], [m for j in jobs for m in j["models"]]


def blob_bytes(log, start):
    lines = log.read_text().splitlines()[start:] if log.exists() else []
    total = 0
    for line in lines:
        method, path, _status, size = line.split(" ")
        if method == "GET" and "/blobs/" in path:
            total += int(size)
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny-big")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep the namespace")
    args = parser.parse_args()
    state = Path(os.environ.get("LLMOPS_SIM_STATE", REPO / ".sim"))
    kubeconfig = Path(os.environ.get("KUBECONFIG") or state / "kubeconfig")
    sim_state = json.loads((state / "state.json").read_text()) if (state / "state.json").exists() else {}
    model = next(ref for ref in sim_state.get("models", {}) if ref.rsplit("/", 1)[-1].split(":")[0] == args.model)
    registry = model.split("/", 1)[0]
    log = state / "registry" / "logs" / "registry-access.log"
    namespace = f"bench-pull-{uuid.uuid4().hex[:6]}"
    kubectl(kubeconfig, "create", "namespace", namespace)
    try:
        kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps(statefulset(namespace, args.replicas)))
        plan = {"ok": True, "name": "ollama", "namespace": namespace, "replicas": args.replicas,
                "affinity": {"label_selector": SELECTOR}, "models": [{"name": model, "digest": None}]}
        results = {}
        for label, scope in (("1 replica", "once"), (f"{args.replicas} replicas", "each_replica")):
            start = len(log.read_text().splitlines()) if log.exists() else 0
            wall, elapsed, models = run_role(kubeconfig, dict(plan, storage={"pull_scope": scope}), registry)
            results[label] = {"wall_s": round(wall, 2), "module_s": elapsed, "downloaded_bytes": blob_bytes(log, start),
                              "pulled": sum(1 for m in models if m["action"] == "pulled"),
                              "attempts": [m["attempts"] for m in models]}
            # Empty the stores again so the next run starts from nothing.
            run_role(kubeconfig, dict(plan, storage={"pull_scope": "each_replica"}), registry,
                     {"model_pull_state": "absent"})
        one, many = results["1 replica"], results[f"{args.replicas} replicas"]
        ratio_wall = many["wall_s"] / one["wall_s"]
        ratio_module = max(many["module_s"]) / max(one["module_s"])
        print(json.dumps({"model": model, "results": results, "ratio_wall": round(ratio_wall, 2),
                          "ratio_slowest_replica": round(ratio_module, 2), "target": 1.3,
                          "met": ratio_wall <= 1.3}, indent=2))
    finally:
        if not args.keep:
            kubectl(kubeconfig, "delete", "namespace", namespace, "--wait=false", check=False)


if __name__ == "__main__":
    main()
