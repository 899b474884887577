# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ollama's HTTP API from the controller: endpoints, pulls with progress, residency, name matching.

An endpoint is either a pod or a service reached through the Kubernetes API server's proxy (with the
cluster credentials of every other task, through :mod:`k8s`), or a direct URL (through
``ansible.module_utils.urls``). Everything above the endpoint (pull with stall detection and bounded
retries, the plan of what to pull or delete, /api/ps residency, registry manifests) is plain Python
and unit-tested with recorded answers.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import collections
import json
import os
import re
import socket
import tempfile
import threading
import time

from ansible.module_utils.basic import env_fallback

from ansible_collections.llmops.ollama.plugins.module_utils.plan import model_display_name, parse_model_name

DEFAULT_PORT = 11434
# The collection's pods: the gate listens on GATE_PORT of the pod IP, the Service keeps DEFAULT_PORT.
GATE_PORT = 8080
ADMIN_HEADER = 'X-Llmops-Admin-Key'
GATE_FIX = ('give the gate\'s admin key (admin_key, or LLMOPS_OLLAMA_ADMIN_KEY; the roles read it from the Secret '
            '<ollama_name>-gate-admin) through the API server, or a client key (api_key) with url')
DIGEST_RE = re.compile(r'^sha256:[0-9a-f]{64}$')
MANIFEST_ACCEPT = ', '.join([
    'application/vnd.docker.distribution.manifest.v2+json',
    'application/vnd.oci.image.manifest.v1+json',
])

# Error kinds. Only the retryable ones lead to another attempt of a pull.
UNREACHABLE = 'unreachable'
STALLED = 'stalled'
TRANSIENT = 'transient'
UNKNOWN_MODEL = 'unknown_model'
INVALID_NAME = 'invalid_name'
DISK_FULL = 'disk_full'
INSECURE = 'insecure'
UNAUTHORIZED = 'unauthorized'
NOT_FOUND = 'not_found'
DIGEST_MISMATCH = 'digest_mismatch'
HTTP = 'http'
RETRYABLE = frozenset([STALLED, TRANSIENT, UNREACHABLE])


class OllamaError(Exception):
    """Something Ollama (or the way to it) answered, classified, with the fix to show."""

    def __init__(self, message, fix=None, kind=HTTP, status=None):
        super(OllamaError, self).__init__(message)
        self.message = message
        self.fix = fix
        self.kind = kind
        self.status = status

    def __str__(self):
        return '%s. Fix: %s' % (self.message, self.fix) if self.fix else self.message


def classify(text, status=None):
    """(kind, fix) for an error text from Ollama or from the way to it."""
    low = (text or '').lower()
    if 'file does not exist' in low and 'manifest' in low:
        return UNKNOWN_MODEL, ('the registry has no model by that name and tag: check the spelling and the tag '
                               '(e.g. llama3.2:3b) at the registry, or publish it there first')
    if 'invalid model name' in low or 'invalid name' in low:
        return INVALID_NAME, 'write the name as [host/][namespace/]model[:tag], e.g. llama3.2:3b'
    if 'no space left on device' in low or 'disk quota exceeded' in low or 'not enough space' in low:
        return DISK_FULL, ('the model store is full: raise ollama_claim_size (or ollama_claim_headroom_percent), '
                           'expand the claim, or remove models with prune')
    if 'insecure protocol' in low or 'http: server gave http response to https client' in low:
        return INSECURE, 'set insecure: true (model_pull_insecure_registries) for a plain-HTTP or self-signed registry'
    if status in (401, 403) or 'unauthorized' in low or '401' in low.split():
        return UNAUTHORIZED, 'the registry refused the credentials: give the Ollama pods access to the private registry'
    if 'part stalled' in low or 'timed out' in low or 'timeout' in low:
        return STALLED, 'check the network between the Ollama pods and the registry, then run again'
    if status in (502, 503, 504) or any(t in low for t in (
            'connection refused', 'connection reset', 'no route to host', 'eof', 'max retries exceeded',
            'broken pipe', 'temporarily unavailable', 'i/o timeout', 'tls handshake', 'dial tcp')):
        return TRANSIENT, 'check that the registry is up and reachable from the Ollama pods, then run again'
    return HTTP, 'see Ollama\'s message above'


# ---------------------------------------------------------------- endpoints

class Endpoint(object):
    """Where one Ollama answers. Subclasses implement :meth:`_request` and :meth:`_stream`."""

    description = 'ollama'

    def request(self, method, path, body=None, timeout=30):
        """The decoded JSON answer; raises :class:`OllamaError`."""
        return self._request(method, path, body, timeout)

    def stream(self, method, path, body, connect_timeout, read_timeout):
        """Each JSON line of a streamed answer; a silence longer than read_timeout raises a STALLED error."""
        return self._stream(method, path, body, connect_timeout, read_timeout)

    def version(self, timeout=15):
        answer = self.request('GET', '/api/version', timeout=timeout)
        if not isinstance(answer, dict) or 'version' not in answer:
            raise OllamaError('%s did not answer like Ollama (/api/version: %r)' % (self.description, answer),
                              'point the endpoint at an Ollama server (port %d)' % DEFAULT_PORT, kind=UNREACHABLE)
        return answer['version']

    def tags(self, timeout=30):
        return (self.request('GET', '/api/tags', timeout=timeout) or {}).get('models') or []

    def ps(self, timeout=30):
        return (self.request('GET', '/api/ps', timeout=timeout) or {}).get('models') or []


def _error_text(message, status):
    """Ollama's own words out of a ClusterError message (``... answered 500: <text>``)."""
    marker = ' answered %s: ' % status
    if marker in message:
        return message.split(marker, 1)[1]
    return message


class ProxyEndpoint(Endpoint):
    """A pod (``pod``) or a service (``service``) through the API server's proxy."""

    def __init__(self, api, namespace, pod=None, service=None, port=None, admin_key=None):
        from ansible_collections.llmops.ollama.plugins.module_utils.k8s import pod_proxy_path, service_proxy_path
        self.api = api
        self.namespace = namespace
        self.pod = pod
        self.service = service
        # A pod is reached on the gate's port, a service on its own port (which targets the gate).
        self.port = port or (GATE_PORT if pod else DEFAULT_PORT)
        port = self.port
        # kube-apiserver consumes Authorization itself: the gate's admin key travels in its own header.
        self.headers = {ADMIN_HEADER: admin_key} if admin_key else {}
        if pod:
            self.description = 'pod %s/%s' % (namespace, pod)
            self._path = lambda path: pod_proxy_path(namespace, pod, port, path)
        else:
            self.description = 'service %s/%s' % (namespace, service)
            self._path = lambda path: service_proxy_path(namespace, service, port, path)

    def _fail(self, exc):
        from ansible_collections.llmops.ollama.plugins.module_utils.k8s import ClusterError
        if not isinstance(exc, ClusterError):
            raise exc
        status = exc.status
        text = _error_text(exc.message, status)
        if status is None:  # the API server itself could not be reached
            raise OllamaError(exc.message, exc.fix, kind=UNREACHABLE)
        low = text.lower()
        if status == 404 and ('pods "' in low or 'services "' in low or 'namespaces "' in low):
            raise OllamaError('%s does not exist: %s' % (self.description, text),
                              'check the namespace and the %s name' % ('pod' if self.pod else 'service'),
                              kind=UNREACHABLE, status=status)
        if status in (502, 503) and ('error trying to reach' in low or 'dial tcp' in low or 'no endpoints' in low
                                     or 'connection refused' in low):
            fix = ('check that the pod is Running and listens on port %s (the gate\'s port in the collection\'s pods, '
                   '%s; Ollama\'s own, %s, elsewhere)' % (self.port, GATE_PORT, DEFAULT_PORT))
            raise OllamaError('%s does not answer on port %s: %s' % (self.description, self.port, text), fix,
                              kind=UNREACHABLE, status=status)
        if status in (401, 403):
            gate = 'llmops.ollama gate' in low
            raise OllamaError(text if gate else exc.message, GATE_FIX if gate else exc.fix, kind=UNAUTHORIZED,
                              status=status)
        kind, fix = classify(text, status)
        if status == 404 and kind == HTTP:
            kind, fix = NOT_FOUND, 'the model is not on this endpoint'
        raise OllamaError(text, fix, kind=kind, status=status)

    def _request(self, method, path, body, timeout):
        try:
            return self.api.request(method, self._path(path), body=body, timeout=timeout, headers=self.headers)
        except Exception as exc:  # ClusterError, classified in _fail
            self._fail(exc)

    def _stream(self, method, path, body, connect_timeout, read_timeout):
        try:
            # A number is the read timeout of each read (the connect timeout is at most 10 s): a silent
            # stream raises after read_timeout seconds.
            lines = self.api.stream_lines(method, self._path(path), body=body, timeout=read_timeout,
                                          headers=self.headers)
            yield from lines
        except OllamaError:
            raise
        except ValueError as exc:
            raise OllamaError('%s sent a line that is not JSON: %s' % (self.description, exc), kind=TRANSIENT)
        except Exception as exc:
            from ansible_collections.llmops.ollama.plugins.module_utils.k8s import ClusterError
            if isinstance(exc, ClusterError):
                self._fail(exc)
            if 'timed out' in str(exc).lower() or isinstance(exc, socket.timeout):
                raise OllamaError('%s sent nothing for %ss' % (self.description, read_timeout), kind=STALLED)
            raise OllamaError('the stream from %s broke off: %s' % (self.description, exc), kind=TRANSIENT)


class UrlEndpoint(Endpoint):
    """Ollama at a URL the controller reaches (``http://ollama.example.com:11434``)."""

    def __init__(self, url, validate_certs=True, headers=None, opener=None, api_key=None, admin_key=None):
        self.base = url.rstrip('/')
        self.description = self.base
        self.validate_certs = validate_certs
        self.headers = dict(headers or {})
        # The gate's client key, as the OpenAI and Ollama clients send it; the admin key for admin routes.
        if api_key:
            self.headers['Authorization'] = 'Bearer %s' % api_key
        if admin_key:
            self.headers[ADMIN_HEADER] = admin_key
        if opener is None:
            from ansible.module_utils.urls import open_url
            opener = open_url
        self.opener = opener

    def _open(self, method, path, body, timeout):
        from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
        headers = dict(self.headers, Accept='application/json')
        data = None
        if body is not None:
            data = json.dumps(body)
            headers['Content-Type'] = 'application/json'
        try:
            return self.opener(self.base + path, method=method, data=data, headers=headers, timeout=timeout,
                               validate_certs=self.validate_certs, follow_redirects='safe')
        except HTTPError as exc:
            try:
                raw = exc.read()
                text = json.loads(raw).get('error') or raw
            except Exception:
                text = str(exc)
            text = text.decode('utf-8', 'replace') if isinstance(text, bytes) else str(text)
            kind, fix = classify(text, exc.code)
            if exc.code in (401, 403) and 'llmops.ollama gate' in text:
                kind, fix = UNAUTHORIZED, GATE_FIX
            elif exc.code == 404 and kind == HTTP:
                kind, fix = NOT_FOUND, 'the model is not on this endpoint'
            raise OllamaError(text, fix, kind=kind, status=exc.code)
        except (URLError, socket.timeout, OSError) as exc:
            raise OllamaError('cannot reach Ollama at %s: %s' % (self.base, getattr(exc, 'reason', exc)),
                              'check the URL and that the controller reaches it (firewall, Ingress, auth)',
                              kind=UNREACHABLE)

    def _request(self, method, path, body, timeout):
        response = self._open(method, path, body, timeout)
        raw = response.read()
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            return {'raw': raw.decode('utf-8', 'replace')}

    def _stream(self, method, path, body, connect_timeout, read_timeout):
        # The socket timeout bounds every read: a silent stream raises after read_timeout seconds.
        response = self._open(method, path, body, max(connect_timeout, read_timeout))
        try:
            while True:
                try:
                    line = response.readline()
                except (socket.timeout, OSError) as exc:
                    if 'timed out' in str(exc).lower() or isinstance(exc, socket.timeout):
                        raise OllamaError('%s sent nothing for %ss' % (self.description, read_timeout), kind=STALLED)
                    raise OllamaError('the stream from %s broke off: %s' % (self.description, exc), kind=TRANSIENT)
                if not line:
                    return
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError as exc:
                        raise OllamaError('%s sent a line that is not JSON: %s' % (self.description, exc),
                                          kind=TRANSIENT)
        finally:
            try:
                response.close()
            except Exception:
                pass


# ---------------------------------------------------------------- names

def model_key(name):
    """The name Ollama stores a model under, lower-cased for comparison (Ollama compares names
    case-insensitively): ``tiny-a`` -> ``registry.ollama.ai/library/tiny-a:latest``. None if invalid."""
    parts, _reason = parse_model_name(name)
    if parts is None:
        return None
    return ('%s/%s/%s:%s' % (parts['host'], parts['namespace'], parts['model'], parts['tag'])).lower()


def short_name(name):
    """The shortest name Ollama prints (``tiny-a:latest``); the input when invalid."""
    parts, _reason = parse_model_name(name)
    return model_display_name(parts) if parts else name


def same_model(a, b):
    key = model_key(a)
    return key is not None and key == model_key(b)


def normalize_digest(digest):
    """``sha256:<hex>`` from ``sha256:<hex>``, ``sha256-<hex>`` or a bare hex digest; None if empty."""
    if not digest:
        return None
    digest = str(digest).strip().lower()
    if digest.startswith('sha256-'):
        digest = 'sha256:' + digest[7:]
    elif not digest.startswith('sha256:'):
        digest = 'sha256:' + digest
    return digest


def parse_wanted(models):
    """``[{name, key, digest, insecure}]`` from strings or dicts (``name``, ``digest``; the plan's model
    entries work as they are). Returns ``(wanted, errors)``; each error names the model and the fix."""
    wanted, errors, seen = [], [], set()
    for index, item in enumerate(models or []):
        if isinstance(item, str):
            item = {'name': item}
        if not isinstance(item, dict) or not item.get('name'):
            errors.append('models[%d] has no name: %r. Fix: give a name such as "llama3.2:3b"' % (index, item))
            continue
        given = item.get('given') or item['name']
        parts, reason = parse_model_name(given)
        if parts is None:
            errors.append('model %r is not a valid Ollama model name: %s. Fix: write it as '
                          '[host/][namespace/]model[:tag][@sha256:<64 hex>], e.g. "llama3.2:3b"' % (given, reason))
            continue
        digest = item.get('digest') or parts.get('digest')
        if digest and not DIGEST_RE.match(normalize_digest(digest)):
            errors.append('model %r: digest %r is not sha256:<64 hex digits>. Fix: copy the digest from the '
                          'registry manifest or leave it out' % (given, digest))
            continue
        if parts.get('digest') and item.get('digest') and \
                normalize_digest(parts['digest']) != normalize_digest(item['digest']):
            errors.append('model %r pins %s in its name but digest: %s. Fix: keep one of them'
                          % (given, parts['digest'], item['digest']))
            continue
        key = model_key(given)
        if key in seen:
            continue
        seen.add(key)
        pull_name = model_display_name(parts)
        if parts.get('scheme'):
            pull_name = '%s://%s/%s/%s:%s' % (
                parts['scheme'], parts['host'], parts['namespace'], parts['model'], parts['tag'])
        entry = {'name': model_display_name(parts), 'pull_name': pull_name, 'key': key,
                 'host': parts['host'], 'digest': normalize_digest(digest)}
        via = item.get('via')
        if via:
            via_parts, reason = parse_model_name(via)
            if via_parts is None:
                errors.append('model %r: the name through the model cache %r is not valid: %s. Fix: run the plan '
                              'again (it names the cache)' % (given, via, reason))
                continue
            # Pulled by the cache's name (plain HTTP inside the cluster), then copied to the model's own name.
            entry['via'] = model_display_name(via_parts)
        wanted.append(entry)
    return wanted, errors


def index_tags(tags):
    """{model key: {name, digest, size}} from /api/tags."""
    result = {}
    for model in tags or []:
        name = model.get('name') or model.get('model')
        key = model_key(name)
        if key:
            result[key] = {'name': name, 'digest': normalize_digest(model.get('digest')),
                           'size': int(model.get('size') or 0)}
    return result


def plan_changes(wanted, tags, state, prune=False):
    """What to pull and delete. ``wanted`` from :func:`parse_wanted`, ``tags`` from /api/tags.
    Present: pull each model not there, or there with another digest than its pin.
    Absent: delete each listed model that is there. Prune (with present): delete what is not listed."""
    have = index_tags(tags)
    pull, delete, keep = [], [], []
    if state == 'present':
        for model in wanted:
            existing = have.get(model['key'])
            if existing is None or (model['digest'] and existing['digest'] != model['digest']):
                pull.append(model)
            else:
                keep.append(model)
        if prune:
            listed = set(m['key'] for m in wanted)
            delete = [dict(name=v['name'], key=k) for k, v in sorted(have.items()) if k not in listed]
    else:
        for model in wanted:
            if model['key'] in have:
                delete.append(dict(model, name=have[model['key']]['name']))
            else:
                keep.append(model)
    return {'pull': pull, 'delete': delete, 'keep': keep, 'have': have}


def predicted_names(have, changes):
    """Model names after the changes, for diff mode."""
    names = dict((k, v['name']) for k, v in have.items())
    for model in changes['delete']:
        names.pop(model['key'], None)
    for model in changes['pull']:
        names[model['key']] = model['name']
    return sorted(names.values())


# ---------------------------------------------------------------- pull progress

class PullProgress(object):
    """Ollama's /api/pull stream folded into totals: each layer's total and completed bytes,
    the last status, success or error. Progress is any change of status or a growing byte count."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.layers = {}
        self.status = None
        self.error = None
        self.success = False
        self.lines = 0
        self.last_progress = clock()
        self._mark = None

    def update(self, line):
        self.lines += 1
        if not isinstance(line, dict):
            return
        if line.get('error'):
            self.error = str(line['error'])
            return
        status = line.get('status')
        digest = line.get('digest')
        if digest and line.get('total'):
            layer = self.layers.setdefault(digest, {'total': 0, 'completed': 0})
            layer['total'] = int(line.get('total') or 0)
            layer['completed'] = max(layer['completed'], int(line.get('completed') or 0))
        if status == 'success':
            self.success = True
        mark = (status if not digest else 'layer', self.completed)
        if mark != self._mark:
            self._mark = mark
            self.last_progress = self.clock()
        self.status = status

    @property
    def completed(self):
        return sum(layer['completed'] for layer in self.layers.values())

    @property
    def total(self):
        return sum(layer['total'] for layer in self.layers.values())

    @property
    def percent(self):
        if self.success:
            return 100.0
        total = self.total
        return round(100.0 * self.completed / total, 1) if total else 0.0

    def idle_for(self):
        return self.clock() - self.last_progress

    def as_dict(self):
        return {'status': self.status, 'completed': self.completed, 'total': self.total, 'percent': self.percent,
                'success': self.success, 'error': self.error}


def pull_model(endpoint, model, insecure=False, stall_timeout=300, attempts=3, connect_timeout=30,
               on_progress=None, clock=time.monotonic, sleep=time.sleep, done_check=None, total_timeout=7200):
    """Pull one model, following the progress stream; no progress for ``stall_timeout`` seconds ends
    an attempt, and at most ``attempts`` are made (Ollama resumes the download it kept). Returns
    ``{attempts, progress, streamed}``; raises :class:`OllamaError` with the last error.

    A stream that breaks before any layer progress is the kube-apiserver's HTTP/1.1 proxy race (its
    frontend closes the request body once Ollama's first line arrives, golang/go#40747): the last
    attempt after one then asks for one answer at the end (``stream: false``, bounded by
    ``total_timeout``), which the race cannot hit. ``done_check`` (a callable) tells whether the model
    is on the endpoint after all, before an attempt is retried."""
    last = None
    early_break = False
    for attempt in range(1, attempts + 1):
        broke_early = False
        progress = PullProgress(clock=clock)
        body = {'model': model['pull_name'], 'insecure': bool(insecure)}
        if early_break and attempt == attempts:
            try:
                answer = endpoint.request('POST', '/api/pull', dict(body, stream=False), timeout=total_timeout)
            except OllamaError as exc:
                last = exc
                break
            progress.update(answer)
            if progress.success:
                if on_progress:
                    on_progress(model, progress, attempt)
                return {'attempts': attempt, 'progress': progress.as_dict(), 'streamed': False}
            kind, fix = classify(progress.error or '')
            last = OllamaError('pulling %s on %s failed: %s' % (model['name'], endpoint.description,
                                                                progress.error or answer), fix, kind=kind)
            break
        stream = endpoint.stream('POST', '/api/pull', dict(body, stream=True), connect_timeout, stall_timeout)
        try:
            for line in stream:
                progress.update(line)
                if on_progress:
                    on_progress(model, progress, attempt)
                if progress.error:
                    kind, fix = classify(progress.error)
                    raise OllamaError('pulling %s on %s failed: %s' % (
                        model['name'], endpoint.description, progress.error), fix, kind=kind)
                if progress.success:
                    break
                if progress.idle_for() > stall_timeout:
                    raise OllamaError('pulling %s on %s made no progress for %ss (at %s%%, %s)'
                                      % (model['name'], endpoint.description, stall_timeout, progress.percent,
                                         progress.status), kind=STALLED)
            if not progress.success:
                raise OllamaError('the pull stream of %s from %s ended before success (last status: %s)'
                                  % (model['name'], endpoint.description, progress.status), kind=TRANSIENT)
            return {'attempts': attempt, 'progress': progress.as_dict(), 'streamed': True}
        except OllamaError as exc:
            if exc.kind == STALLED and not exc.fix:
                exc.fix = 'check the network between the Ollama pods and the registry, then run again'
            if exc.kind == INVALID_NAME and 'model' not in exc.message:
                exc.message = 'Ollama rejected the name %s: %s' % (model['name'], exc.message)
            last = exc
            if exc.kind not in RETRYABLE:
                raise
            # The proxy race breaks the stream itself; an error Ollama answers (a refused connection to the
            # registry, with its HTTP status) is retried after a pause, like any other.
            if exc.kind == TRANSIENT and not progress.layers and not progress.error and not exc.status:
                early_break = broke_early = True
        finally:
            close = getattr(stream, 'close', None)
            if close:
                close()
        if done_check is not None:
            try:
                if done_check():
                    return {'attempts': attempt, 'progress': dict(progress.as_dict(), success=True, percent=100.0),
                            'streamed': True}
            except OllamaError:
                pass
        if attempt < attempts and not broke_early:  # the proxy race is not an overload: retry at once
            sleep(min(2 ** attempt, 10))
    raise OllamaError('%s (gave up after %d attempts)' % (last.message, attempts), last.fix, kind=last.kind)


CACHE_PULL_ATTEMPTS = 6  # sleeps of 2, 4, 8, 10 and 10 s between them


def pull_through_cache(endpoint, model, timeout=60, **kwargs):
    """Pull ``model['via']`` (the cache's name, plain HTTP), copy it to the model's own name and delete the
    cache-named manifest. Ollama's /api/copy copies the manifest file (the same digest, so the same ID in
    ``ollama list``) and /api/delete removes only the blobs no other manifest uses, so the store holds the model
    once, under its own name. Takes :func:`pull_model`'s options; returns its answer."""
    # A new cache pod is Ready a few seconds before the policy engine and the service proxy route to its
    # address (until then the replicas' connections are refused): retry for about half a minute.
    kwargs['attempts'] = max(kwargs.get('attempts') or 0, CACHE_PULL_ATTEMPTS)
    try:
        outcome = pull_model(endpoint, dict(model, pull_name=model['via']), insecure=True, **kwargs)
    except OllamaError as exc:
        if exc.kind in (TRANSIENT, STALLED, HTTP, UNKNOWN_MODEL):
            host = model['via'].split('/', 1)[0].split(':', 1)[0]
            service, namespace = (host.split('.') + [''])[:2]
            exc.fix = ('the replicas pull through the model cache %s: it must be Ready (kubectl -n %s get pods -l '
                       'app.kubernetes.io/name=ollama-model-cache); a cache that is not names the registry it could not '
                       'reach in its warm container (kubectl -n %s logs deploy/%s -c warm)%s'
                       % (service, namespace, namespace, service, '; ' + exc.fix if exc.fix else ''))
        raise
    try:
        endpoint.request('POST', '/api/copy', {'source': model['via'], 'destination': model['name']}, timeout=timeout)
    except OllamaError as exc:
        # The self-heal sidecar pulls the same name at the same time (Ollama shares the download) and may have
        # copied it and removed the cache-named manifest first.
        if model['key'] in index_tags(endpoint.tags(timeout=timeout)):
            return outcome
        raise OllamaError('pulled %s through the model cache as %s, but copying it to %s failed: %s'
                          % (model['name'], model['via'], model['name'], exc.message),
                          'look at the Ollama log of %s, then run again' % endpoint.description, kind=exc.kind)
    delete_model(endpoint, model['via'], timeout=timeout)
    return outcome


def delete_model(endpoint, name, timeout=60):
    try:
        endpoint.request('DELETE', '/api/delete', {'model': name}, timeout=timeout)
        return True
    except OllamaError as exc:
        if exc.kind == NOT_FOUND or exc.status == 404:
            return False
        raise


class ProgressFile(object):
    """Progress of every model of a run, as JSON in a file the role's polling task prints.
    Written atomically, at most once per ``interval`` seconds unless forced."""

    def __init__(self, path, endpoint, interval=1.0, clock=time.monotonic):
        self.path = path
        self.interval = interval
        self.clock = clock
        self.state = {'endpoint': endpoint, 'models': {}, 'done': False}
        self._last = None
        self._lock = threading.RLock()  # several pulls of one endpoint report from their own threads

    def update(self, name, force=False, **values):
        with self._lock:
            self.state['models'].setdefault(name, {}).update(values)
            self.write(force)

    def write(self, force=False):
        if not self.path:
            return
        with self._lock:
            self._write(force)

    def _write(self, force):
        now = self.clock()
        if not force and self._last is not None and now - self._last < self.interval:
            return
        self._last = now
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix='.progress-')
        with os.fdopen(fd, 'w') as handle:
            json.dump(self.state, handle)
        os.rename(tmp, self.path)


# ---------------------------------------------------------------- residency and generation

def processor(size, size_vram):
    """What ``ollama ps`` prints in PROCESSOR (cmd/cmd.go), from /api/ps sizes."""
    if not size_vram:
        return '100% CPU'
    if size_vram == size:
        return '100% GPU'
    if size_vram > size or not size:
        return 'Unknown'
    cpu = int(round(float(size - size_vram) / size * 100))
    return '%d%%/%d%% CPU/GPU' % (cpu, 100 - cpu)


def residency(entry):
    """GPU residency of one /api/ps entry. size_vram may be missing (older Ollama omitted a 0)."""
    size = int(entry.get('size') or 0)
    vram = int(entry.get('size_vram') or 0)
    percent = round(100.0 * vram / size, 1) if size else 0.0
    return {
        'name': entry.get('name') or entry.get('model'),
        'size': size,
        'size_vram': vram,
        'gpu_percent': min(percent, 100.0),
        'fully_on_gpu': size > 0 and vram >= size,
        'processor': processor(size, vram),
        'expires_at': entry.get('expires_at'),
        'context_length': entry.get('context_length'),
    }


def loaded_models(ps):
    return [residency(entry) for entry in ps or []]


def find_loaded(ps, name):
    for entry in ps or []:
        if same_model(entry.get('name') or entry.get('model') or '', name):
            return residency(entry)
    return None


def generation_metrics(answer):
    """tokens/s and times (seconds) from a non-streamed /api/generate answer (durations in ns)."""
    ns = 1e9
    eval_count = int(answer.get('eval_count') or 0)
    eval_duration = int(answer.get('eval_duration') or 0)
    return {
        'eval_count': eval_count,
        'tokens_per_second': round(eval_count / (eval_duration / ns), 2) if eval_duration else 0.0,
        'prompt_eval_count': int(answer.get('prompt_eval_count') or 0),
        'load_seconds': round(int(answer.get('load_duration') or 0) / ns, 3),
        'total_seconds': round(int(answer.get('total_duration') or 0) / ns, 3),
        'eval_seconds': round(eval_duration / ns, 3),
    }


# ---------------------------------------------------------------- registry manifests

def manifest_url(name, insecure_registries=()):
    """The registry URL of a model's manifest (by digest when pinned), and the scheme used."""
    parts, reason = parse_model_name(name)
    if parts is None:
        return None
    host = parts['host']
    insecure = host in (insecure_registries or ()) or parts.get('scheme') == 'http'
    scheme = 'http' if insecure else 'https'
    reference = parts['digest'] or parts['tag']
    return '%s://%s/v2/%s/%s/manifests/%s' % (scheme, host, parts['namespace'], parts['model'], reference)


def manifest_size(manifest):
    """Bytes on disk for a model: its layers and config (Ollama's Manifest.Size)."""
    total = 0
    for layer in (manifest.get('layers') or []) + [manifest.get('config') or {}]:
        total += int(layer.get('size') or 0)
    return total


def fetch_manifest(name, insecure_registries=(), timeout=10, opener=None):
    """``{size, digest, url}`` from the registry manifest; raises :class:`OllamaError` when the
    registry cannot be read within ``timeout`` seconds (callers fall back to the declared size)."""
    import hashlib
    url = manifest_url(name, insecure_registries)
    if url is None:
        raise OllamaError('model %r is not a valid name' % name, kind=INVALID_NAME)
    if opener is None:
        from ansible.module_utils.urls import open_url
        opener = open_url
    from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
    try:
        response = opener(url, method='GET', headers={'Accept': MANIFEST_ACCEPT}, timeout=timeout,
                          validate_certs=not url.startswith('http:'), follow_redirects='safe')
        raw = response.read()
        header = response.headers.get('Docker-Content-Digest') if getattr(response, 'headers', None) else None
    except HTTPError as exc:
        if exc.code == 404:
            raise OllamaError('the registry has no manifest at %s' % url,
                              'check the model name and tag at the registry', kind=UNKNOWN_MODEL, status=404)
        raise OllamaError('%s answered %s' % (url, exc.code), kind=UNAUTHORIZED if exc.code in (401, 403) else HTTP,
                          status=exc.code)
    except (URLError, socket.timeout, OSError) as exc:
        raise OllamaError('cannot read %s: %s' % (url, getattr(exc, 'reason', exc)), kind=UNREACHABLE)
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise OllamaError('%s is not a JSON manifest' % url, kind=HTTP)
    digest = normalize_digest(header) if header else 'sha256:' + hashlib.sha256(raw).hexdigest()
    return {'size': manifest_size(manifest), 'digest': digest, 'url': url, 'manifest': manifest}


MODEL_MEDIA_TYPE = 'application/vnd.ollama.image.model'
PARAMS_MEDIA_TYPE = 'application/vnd.ollama.image.params'


class _BlobReader(object):
    """``fetch(offset, length)`` over a registry blob by HTTP range requests, each within ``timeout`` and all
    of them before ``deadline``. The first request follows the registry's redirect (to its storage) and later
    ones go straight there. A server that ignores Range answers 200: the body is then read forward only as far
    as the header goes."""

    def __init__(self, url, timeout, opener, clock, deadline):
        self.url = url
        self.timeout = timeout
        self.opener = opener
        self.clock = clock
        self.deadline = deadline
        self.statuses = []
        self.stream = None
        self.stream_pos = 0

    def __call__(self, offset, length):
        from ansible_collections.llmops.ollama.plugins.module_utils.vram import GGUFError
        if self.clock() > self.deadline:
            raise GGUFError('reading the header took longer than %d s' % self.timeout)
        if self.stream is not None:
            if offset < self.stream_pos:
                raise GGUFError('the registry ignores Range and the header reader went back')
            while self.stream_pos < offset:
                skipped = self.stream.read(min(offset - self.stream_pos, 1 << 20))
                if not skipped:
                    return b''
                self.stream_pos += len(skipped)
            data = self.stream.read(length)
            self.stream_pos += len(data)
            return data
        response = self.opener(self.url, method='GET', headers={'Range': 'bytes=%d-%d' % (offset, offset + length - 1)},
                               timeout=self.timeout, validate_certs=not self.url.startswith('http:'),
                               follow_redirects='safe')
        status = getattr(response, 'status', None) or response.getcode()
        self.statuses.append(status)
        final = response.geturl() if hasattr(response, 'geturl') else None
        if final:
            self.url = final
        if status == 206:
            return response.read()
        # 200: the whole blob; read forward from its start
        self.stream, self.stream_pos = response, 0
        return self(offset, length)

    def close(self):
        if self.stream is not None:
            self.stream.close()


def fetch_architecture(name, manifest, insecure_registries=(), timeout=10, opener=None, clock=time.monotonic):
    """The model's architecture (:func:`vram.parse_gguf`) from the GGUF header of its model blob, read by range
    requests, and its ``num_ctx`` parameter from the params blob. Raises :class:`OllamaError`."""
    from ansible_collections.llmops.ollama.plugins.module_utils.vram import GGUFError, parse_gguf
    url = manifest_url(name, insecure_registries)
    if url is None:
        raise OllamaError('model %r is not a valid name' % name, kind=INVALID_NAME)
    base = url.split('/manifests/', 1)[0]
    layers = manifest.get('layers') or []
    model = [layer for layer in layers if layer.get('mediaType') == MODEL_MEDIA_TYPE]
    if not model:
        raise OllamaError('the manifest has no model layer (%s)' % MODEL_MEDIA_TYPE, kind=HTTP)
    if opener is None:
        from ansible.module_utils.urls import open_url
        opener = open_url
    from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
    reader = _BlobReader('%s/blobs/%s' % (base, model[0].get('digest')), timeout, opener, clock, clock() + timeout)
    try:
        arch = parse_gguf(reader)
        params = [layer for layer in layers if layer.get('mediaType') == PARAMS_MEDIA_TYPE
                  and int(layer.get('size') or 0) < 65536]
        if params:
            response = opener('%s/blobs/%s' % (base, params[0].get('digest')), method='GET', timeout=timeout,
                              validate_certs=not url.startswith('http:'), follow_redirects='safe')
            values = json.loads(response.read())
            num_ctx = values.get('num_ctx') if isinstance(values, dict) else None
            if isinstance(num_ctx, int) and not isinstance(num_ctx, bool) and num_ctx > 0:
                arch['num_ctx'] = num_ctx
    except GGUFError as exc:
        raise OllamaError('the GGUF header of %s cannot be read: %s' % (name, exc), kind=HTTP)
    except HTTPError as exc:
        raise OllamaError('reading the model blob of %s: the registry answered %s' % (name, exc.code),
                          kind=UNAUTHORIZED if exc.code in (401, 403) else HTTP, status=exc.code)
    except (URLError, socket.timeout, OSError, ValueError) as exc:
        raise OllamaError('reading the model blob of %s: %s' % (name, getattr(exc, 'reason', exc)), kind=UNREACHABLE)
    finally:
        reader.close()
    arch['range_statuses'] = sorted(set(reader.statuses))
    arch['blob_bytes'] = int(model[0].get('size') or 0)
    return arch


def resolve_model_sizes(models, insecure_registries=(), timeout=10, opener=None, clock=time.monotonic,
                        architecture=True):
    """The plan's models input with ``size`` filled from each registry manifest where readable
    (bounded by ``timeout`` per model and 3x overall), else the declared size; with ``architecture``
    also ``architecture`` from each model blob's GGUF header (:func:`fetch_architecture`; ``timeout`` per
    model and 3x overall again), else ``architecture_error`` says why. Returns ``(models, details)``;
    details has per model source (registry, declared, unknown), digest, error and what the header gave."""
    out, details = [], []
    manifests = []
    deadline = clock() + max(timeout, 1) * 3
    for item in models or []:
        entry = {'name': item} if isinstance(item, str) else dict(item or {})
        name = entry.get('name')
        detail = {'name': name, 'source': 'declared' if entry.get('size') not in (None, '') else 'unknown',
                  'declared_size': entry.get('size'), 'size': entry.get('size'), 'digest': entry.get('digest'),
                  'registry_digest': None, 'error': None, 'digest_mismatch': False}
        parts, reason = parse_model_name(name) if name else (None, 'no name')
        manifests.append(None)
        if parts is None:
            detail['error'] = 'not a valid model name: %s' % reason
        elif clock() >= deadline:
            detail['error'] = 'skipped: the overall time for registry look-ups ran out'
        else:
            pin = entry.get('digest') or parts.get('digest')
            # Ollama pulls by tag, so the tag's manifest is what a pin is checked against.
            lookup = name.split('@', 1)[0]
            try:
                found = fetch_manifest(lookup, insecure_registries, timeout, opener)
                manifests[-1] = (lookup, found['manifest'])
                entry['size'] = found['size']
                detail.update(source='registry', size=found['size'], registry_digest=found['digest'])
                if pin and normalize_digest(pin) != found['digest']:
                    detail['digest_mismatch'] = True
            except OllamaError as exc:
                detail['error'] = exc.message
                if exc.kind == UNKNOWN_MODEL:
                    detail['unknown_model'] = True
        out.append(entry)
        details.append(detail)
    if architecture:
        _resolve_architectures(out, details, manifests, insecure_registries, timeout, opener, clock)
    return out, details


def _resolve_architectures(models, details, manifests, insecure_registries, timeout, opener, clock):
    """Each model's GGUF header from the registry; a declared ``architecture`` stays where it cannot be read."""
    deadline = clock() + max(timeout, 1) * 3
    for entry, detail, found in zip(models, details, manifests):
        declared = entry.get('architecture')
        detail['architecture_source'] = 'declared' if declared else None
        if found is None:
            why = 'its registry manifest was not read (%s)' % (detail.get('error') or 'no registry')
        elif clock() >= deadline:
            why = 'the overall time for reading GGUF headers ran out'
        else:
            try:
                arch = fetch_architecture(found[0], found[1], insecure_registries, timeout, opener, clock)
                entry['architecture'] = arch
                detail.update(architecture_source='gguf header', header_bytes=arch['header_bytes'],
                              fetched_bytes=arch['fetched_bytes'], range_requests=arch['requests'],
                              range_statuses=arch['range_statuses'], blob_bytes=arch['blob_bytes'])
                continue
            except OllamaError as exc:
                why = exc.message
        detail['architecture_error'] = why
        if not declared:
            entry['architecture_error'] = why


# ---------------------------------------------------------------- module glue

# The gate's keys: the admin key for the collection's calls (any endpoint), a client key for url.
KEY_ARGS = dict(
    admin_key=dict(type='str', no_log=True, fallback=(env_fallback, ['LLMOPS_OLLAMA_ADMIN_KEY'])),
    admin_key_secret=dict(type='str', no_log=False),
    api_key=dict(type='str', no_log=True, fallback=(env_fallback, ['LLMOPS_OLLAMA_API_KEY'])),
)

ENDPOINT_ARGS = dict(
    namespace=dict(type='str'),
    pod=dict(type='str'),
    service=dict(type='str'),
    url=dict(type='str'),
    port=dict(type='int'),
    url_validate_certs=dict(type='bool', default=True),
    url_headers=dict(type='dict', default={}, no_log=True),
    request_timeout=dict(type='int', default=30),
    **KEY_ARGS
)


def admin_key(module, api, namespace):
    """admin_key as given, else the data key `key` of the Secret admin_key_secret in namespace, read in this
    process (the roles read it so, not with a k8s_info task: a module process of every no-op converge); '' where
    the Secret or its key does not exist yet (check mode before the first converge). Never in the result."""
    params = module.params
    if params.get('admin_key') or not params.get('admin_key_secret'):
        return params.get('admin_key')
    secret = api.get_or_none('/api/v1/namespaces/%s/secrets/%s' % (namespace, params['admin_key_secret']))
    value = ((secret or {}).get('data') or {}).get('key') or ''
    key = base64.b64decode(value).decode('utf-8').strip() if value else ''
    if key:
        # AnsibleK8SModule keeps the AnsibleModule (and its no_log_values) in _module; ControllerModule has its own.
        getattr(module, '_module', module).no_log_values.add(key)
    return key


def make_endpoint(module, pod=None, service=None, url=None):
    """The endpoint the module's options name; fails the module with the fix when it cannot."""
    params = module.params
    pod = pod if pod is not None else params.get('pod')
    service = service if service is not None else params.get('service')
    url = url if url is not None else params.get('url')
    if url:
        if not re.match(r'^https?://[^\s/]+', url):
            module.fail_json(msg='url %r is not an http(s) URL. Fix: give e.g. http://ollama.example.com:11434' % url)
        return UrlEndpoint(url, validate_certs=params.get('url_validate_certs', True),
                           headers=params.get('url_headers') or {}, api_key=params.get('api_key'),
                           admin_key=params.get('admin_key'))
    if not params.get('namespace') or not (pod or service):
        module.fail_json(msg='no endpoint given. Fix: set namespace with pod (one replica) or service, or url')
    from ansible_collections.llmops.ollama.plugins.module_utils.k8s import Api, ClusterError
    try:
        api = Api(module, request_timeout=params.get('request_timeout') or 30)
        key = admin_key(module, api, params['namespace'])
    except ClusterError as exc:
        module.fail_json(msg=str(exc))
    return ProxyEndpoint(api, params['namespace'], pod=pod, service=service, port=params.get('port'),
                         admin_key=key)


def endpoint_label(endpoint):
    if isinstance(endpoint, ProxyEndpoint):
        return {'namespace': endpoint.namespace, 'pod': endpoint.pod, 'service': endpoint.service,
                'port': endpoint.port, 'url': None, 'description': endpoint.description}
    return {'namespace': None, 'pod': None, 'service': None, 'port': None, 'url': getattr(endpoint, 'base', None),
            'description': endpoint.description}


def _is_insecure(model, insecure, insecure_registries):
    return bool(insecure) or model.get('host') in (insecure_registries or ()) or \
        model['pull_name'].startswith('http://')


def run_bounded(jobs, concurrency, timeout=None, clock=time.monotonic):
    """Run the callables in ``jobs``, at most ``concurrency`` at a time, in order of the list; inline when one at
    a time is all there is. Returns the jobs that had not ended after ``timeout`` seconds (their threads are
    daemons: they end with the process). A job's own exception is re-raised here (jobs catch what they expect)."""
    if concurrency <= 1 or len(jobs) <= 1:
        for job in jobs:
            job()
        return []
    pending = collections.deque(jobs)
    running, raised = set(), []
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not pending or raised:
                    return
                job = pending.popleft()
                running.add(job)
            try:
                job()
            except BaseException as exc:  # handed to the caller's thread
                raised.append(exc)
            with lock:
                running.discard(job)

    threads = [threading.Thread(target=worker, name='llmops-pull-%d' % i) for i in range(min(concurrency, len(jobs)))]
    for thread in threads:
        thread.daemon = True
        thread.start()
    deadline = None if timeout is None else clock() + timeout
    for thread in threads:
        thread.join(None if deadline is None else max(0.0, deadline - clock()))
    if raised:
        raise raised[0]
    with lock:
        return list(running) + list(pending)


class EndpointSync(object):
    """One endpoint's part of a sync: read what it holds, pull each missing model (several at once from
    different threads), then delete, warm up and read what it holds after."""

    def __init__(self, endpoint, wanted, options, progress_path=None, clock=time.monotonic, sleep=time.sleep):
        self.endpoint = endpoint
        self.wanted = wanted
        self.options = options
        self.clock = clock
        self.sleep = sleep
        self.started = clock()
        self.progress = ProgressFile(progress_path, endpoint.description, clock=clock)
        self.lock = threading.Lock()
        self.results, self.errors = [], []
        self.failure = None  # an OllamaError that ends this endpoint's sync (it did not answer)
        self.changes = {'pull': [], 'keep': [], 'delete': [], 'have': {}}
        self.version = None
        self.before = self.after = []

    def read(self):
        """What to pull and delete; an endpoint that does not answer fails here, alone."""
        timeout = self.options['request_timeout']
        try:
            self.version = self.endpoint.version(timeout=min(timeout, 30))
            tags = self.endpoint.tags(timeout=timeout)
        except OllamaError as exc:
            self.failure = exc
            return
        self.changes = plan_changes(self.wanted, tags, self.options['state'], self.options['prune'])
        self.before = sorted(v['name'] for v in self.changes['have'].values())
        self.after = predicted_names(self.changes['have'], self.changes)
        for model in self.changes['pull']:
            self.progress.state['models'][model['name']] = {'percent': 0.0, 'status': 'queued', 'completed': 0,
                                                            'total': 0}
        self.progress.write(force=True)

    def pull(self, model):
        """Pull one model and check its digest; the entry joins the results, an error the errors."""
        opts, endpoint, have = self.options, self.endpoint, self.changes['have']
        timeout = opts['request_timeout']
        existed = model['key'] in have
        entry = {'name': model['name'], 'action': 'pulled', 'changed': True, 'digest': None, 'size': None,
                 'attempts': 0}

        def report(model_, state_, attempt):
            self.progress.update(model_['name'], percent=state_.percent, status=state_.status,
                                 completed=state_.completed, total=state_.total, attempt=attempt)

        def done():
            now = index_tags(endpoint.tags(timeout=timeout)).get(model['key'])
            return now is not None and (now['digest'] == model['digest'] if model['digest'] else not existed)
        try:
            pull_options = dict(stall_timeout=opts['stall_timeout'], attempts=opts['attempts'], on_progress=report,
                                clock=self.clock, sleep=self.sleep, total_timeout=opts['pull_timeout'])
            if model.get('via'):
                # The done check asks for the cache-named copy: the copy to the model's name follows the pull.
                def via_done():
                    return index_tags(endpoint.tags(timeout=timeout)).get(model_key(model['via'])) is not None
                outcome = pull_through_cache(endpoint, model, timeout=timeout, done_check=via_done, **pull_options)
            else:
                insecure = _is_insecure(model, opts['insecure'], opts['insecure_registries'])
                outcome = pull_model(endpoint, model, insecure=insecure, done_check=done, **pull_options)
            entry['attempts'] = outcome['attempts']
            now = index_tags(endpoint.tags(timeout=timeout)).get(model['key'])
            if now is None:
                raise OllamaError('Ollama reported success for %s but does not list it' % model['name'],
                                  'look at the Ollama log of %s' % endpoint.description)
            entry.update(digest=now['digest'], size=now['size'])
            if model['digest'] and now['digest'] != model['digest']:
                entry['action'] = 'digest_mismatch'
                if not existed:
                    delete_model(endpoint, now['name'], timeout=timeout)
                    entry['changed'] = False
                raise OllamaError('model %s is pinned to %s but the registry serves %s%s'
                                  % (model['name'], model['digest'], now['digest'],
                                     '; the pulled copy was removed again' if not existed else ''),
                                  'update the pinned digest, or pin the tag that holds %s' % model['digest'],
                                  kind=DIGEST_MISMATCH)
            self.progress.update(model['name'], force=True, percent=100.0, status='success')
        except OllamaError as exc:
            if entry['action'] == 'pulled':
                entry.update(action='failed', changed=False)
            entry['error'] = str(exc)
            entry['error_kind'] = exc.kind
            self.progress.update(model['name'], force=True, status='failed', error=str(exc))
            with self.lock:
                self.errors.append(str(exc))
        with self.lock:
            self.results.append(entry)

    def timed_out(self, model, seconds):
        message = 'pulling %s on %s did not end within %ss (pull_timeout)' % (
            model['name'], self.endpoint.description, seconds)
        with self.lock:
            self.errors.append(message + '. Fix: raise pull_timeout (model_pull_timeout) for large models or '
                               'check the network to the registry')
            self.results.append({'name': model['name'], 'action': 'failed', 'changed': False, 'digest': None,
                                 'size': None, 'attempts': 0, 'error': message, 'error_kind': STALLED})

    def check_results(self):
        have = self.changes['have']
        for model in self.changes['pull']:
            self.results.append({'name': model['name'], 'action': 'pull', 'changed': True, 'digest': model['digest'],
                                 'size': None, 'attempts': 0})
        self._keep_results()
        for model in self.changes['delete']:
            self.results.append({'name': model['name'], 'action': 'delete', 'changed': True,
                                 'digest': have[model['key']]['digest'], 'size': have[model['key']]['size'],
                                 'attempts': 0})

    def _keep_results(self):
        for model in self.changes['keep']:
            existing = self.changes['have'].get(model['key']) or {}
            self.results.append({'name': model['name'],
                                 'action': 'present' if self.options['state'] == 'present' else 'absent',
                                 'changed': False, 'digest': existing.get('digest'), 'size': existing.get('size'),
                                 'attempts': 0})

    def finish(self):
        """Delete what goes, warm up what stays, read the store again if it changed."""
        opts, endpoint, have = self.options, self.endpoint, self.changes['have']
        timeout = opts['request_timeout']
        for model in self.changes['delete']:
            entry = {'name': model['name'], 'action': 'deleted' if opts['state'] == 'absent' else 'pruned',
                     'changed': True, 'digest': have[model['key']]['digest'], 'size': have[model['key']]['size'],
                     'attempts': 0}
            try:
                entry['changed'] = delete_model(endpoint, model['name'], timeout=timeout)
            except OllamaError as exc:
                entry.update(action='failed', changed=False, error=str(exc), error_kind=exc.kind)
                self.errors.append('deleting %s on %s failed: %s' % (model['name'], endpoint.description, exc))
            self.results.append(entry)
        self._keep_results()
        keep_alive = opts['keep_alive']
        if keep_alive is not None and opts['state'] == 'present' and not self.errors:
            loaded = endpoint.ps(timeout=timeout)
            for entry in self.results:
                if find_loaded(loaded, entry['name']):
                    entry['loaded'] = True
                    continue
                try:
                    endpoint.request('POST', '/api/generate', {'model': entry['name'], 'keep_alive': keep_alive,
                                                               'stream': False}, timeout=max(timeout, 300))
                    entry['loaded'] = True
                except OllamaError as exc:
                    entry['loaded'] = False
                    self.errors.append('loading %s on %s failed: %s' % (entry['name'], endpoint.description, exc))
        if any(e['changed'] for e in self.results):
            self.after = sorted(v['name'] for v in index_tags(endpoint.tags(timeout=timeout)).values())

    def outcome(self):
        """(result, errors) as sync_models returns them; (None, [message]) for an endpoint that did not answer."""
        self.progress.state['done'] = True
        self.progress.write(force=True)
        if self.failure is not None:
            return None, [str(self.failure)]
        return _result(self.endpoint, self.version, self.results, self.before, self.after, self.changes,
                       self.started, self.clock), self.errors


def sync_endpoints(endpoints, wanted, **kwargs):
    """Make each endpoint's model store match, with every missing model on every endpoint pulled at once, at
    most ``concurrency`` pulls at a time (in that order: each endpoint's first model, then each one's second...,
    so every replica starts at once); ``timeout`` bounds the pulls as a whole. Takes sync_models' options, with
    ``progress_paths`` (one per endpoint). Returns one ``(result, errors)`` per endpoint, as sync_models does;
    ``(None, [message])`` for one that did not answer. Nothing is written in check mode."""
    return [s.outcome() for s in _sync(endpoints, wanted, **kwargs)]


def _sync(endpoints, wanted, state='present', prune=False, insecure=False, insecure_registries=(),
          stall_timeout=300, attempts=3, check_mode=False, keep_alive=None, progress_paths=None,
          request_timeout=30, clock=time.monotonic, sleep=time.sleep, pull_timeout=7200, concurrency=1,
          timeout=None):
    options = dict(state=state, prune=prune, insecure=insecure, insecure_registries=insecure_registries,
                   stall_timeout=stall_timeout, attempts=attempts, keep_alive=keep_alive,
                   request_timeout=request_timeout, pull_timeout=pull_timeout)
    paths = list(progress_paths or [None] * len(endpoints))
    syncs = [EndpointSync(e, wanted, options, p, clock=clock, sleep=sleep) for e, p in zip(endpoints, paths)]
    run_bounded([s.read for s in syncs], concurrency)
    live = [s for s in syncs if s.failure is None]
    if check_mode:
        for sync in live:
            sync.check_results()
        return syncs
    jobs = []
    for rank in range(max([len(s.changes['pull']) for s in live] or [0])):
        for sync in live:
            if rank < len(sync.changes['pull']):
                jobs.append(_PullJob(sync, sync.changes['pull'][rank]))
    for job in run_bounded(jobs, concurrency, timeout=timeout, clock=clock):
        job.sync.timed_out(job.model, timeout)
    run_bounded([s.finish for s in live], concurrency)
    return syncs


class _PullJob(object):
    def __init__(self, sync, model):
        self.sync, self.model = sync, model

    def __call__(self):
        self.sync.pull(self.model)


def sync_models(endpoint, wanted, state='present', prune=False, insecure=False, insecure_registries=(),
                stall_timeout=300, attempts=3, check_mode=False, keep_alive=None, progress_path=None,
                request_timeout=30, clock=time.monotonic, sleep=time.sleep, pull_timeout=7200, concurrency=1):
    """Make the endpoint's model store match: the result dict of the ollama_model module, and a list
    of errors (each a message with its fix). Nothing is written in check mode. Raises :class:`OllamaError`
    when the endpoint does not answer."""
    (sync,) = _sync([endpoint], wanted, state=state, prune=prune, insecure=insecure,
                    insecure_registries=insecure_registries, stall_timeout=stall_timeout, attempts=attempts,
                    check_mode=check_mode, keep_alive=keep_alive, progress_paths=[progress_path],
                    request_timeout=request_timeout, clock=clock, sleep=sleep, pull_timeout=pull_timeout,
                    concurrency=concurrency)
    if sync.failure is not None:
        raise sync.failure
    return sync.outcome()


def _result(endpoint, version, results, before, after, changes, started, clock):
    order = dict((name, i) for i, name in enumerate(r['name'] for r in results))
    results.sort(key=lambda r: order[r['name']])
    return {
        'changed': any(r['changed'] for r in results),
        'endpoint': endpoint_label(endpoint),
        'version': version,
        'models': results,
        'pulled': [r['name'] for r in results if r['action'] in ('pulled', 'pull')],
        'deleted': [r['name'] for r in results if r['action'] in ('deleted', 'pruned', 'delete')],
        'before': before,
        'after': after,
        'elapsed': round(clock() - started, 3),
    }


def endpoint_info(endpoint, request_timeout=30):
    """Version, models (/api/tags) and loaded models with GPU residency (/api/ps) of one endpoint."""
    info = {'endpoint': endpoint_label(endpoint), 'reachable': False, 'version': None, 'models': [],
            'loaded': [], 'error': None}
    try:
        info['version'] = endpoint.version(timeout=min(request_timeout, 30))
        info['reachable'] = True
        info['models'] = [{'name': m.get('name'), 'digest': normalize_digest(m.get('digest')),
                           'size': int(m.get('size') or 0), 'modified_at': m.get('modified_at'),
                           'details': m.get('details') or {}} for m in endpoint.tags(timeout=request_timeout)]
        info['loaded'] = loaded_models(endpoint.ps(timeout=request_timeout))
    except OllamaError as exc:
        info['error'] = str(exc)
    info['all_loaded_on_gpu'] = bool(info['loaded']) and all(m['fully_on_gpu'] for m in info['loaded'])
    return info


def generate_check(endpoint, model, prompt='Why is the sky blue?', num_predict=16, seed=42, keep_alive=None,
                   min_tokens_per_second=0.0, max_load_seconds=0.0, max_total_seconds=0.0, allow_cpu=False,
                   timeout=300):
    """One short generation with a fixed seed, its speed, and the model's GPU residency afterwards.
    Returns ``(result, failures)``; failures name the number, the threshold and the fix."""
    body = {'model': model, 'prompt': prompt, 'stream': False,
            'options': {'num_predict': num_predict, 'seed': seed, 'temperature': 0}}
    if keep_alive is not None:
        body['keep_alive'] = keep_alive
    answer = endpoint.request('POST', '/api/generate', body, timeout=timeout)
    if not isinstance(answer, dict) or not answer.get('done'):
        raise OllamaError('%s did not finish the generation with %s: %r' % (endpoint.description, model, answer),
                          'look at the Ollama log of %s' % endpoint.description)
    metrics = generation_metrics(answer)
    loaded = find_loaded(endpoint.ps(timeout=min(timeout, 60)), model)
    result = dict(metrics, model=model, endpoint=endpoint_label(endpoint), response=answer.get('response', ''),
                  residency=loaded, thresholds={'min_tokens_per_second': min_tokens_per_second,
                                                'max_load_seconds': max_load_seconds,
                                                'max_total_seconds': max_total_seconds, 'allow_cpu': allow_cpu})
    failures = []
    where = '%s on %s' % (model, endpoint.description)
    if metrics['eval_count'] == 0:
        failures.append('%s generated no tokens. Fix: look at the Ollama log' % where)
    if min_tokens_per_second and metrics['tokens_per_second'] < min_tokens_per_second:
        failures.append('%s generated %.2f tokens/s, below the minimum %.2f. Fix: check that the model is fully in '
                        'GPU memory (residency below), or lower the threshold' % (
                            where, metrics['tokens_per_second'], min_tokens_per_second))
    if max_load_seconds and metrics['load_seconds'] > max_load_seconds:
        failures.append('%s took %.1f s to load, above the maximum %.1f s. Fix: warm the model up (keep_alive) or '
                        'use faster storage for the model store' % (where, metrics['load_seconds'], max_load_seconds))
    if max_total_seconds and metrics['total_seconds'] > max_total_seconds:
        failures.append('%s took %.1f s in all, above the maximum %.1f s' % (
            where, metrics['total_seconds'], max_total_seconds))
    if loaded is None:
        failures.append('%s is not in /api/ps after the generation, so its GPU residency is unknown. Fix: raise '
                        'keep_alive (OLLAMA_KEEP_ALIVE) above 0' % where)
    elif not loaded['fully_on_gpu'] and not allow_cpu:
        failures.append('%s is not fully in GPU memory: size_vram %d of %d bytes (%s%% on the GPU, %s). It runs at '
                        'CPU speed. Fix: give the pod a GPU (nvidia.com/gpu) with enough memory, pick a smaller model '
                        'or quantization, or set allow_cpu: true to accept it' % (
                            where, loaded['size_vram'], loaded['size'], loaded['gpu_percent'], loaded['processor']))
    return result, failures
