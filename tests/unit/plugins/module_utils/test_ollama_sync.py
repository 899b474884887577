# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Syncing several endpoints at once, without a network: the endpoints below are in-memory stand-ins for Ollama
(mocks, said so: they answer /api/version, /api/tags and /api/pull as Ollama v0.11.4 does, in shape only). The
pulls on the real simulator, and what its registry saw of them, are in
tests/integration/collection/test_models.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import threading

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils import ollama_client as oc

DIGESTS = {"tiny-a:latest": "a" * 64, "tiny-b:latest": "b" * 64, "tiny-c:latest": "c" * 64}


class Store(oc.Endpoint):
    """An Ollama store in memory. Every pull goes through ``gate`` (a callable), which lets a test hold pulls."""

    def __init__(self, name, have=(), gate=None, down=False):
        self.description = 'pod test/%s' % name
        self.models = set(have)
        self.gate = gate or (lambda endpoint, model: None)
        self.down = down
        self.pulled = []

    def _request(self, method, path, body, timeout):
        if self.down:
            raise oc.OllamaError('%s does not answer on port 8080: connection refused' % self.description,
                                 'check that the pod is Running', kind=oc.UNREACHABLE)
        if path == '/api/version':
            return {'version': '0.11.4'}
        if path == '/api/tags':
            return {'models': [{'name': m, 'digest': DIGESTS[m], 'size': 10} for m in sorted(self.models)]}
        if path == '/api/delete':
            self.models.discard(body['model'])
            return {}
        raise AssertionError(path)

    def _stream(self, method, path, body, connect_timeout, read_timeout):
        name = body['model']
        yield {'status': 'pulling manifest'}
        self.gate(self, name)
        yield {'status': 'pulling x', 'digest': 'sha256:' + DIGESTS[name], 'total': 10, 'completed': 10}
        self.models.add(name)
        self.pulled.append(name)
        yield {'status': 'success'}


def wanted(*names):
    result, errors = oc.parse_wanted(list(names))
    assert not errors
    return result


class InFlight(object):
    """Counts the pulls under way; each waits at a barrier of ``pair`` parties, so it passes only when that many
    pulls are under way at once (a bound below it breaks the barrier, and the test fails)."""

    def __init__(self, pair):
        self.lock = threading.Lock()
        self.now = self.most = 0
        self.order = []
        self.barrier = threading.Barrier(pair, timeout=10) if pair > 1 else None

    def __call__(self, endpoint, model):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.order.append((endpoint.description.split('/')[-1], model))
        if self.barrier is not None:
            self.barrier.wait()
        with self.lock:
            self.now -= 1


def test_every_missing_model_on_every_endpoint_is_pulled_two_at_a_time():
    gate = InFlight(2)
    stores = [Store('ollama-%d' % i, gate=gate) for i in range(3)]
    outcomes = oc.sync_endpoints(stores, wanted('tiny-a', 'tiny-b'), concurrency=2, sleep=lambda s: None)
    assert gate.most == 2
    assert all(errors == [] for result, errors in outcomes)
    assert [sorted(r['pulled']) for r, e in outcomes] == [['tiny-a:latest', 'tiny-b:latest']] * 3
    assert all(s.models == {'tiny-a:latest', 'tiny-b:latest'} for s in stores)
    # Each endpoint's first model first, so every replica starts before any pulls its second.
    assert [m for pod, m in gate.order[:3]] == ['tiny-a:latest'] * 3


def test_one_at_a_time_pulls_in_order_and_never_two_at_once():
    gate = InFlight(1)
    stores = [Store('ollama-%d' % i, gate=gate) for i in range(2)]
    oc.sync_endpoints(stores, wanted('tiny-a', 'tiny-b'), concurrency=1, sleep=lambda s: None)
    assert gate.most == 1
    assert gate.order == [('ollama-0', 'tiny-a:latest'), ('ollama-1', 'tiny-a:latest'),
                          ('ollama-0', 'tiny-b:latest'), ('ollama-1', 'tiny-b:latest')]


def test_only_what_is_missing_is_pulled_and_a_second_sync_pulls_nothing():
    stores = [Store('ollama-0', have=['tiny-a:latest']), Store('ollama-1')]
    first = oc.sync_endpoints(stores, wanted('tiny-a', 'tiny-b'), concurrency=4, sleep=lambda s: None)
    assert [sorted(s.pulled) for s in stores] == [['tiny-b:latest'], ['tiny-a:latest', 'tiny-b:latest']]
    assert [r['changed'] for r, e in first] == [True, True]
    second = oc.sync_endpoints(stores, wanted('tiny-a', 'tiny-b'), concurrency=4, sleep=lambda s: None)
    assert [r['changed'] for r, e in second] == [False, False]
    assert [r['pulled'] for r, e in second] == [[], []]


def test_an_endpoint_that_does_not_answer_fails_alone():
    stores = [Store('ollama-0'), Store('ollama-1', down=True)]
    (ok, ok_errors), (down, down_errors) = oc.sync_endpoints(stores, wanted('tiny-a'), concurrency=4)
    assert ok['pulled'] == ['tiny-a:latest'] and ok_errors == []
    assert down is None and 'does not answer' in down_errors[0] and 'Fix:' in down_errors[0]


def test_check_mode_pulls_nothing_anywhere():
    stores = [Store('ollama-0'), Store('ollama-1', have=['tiny-a:latest'])]
    outcomes = oc.sync_endpoints(stores, wanted('tiny-a'), concurrency=4, check_mode=True)
    assert [r['pulled'] for r, e in outcomes] == [['tiny-a:latest'], []]
    assert [s.pulled for s in stores] == [[], []]


def test_a_digest_pin_is_checked_on_every_endpoint():
    stores = [Store('ollama-0'), Store('ollama-1')]
    pinned = wanted({'name': 'tiny-a', 'digest': 'sha256:' + 'f' * 64})
    outcomes = oc.sync_endpoints(stores, pinned, concurrency=4, sleep=lambda s: None)
    for (result, errors), store in zip(outcomes, stores):
        assert result['models'][0]['action'] == 'digest_mismatch' and 'is pinned to' in errors[0]
        assert store.models == set()  # the pulled copy was removed again


def test_pulls_that_outlast_the_timeout_are_reported_and_the_sync_returns():
    release = threading.Event()
    stores = [Store('ollama-%d' % i, gate=lambda e, m: release.wait(10)) for i in range(2)]
    try:
        outcomes = oc.sync_endpoints(stores, wanted('tiny-a'), concurrency=2, timeout=0.2)
    finally:
        release.set()
    for result, errors in outcomes:
        assert 'did not end within 0.2s' in errors[0] and 'Fix: raise pull_timeout' in errors[0]
        assert result['models'][0]['action'] == 'failed'


def test_run_bounded_reraises_a_jobs_error():
    def boom():
        raise ValueError('a bug')
    with pytest.raises(ValueError):
        oc.run_bounded([boom, lambda: None], 2)


def test_progress_is_written_per_endpoint(tmp_path):
    stores = [Store('ollama-0'), Store('ollama-1')]
    paths = [str(tmp_path / 'ollama-0.json'), str(tmp_path / 'ollama-1.json')]
    oc.sync_endpoints(stores, wanted('tiny-a', 'tiny-b'), concurrency=4, progress_paths=paths, sleep=lambda s: None)
    for path, store in zip(paths, stores):
        state = json.loads(open(path).read())
        assert state['done'] and state['endpoint'] == store.description
        assert {n: p['percent'] for n, p in state['models'].items()} == {'tiny-a:latest': 100.0, 'tiny-b:latest': 100.0}


# ---------------------------------------------------------------- the module's bad input (no request is made)

@pytest.mark.parametrize("args,needle", [
    ({"pods": ["ollama-0"], "concurrency": 0}, "concurrency (model_pull_concurrency) and pull_timeout"),
    ({"pods": ["ollama-0"], "progress_interval": -1}, "progress_interval (model_pull_poll_interval) at least 0"),
    ({"pods": ["ollama-0", "ollama-0"]}, "pods names a pod twice"),
    ({"pods": ["ollama-0", "ollama-1"], "progress_file": "/tmp/p.json"}, "has no {pod}"),
    ({"pods": ["ollama-0"], "pod": "ollama-0"}, "mutually exclusive"),
])
def test_ollama_model_refuses_bad_pods_settings_before_any_request(args, needle):
    from ansible_collections.llmops.ollama.plugins.module_utils import inprocess
    from ansible_collections.llmops.ollama.plugins.modules import ollama_model
    result = inprocess.run_in_controller(ollama_model.main, dict(args, namespace="ollama", models=["tiny-a"]),
                                         check_mode=False, diff=False)
    assert result["failed"] and needle in result["msg"], result
    assert "Fix:" in result["msg"] or needle == "mutually exclusive"


class CacheStore(Store):
    """As Store, with /api/copy as Ollama does it (the manifest file copied: the same digest under the new name) and
    the insecure flag of each pull recorded (mocks, said so)."""

    def __init__(self, name, fail_copy=False):
        super(CacheStore, self).__init__(name)
        self.requests = []
        self.fail_copy = fail_copy

    def _request(self, method, path, body, timeout):
        self.requests.append((path, body))
        if path == '/api/copy':
            if self.fail_copy:
                raise oc.OllamaError('destination "x" is invalid', kind=oc.HTTP, status=400)
            DIGESTS[body['destination']] = DIGESTS[body['source']]
            self.models.add(body['destination'])
            return {}
        return super(CacheStore, self)._request(method, path, body, timeout)

    def _stream(self, method, path, body, connect_timeout, read_timeout):
        self.requests.append((path, {'model': body['model'], 'insecure': body['insecure']}))
        return super(CacheStore, self)._stream(method, path, body, connect_timeout, read_timeout)


CACHED = 'ollama-model-cache.ollama.svc:5000/library/tiny-a:latest'


def test_through_the_cache_a_pull_copies_to_the_models_name_and_drops_the_cache_name():
    DIGESTS[CACHED] = 'd' * 64
    store = CacheStore('r0')
    (outcome,) = oc.sync_endpoints([store], wanted({'name': 'tiny-a', 'via': CACHED}), concurrency=2)
    result, errors = outcome
    assert not errors
    # Pulled by the cache's name over plain HTTP, copied to the model's own name, the cache-named manifest deleted.
    calls = [(path, body) for path, body in store.requests if path not in ('/api/version', '/api/tags')]
    assert calls == [('/api/pull', {'model': CACHED, 'insecure': True}),
                     ('/api/copy', {'source': CACHED, 'destination': 'tiny-a:latest'}),
                     ('/api/delete', {'model': CACHED})]
    assert store.models == {'tiny-a:latest'}
    assert [(m['name'], m['action'], m['digest']) for m in result['models']] == [
        ('tiny-a:latest', 'pulled', 'sha256:' + 'd' * 64)]


def test_a_failed_copy_says_so_with_the_cache_name():
    DIGESTS[CACHED] = 'd' * 64
    store = CacheStore('r0', fail_copy=True)
    ((result, errors),) = oc.sync_endpoints([store], wanted({'name': 'tiny-a', 'via': CACHED}))
    assert len(errors) == 1 and 'through the model cache as ' + CACHED in errors[0]
    assert 'copying it to tiny-a:latest failed' in errors[0]
    assert result['models'][0]['action'] == 'failed'


def test_an_unreachable_cache_names_the_cache_and_where_it_says_why():
    def refuse(endpoint, name):
        # As Ollama answers it: HTTP 500 with the error.
        raise oc.OllamaError('pull model manifest: dial tcp 10.43.0.9:5000: connect: connection refused',
                             kind=oc.TRANSIENT, status=500)
    store = CacheStore('r0')
    store.gate = refuse
    slept = []
    ((result, errors),) = oc.sync_endpoints([store], wanted({'name': 'tiny-a', 'via': CACHED}), attempts=1,
                                            sleep=slept.append)
    assert len(errors) == 1
    # A new cache pod's address is routed a few seconds after it is Ready: about half a minute of retries.
    assert 'gave up after %d attempts' % oc.CACHE_PULL_ATTEMPTS in errors[0] and sum(slept) >= 30
    assert 'model cache ollama-model-cache' in errors[0]
    assert 'kubectl -n ollama logs deploy/ollama-model-cache -c warm' in errors[0]


def test_a_copy_that_the_sidecar_made_first_is_no_failure():
    DIGESTS[CACHED] = 'd' * 64
    DIGESTS['tiny-a:latest'] = 'd' * 64
    store = CacheStore('r0', fail_copy=True)
    real_request = store._request

    def sidecar_copied_first(method, path, body, timeout):
        if path == '/api/copy':
            # The sidecar copied it and removed the cache-named manifest: Ollama answers 404 for the source.
            store.models.discard(CACHED)
            store.models.add('tiny-a:latest')
        return real_request(method, path, body, timeout)
    store._request = sidecar_copied_first
    ((result, errors),) = oc.sync_endpoints([store], wanted({'name': 'tiny-a', 'via': CACHED}))
    assert not errors
    assert result['models'][0]['action'] == 'pulled' and store.models == {'tiny-a:latest'}
