"""Local OCI registry for the simulator: Debian's docker-registry behind a small redirecting proxy.

Ollama v0.11.4 downloads a blob by first GETting /v2/<name>/blobs/<digest> and taking the URL of the
final response's Location header (server/download.go; ollama issue #7244): docker-registry with
filesystem storage answers 200 without one and the pull fails with "no Location header in response".
The proxy answers that GET with a 307 to /_sim/blobs/<name>/<digest> on itself, which streams the blob
from docker-registry (Range passes through) and names itself in Location. Everything else is forwarded.
The proxy logs one line per request, "METHOD PATH STATUS BYTES_SENT", so tests can count downloads, and
the same request as one JSON line in the request log with its client address and its start and end (Unix
seconds), so tests can tell which pulls ran at the same time.
"""

import argparse
import hashlib
import http.client
import json
import os
import re
import signal
import socketserver
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .errors import SimError
from .paths import SIM_ROOT

REGISTRY_BIN = "/usr/bin/docker-registry"
STREAM_PREFIX = "/_sim/blobs/"
BLOB_RE = re.compile(r"^/v2/(.+)/blobs/(sha256:[0-9a-f]{64})$")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
              "upgrade", "content-length", "host", "date", "server"}
UPSTREAM_TIMEOUT = 60
CHUNK = 1 << 16

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"


# ---------------------------------------------------------------- proxy (runs in its own process)

class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections end, so handler threads do too
    upstream = ("127.0.0.1", 5000)
    access_log = None
    request_log = None
    log_lock = threading.Lock()

    def log_message(self, format, *args):  # the access log replaces BaseHTTPRequestHandler's stderr lines
        pass

    def _log(self, status, sent):
        end = time.time()
        with self.log_lock:
            self.access_log.write(f"{self.command} {self.path} {status} {sent}\n")
            self.access_log.flush()
            if self.request_log is not None:
                self.request_log.write(json.dumps({
                    "client": self.client_address[0], "method": self.command, "path": self.path, "status": status,
                    "bytes": sent, "start": round(self._started, 6), "end": round(end, 6)}) + "\n")
                self.request_log.flush()

    def _handle(self):
        self._started = time.time()  # the request's line and headers are read: it starts now
        host = self.headers.get("Host") or "%s:%s" % self.server.server_address[:2]
        path = urllib.parse.urlsplit(self.path).path
        match = BLOB_RE.match(path)
        if self.command == "GET" and match:
            self.send_response(307)
            self.send_header("Location", f"http://{host}{STREAM_PREFIX}{match.group(1)}/{match.group(2)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            self._log(307, 0)
            return
        location = None
        upstream_path = self.path
        if path.startswith(STREAM_PREFIX) and self.command in ("GET", "HEAD"):
            name, _, digest = path[len(STREAM_PREFIX):].rpartition("/")
            upstream_path = f"/v2/{name}/blobs/{digest}"
            # Ollama reads the direct URL from the final response's Location, after following the 307
            location = f"http://{host}{path}"
        self._forward(upstream_path, location)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def _forward(self, upstream_path, location):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.send_error(411, "chunked request bodies are not supported by the sim registry proxy")
            self._log(411, 0)
            return
        length = int(self.headers.get("Content-Length") or 0)
        conn = http.client.HTTPConnection(*self.upstream, timeout=UPSTREAM_TIMEOUT)
        try:
            conn.putrequest(self.command, upstream_path, skip_host=True, skip_accept_encoding=True)
            for key, value in self.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    conn.putheader(key, value)
            # docker-registry builds upload Locations from Host, so clients keep talking to the proxy
            conn.putheader("Host", self.headers.get("Host", "%s:%s" % self.upstream))
            if length or self.command in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(length))
            conn.endheaders()
            remaining = length
            while remaining > 0:
                block = self.rfile.read(min(CHUNK, remaining))
                if not block:
                    break
                conn.send(block)
                remaining -= len(block)
            resp = conn.getresponse()
        except OSError as exc:
            conn.close()
            self.send_error(502, f"sim registry proxy: upstream {self.upstream}: {exc}")
            self._log(502, 0)
            return
        sent = 0
        try:
            self.send_response(resp.status)
            for key, value in resp.getheaders():
                if key.lower() not in HOP_BY_HOP and not (location and key.lower() == "location"):
                    self.send_header(key, value)
            if location:
                self.send_header("Location", location)
            has_body = self.command != "HEAD" and resp.status not in (204, 304)
            if resp.getheader("Content-Length") is not None:
                self.send_header("Content-Length", resp.getheader("Content-Length"))
            elif has_body:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            while has_body:
                block = resp.read(CHUNK)
                if not block:
                    break
                self.wfile.write(block)
                sent += len(block)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client hung up, e.g. Ollama probing the redirect target
        finally:
            conn.close()
            self._log(resp.status, sent)


class _Server(ThreadingHTTPServer):
    def server_bind(self):
        # HTTPServer.server_bind resolves the address's FQDN: in a network namespace with no DNS
        # that lookup stalls for ~10 s before the proxy listens.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


def serve_proxy(listen: str, upstream: str, access_log: Path, request_log: Path = None) -> None:
    host, port = listen.rsplit(":", 1)
    up_host, up_port = upstream.rsplit(":", 1)
    handler = type("Handler", (_ProxyHandler,), {
        "upstream": (up_host, int(up_port)),
        "access_log": open(access_log, "a", encoding="utf-8"),
        "request_log": open(request_log, "a", encoding="utf-8") if request_log else None,
    })
    server = _Server((host, int(port)), handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


# ---------------------------------------------------------------- processes

def _config(storage: Path, port: int) -> str:
    return f"""version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
  secret: llmops-ollama-sim
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: false
"""


def _state_file(state_dir: Path) -> Path:
    return Path(state_dir) / "registry.json"


def _read_state(state_dir: Path) -> dict:
    try:
        return json.loads(_state_file(state_dir).read_text())
    except (OSError, ValueError):
        return {}


def _pid_matches(pid: int, marker: str) -> bool:
    """The pid is alive, not a zombie, and its command line names marker (guards against pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and marker in cmdline


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def is_up(state_dir: Path) -> bool:
    state = _read_state(state_dir)
    if not state:
        return False
    return (_pid_matches(state["registry_pid"], state["config"])
            and _pid_matches(state["proxy_pid"], state["access_log"])
            and _http_ok(f"{state['url']}/v2/"))


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "no log"


def start(state_dir: Path, registry_port: int, proxy_port: int, storage_dir: Path = None,
          listen_host: str = "127.0.0.1", netns: str = None, extra_env: dict = None) -> dict:
    """Start docker-registry on 127.0.0.1:registry_port and the proxy on listen_host:proxy_port, detached.

    With netns, both run inside that network namespace: the registry on the namespace's own loopback,
    the proxy on an address of the namespace that pods and the host reach.
    """
    state_dir = Path(state_dir).resolve()
    state = _read_state(state_dir)
    if state and state.get("registry_port") == registry_port and state.get("proxy_port") == proxy_port \
            and is_up(state_dir):
        return state
    stop(state_dir)
    if not Path(REGISTRY_BIN).exists():
        raise SimError(f"{REGISTRY_BIN} is missing", "apt-get update && apt-get install -y docker-registry")
    storage = Path(storage_dir or state_dir / "storage").resolve()
    storage.mkdir(parents=True, exist_ok=True)
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    config = state_dir / "registry-config.yml"
    config.write_text(_config(storage, registry_port))
    state = {
        "registry_port": registry_port, "proxy_port": proxy_port,
        "url": f"http://{listen_host}:{proxy_port}", "registry_url": f"http://127.0.0.1:{registry_port}",
        "config": str(config), "storage": str(storage),
        "registry_log": str(logs / "registry.log"), "proxy_log": str(logs / "registry-proxy.log"),
        "access_log": str(logs / "registry-access.log"),
        "request_log": str(logs / "registry-requests.jsonl"),
    }
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(SIM_ROOT), os.environ.get("PYTHONPATH")])),
               **(extra_env or {}))
    prefix = ["ip", "netns", "exec", netns] if netns else []
    with open(state["registry_log"], "ab") as reg_log, open(state["proxy_log"], "ab") as proxy_log:
        registry = subprocess.Popen(prefix + [REGISTRY_BIN, "serve", str(config)], stdin=subprocess.DEVNULL,
                                    stdout=reg_log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        proxy = subprocess.Popen(
            prefix + [sys.executable, "-m", "sim.registry", "proxy", "--listen", f"{listen_host}:{proxy_port}",
             "--upstream", f"127.0.0.1:{registry_port}", "--access-log", state["access_log"],
             "--request-log", state["request_log"]],
            stdin=subprocess.DEVNULL, stdout=proxy_log, stderr=subprocess.STDOUT, start_new_session=True,
            env=env, cwd=str(SIM_ROOT))
    state.update(registry_pid=registry.pid, proxy_pid=proxy.pid)
    (state_dir / "registry.pid").write_text(f"{registry.pid}\n")
    (state_dir / "registry-proxy.pid").write_text(f"{proxy.pid}\n")
    _state_file(state_dir).write_text(json.dumps(state, indent=2) + "\n")
    for _ in range(100):  # up to ~10 s
        if registry.poll() is not None or proxy.poll() is not None:
            break
        if _http_ok(f"{state['url']}/v2/", timeout=0.5):
            return state
        time.sleep(0.1)
    stop(state_dir)
    raise SimError(f"the sim registry did not come up on 127.0.0.1:{registry_port} / proxy {listen_host}:{proxy_port}: "
                   f"registry log: {_tail(Path(state['registry_log']))}; proxy log: {_tail(Path(state['proxy_log']))}",
                   "free those ports (ss -ltnp) or pick others, then retry")


def stop(state_dir: Path, timeout: float = 5.0) -> None:
    state = _read_state(state_dir)
    procs = [(state.get("proxy_pid"), state.get("access_log")), (state.get("registry_pid"), state.get("config"))]
    procs = [(pid, marker) for pid, marker in procs if pid and marker and _pid_matches(pid, marker)]
    for pid, _ in procs:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid, marker in procs:
        while time.monotonic() < deadline and _alive(pid, marker):
            time.sleep(0.05)
        if _alive(pid, marker):
            os.kill(pid, signal.SIGKILL)
            _alive(pid, marker)
    for name in ("registry.json", "registry.pid", "registry-proxy.pid"):
        (Path(state_dir) / name).unlink(missing_ok=True)


def _alive(pid: int, marker: str) -> bool:
    try:  # reap it if it is our child, so it does not linger as a zombie
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return _pid_matches(pid, marker)


def read_request_log(path: Path) -> list:
    """The request log's entries: client, method, path, status, bytes, start and end (Unix seconds)."""
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def read_access_log(path: Path) -> list:
    entries = []
    for line in Path(path).read_text().splitlines():
        method, req_path, status, sent = line.split(" ")
        entries.append({"method": method, "path": req_path, "status": int(status), "bytes": int(sent)})
    return entries


# ---------------------------------------------------------------- publishing Ollama models

def _go_json(obj, sort_keys=False) -> bytes:
    """Bytes as Go's encoding/json writes them (compact, <>& escaped), so digests match `ollama create`."""
    text = json.dumps(obj, separators=(",", ":"), sort_keys=sort_keys)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def _human_number(n: int) -> str:
    """format.HumanNumber from Ollama: the config's model_type."""
    for unit, size, decimals in (("B", 10**9, 1), ("M", 10**6, 2)):
        if n >= size:
            x = n / size
            return f"{x:.0f}{unit}" if x == int(x) else f"{x:.{decimals}f}{unit}"
    return f"{n / 1000:.0f}K" if n >= 1000 else str(n)


def ollama_artifacts(model_dir: Path) -> tuple:
    """(config bytes, [(media type, bytes or Path, digest, size)]) as `ollama create` makes them."""
    model_dir = Path(model_dir)
    meta = json.loads((model_dir / "meta.json").read_text())
    blobs = [("application/vnd.ollama.image.model", model_dir / "model.gguf", "sha256:" + meta["sha256"], meta["size"])]
    for media, data in (("template", meta["template"].encode()), ("license", meta["license"].encode()),
                        ("params", _go_json(meta["params"], sort_keys=True) + b"\n")):
        blobs.append((f"application/vnd.ollama.image.{media}", data,
                      "sha256:" + hashlib.sha256(data).hexdigest(), len(data)))
    config = _go_json({
        "model_format": "gguf", "model_family": "llama", "model_families": ["llama"],
        "model_type": _human_number(meta["parameter_count"]), "file_type": meta["file_type"],
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [digest for _, _, digest, _ in blobs]},
    }) + b"\n"
    return config, blobs


def _request(base: str, method: str, path: str, body=None, headers=None, length: int = None):
    parts = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=UPSTREAM_TIMEOUT)
    try:
        headers = dict(headers or {})
        if body is not None:
            headers["Content-Length"] = str(length if length is not None else len(body))
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    except OSError as exc:
        raise SimError(f"registry {base}: {method} {path}: {exc}", "start it with sim.registry.start()") from exc
    finally:
        conn.close()


def _push_blob(base: str, repo: str, data, digest: str, size: int) -> None:
    if _request(base, "HEAD", f"/v2/{repo}/blobs/{digest}")[0] == 200:
        return
    status, headers, body = _request(base, "POST", f"/v2/{repo}/blobs/uploads/", body=b"")
    if status != 202:
        raise SimError(f"starting a blob upload to {repo} failed: {status} {body[:200]!r}", "see the registry log")
    location = urllib.parse.urlsplit(headers["location"])
    target = location.path + "?" + "&".join(filter(None, [location.query, "digest=" + digest]))
    if isinstance(data, Path):
        with data.open("rb") as fh:
            status, _, body = _request(base, "PUT", target, body=fh, length=size,
                                       headers={"Content-Type": "application/octet-stream"})
    else:
        status, _, body = _request(base, "PUT", target, body=data, headers={"Content-Type": "application/octet-stream"})
    if status != 201:
        raise SimError(f"uploading {digest} to {repo} failed: {status} {body[:200]!r}", "see the registry log")


def publish(url: str, models: dict, namespace: str = "library", tag: str = "latest") -> dict:
    """Push each generated model as an Ollama manifest; skip what the registry already holds."""
    host = urllib.parse.urlsplit(url).netloc
    out = {}
    for name, model_dir in models.items():
        repo = f"{namespace}/{name}"
        config, blobs = ollama_artifacts(model_dir)
        config_desc = {"mediaType": CONFIG_TYPE, "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                       "size": len(config)}
        manifest = _go_json({
            "schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": config_desc,
            "layers": [{"mediaType": media, "digest": digest, "size": size} for media, _, digest, size in blobs],
        })
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        out[f"{host}/{repo}:{tag}"] = digest
        status, headers, _ = _request(url, "HEAD", f"/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_TYPE})
        if status == 200 and headers.get("docker-content-digest") == digest:
            continue
        for media, data, blob_digest, size in blobs:
            _push_blob(url, repo, data, blob_digest, size)
        _push_blob(url, repo, config, config_desc["digest"], len(config))
        status, headers, body = _request(url, "PUT", f"/v2/{repo}/manifests/{tag}", body=manifest,
                                         headers={"Content-Type": MANIFEST_TYPE})
        if status != 201 or headers.get("docker-content-digest") != digest:
            raise SimError(f"pushing the manifest of {repo}:{tag} failed: {status} {body[:200]!r}",
                           "see the registry log")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sim.registry")
    sub = parser.add_subparsers(dest="cmd", required=True)
    proxy = sub.add_parser("proxy", help="run the redirecting proxy in front of docker-registry")
    proxy.add_argument("--listen", required=True)
    proxy.add_argument("--upstream", required=True)
    proxy.add_argument("--access-log", required=True, type=Path)
    proxy.add_argument("--request-log", type=Path, help="JSON lines with each request's client, start and end")
    args = parser.parse_args(argv)
    serve_proxy(args.listen, args.upstream, args.access_log, args.request_log)


if __name__ == "__main__":
    main()
