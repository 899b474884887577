# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Ollama client without a network: name matching, what to pull or delete, pull progress with
stall retries, error classification, GPU residency and generation metrics, registry manifests.

About the /api/ps answers: the simulator runs Ollama's CPU build, which always reports size_vram = 0,
so GPU residency cannot be exercised end to end there. The GPU-shaped answers below have the shape
Ollama returns on real cards: FULL_OFFLOAD is the /api/ps example of Ollama v0.11.4's docs/api.md
(mistral:latest loaded entirely in GPU memory on a real card, size_vram == size); PARTIAL_OFFLOAD has
the same fields with size_vram < size, as Ollama reports a model that spilled layers to the CPU; and
OLD_CPU_ONLY is the shape of Ollama releases that omitted size_vram when it was 0 (ollama#4840).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils import ollama_client as oc

FULL_OFFLOAD = {"models": [{
    "name": "mistral:latest", "model": "mistral:latest", "size": 5137025024,
    "digest": "2ae6f6dd7a3dd734790bbbf58b8909a606e0e7e97e94b7604e0aa7ae4490e6d8",
    "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                "parameter_size": "7.2B", "quantization_level": "Q4_0"},
    "expires_at": "2024-06-04T14:38:31.83753-07:00", "size_vram": 5137025024}]}
PARTIAL_OFFLOAD = {"models": [{
    "name": "llama3.1:70b", "model": "llama3.1:70b", "size": 48471490560,
    "digest": "c0df3564cfe8a6d3a6a25c7ea1d0dbbe9bdf4ed1e2e1fc64cbc1d6f4af6c6d8b",
    "details": {"format": "gguf", "family": "llama", "parameter_size": "70.6B", "quantization_level": "Q4_K_M"},
    "expires_at": "2026-11-27T06:00:00Z", "size_vram": 25254854656, "context_length": 8192}]}
OLD_CPU_ONLY = {"models": [{"name": "tiny-a:latest", "model": "tiny-a:latest", "size": 22628096,
                            "digest": "b3b0904587a02ae79b28de7a47a5115c13b539aa55f3f0c0e7a266c4718085f5",
                            "expires_at": "2026-11-27T06:00:00Z"}]}
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


# ---------------------------------------------------------------- names

@pytest.mark.parametrize("a,b", [
    ("tiny-a", "registry.ollama.ai/library/tiny-a:latest"),
    ("tiny-a:latest", "TINY-A"),
    ("library/tiny-a", "tiny-a:latest"),
    ("10.1.2.3:5000/library/tiny-a", "10.1.2.3:5000/library/tiny-a:latest"),
    ("tiny-a@" + D1, "tiny-a"),
])
def test_names_match_with_ollamas_normalisation(a, b):
    assert oc.same_model(a, b)


@pytest.mark.parametrize("a,b", [
    ("tiny-a", "tiny-a:v2"),
    ("tiny-a", "other/tiny-a"),
    ("10.1.2.3:5000/library/tiny-a", "tiny-a"),
    ("bad name", "bad name"),
])
def test_different_models_do_not_match(a, b):
    assert not oc.same_model(a, b)


def test_wanted_models_from_strings_dicts_and_the_plan():
    wanted, errors = oc.parse_wanted([
        "llama3.2:3b",
        {"name": "tiny-a", "digest": D1},
        {"name": "tiny-b:latest", "given": "tiny-b", "full": "registry.ollama.ai/library/tiny-b:latest",
         "size_bytes": 10, "size": "10 B", "digest": None},
        "x.example:5000/team/m@" + D2,
        "TINY-A",  # the same model twice
    ])
    assert errors == []
    assert [w["name"] for w in wanted] == ["llama3.2:3b", "tiny-a:latest", "tiny-b:latest", "x.example:5000/team/m:latest"]
    assert [w["digest"] for w in wanted] == [None, D1, None, D2]
    assert wanted[3]["host"] == "x.example:5000" and wanted[3]["pull_name"] == "x.example:5000/team/m:latest"


@pytest.mark.parametrize("item,needle", [
    ("Bad Name", "is not a valid Ollama model name"),
    ("a/b/c/d", "too many"),
    ({"name": "tiny-a", "digest": "sha256:abc"}, "is not sha256:<64 hex digits>"),
    ({"name": "tiny-a@" + D1, "digest": D2}, "keep one of them"),
    ({"size": "1GB"}, "has no name"),
])
def test_bad_model_entries_are_refused_with_the_fix(item, needle):
    wanted, errors = oc.parse_wanted([item])
    assert wanted == [] and len(errors) == 1
    assert needle in errors[0] and "Fix:" in errors[0]


# ---------------------------------------------------------------- what changes

TAGS = [
    {"name": "tiny-a:latest", "digest": "1" * 64, "size": 100},
    {"name": "10.1.2.3:5000/library/tiny-b:latest", "digest": "2" * 64, "size": 200},
]


def wanted(*items):
    result, errors = oc.parse_wanted(list(items))
    assert not errors
    return result


def test_present_pulls_only_what_is_missing():
    changes = oc.plan_changes(wanted("tiny-a", "10.1.2.3:5000/library/tiny-b", "tiny-c"), TAGS, "present")
    assert [m["name"] for m in changes["pull"]] == ["tiny-c:latest"]
    assert [m["name"] for m in changes["keep"]] == ["tiny-a:latest", "10.1.2.3:5000/library/tiny-b:latest"]
    assert changes["delete"] == []


def test_a_pin_pulls_again_only_when_the_digest_differs():
    same = oc.plan_changes(wanted({"name": "tiny-a", "digest": D1}), TAGS, "present")
    other = oc.plan_changes(wanted({"name": "tiny-a", "digest": D2}), TAGS, "present")
    assert same["pull"] == [] and [m["name"] for m in other["pull"]] == ["tiny-a:latest"]


def test_prune_deletes_what_is_not_listed_and_absent_deletes_what_is():
    pruned = oc.plan_changes(wanted("tiny-a"), TAGS, "present", prune=True)
    assert [m["name"] for m in pruned["delete"]] == ["10.1.2.3:5000/library/tiny-b:latest"]
    assert oc.predicted_names(pruned["have"], pruned) == ["tiny-a:latest"]
    absent = oc.plan_changes(wanted("TINY-A", "tiny-z"), TAGS, "absent")
    assert [m["name"] for m in absent["delete"]] == ["tiny-a:latest"]
    assert [m["name"] for m in absent["keep"]] == ["tiny-z:latest"]


# ---------------------------------------------------------------- progress and retries

def pull_stream(digest_total=1000, steps=(0, 250, 1000)):
    """A recorded-shape /api/pull stream (what Ollama v0.11.4 sends, one JSON object per line)."""
    lines = [{"status": "pulling manifest"}]
    lines += [{"status": "pulling 1cd65e60c564", "digest": "sha256:" + "c" * 64, "total": digest_total,
               "completed": c} for c in steps]
    lines += [{"status": "pulling 26bf9a950757", "digest": "sha256:" + "d" * 64, "total": 61, "completed": 61},
              {"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
    return lines


class Clock(object):
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeEndpoint(oc.Endpoint):
    """Plays back one scripted stream per pull attempt; each item is a line, a number of seconds that
    pass on the clock, or an exception to raise."""

    description = 'pod test/ollama-0'

    def __init__(self, attempts, clock, tags=None):
        self.attempts = list(attempts)
        self.clock = clock
        self.calls = []
        self._tags = tags or []

    def _request(self, method, path, body, timeout):
        self.calls.append((method, path, body))
        if path == '/api/version':
            return {'version': '0.11.4'}
        if path == '/api/tags':
            return {'models': self._tags}
        return {}

    def _stream(self, method, path, body, connect_timeout, read_timeout):
        self.calls.append((method, path, body))
        for item in self.attempts.pop(0):
            if isinstance(item, Exception):
                raise item
            if isinstance(item, (int, float)):
                self.clock.now += item
                continue
            yield item


def test_progress_folds_layers_into_a_percentage():
    progress = oc.PullProgress(clock=Clock())
    for line in pull_stream()[:3]:
        progress.update(line)
    assert (progress.completed, progress.total, progress.percent) == (250, 1000, 25.0)
    for line in pull_stream()[3:]:
        progress.update(line)
    assert progress.success and progress.percent == 100.0 and progress.total == 1061


def test_a_pull_that_stops_progressing_is_retried_and_resumes():
    clock = Clock()
    stalled = [{"status": "pulling manifest"},
               {"status": "pulling 1cd65e60c564", "digest": "sha256:" + "c" * 64, "total": 1000, "completed": 400}]
    # Ollama keeps sending the same numbers every 60 ms while the registry is stopped.
    stalled += [31] + [stalled[-1]]
    endpoint = FakeEndpoint([stalled, pull_stream(steps=(400, 1000))], clock)
    seen = []
    outcome = oc.pull_model(endpoint, wanted("tiny-big")[0], stall_timeout=30, attempts=3,
                            on_progress=lambda m, p, a: seen.append((a, p.percent)), clock=clock, sleep=lambda s: None)
    assert outcome["attempts"] == 2 and outcome["progress"]["success"]
    assert (1, 40.0) in seen and seen[-1] == (2, 100.0)


def test_a_silent_stream_counts_as_a_stall_and_the_attempts_are_bounded():
    clock = Clock()
    silent = oc.OllamaError('pod test/ollama-0 sent nothing for 5s', kind=oc.STALLED)
    endpoint = FakeEndpoint([[{"status": "pulling manifest"}, silent]] * 3, clock)
    with pytest.raises(oc.OllamaError) as err:
        oc.pull_model(endpoint, wanted("tiny-big")[0], stall_timeout=5, attempts=3, clock=clock, sleep=lambda s: None)
    assert err.value.kind == oc.STALLED and "gave up after 3 attempts" in str(err.value)
    assert len([c for c in endpoint.calls if c[1] == '/api/pull']) == 3


def test_a_stream_cut_at_its_first_line_ends_with_a_non_streamed_pull():
    cut = oc.OllamaError('the stream from pod test/ollama-0 broke off: Response ended prematurely', kind=oc.TRANSIENT)
    endpoint = FakeEndpoint([[{"status": "pulling manifest"}, cut]] * 2, Clock())
    endpoint._request = lambda method, path, body, timeout: (
        endpoint.calls.append((method, path, body, timeout)) or {"status": "success"})
    outcome = oc.pull_model(endpoint, wanted("tiny-a")[0], attempts=3, total_timeout=99, sleep=lambda s: None)
    assert outcome["attempts"] == 3 and outcome["streamed"] is False
    assert endpoint.calls[-1] == ('POST', '/api/pull', {'model': 'tiny-a:latest', 'insecure': False, 'stream': False},
                                  99)


def test_a_broken_stream_of_a_model_that_arrived_anyway_is_done():
    cut = oc.OllamaError('the stream broke off', kind=oc.TRANSIENT)
    endpoint = FakeEndpoint([pull_stream()[:3] + [cut]], Clock())
    outcome = oc.pull_model(endpoint, wanted("tiny-a")[0], attempts=3, done_check=lambda: True,
                            sleep=lambda s: None)
    assert outcome["attempts"] == 1 and outcome["progress"]["success"]


def test_an_unknown_model_is_not_retried():
    endpoint = FakeEndpoint([[{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]],
                            Clock())
    with pytest.raises(oc.OllamaError) as err:
        oc.pull_model(endpoint, wanted("not-there")[0], attempts=3, sleep=lambda s: None)
    assert err.value.kind == oc.UNKNOWN_MODEL
    assert "file does not exist" in str(err.value) and "Fix: the registry has no model" in str(err.value)
    assert len(endpoint.calls) == 1


@pytest.mark.parametrize("text,kind", [
    ("pull model manifest: file does not exist", oc.UNKNOWN_MODEL),
    ("invalid model name", oc.INVALID_NAME),
    ("write /root/.ollama/models/blobs/sha256-1cd6-partial: no space left on device", oc.DISK_FULL),
    ("insecure protocol http", oc.INSECURE),
    ("pull model manifest: Get \"http://r:5000/v2/\": dial tcp 10.0.0.1:5000: connect: connection refused",
     oc.TRANSIENT),
    ("max retries exceeded: unexpected EOF", oc.TRANSIENT),
    ("something else", oc.HTTP),
])
def test_errors_are_classified_with_a_fix(text, kind):
    got, fix = oc.classify(text)
    assert got == kind and fix


def test_a_full_disk_names_the_claim_size_fix():
    full = {"error": "write /root/.ollama/models/blobs/x: no space left on device"}
    endpoint = FakeEndpoint([pull_stream()[:2] + [full]], Clock())
    with pytest.raises(oc.OllamaError) as err:
        oc.pull_model(endpoint, wanted("tiny-big")[0], sleep=lambda s: None)
    assert err.value.kind == oc.DISK_FULL and "ollama_claim_size" in str(err.value)


def test_sync_in_check_mode_only_reads():
    endpoint = FakeEndpoint([], Clock(), tags=TAGS)
    result, errors = oc.sync_models(endpoint, wanted("tiny-a", "tiny-c"), prune=True, check_mode=True)
    assert errors == [] and result["changed"]
    assert result["pulled"] == ["tiny-c:latest"] and result["deleted"] == ["10.1.2.3:5000/library/tiny-b:latest"]
    assert result["before"] == ["10.1.2.3:5000/library/tiny-b:latest", "tiny-a:latest"]
    assert result["after"] == ["tiny-a:latest", "tiny-c:latest"]
    assert all(c[0] == 'GET' for c in endpoint.calls)


def test_progress_file_is_written_whole(tmp_path):
    clock = Clock()
    path = tmp_path / "p.json"
    progress = oc.ProgressFile(str(path), "pod x", interval=1.0, clock=clock)
    progress.update("tiny-a", percent=10.0)
    progress.update("tiny-a", percent=20.0)  # within the interval: not written
    assert json.loads(path.read_text())["models"]["tiny-a"]["percent"] == 10.0
    clock.now = 2
    progress.update("tiny-a", percent=30.0)
    assert json.loads(path.read_text())["models"]["tiny-a"]["percent"] == 30.0
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]


# ---------------------------------------------------------------- residency and generation

def test_a_model_fully_in_gpu_memory():
    loaded = oc.loaded_models(FULL_OFFLOAD["models"])[0]
    assert loaded["fully_on_gpu"] and loaded["gpu_percent"] == 100.0 and loaded["processor"] == "100% GPU"


def test_a_model_that_spilled_to_the_cpu():
    loaded = oc.find_loaded(PARTIAL_OFFLOAD["models"], "llama3.1:70b")
    assert not loaded["fully_on_gpu"]
    assert loaded["gpu_percent"] == 52.1
    assert loaded["processor"] == "48%/52% CPU/GPU"  # what `ollama ps` prints for these numbers


def test_a_missing_size_vram_means_cpu_only():
    loaded = oc.find_loaded(OLD_CPU_ONLY["models"], "tiny-a")
    assert loaded["size_vram"] == 0 and loaded["processor"] == "100% CPU" and not loaded["fully_on_gpu"]


@pytest.mark.parametrize("size,vram,text", [(0, 0, "100% CPU"), (10, 10, "100% GPU"), (10, 12, "Unknown"),
                                            (200, 1, "100%/0% CPU/GPU"), (200, 199, "0%/100% CPU/GPU")])
def test_processor_matches_ollama_ps(size, vram, text):
    assert oc.processor(size, vram) == text


def test_generation_metrics_from_nanoseconds():
    metrics = oc.generation_metrics({"eval_count": 16, "eval_duration": 200000000, "load_duration": 1500000000,
                                     "total_duration": 2000000000, "prompt_eval_count": 7})
    assert metrics["tokens_per_second"] == 80.0 and metrics["load_seconds"] == 1.5 and metrics["total_seconds"] == 2.0


class GenEndpoint(oc.Endpoint):
    description = 'pod test/ollama-0'

    def __init__(self, ps):
        self.ps_answer = ps

    def _request(self, method, path, body, timeout):
        if path == '/api/generate':
            return {"done": True, "response": "blue", "eval_count": 16, "eval_duration": 100000000,
                    "load_duration": 0, "total_duration": 200000000}
        return self.ps_answer


def test_generate_check_fails_off_the_gpu_unless_cpu_is_allowed():
    result, failures = oc.generate_check(GenEndpoint(PARTIAL_OFFLOAD), "llama3.1:70b")
    assert len(failures) == 1 and "not fully in GPU memory" in failures[0] and "allow_cpu: true" in failures[0]
    result, failures = oc.generate_check(GenEndpoint(PARTIAL_OFFLOAD), "llama3.1:70b", allow_cpu=True)
    assert failures == [] and result["tokens_per_second"] == 160.0
    result, failures = oc.generate_check(GenEndpoint(FULL_OFFLOAD), "mistral", min_tokens_per_second=200)
    assert len(failures) == 1 and "below the minimum 200.00" in failures[0]


# ---------------------------------------------------------------- registry manifests

class Response(object):
    def __init__(self, body, headers=None):
        self.body = body
        self.headers = headers or {}

    def read(self):
        return self.body


MANIFEST = json.dumps({"schemaVersion": 2, "config": {"digest": D1, "size": 486},
                       "layers": [{"digest": D2, "size": 57891200}, {"digest": D1, "size": 151}]}).encode()


def test_manifest_urls():
    assert oc.manifest_url("llama3.2:3b") == "https://registry.ollama.ai/v2/library/llama3.2/manifests/3b"
    assert oc.manifest_url("r:5000/team/m", ["r:5000"]) == "http://r:5000/v2/team/m/manifests/latest"


def test_sizes_come_from_the_manifest_else_the_declared_size():
    seen = []

    def opener(url, **kwargs):
        seen.append((url, kwargs["timeout"]))
        if "unreachable" in url:
            raise OSError("timed out")
        return Response(MANIFEST, {"Docker-Content-Digest": D2})

    models, details = oc.resolve_model_sizes(
        ["r:5000/library/tiny-big", {"name": "unreachable.example/library/x", "size": "2GB"},
         {"name": "r:5000/library/pinned", "digest": D1}],
        insecure_registries=["r:5000"], timeout=4, opener=opener, architecture=False)
    assert models[0] == {"name": "r:5000/library/tiny-big", "size": 57891837}
    assert models[1] == {"name": "unreachable.example/library/x", "size": "2GB"}
    assert details[1]["source"] == "declared" and "timed out" in details[1]["error"]
    assert details[2]["digest_mismatch"] and details[2]["registry_digest"] == D2
    assert all(entry[1] == 4 for entry in seen)


# ---------------------------------------------------------------- the gate's keys on the wire (recorded calls, no network)

class RecordingApi(object):
    """Stands in for k8s.Api: records what a ProxyEndpoint asks the API server for."""

    def __init__(self, error=None):
        self.calls = []
        self.error = error

    def request(self, method, path, body=None, timeout=None, headers=None):
        self.calls.append((method, path, dict(headers or {})))
        if self.error:
            raise self.error
        return {'version': '0.11.4'}

    def stream_lines(self, method, path, body=None, timeout=None, headers=None):
        self.calls.append((method, path, dict(headers or {})))
        yield {'status': 'success'}


def test_the_pod_proxy_goes_to_the_gate_with_the_admin_header():
    api = RecordingApi()
    pod = oc.ProxyEndpoint(api, 'ollama', pod='ollama-0', admin_key='A' * 43)
    assert pod.version() == '0.11.4'
    list(pod.stream('POST', '/api/pull', {'model': 'tiny-a'}, 5, 5))
    assert api.calls[0] == ('GET', '/api/v1/namespaces/ollama/pods/ollama-0:8080/proxy/api/version',
                            {'X-Llmops-Admin-Key': 'A' * 43})
    assert api.calls[1][1].endswith('pods/ollama-0:8080/proxy/api/pull') and 'X-Llmops-Admin-Key' in api.calls[1][2]
    # Authorization belongs to the API server's own credentials, never to the gate.
    assert all('Authorization' not in headers for _m, _p, headers in api.calls)


def test_a_service_keeps_its_port_and_a_plain_pod_takes_its_own():
    api = RecordingApi()
    oc.ProxyEndpoint(api, 'ollama', service='ollama').version()
    oc.ProxyEndpoint(api, 'ollama', pod='plain', port=11434).version()
    assert api.calls[0][1] == '/api/v1/namespaces/ollama/services/ollama:11434/proxy/api/version'
    assert api.calls[1][1] == '/api/v1/namespaces/ollama/pods/plain:11434/proxy/api/version'
    assert api.calls[0][2] == {} and api.calls[1][2] == {}


def test_a_refusal_of_the_gate_names_the_admin_key():
    from ansible_collections.llmops.ollama.plugins.module_utils.k8s import ClusterError
    refused = ClusterError('GET /api/v1/namespaces/o/pods/p:8080/proxy/api/tags answered 401: unauthorized: the '
                           'llmops.ollama gate wants Authorization: Bearer <key>', 'kubeconfig fix', status=401)
    with pytest.raises(oc.OllamaError) as raised:
        oc.ProxyEndpoint(RecordingApi(error=refused), 'o', pod='p').version()
    assert raised.value.kind == oc.UNAUTHORIZED and 'admin_key' in raised.value.fix and 'gate-admin' in raised.value.fix
    # the API server's own 401 keeps its kubeconfig fix
    own = ClusterError('GET /api/v1/namespaces answered 401: Unauthorized', 'renew the credentials', status=401)
    with pytest.raises(oc.OllamaError) as raised:
        oc.ProxyEndpoint(RecordingApi(error=own), 'o', pod='p').version()
    assert raised.value.fix == 'renew the credentials'


def test_a_url_sends_the_client_key_as_bearer_and_the_admin_key_in_its_header():
    sent = []

    def opener(url, **kwargs):
        sent.append((url, kwargs['headers']))

        class Answer(object):
            def read(self):
                return b'{"version": "0.11.4"}'
        return Answer()

    oc.UrlEndpoint('https://ollama.example.com/', api_key='k' * 40, opener=opener).version()
    oc.UrlEndpoint('https://ollama.example.com', admin_key='A' * 43, headers={'X-Extra': '1'},
                   opener=opener).version()
    assert sent[0] == ('https://ollama.example.com/api/version',
                       {'Authorization': 'Bearer ' + 'k' * 40, 'Accept': 'application/json'})
    assert sent[1][1] == {'X-Llmops-Admin-Key': 'A' * 43, 'X-Extra': '1', 'Accept': 'application/json'}


class _SecretApi(object):
    """A stand-in for k8s.Api (pure logic: which Secret is read and how its key is decoded)."""

    def __init__(self, secrets):
        self.secrets, self.paths = secrets, []

    def get_or_none(self, path):
        self.paths.append(path)
        return self.secrets.get(path)


class _Module(object):
    def __init__(self, **params):
        self.params = dict(dict(admin_key=None, admin_key_secret=None), **params)
        self.no_log_values = set()


SECRET_PATH = "/api/v1/namespaces/ns/secrets/ollama-gate-admin"


def test_the_admin_key_is_read_from_its_secret_and_kept_out_of_the_result():
    import base64
    api = _SecretApi({SECRET_PATH: {"data": {"key": base64.b64encode(b"k" * 43).decode()}}})
    module = _Module(admin_key="", admin_key_secret="ollama-gate-admin")
    assert oc.admin_key(module, api, "ns") == "k" * 43
    assert api.paths == [SECRET_PATH]
    assert module.no_log_values == {"k" * 43}


def test_a_given_admin_key_wins_and_a_missing_secret_means_none():
    api = _SecretApi({})
    assert oc.admin_key(_Module(admin_key="given", admin_key_secret="ollama-gate-admin"), api, "ns") == "given"
    assert api.paths == []
    assert oc.admin_key(_Module(admin_key_secret="ollama-gate-admin"), api, "ns") == ""
    assert oc.admin_key(_Module(), api, "ns") is None
    assert api.paths == [SECRET_PATH]
