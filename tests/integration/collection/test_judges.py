"""External judges of what a converge writes: kube-score (0 CRITICAL) and checkov's Kubernetes checks (0 failed)
on every object site.yml renders for the bare-metal k3s and the EKS inventories.

The objects come from a `site.yml --check` run of each inventory against the simulator profile it describes: the
check play sends every object of storage_provisioner, ha_policy and ollama_workload through a server-side dry run
and returns them as rendered. That judges exactly what the roles would apply, with the real plan of a cluster of
that shape, and writes nothing. The only skips are those docs/judges.md gives with the reason.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CHECKOV = Path(os.environ.get("LLMOPS_CHECKOV", REPO / ".venv-judges" / "bin" / "checkov"))

# kube-score: only the pull-policy test (docs/judges.md: Always re-pulls a pinned tag on every start; IfNotPresent
# with a pinned tag or digest is what the collection wants). Annotations cannot switch tests off.
KUBE_SCORE_SKIPS = ["container-image-pull-policy"]
KUBE_SCORE_OPTIONAL = ["container-seccomp-profile"]
# checkov: pull policy Always and digest pinning, only while an image carries no digest (docs/judges.md).
CHECKOV_SKIPS_WITHOUT_DIGEST = ["CKV_K8S_15", "CKV_K8S_43"]
# Findings that other work in progress removes; each entry must still be found (else: delete it).
PENDING = {}
CRITICAL = 1  # kube-score's scorecard.GradeCritical

INVENTORIES = {
    "baremetal": {"gpu_preflight_fetch_kubeconfig": False, "gpu_preflight_check_hosts": False},
    "eks": {},
}


def render(playbook, cluster, inventory):
    """Every object the roles would write, as site.yml --check renders them for the inventory."""
    registry = next(iter(cluster.models), "10.245.255.250:5000/").split("/", 1)[0]
    variables = dict(INVENTORIES[inventory], ollama_namespace="judged",
                     # The inventories' models are on registry.ollama.ai, which this machine cannot reach.
                     ollama_models=[{"name": cluster.model("tiny-a"), "size": 330043}],
                     ollama_insecure_registries=[registry])
    run = playbook("site.yml", variables, check=True, inventory=f"inventories/{inventory}")
    assert run.rc == 0, run
    objects = []
    for result in run.task_results("with a server-side dry run"):
        objects.extend(result.get("objects") or [])
    kinds = sorted({o["kind"] for o in objects})
    assert {"Namespace", "StatefulSet", "Service", "NetworkPolicy", "PodDisruptionBudget"} <= set(kinds), kinds
    return objects


def images(objects):
    found = []
    for obj in objects:
        spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        found += [c["image"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]
    return found


def kube_score(manifest):
    from sim.build import binary_path
    binary = binary_path("kube-score")
    assert binary.exists(), f"{binary} is missing: run make sim-build (it builds kube-score from its Go module)"
    cmd = [str(binary), "score", "--output-format", "json", "--kubernetes-version", "v1.34",
           "--disable-ignore-checks-annotations"]
    cmd += [f"--ignore-test={t}" for t in KUBE_SCORE_SKIPS] + [f"--enable-optional-test={t}" for t in KUBE_SCORE_OPTIONAL]
    done = subprocess.run(cmd + [str(manifest)], capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.strip().startswith("["), done.stderr
    findings = []
    for obj in json.loads(done.stdout):
        for check in obj["checks"]:
            if check["skipped"] or check["grade"] != CRITICAL:
                continue
            comments = "; ".join(f"{c.get('path', '')} {c['summary']}".strip() for c in check.get("comments") or [])
            findings.append({"judge": "kube-score", "id": check["check"]["id"],
                             "object": obj["object_name"], "detail": comments})
    return findings


def checkov(manifest, skips):
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run make judges-env (checkov pinned in requirements-judges.txt)"
    cmd = [str(CHECKOV), "--file", str(manifest), "--framework", "kubernetes", "--output", "json", "--quiet",
           "--compact", "--skip-download"]
    if skips:
        cmd += ["--skip-check", ",".join(skips)]
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_NO_OUTPUT_COLOR="1")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, env=env)
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    findings = []
    for one in reports:
        summary = one.get("summary") or {}
        assert summary.get("parsing_errors", 0) == 0, one
        for failed in (one.get("results") or {}).get("failed_checks") or []:
            findings.append({"judge": "checkov", "id": failed["check_id"], "object": failed["resource"],
                             "detail": failed["check_name"]})
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return findings


def judge(objects, tmp_path):
    manifest = tmp_path / "objects.yaml"
    manifest.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    undigested = [i for i in images(objects) if "@sha256:" not in i]
    findings = kube_score(manifest) + checkov(manifest, CHECKOV_SKIPS_WITHOUT_DIGEST if undigested else [])
    pending = [f for f in findings if (f["judge"], f["id"]) in PENDING]
    left = [f for f in findings if (f["judge"], f["id"]) not in PENDING]
    stale = [key for key in PENDING if not any((f["judge"], f["id"]) == key for f in findings)]
    return left, pending, stale


def show(findings):
    return "\n".join(f"{f['judge']} {f['id']} on {f['object']}: {f['detail']}" for f in findings)


@pytest.mark.parametrize("inventory", [
    pytest.param("baremetal", marks=pytest.mark.profile("k3s")),
    pytest.param("eks", marks=pytest.mark.profile("eks")),
])
def test_the_judges_find_nothing_critical_in_what_a_converge_writes(playbook, cluster, inventory, tmp_path,
                                                                    monkeypatch):
    monkeypatch.setenv("K8S_AUTH_KUBECONFIG", str(cluster.kubeconfig))
    objects = render(playbook, cluster, inventory)
    left, pending, stale = judge(objects, tmp_path)
    assert not left, f"{len(left)} finding(s) on the {inventory} objects:\n{show(left)}"
    assert not stale, f"PENDING entries no finding matches any more (delete them): {stale}"
    for finding in pending:
        print(f"pending: {show([finding])} ({PENDING[(finding['judge'], finding['id'])]})")
    # Nothing was written: the check mode run and its dry runs leave the cluster as it was.
    assert cluster.kubectl("get", "namespace", "judged", check=False).returncode != 0
