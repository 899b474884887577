"""playbooks/status.yml on a real deployment: site.yml converges two replicas with the sim inventory's models, then
the status report is checked against what the cluster and each Ollama say (kubectl, /api/tags through the pod
proxy), and its HTML page is rendered in headless Chromium (Debian's `chromium`, no network) and read back from the
DOM. It writes nothing to the cluster, --check writes no page, and an empty namespace says there is no deployment.
"""

import json
import re
import shutil
import subprocess
import uuid
from html.parser import HTMLParser

import pytest

NAME = "ollama"
SELECTOR = f"app.kubernetes.io/name=ollama,app.kubernetes.io/instance={NAME}"
CHAIN = "../tests/integration/collection/site-then-status.yml"
# Chromium without anything that reaches a network: no background requests, no component or safe-browsing
# updates, no sync, and every host name unresolvable; the page is a file:// URL.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--disable-default-apps", "--no-first-run", "--no-default-browser-check",
                  "--host-resolver-rules=MAP * ~NOTFOUND"]


@pytest.fixture(autouse=True)
def free_gpus(cluster, namespace):
    """The simulator has two GPUs: give them back before the next test."""
    yield
    cluster.kubectl("delete", "deployments,statefulsets", "--all", "-n", namespace, "--cascade=foreground",
                    "--timeout=120s", check=False, timeout=180)
    cluster.wait_for(lambda: not cluster.get("pods", "-n", namespace)["items"], timeout=120,
                     what=f"the pods of {namespace} to go")


@pytest.fixture
def chromium():
    path = shutil.which("chromium")
    if not path:
        pytest.skip("needs Debian's chromium package (make deps installs it)")
    return path


class DomText(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        if data.strip():
            self.parts.append(" ".join(data.split()))


def render_in_chromium(chromium, page, tmp_path):
    """The DOM Chromium built from the page, parsed."""
    done = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "</html>" in done.stdout, done.stderr[-2000:]
    dom = DomText()
    dom.feed(done.stdout)
    return dom


def status_result(run):
    results = run.task_results("Read the nodes, the replicas and the models")
    assert results, run
    return results[-1]


def table_of(run):
    return "\n".join(status_result(run)["table"])


def same_model(a, b):
    """Whether two names are one model (a missing tag is :latest)."""
    def full(name):
        return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"
    return full(a).lower() == full(b).lower()


def replicas(cluster, namespace):
    return sorted((p for p in cluster.get("pods", "-n", namespace, "-l", SELECTOR)["items"]
                   if not p["metadata"].get("deletionTimestamp")), key=lambda p: p["metadata"]["name"])


def restarts(pod):
    return sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses") or [])


def owned_objects(cluster, namespace):
    """resourceVersion of every object the collection writes in the namespace (pods apart: the kubelet updates
    them on its own), and each pod's uid and restarts."""
    kinds = "statefulsets,deployments,services,secrets,configmaps,persistentvolumeclaims,networkpolicies," \
            "poddisruptionbudgets,serviceaccounts,roles,rolebindings"
    objects = {f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
               for o in cluster.get(kinds, "-n", namespace)["items"]}
    objects.update({f"Pod/{p['metadata']['name']}": (p["metadata"]["uid"], restarts(p))
                    for p in replicas(cluster, namespace)})
    return objects


def test_status_shows_the_real_deployment_and_renders_in_chromium(playbook, cluster, namespace, chromium, tmp_path):
    page = tmp_path / "status.html"
    # site.yml then status.yml in one run: the report carries the tokens/s site.yml's verification measured.
    run = playbook(CHAIN, {"ollama_namespace": namespace, "ollama_namespace_manage_labels": True,
                           "ollama_replicas": 2, "ollama_status_html": str(page)})
    assert run.rc == 0, run
    pods = replicas(cluster, namespace)
    assert len(pods) == 2
    table = table_of(run)
    verified = {(r["item"][0], r["model"]): r["tokens_per_second"]
                for r in run.task_results("Run a generation on each replica and model")[0]["results"]}
    assert verified and all(v > 0 for v in verified.values())

    nodes = {p["spec"]["nodeName"] for p in pods}
    figures = []
    for node in nodes:
        assert re.search(rf"^{re.escape(node)}\s+yes\s+1/1\s+1 x \d+ MiB\s", table, re.M), table
    for pod in pods:
        name, node = pod["metadata"]["name"], pod["spec"]["nodeName"]
        version = cluster.ollama(namespace, name, "/api/version")["version"]
        assert re.search(rf"^{name}\s+{re.escape(node)}\s+Running\s+yes\s+{restarts(pod)}\s+{re.escape(version)}$",
                         table, re.M), table
        tags = cluster.ollama(namespace, name, "/api/tags")["models"]
        assert len(tags) == 2
        for model in tags:
            digest = model["digest"].split(":")[-1][:12]
            tps = next(v for (p, m), v in verified.items() if p == name and same_model(m, model["name"]))
            line = rf"^{name}\s+{re.escape(model['name'])}\s+[\d.]+ KiB\s+{digest}\s+(yes|no)\s+.*\s{tps:.1f}$"
            assert re.search(line, table, re.M), (line, table)
            figures += [digest, f"{tps:.1f}", model["name"]]
    # The simulator's Ollama is a CPU build: the loaded models are on the CPU, accepted by the sim inventory.
    assert "WARNING: " in table and "100% CPU" in table and "ERROR" not in table

    dom = render_in_chromium(chromium, page, tmp_path)
    text = " ".join(dom.parts)
    for expected in [p["metadata"]["name"] for p in pods] + sorted(nodes) + figures:
        assert expected in text, expected
    assert text.count("1/1 in use") == len(nodes)
    assert f"Ollama {namespace}/{NAME}" in text and "2 of 2 replicas Ready" in text
    rendered = {(t, a.get("data-replica") or a.get("data-node")) for t, a in dom.tags}
    assert {("div", p["metadata"]["name"]) for p in pods} <= rendered
    assert {("div", n) for n in nodes} <= rendered
    # Residency bars of the loaded models: all red (CPU) on the simulator.
    assert [a for t, a in dom.tags if a.get("class") == "cpu"]
    assert not [t for t, _ in dom.tags if t in ("script", "img", "link")]

    # status.yml alone: read-only. --check (even asking for a measurement) writes no page and touches nothing.
    before = owned_objects(cluster, namespace)
    loaded_before = {p["metadata"]["name"]: cluster.ollama(namespace, p["metadata"]["name"], "/api/ps")
                     for p in pods}
    dry_page = tmp_path / "dry.html"
    dry = playbook("status.yml", {"ollama_namespace": namespace, "ollama_status_html": str(dry_page),
                                  "ollama_status_measure": True}, check=True)
    assert dry.rc == 0, dry
    assert not dry_page.exists()
    assert "Check mode: no generation was run" in table_of(dry)
    assert loaded_before == {n: cluster.ollama(namespace, n, "/api/ps") for n in loaded_before}  # no request ran

    alone = playbook("status.yml", {"ollama_namespace": namespace})
    assert alone.rc == 0 and alone.changed == 0, alone
    assert re.search(r"^ollama-\d\s+\S+tiny-a:latest\s.*\s-$", table_of(alone), re.M)  # no tokens/s measured
    assert owned_objects(cluster, namespace) == before

    # On request, one short generation per replica and model measures tokens/s now.
    measured = playbook("status.yml", {"ollama_namespace": namespace, "ollama_status_measure": True})
    assert measured.rc == 0, measured
    cells = [c for r in status_result(measured)["report"]["replicas"] for c in r["models"]]
    assert len(cells) == 4 and all(c["tokens_per_second"] > 0 and c["tokens_source"] == "measured now"
                                   for c in cells)
    assert owned_objects(cluster, namespace) == before


def test_status_of_an_empty_namespace_says_there_is_no_deployment(playbook, cluster, namespace):
    run = playbook("status.yml", {"ollama_namespace": namespace})
    assert run.rc != 0
    assert run.failure.startswith(f"there is no Ollama deployment in the namespace {namespace}: no pods"), run
    assert "playbooks/site.yml" in run.failure
    assert "Traceback" not in run.stdout + run.stderr

    missing = f"t-{uuid.uuid4().hex[:8]}"
    run = playbook("status.yml", {"ollama_namespace": missing})
    assert run.rc != 0 and run.failure.startswith(
        f"there is no Ollama deployment: the namespace {missing} does not exist"), run
    assert json.dumps(run.report)  # the json callback reported it as a task failure, not a crash
