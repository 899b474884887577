"""The gate's nginx configuration in front of a real Ollama, without a cluster.

The role's template (roles/ollama_workload/templates/gate.conf.j2) is rendered by Ansible from the plan's gate
section (plugins/module_utils/gate.py, the function the plan calls), the key maps are the ones the gate_keys module
writes into the Secrets, and Debian's nginx (/usr/sbin/nginx, the program the simulator runs for the gate's image)
serves it on a loopback port, as a non-root user, in front of the simulator's Ollama build on 127.0.0.1 with its
models in a temp dir and tiny-a pulled from the simulator's registry through the gate. Clients are the real `openai`
and `ollama` Python packages and plain HTTP. Needs /usr/sbin/nginx, /usr/bin/docker-registry and the Ollama binary
(skipped with the reason otherwise).
"""

import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "sim"))
sys.path.insert(0, str(REPO / ".collections"))
pytest.importorskip("gguf")

from ansible_collections.llmops.ollama.plugins.module_utils import gate  # noqa: E402
from ansible_collections.llmops.ollama.plugins.module_utils.plan import Report  # noqa: E402
from sim import build, models, registry  # noqa: E402

pytestmark = pytest.mark.timeout(600)

NGINX = Path("/usr/sbin/nginx")
ADMIN_ROUTES = ("pull", "push", "create", "delete", "copy", "blobs")
CLIENT_ROUTES = ("generate", "chat", "embed", "embeddings", "show", "tags", "ps", "version")
# The pod's user: nginx runs unprivileged, as in the gate container.
UID = 65534


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(port, method, path, body=None, headers=None, timeout=120, raw=None):
    """(status, headers, body bytes) of one request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        conn.request(method, path, body=data, headers=dict({"Content-Type": "application/json"}, **(headers or {})))
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def wait_http(port, path, what, log=None, expect=(200, 204), tries=150):
    for _ in range(tries):
        try:
            if call(port, "GET", path, timeout=1)[0] in expect:
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{what} did not answer on {port}{path}: {log.read_text()[-2000:] if log else ''}")


def stop(proc):
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


# ---------------------------------------------------------------- the pieces

@pytest.fixture(scope="module")
def sim_registry(tmp_path_factory):
    if not Path(registry.REGISTRY_BIN).exists():
        pytest.skip(f"{registry.REGISTRY_BIN} is missing: apt-get install -y docker-registry")
    root = tmp_path_factory.mktemp("registry")
    generated = models.generate(root / "models", names=["tiny-a"])
    state = registry.start(root / "state", free_port(), free_port())
    try:
        registry.publish(state["url"], generated)
        yield {"host": f"127.0.0.1:{state['proxy_port']}", "models": generated}
    finally:
        registry.stop(root / "state")


@pytest.fixture(scope="module")
def ollama(tmp_path_factory):
    binary = build.binary_path("ollama")
    if not binary.exists():
        pytest.skip(f"{binary} is missing: build it with `make sim-build`")
    home = tmp_path_factory.mktemp("ollama")
    port = free_port()
    env = dict(os.environ, HOME=str(home), OLLAMA_HOST=f"127.0.0.1:{port}", OLLAMA_MODELS=str(home / "models"))
    log = home / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(binary), "serve"], env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(port, "/api/version", "ollama serve", log)
        yield {"port": port, "upstream": f"127.0.0.1:{port}"}
    finally:
        stop(proc)


class Gate:
    """nginx with the role's rendered gate configuration and the key maps the Secrets would hold."""

    def __init__(self, upstream, client_keys, admin_key, **settings):
        if not NGINX.exists():
            pytest.skip(f"{NGINX} is missing: apt-get install -y nginx-light")
        # Not under pytest's tmp dirs: those are private to this user, and nginx runs as another.
        root = self.root = Path(tempfile.mkdtemp(prefix="llmops-gate-"))
        root.chmod(0o755)
        self.port = free_port()
        self.client_keys, self.admin_key = client_keys, admin_key
        report = Report()
        self.plan = gate.plan_gate(dict(gate.DEFAULTS, **settings), "ollama", 2, "StatefulSet", "RollingUpdate",
                                   None, report)
        assert not report.errors, report.errors
        # The pod's paths and ports, moved to a temp dir and loopback.
        paths = {name: str(root / Path(path).name) for name, path in self.plan["paths"].items()}
        for path in paths.values():
            Path(path).mkdir(parents=True, exist_ok=True)
        self.plan.update(listen=f"127.0.0.1:{self.port}", upstream=upstream, paths=paths,
                         client_map=f"{paths['client_dir']}/{gate.CLIENT_MAP_FILE}",
                         admin_map=f"{paths['admin_dir']}/{gate.ADMIN_MAP_FILE}")
        Path(self.plan["client_map"]).write_text(gate.client_map(client_keys))
        Path(self.plan["admin_map"]).write_text(gate.admin_map(admin_key))
        self.conf = root / "nginx.conf"
        self.render()
        self.log = root / "nginx.log"
        self.log.touch()
        if os.geteuid() == 0:
            # As a container runtime does: the unprivileged user owns its stdio and its emptyDir.
            os.chown(self.log, UID, UID)
            os.chown(paths["tmp_dir"], UID, UID)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(NGINX), "-c", str(self.conf), "-e", "stderr", "-g", "daemon off;"], stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                **({"user": UID, "group": UID} if os.geteuid() == 0 else {}))
        wait_http(self.port, gate.HEALTH_PATH, "the gate", self.log, expect=(200,))

    def render(self):
        """The role's template, rendered by Ansible as the role renders it."""
        variables = self.root / "vars.json"
        variables.write_text(json.dumps({"ollama_workload_plan": {"gate": self.plan}}))
        template = REPO / "roles" / "ollama_workload" / "templates" / "gate.conf.j2"
        done = subprocess.run(
            [str(REPO / ".venv" / "bin" / "ansible"), "localhost", "-c", "local", "-m", "ansible.builtin.template",
             "-a", f"src={template} dest={self.conf}", "-e", f"@{variables}"],
            capture_output=True, text=True, timeout=120, cwd=REPO,
            env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_LOCALHOST_WARNING="false"))
        assert done.returncode == 0, done.stdout + done.stderr
        os.chmod(self.conf, 0o644)

    def url(self, path=""):
        return f"http://127.0.0.1:{self.port}{path}"

    def call(self, method, path, body=None, key=None, admin=None, **kwargs):
        headers = dict(kwargs.pop("headers", {}))
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if admin:
            headers[gate.ADMIN_HEADER] = admin
        return call(self.port, method, path, body, headers, **kwargs)

    def close(self):
        stop(self.proc)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def keys():
    return {"clients": [gate.generate_key(), "team-b." + "x" * 30 + "+/=="], "admin": gate.generate_key()}


@pytest.fixture(scope="module")
def gate_server(tmp_path_factory, ollama, sim_registry, keys):
    g = Gate(ollama["upstream"], keys["clients"], keys["admin"], gate_max_body_size="1m")
    try:
        # The model the clients use, pulled through the gate with the admin key (an admin route).
        model = f"{sim_registry['host']}/library/tiny-a:latest"
        status, _h, body = g.call("POST", "/api/pull", {"model": model, "insecure": True, "stream": False},
                                  admin=keys["admin"], timeout=300)
        assert status == 200 and json.loads(body)["status"] == "success", body
        g.model = model
        yield g
    finally:
        g.close()


# ---------------------------------------------------------------- clients

def test_no_key_or_a_wrong_key_is_refused_with_401(gate_server, keys):
    client = keys["clients"][0]
    wrong = [None, client[:-1] + ("A" if client[-1] != "A" else "B"), client.upper(), client + "x",
             keys["admin"],  # the admin key is no Bearer token
             ]
    for key in wrong:
        for name in CLIENT_ROUTES:
            status, headers, body = gate_server.call("POST", "/api/" + name, {}, key=key)
            assert status == 401, (name, status, body)
            assert headers.get("WWW-Authenticate") == 'Bearer realm="ollama"'
            assert "llmops.ollama gate" in json.loads(body)["error"]
        assert gate_server.call("GET", "/v1/models", key=key)[0] == 401
    assert gate_server.call("GET", "/api/tags", headers={"Authorization": "Basic " + client})[0] == 401


def test_each_client_key_lists_the_models(gate_server, keys):
    for key in keys["clients"]:
        status, _h, body = gate_server.call("GET", "/api/tags", key=key)
        assert status == 200 and [m["name"] for m in json.loads(body)["models"]] == [gate_server.model]
    # the scheme is case-insensitive, the key is not
    assert gate_server.call("GET", "/api/version",
                            headers={"Authorization": "bearer " + keys["clients"][0]})[0] == 200


def test_openai_chat_completion_streamed_and_not(gate_server, keys):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=gate_server.url("/v1"), api_key=keys["clients"][0], max_retries=0, timeout=120)
    message = [{"role": "user", "content": "Say hi"}]
    answer = client.chat.completions.create(model=gate_server.model, messages=message, max_tokens=8, seed=1)
    assert answer.choices[0].message.role == "assistant" and answer.usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(model=gate_server.model, messages=message, max_tokens=8,
                                                 stream=True))
    assert len(chunks) >= 2 and chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert [m.id for m in client.models.list().data] == [gate_server.model]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gate_server.url("/v1"), api_key="wrong-" + "k" * 40, max_retries=0).models.list()


def test_ollama_python_generate_and_list(gate_server, keys):
    ollama = pytest.importorskip("ollama")
    client = ollama.Client(host=gate_server.url(), headers={"Authorization": f"Bearer {keys['clients'][1]}"},
                           timeout=120)
    assert [m.model for m in client.list().models] == [gate_server.model]
    answer = client.generate(model=gate_server.model, prompt="hi", options={"num_predict": 8, "seed": 1})
    assert answer.done and answer.eval_count > 0
    parts = list(client.generate(model=gate_server.model, prompt="hi", options={"num_predict": 8}, stream=True))
    assert len(parts) >= 2 and parts[-1].done
    with pytest.raises(ollama.ResponseError) as refused:
        ollama.Client(host=gate_server.url()).list()
    assert refused.value.status_code == 401
    # an admin route through the client library: closed to a client key
    with pytest.raises(ollama.ResponseError) as closed:
        client.delete(gate_server.model)
    assert closed.value.status_code == 403


def test_a_stream_of_the_real_ollama_passes_whole(gate_server, keys):
    status, headers, body = gate_server.call("POST", "/api/generate", {
        "model": gate_server.model, "prompt": "hi", "options": {"num_predict": 24, "seed": 1}}, key=keys["clients"][0])
    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    assert status == 200 and headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in headers
    assert len(lines) >= 3 and lines[-1]["done"] and not any(line["done"] for line in lines[:-1])


# ---------------------------------------------------------------- admin routes

def test_every_admin_route_is_refused_with_a_client_key_and_without_one(gate_server, keys):
    for name in ADMIN_ROUTES:
        path = "/api/blobs/sha256:" + "0" * 64 if name == "blobs" else "/api/" + name
        method = "HEAD" if name == "blobs" else "POST"
        for key in keys["clients"]:
            assert gate_server.call(method, path, {}, key=key)[0] == 403, name
        assert gate_server.call(method, path, {})[0] == 401, name
        assert gate_server.call(method, path, {}, admin="wrong-" + keys["admin"][6:])[0] == 401, name


def test_every_admin_route_passes_with_the_admin_header(gate_server, keys, sim_registry):
    admin, model = keys["admin"], gate_server.model
    copy = f"{sim_registry['host']}/library/tiny-copy:latest"
    status, _h, body = gate_server.call("POST", "/api/copy", {"source": model, "destination": copy}, admin=admin)
    assert status == 200, body
    status, _h, body = gate_server.call("POST", "/api/push", {"model": copy, "insecure": True, "stream": False},
                                        admin=admin, timeout=300)
    assert status == 200 and json.loads(body)["status"] == "success", body
    status, _h, body = gate_server.call("POST", "/api/create", {"model": "tiny-made", "from": model,
                                                                 "stream": False}, admin=admin)
    assert status == 200, body
    digest = json.loads((sim_registry["models"]["tiny-a"] / "meta.json").read_text())["sha256"]
    assert gate_server.call("HEAD", f"/api/blobs/sha256:{digest}", admin=admin)[0] == 200
    for name in (copy, "tiny-made"):
        assert gate_server.call("DELETE", "/api/delete", {"model": name}, admin=admin)[0] == 200
    # the admin key also opens the client routes (the collection's own verification)
    status, _h, body = gate_server.call("GET", "/api/tags", admin=admin)
    assert status == 200 and [m["name"] for m in json.loads(body)["models"]] == [model]


# ---------------------------------------------------------------- the rest

def test_the_health_endpoints_answer_without_a_key(gate_server):
    assert gate_server.call("GET", gate.HEALTH_PATH)[:1] == (200,)
    status, _h, body = gate_server.call("GET", gate.READY_PATH)
    assert status == 204 and body == b""  # Ollama answered /api/version; its version is not shown
    assert gate_server.call("GET", gate.LIVE_PATH)[0] == 204


def test_readiness_fails_while_ollama_does_not_answer(keys):
    dead = Gate(f"127.0.0.1:{free_port()}", keys["clients"], keys["admin"])
    try:
        assert dead.call("GET", gate.HEALTH_PATH)[0] == 200  # the gate itself lives
        assert dead.call("GET", gate.READY_PATH, timeout=20)[0] >= 500
        assert dead.call("GET", gate.LIVE_PATH, timeout=20)[0] >= 500
    finally:
        dead.close()


def test_a_large_body_is_refused(gate_server, keys):
    key = keys["clients"][0]
    big = json.dumps({"model": gate_server.model, "prompt": "x" * (1024 * 1024)})
    status, _h, body = gate_server.call("POST", "/api/generate", raw=big, key=key)
    assert status == 413 and "ollama_gate_max_body_size" in json.loads(body)["error"]
    small = {"model": gate_server.model, "prompt": "x" * 20000, "options": {"num_predict": 1}, "stream": False}
    assert gate_server.call("POST", "/api/generate", small, key=key)[0] == 200


def test_everything_else_is_404(gate_server, keys):
    for path in ("/", "/api", "/api/", "/api/unknown", "/api/tagsx", "/api/tags/x", "/api/pull/x", "/metrics",
                 "/V1/models", "/llmops/_ollama_version"):
        for auth in ({"key": keys["clients"][0]}, {"admin": keys["admin"]}):
            assert gate_server.call("GET", path, **auth)[0] == 404, (path, auth)


def test_paths_are_normalized_before_the_rules(gate_server, keys):
    key = keys["clients"][0]
    for path in ("/v1/../api/pull", "/v1/%2e%2e/api/pull", "//api//pull", "/api/./pull", "/api/tags/../pull"):
        assert gate_server.call("POST", path, {}, key=key)[0] == 403, path


def test_no_key_reaches_the_log(gate_server, keys):
    log = gate_server.log.read_text()
    assert "access=10" in log and "access=01" in log and "access=00" in log
    for key in keys["clients"] + [keys["admin"]]:
        assert key not in log


class Echo(http.server.BaseHTTPRequestHandler):
    """Answers every request with the headers it got, like an upstream that shows what the gate sends; /api/generate
    streams four lines, PAUSE seconds apart (or ?pause=N), as Ollama streams tokens."""

    PAUSE = 0.5
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        path, _sep, query = self.path.partition("?")
        if path == "/api/generate":
            pause = float(query[len("pause="):]) if query.startswith("pause=") else self.PAUSE
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for index in range(4):
                line = json.dumps({"response": "t%d" % index, "done": index == 3, "sent": time.monotonic()}) + "\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line.encode()))
                self.wfile.flush()
                time.sleep(pause if index < 3 else 0)
            self.wfile.write(b"0\r\n\r\n")
            return
        body = json.dumps(dict(self.headers.items())).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *_args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # the gate closing a stream it timed out is the point of a test, not an error


@pytest.fixture
def echo():
    server = QuietServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def read_stream(port, key, query=""):
    """Each line of a streamed /api/generate with the time it arrived."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/api/generate" + query, body="{}", headers={"Authorization": f"Bearer {key}"})
        resp = conn.getresponse()
        lines = []
        while True:
            line = resp.readline()
            if not line:
                return resp.status, lines
            if line.strip():
                lines.append((time.monotonic(), json.loads(line)))
    finally:
        conn.close()


def test_a_stream_arrives_line_by_line(echo, keys):
    g = Gate(echo, keys["clients"], keys["admin"])
    try:
        status, lines = read_stream(g.port, keys["clients"][0])
        assert status == 200 and [line["response"] for _t, line in lines] == ["t0", "t1", "t2", "t3"]
        # each line reaches the client while the upstream still waits to send the next
        for arrived, line in lines[:-1]:
            assert arrived - line["sent"] < Echo.PAUSE * 0.8, lines
    finally:
        g.close()


def test_the_read_timeout_bounds_a_silent_answer(echo, keys):
    g = Gate(echo, keys["clients"], keys["admin"], gate_read_timeout=1)
    try:
        assert len(read_stream(g.port, keys["clients"][0], "?pause=0.3")[1]) == 4
        started = time.monotonic()
        status, lines = read_stream(g.port, keys["clients"][0], "?pause=2.5")
        # a pause longer than ollama_gate_read_timeout ends the stream at the gate, after about that long
        assert status == 200 and len(lines) == 1 and time.monotonic() - started < 2.4
    finally:
        g.close()


def test_the_keys_stop_at_the_gate(echo, keys):
    upstream = echo
    g = Gate(upstream, keys["clients"], keys["admin"])
    try:
        for auth in ({"key": keys["clients"][0]}, {"admin": keys["admin"]}):
            status, _h, body = g.call("GET", "/api/tags", **auth)
            seen = dict((k.lower(), v) for k, v in json.loads(body).items())
            assert status == 200 and "authorization" not in seen and "x-llmops-admin-key" not in seen
            # Ollama on a loopback address answers only a local Host
            assert seen["host"] == upstream
    finally:
        g.close()


def test_without_auth_required_the_inference_routes_are_open_and_the_admin_routes_are_not(ollama, gate_server, keys):
    g = Gate(ollama["upstream"], [], keys["admin"], auth_required=False)
    try:
        status, _h, body = g.call("GET", "/api/tags")
        assert status == 200 and json.loads(body)["models"]
        assert g.call("POST", "/v1/chat/completions", {"model": gate_server.model, "max_tokens": 2,
                                                        "messages": [{"role": "user", "content": "hi"}]})[0] == 200
        for name in ADMIN_ROUTES:
            path = "/api/blobs/sha256:" + "0" * 64 if name == "blobs" else "/api/" + name
            assert g.call("POST", path, {})[0] == 403, name  # no key needed here, but the admin key is
        assert g.call("POST", "/api/show", {"model": gate_server.model}, admin=keys["admin"])[0] == 200
    finally:
        g.close()


def test_an_opened_admin_endpoint_passes_with_a_client_key(ollama, gate_server, keys):
    g = Gate(ollama["upstream"], keys["clients"], keys["admin"], gate_open_admin_endpoints=["pull"])
    try:
        key = keys["clients"][0]
        status, _h, body = g.call("POST", "/api/pull", {"model": gate_server.model, "insecure": True,
                                                        "stream": False}, key=key, timeout=120)
        assert status == 200 and json.loads(body)["status"] == "success", body
        assert g.call("POST", "/api/pull", {})[0] == 401
        assert g.call("DELETE", "/api/delete", {"model": gate_server.model}, key=key)[0] == 403
    finally:
        g.close()
