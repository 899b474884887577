#!/usr/bin/env python3
"""site.yml's first converge and its no-op re-converge, each as a ratio to `kubectl apply --server-side` of the
same objects plus an empty ansible-playbook run, all measured in one run on the simulated cluster.

    bench/converge/run.py                   # k3s profile, one replica, no models
    bench/converge/run.py --replicas 2      # StatefulSet with a claim per replica
    bench/converge/run.py --profile eks --replicas 2
    bench/converge/run.py --models          # the sim inventory's models too (pull + verification)

The objects kubectl applies are the ones site.yml wrote (read back, with server-set fields removed), in a
namespace of their own, with the same field manager. Results go to bench/results/converge-<profile>.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "sim"))
from sim import build, cluster  # noqa: E402

# Its own cluster beside a demo or test cluster; LLMOPS_BENCH_<NAME> moves one (e.g. LLMOPS_BENCH_SIM_API_PORT).
ENV = {name: os.environ.get("LLMOPS_BENCH_" + name[len("LLMOPS_"):], default) for name, default in {
    "LLMOPS_SIM_STATE": str(REPO / ".sim-bench-converge"),
    "LLMOPS_SIM_API_PORT": "28301", "LLMOPS_SIM_ETCD_PORT": "28302", "LLMOPS_SIM_ETCD_PEER_PORT": "28303",
    "LLMOPS_SIM_KWOK_PORT": "28304", "LLMOPS_SIM_INGRESS_PORT": "28305", "LLMOPS_SIM_POD_CIDR": "10.241.0.0/16",
}.items()}
REPEAT = 3
TARGET_NOOP_RATIO = 2.0
# What site.yml writes in the namespace (the claim comes from storage_provisioner).
KINDS = "serviceaccounts,services,networkpolicies,poddisruptionbudgets,resourcequotas,deployments,statefulsets,pvc"
SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "ownerReferences",
                   "finalizers", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink")
SERVER_ANNOTATIONS = ("deployment.kubernetes.io/revision", "pv.kubernetes.io/bind-completed",
                      "pv.kubernetes.io/bound-by-controller", "volume.kubernetes.io/selected-node",
                      "volume.beta.kubernetes.io/storage-provisioner", "volume.kubernetes.io/storage-provisioner")


def run(cmd, env, check=True):
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    elapsed = time.monotonic() - started
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd[:4]))} failed:\n{done.stdout[-4000:]}{done.stderr[-2000:]}")
    return elapsed, done


def _seconds(stamp):
    from datetime import datetime
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def playbook(name, variables, env):
    """Wall-clock seconds, changed count, and seconds per part (role or play) from the json callback."""
    cmd = [str(REPO / ".venv/bin/ansible-playbook"), str(REPO / name), "-i", str(REPO / "inventories/sim"),
           "-e", json.dumps(variables)]
    elapsed, done = run(cmd, dict(env, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json"))
    report = json.loads(done.stdout[done.stdout.index("{"):])
    parts = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            name_ = task["task"]["name"]
            part = name_.split(" : ", 1)[0] if " : " in name_ else play["play"]["name"]
            took = _seconds(task["task"]["duration"]["end"]) - _seconds(task["task"]["duration"]["start"])
            parts[part] = parts.get(part, 0.0) + took
    return elapsed, report["stats"]["localhost"]["changed"], {k: round(v, 2) for k, v in parts.items()}


def portable(obj, namespace):
    """An object as a user would write it: no server-set metadata, status or allocated addresses."""
    meta = obj["metadata"]
    for key in SERVER_METADATA:
        meta.pop(key, None)
    for key in SERVER_ANNOTATIONS:
        (meta.get("annotations") or {}).pop(key, None)
    if not meta.get("annotations"):
        meta.pop("annotations", None)
    meta["namespace"] = namespace
    obj.pop("status", None)
    spec = obj.get("spec") or {}
    if obj["kind"] == "Service":
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy",
                    "sessionAffinity"):
            spec.pop(key, None)
    if obj["kind"] == "PersistentVolumeClaim":
        spec.pop("volumeName", None)
    return obj


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="k3s")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--models", action="store_true", help="keep the inventory's models (pull and verify)")
    args = parser.parse_args()

    os.environ.update(ENV)
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    sim = cluster.Cluster(log=lambda *_: None)
    sim.down(quiet=True)
    state = sim.up(args.profile)
    kubeconfig = str(Path(ENV["LLMOPS_SIM_STATE"]) / "kubeconfig")
    kubectl = [str(build.binary_path("kubectl")), f"--kubeconfig={kubeconfig}"]
    registry = next(iter(state.get("models") or {}), "/").split("/", 1)[0]
    env.update(K8S_AUTH_KUBECONFIG=kubeconfig, LLMOPS_SIM_REGISTRY=registry)
    variables = {"ollama_kubeconfig": kubeconfig, "ollama_namespace": "bench", "ollama_replicas": args.replicas}
    if args.profile == "eks":
        variables["ollama_gpu_label_nodes"] = True
    if args.profile == "baremetal":
        variables["ollama_storage_install_local_path"] = True
    if not args.models:
        variables["ollama_models"] = []
    try:
        empty = statistics.median(run([str(REPO / ".venv/bin/ansible-playbook"), str(REPO / "bench/converge/empty.yml"),
                                       "-i", "localhost,"], env)[0] for _ in range(REPEAT))

        first, first_changed, first_parts = playbook("playbooks/site.yml", variables, env)
        noops = [playbook("playbooks/site.yml", variables, env) for _ in range(REPEAT)]
        if any(changed for _, changed, _ in noops):
            raise SystemExit(f"the re-converge reported changes: {[changed for _, changed, _ in noops]}")
        noop = statistics.median(elapsed for elapsed, _, _ in noops)
        noop_parts = sorted(noops, key=lambda n: n[0])[len(noops) // 2][2]

        written = json.loads(run(kubectl + ["get", KINDS, "-n", "bench", "-o", "json"], env)[1].stdout)["items"]
        namespace = json.loads(run(kubectl + ["get", "namespace", "bench", "-o", "json"], env)[1].stdout)
        baseline = [portable(namespace, None)] + [portable(o, "bench-kubectl") for o in written]
        baseline[0]["metadata"].pop("namespace")
        baseline[0]["metadata"]["name"] = "bench-kubectl"
        baseline[0]["metadata"]["labels"]["kubernetes.io/metadata.name"] = "bench-kubectl"
        manifest = Path(ENV["LLMOPS_SIM_STATE"]) / "bench-objects.json"
        manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": baseline}))
        apply = kubectl + ["apply", "--server-side", "--field-manager=llmops-ollama", "-f", str(manifest)]
        k_first = run(apply, env)[0]
        k_noop = statistics.median(run(apply, env)[0] for _ in range(REPEAT))
    finally:
        sim.down(quiet=True)

    result = {
        "profile": args.profile, "replicas": args.replicas, "models": args.models,
        "objects": [f"{o['kind']}/{o['metadata']['name']}" for o in baseline],
        "seconds": {"site_first": round(first, 2), "site_noop_median": round(noop, 2),
                    "kubectl_first": round(k_first, 2), "kubectl_noop_median": round(k_noop, 2),
                    "empty_playbook_median": round(empty, 2)},
        "first_changed": first_changed,
        # Task seconds per role or play (the rest of the wall clock is ansible-playbook's own start and parsing).
        "site_first_parts": first_parts,
        "site_noop_parts": noop_parts,
        "ratio_first": round(first / (k_first + empty), 2),
        "ratio_noop": round(noop / (k_noop + empty), 2),
        "target_noop_ratio": TARGET_NOOP_RATIO,
    }
    out = REPO / "bench" / "results" / f"converge-{args.profile}-{args.replicas}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if result["ratio_noop"] <= TARGET_NOOP_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
