"""The sim registry (docker-registry + redirecting proxy) serving generated tiny models to a real Ollama.

Starts its own registry, proxy and `ollama serve` on free loopback ports in a tmp dir; needs
/usr/bin/docker-registry and the Ollama binary built by `sim.build` (skipped with the reason otherwise).
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "sim"))
pytest.importorskip("gguf")

from sim import build, models, registry  # noqa: E402

pytestmark = pytest.mark.timeout(300)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(port, method, path, body=None, timeout=120):
    """One HTTP call; returns (status, [parsed JSON lines])."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def sim_registry(tmp_path_factory):
    if not Path(registry.REGISTRY_BIN).exists():
        pytest.skip(f"{registry.REGISTRY_BIN} is missing: apt-get install -y docker-registry")
    root = tmp_path_factory.mktemp("registry")
    generated = models.generate(root / "models")
    state = registry.start(root / "state", free_port(), free_port())
    try:
        refs = registry.publish(state["url"], generated)
        yield {"state": state, "state_dir": root / "state", "models": generated, "refs": refs,
               "host": f"127.0.0.1:{state['proxy_port']}"}
    finally:
        registry.stop(root / "state")
    assert not registry.is_up(root / "state")


@pytest.fixture(scope="module")
def ollama(sim_registry, tmp_path_factory):
    binary = build.binary_path("ollama")
    if not binary.exists():
        pytest.skip(f"{binary} is missing: build it with `cd sim && python3 -c \"from sim import build; "
                    f"build.build_all(only=['ollama'])\"`")
    home = tmp_path_factory.mktemp("ollama")
    port = free_port()
    env = dict(os.environ, HOME=str(home), OLLAMA_HOST=f"127.0.0.1:{port}", OLLAMA_MODELS=str(home / "models"))
    with open(home / "serve.log", "wb") as log:
        proc = subprocess.Popen([str(binary), "serve"], env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(150):
            try:
                if call(port, "GET", "/api/version", timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"ollama serve did not answer on {port}: {(home / 'serve.log').read_text()[-2000:]}")
        yield {"port": port, "home": home, "env": env, "binary": binary}
    finally:
        # serve and its runners share the process group we created for it
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def ref(sim_registry, name):
    return f"{sim_registry['host']}/library/{name}:latest"


def pull(ollama, model):
    status, lines = call(ollama["port"], "POST", "/api/pull", {"model": model, "insecure": True}, timeout=240)
    assert status == 200, lines
    return lines


def access_log(sim_registry):
    return registry.read_access_log(sim_registry["state"]["access_log"])


def test_registry_redirects_blob_gets_and_serves_ranges(sim_registry):
    meta = json.loads((sim_registry["models"]["tiny-a"] / "meta.json").read_text())
    data = (sim_registry["models"]["tiny-a"] / "model.gguf").read_bytes()
    blob = f"/v2/library/tiny-a/blobs/sha256:{meta['sha256']}"
    conn = http.client.HTTPConnection("127.0.0.1", sim_registry["state"]["proxy_port"], timeout=30)
    try:
        conn.request("HEAD", blob)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200 and int(resp.getheader("Content-Length")) == len(data)
        conn.request("GET", blob)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 307
        location = resp.getheader("Location")
        assert location.startswith(f"http://{sim_registry['host']}/_sim/blobs/library/tiny-a/sha256:")
        conn.request("GET", location.split(sim_registry["host"], 1)[1], headers={"Range": "bytes=100-199"})
        resp = conn.getresponse()
        assert resp.status == 206 and resp.read() == data[100:200]
        assert resp.getheader("Location") == location  # Ollama takes the direct URL from here
    finally:
        conn.close()


def test_the_request_log_times_each_request_of_the_access_log(sim_registry):
    access, requests = access_log(sim_registry), registry.read_request_log(sim_registry["state"]["request_log"])
    before = (len(access), len(requests))
    conn = http.client.HTTPConnection("127.0.0.1", sim_registry["state"]["proxy_port"], timeout=30)
    try:
        for path in ("/v2/", "/v2/library/tiny-a/manifests/latest"):
            conn.request("GET", path, headers={"Accept": registry.MANIFEST_TYPE})
            conn.getresponse().read()
    finally:
        conn.close()
    access = access_log(sim_registry)[before[0]:]
    requests = registry.read_request_log(sim_registry["state"]["request_log"])[before[1]:]
    # The same requests, in the same order, with the client's address and when each started and ended.
    assert [(e["method"], e["path"], e["status"], e["bytes"]) for e in requests] == \
        [(e["method"], e["path"], e["status"], e["bytes"]) for e in access]
    assert [e["path"] for e in requests] == ["/v2/", "/v2/library/tiny-a/manifests/latest"]
    assert all(e["client"] == "127.0.0.1" and e["start"] <= e["end"] for e in requests)
    assert requests[0]["end"] <= requests[1]["start"]  # one connection: the second began after the first


def test_publish_is_cached_and_digests_are_stable(sim_registry):
    before = len(access_log(sim_registry))
    assert registry.publish(sim_registry["state"]["url"], sim_registry["models"]) == sim_registry["refs"]
    new = access_log(sim_registry)[before:]
    assert new and all(e["method"] == "HEAD" for e in new), new


def test_pull_streams_progress_and_lists_the_digest(sim_registry, ollama):
    model = ref(sim_registry, "tiny-a")
    lines = pull(ollama, model)
    statuses = [line.get("status") for line in lines]
    assert "error" not in str(lines[-1]) and statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert any(line.get("total") and "completed" in line for line in lines)
    _, (tags,) = call(ollama["port"], "GET", "/api/tags")
    listed = {m["name"]: m for m in tags["models"]}
    assert listed[model]["digest"] == sim_registry["refs"][model].split(":", 1)[1]
    assert listed[model]["details"]["format"] == "gguf" and listed[model]["details"]["family"] == "llama"


def test_generate_produces_tokens_on_cpu(sim_registry, ollama):
    model = ref(sim_registry, "tiny-a")
    pull(ollama, model)
    status, (out,) = call(ollama["port"], "POST", "/api/generate",
                          {"model": model, "prompt": "hello world", "stream": False,
                           "options": {"num_predict": 8, "seed": 1}})
    assert status == 200 and out["done"] and out["eval_count"] > 0, out
    _, (ps,) = call(ollama["port"], "GET", "/api/ps")
    running = {m["name"]: m for m in ps["models"]}
    assert running[model]["size_vram"] == 0 and running[model]["size"] > 0


def test_pulling_a_model_the_registry_lacks_fails(sim_registry, ollama):
    lines = pull(ollama, ref(sim_registry, "not-there"))
    assert lines[-1] == {"error": "pull model manifest: file does not exist"}


def test_second_pull_downloads_no_blob_bytes(sim_registry, ollama):
    model = ref(sim_registry, "tiny-b")
    pull(ollama, model)
    before = len(access_log(sim_registry))
    assert pull(ollama, model)[-1] == {"status": "success"}
    new = access_log(sim_registry)[before:]
    assert [e["path"] for e in new] == ["/v2/library/tiny-b/manifests/latest"]
    assert sum(e["bytes"] for e in new if "/blobs/" in e["path"]) == 0


def test_big_model_pull_reports_progress(sim_registry, ollama):
    model = ref(sim_registry, "tiny-big")
    meta = json.loads((sim_registry["models"]["tiny-big"] / "meta.json").read_text())
    before = len(access_log(sim_registry))
    start = time.monotonic()
    lines = pull(ollama, model)
    elapsed = time.monotonic() - start
    assert lines[-1] == {"status": "success"}
    progress = [line for line in lines if line.get("digest") == "sha256:" + meta["sha256"]]
    assert progress and all(line["total"] == meta["size"] >= 50_000_000 for line in progress)
    assert progress[-1]["completed"] == meta["size"]
    # the ranged parts (206) carry exactly the blob; Ollama's probe of the redirect target is a 200 it abandons
    ranged = [e for e in access_log(sim_registry)[before:] if meta["sha256"] in e["path"] and e["status"] == 206]
    assert sum(e["bytes"] for e in ranged) == meta["size"]
    print(f"pulled {meta['size']} bytes in {elapsed:.2f}s ({meta['size'] / elapsed / 1e6:.1f} MB/s)")


def test_ollama_create_from_the_modelfile_makes_the_published_layers(sim_registry, ollama, tmp_path):
    workdir = tmp_path / "tiny-c"
    shutil.copytree(sim_registry["models"]["tiny-c"], workdir)
    result = subprocess.run([str(ollama["binary"]), "create", "local-tiny-c", "-f", "Modelfile"], cwd=workdir,
                            env=ollama["env"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    created = json.loads((ollama["home"] / "models/manifests/registry.ollama.ai/library/local-tiny-c/latest").read_text())
    conn = http.client.HTTPConnection("127.0.0.1", sim_registry["state"]["proxy_port"], timeout=30)
    try:
        conn.request("GET", "/v2/library/tiny-c/manifests/latest", headers={"Accept": registry.MANIFEST_TYPE})
        published = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    assert created["config"]["digest"] == published["config"]["digest"]
    assert [(l["mediaType"], l["digest"]) for l in created["layers"]] == \
        [(l["mediaType"], l["digest"]) for l in published["layers"]]
