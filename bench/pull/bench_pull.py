#!/usr/bin/env python3
"""Pull one model to 1 replica, then to 4, with the model_pull role and with a plain script; report the times.

Runs against the simulated cluster (or any cluster with the model in a registry its pods reach):
    LLMOPS_SIM_STATE=/path/to/.sim .venv/bin/python bench/pull/bench_pull.py [--model tiny-big] [--replicas 4]
Creates a namespace with a 4-replica Ollama StatefulSet (a claim each, no GPU request so that 4 replicas fit
on the simulator's 2 GPU nodes) and, in one run, from empty model stores each time:
- the floor: the same pulls issued straight to each replica's Ollama API (its pod IP, port 11434) by a plain
  script with the `ollama` client, all replicas at once, for 1 replica and for all;
- the role: model_pull for 1 replica (pull scope "once") and for all (scope "each_replica").
It reads the simulator registry's access log for what the registry served. Targets: ratio_wall (the role for 4
replicas over the role for 1) at most 1.3, ratio_floor (the role for 4 over the plain script for 4) at most 1.5.
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import ollama

REPO = Path(__file__).resolve().parents[2]
SELECTOR = {"app.kubernetes.io/name": "ollama", "app.kubernetes.io/instance": "ollama"}
MANIFEST_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json"


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
    # Plain Ollama (the image's OLLAMA_HOST=0.0.0.0:11434), no gate: the role and the script reach the same API.
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


def pod_ips(kubeconfig, namespace, replicas, timeout=300):
    """{pod: IP} once every replica runs and its Ollama answers (bounded by timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = json.loads(kubectl(kubeconfig, "get", "pods", "-n", namespace, "-o", "json"))["items"]
        ips = {p["metadata"]["name"]: p["status"].get("podIP") for p in pods
               if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")}
        if len(ips) == replicas and all(ips.values()):
            try:
                for ip in ips.values():
                    ollama.Client(host=f"http://{ip}:11434", timeout=5).list()
                return dict(sorted(ips.items()))
            except Exception:
                pass
        time.sleep(1)
    raise SystemExit(f"the {replicas} Ollama replicas in {namespace} did not answer within {timeout} s")


def role_run(kubeconfig, plan, registry, extra=None):
    """(playbook wall s, role wall s, the sync task's result) of one model_pull run."""
    variables = {"gpu_preflight_plan": plan, "ollama_kubeconfig": str(kubeconfig),
                 "ollama_insecure_registries": [registry], "model_pull_poll_interval": 1,
                 # Plain Ollama pods: its own port; no gate, so no admin key to read (Ollama ignores the header).
                 "model_pull_port": 11434, "model_pull_admin_key": "unused"}
    variables.update(extra or {})
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               K8S_AUTH_KUBECONFIG=str(kubeconfig))
    started = time.monotonic()
    done = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), str(Path(__file__).parent / "pull.yml"),
                           "-i", str(REPO / "inventories" / "sim"), "-e", json.dumps(variables)],
                          capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=1800)
    wall = time.monotonic() - started
    if done.returncode:
        raise SystemExit(f"the role failed: {done.stdout[-3000:]}")
    # The progress lines come before the json callback's report, which starts on a line of its own.
    report = json.loads(done.stdout[done.stdout.index("\n{") + 1 if not done.stdout.startswith("{") else 0:])
    tasks = [t for play in report["plays"] for t in play["tasks"]]
    stamps = [t["task"]["duration"] for t in tasks]
    first = datetime.datetime.fromisoformat(stamps[0]["start"].replace("Z", "+00:00"))
    last = datetime.datetime.fromisoformat(stamps[-1]["end"].replace("Z", "+00:00"))
    sync = next(t["hosts"]["localhost"] for t in tasks if t["task"]["name"].endswith("Sync the models on every replica at once"))
    # Each task's seconds, by name (the model cache's wait and the sync apart).
    sync["task_s"] = {}
    for t in tasks:
        span = t["task"]["duration"]
        seconds = (datetime.datetime.fromisoformat(span["end"].replace("Z", "+00:00"))
                   - datetime.datetime.fromisoformat(span["start"].replace("Z", "+00:00"))).total_seconds()
        name = t["task"]["name"].split(" : ")[-1]
        sync["task_s"][name] = round(sync["task_s"].get(name, 0) + seconds, 2)
    return wall, (last - first).total_seconds(), sync


def plain_pulls(ips, model, registry_insecure=True):
    """The floor: every replica's pull issued at once straight to its Ollama API; wall seconds."""
    def pull(ip):
        client = ollama.Client(host=f"http://{ip}:11434", timeout=600)
        for _ in range(3):  # as model_pull, a stream that breaks is tried again
            try:
                for part in client.pull(model, insecure=registry_insecure, stream=True):
                    last = part
                if last.status == "success":
                    return
            except Exception:
                time.sleep(0.2)
        raise SystemExit(f"the plain pull of {model} on {ip} failed")
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(ips)) as pool:
        list(pool.map(pull, ips))
    return time.monotonic() - started


def delete_everywhere(ips, model):
    for ip in ips:
        try:
            ollama.Client(host=f"http://{ip}:11434", timeout=60).delete(model)
        except ollama.ResponseError:
            pass


def check_digests(ips, model, digest):
    for ip in ips:
        listed = {m.model: "sha256:" + m.digest for m in ollama.Client(host=f"http://{ip}:11434").list().models}
        if listed.get(model) != digest:
            raise SystemExit(f"{ip} lists {model} as {listed.get(model)}, not {digest}")


def blob_bytes(log, start):
    lines = log.read_text().splitlines()[start:] if log.exists() else []
    total = 0
    for line in lines:
        method, path, _status, size = line.split(" ")
        if method == "GET" and ("/blobs/" in path or path.startswith("/_sim/blobs/")):
            total += int(size)
    return total


def model_bytes(model):
    """The model's size: its manifest's config and layers, from the registry."""
    registry, rest = model.split("/", 1)
    name, tag = rest.rsplit(":", 1)
    request = urllib.request.Request(f"http://{registry}/v2/{name}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
    with urllib.request.urlopen(request, timeout=30) as answer:
        manifest = json.load(answer)
    return manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])


def log_length(log):
    return len(log.read_text().splitlines()) if log.exists() else 0


def cache_plan(namespace, model, registry):
    """The plan's model_cache section for the bench's namespace, as the plan computes it."""
    sys.path.insert(0, str(REPO / ".collections"))
    from ansible_collections.llmops.ollama.plugins.module_utils import model_cache, plan as plan_mod
    report = plan_mod.Report()
    models = plan_mod.normalize_models([{"name": model, "size": "1GB"}], report)
    cfg = dict(model_cache.DEFAULTS, model_cache=True, insecure_registries=[registry])
    cache = model_cache.plan_model_cache(cfg, "ollama", namespace, models, {"storage_classes": [
        {"name": "local-path"}], "default_storage_class": "local-path"}, {"class": "local-path"}, report)
    if report.errors:
        raise SystemExit(plan_mod.describe_errors(report.errors))
    return cache, model_cache.via_names(models, cache)[0]["via"]


def cache_run(kubeconfig, plan):
    """Apply the model cache (bench/pull/cache.yml) and return the wall seconds."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), K8S_AUTH_KUBECONFIG=str(kubeconfig))
    started = time.monotonic()
    done = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), str(Path(__file__).parent / "cache.yml"),
                           "-i", str(REPO / "inventories" / "sim"),
                           "-e", json.dumps({"gpu_preflight_plan": plan, "ollama_kubeconfig": str(kubeconfig)})],
                          capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=600)
    if done.returncode:
        raise SystemExit(f"applying the model cache failed: {done.stdout[-3000:]}")
    return time.monotonic() - started


def check_names(ips, model, via):
    """Every replica lists the model under its own name and not under the cache's."""
    for ip in ips:
        listed = [m.model for m in ollama.Client(host=f"http://{ip}:11434").list().models]
        if model not in listed or via in listed:
            raise SystemExit(f"{ip} lists {listed}: want {model} and not {via}")


def cached(kubeconfig, namespace, model, digest, registry, ips, plan, extra, log, out):
    """Every replica through the model cache, from empty stores and an empty cache: what the registry served."""
    cache, via = cache_plan(namespace, model, registry)
    start = log_length(log)
    result = {"via": via}
    started = time.monotonic()
    result["apply_s"] = round(cache_run(kubeconfig, {"name": "ollama", "namespace": namespace, "model_cache": cache,
                                                     "gate": {"image": {"ref": "docker.io/nginxinc/nginx-unprivileged:1.30.4"}},
                                                     "network_policy": {}}), 2)
    wall, role, sync = role_run(kubeconfig, dict(plan, storage={"pull_scope": "each_replica"}, model_cache=cache,
                                                 models=[{"name": model, "digest": digest, "via": via}]),
                                registry, extra)
    result["role_s"], result["playbook_s"] = round(role, 2), round(wall, 2)
    result["total_s"] = round(time.monotonic() - started, 2)
    result["origin_bytes"] = blob_bytes(log, start)
    result["ratio_origin"] = round(result["origin_bytes"] / out["model_bytes"], 3)
    result["attempts"] = [m["attempts"] for e in sync["endpoints"] for m in e["models"]]
    # Where model_pull's time went: the wait for the cache's warm step, the pulls, the rest.
    result["task_s"] = sync["task_s"]
    check_digests(ips.values(), model, digest)
    check_names(ips.values(), model, via)
    # A second run pulls nothing and the registry serves nothing.
    start = log_length(log)
    _, role_again, again = role_run(kubeconfig, dict(plan, storage={"pull_scope": "each_replica"}, model_cache=cache,
                                                     models=[{"name": model, "digest": digest, "via": via}]),
                                    registry, extra)
    result["second_run"] = {"role_s": round(role_again, 2), "changed": again["changed"],
                            "origin_bytes": blob_bytes(log, start)}
    result["target_ratio_origin"] = 1.1
    result["met"] = result["ratio_origin"] <= 1.1
    delete_everywhere(ips.values(), model)
    # The floor through the warm cache: the plain script pulls the cache's name on every replica at once.
    start = log_length(log)
    result["floor_s"] = round(plain_pulls(list(ips.values()), via), 2)
    result["floor_origin_bytes"] = blob_bytes(log, start)
    delete_everywhere(ips.values(), via)
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny-big")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4, help="model_pull_concurrency")
    parser.add_argument("--keep", action="store_true", help="keep the namespace")
    parser.add_argument("--cache", action="store_true",
                        help="also pull to every replica through the model cache (ollama_model_cache)")
    parser.add_argument("--cache-only", action="store_true", help="only the run through the model cache")
    args = parser.parse_args()
    state = Path(os.environ.get("LLMOPS_SIM_STATE", REPO / ".sim"))
    kubeconfig = Path(os.environ.get("KUBECONFIG") or state / "kubeconfig")
    sim_state = json.loads((state / "state.json").read_text()) if (state / "state.json").exists() else {}
    model = next(ref for ref in sim_state.get("models", {}) if ref.rsplit("/", 1)[-1].split(":")[0] == args.model)
    digest = sim_state["models"][model]
    registry = model.split("/", 1)[0]
    log = state / "registry" / "logs" / "registry-access.log"
    namespace = f"bench-pull-{uuid.uuid4().hex[:6]}"
    kubectl(kubeconfig, "create", "namespace", namespace)
    try:
        kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps(statefulset(namespace, args.replicas)))
        ips = pod_ips(kubeconfig, namespace, args.replicas)
        first_ip = list(ips.values())[:1]
        plan = {"ok": True, "name": "ollama", "namespace": namespace, "replicas": args.replicas,
                "workload_kind": "StatefulSet", "affinity": {"label_selector": SELECTOR},
                "models": [{"name": model, "digest": digest}],
                # model_pull names the gate's admin Secret (admin_key_secret); model_pull_admin_key wins over it.
                "gate": {"secrets": {"admin": "ollama-gate-admin"}}}
        extra = {"model_pull_concurrency": args.concurrency}
        out = {"model": model, "model_bytes": model_bytes(model), "replicas": args.replicas,
               "concurrency": args.concurrency}

        if args.cache or args.cache_only:
            out["cache"] = cached(kubeconfig, namespace, model, digest, registry, ips, plan, extra, log, out)
            if args.cache_only:
                print(json.dumps(out, indent=2))
                return
        start = log_length(log)
        out["floor_1_s"] = round(plain_pulls(first_ip, model), 2)
        delete_everywhere(first_ip, model)
        start = log_length(log)
        out["floor_s"] = round(plain_pulls(list(ips.values()), model), 2)
        out["floor_origin_bytes"] = blob_bytes(log, start)
        check_digests(ips.values(), model, digest)
        delete_everywhere(ips.values(), model)

        wall, role, _ = role_run(kubeconfig, dict(plan, storage={"pull_scope": "once"}), registry, extra)
        out["role_1_s"], out["playbook_1_s"] = round(role, 2), round(wall, 2)
        delete_everywhere(ips.values(), model)

        start = log_length(log)
        wall, role, sync = role_run(kubeconfig, dict(plan, storage={"pull_scope": "each_replica"}), registry, extra)
        out["role_s"], out["playbook_s"] = round(role, 2), round(wall, 2)
        out["origin_bytes"] = blob_bytes(log, start)
        out["attempts"] = [m["attempts"] for e in sync["endpoints"] for m in e["models"]]
        out["progress_rounds"] = sync.get("progress_rounds")
        check_digests(ips.values(), model, digest)

        # A second run pulls nothing.
        start = log_length(log)
        _, role_again, again = role_run(kubeconfig, dict(plan, storage={"pull_scope": "each_replica"}), registry, extra)
        out["second_run"] = {"role_s": round(role_again, 2), "changed": again["changed"],
                             "origin_bytes": blob_bytes(log, start)}
        delete_everywhere(ips.values(), model)

        out["ratio_wall"] = round(out["role_s"] / out["role_1_s"], 2)
        out["ratio_floor"] = round(out["role_s"] / out["floor_s"], 2)
        out["ratio_wall_playbook"] = round(out["playbook_s"] / out["playbook_1_s"], 2)
        out["ratio_floor_playbook"] = round(out["playbook_s"] / out["floor_s"], 2)
        out["targets"] = {"ratio_wall": 1.3, "ratio_floor": 1.5}
        out["met"] = out["ratio_wall"] <= 1.3 and out["ratio_floor"] <= 1.5
        print(json.dumps(out, indent=2))
    finally:
        if not args.keep:
            kubectl(kubeconfig, "delete", "namespace", namespace, "--wait=false", check=False)


if __name__ == "__main__":
    main()
