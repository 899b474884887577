# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module base, API requests by path, paginated lists.

Modules talk to the API by path through kubernetes.core's client (cluster_client.py), with the same credentials,
K8S_AUTH_* variables and client cache as every kubernetes.core task, over the client's one urllib3 pool.
Requests go by path (no resource objects and no discovery per request), and a stream is read line by line.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json

from ansible_collections.llmops.ollama.plugins.module_utils.inprocess import make_module
from ansible_collections.llmops.ollama.plugins.module_utils.cluster_client import (  # noqa: F401 (re-exported)
    HAS_CLIENT, ClusterError, connect, unreachable)

try:
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
    HAS_KUBERNETES_CORE = True
except ImportError:  # reported by new_module with the fix
    AUTH_ARG_SPEC, AnsibleK8SModule = {}, None
    HAS_KUBERNETES_CORE = False
# The action plugins run a module in the controller only where both import there (else as a module process,
# which reports what is missing).
HAS_KUBERNETES_CORE = HAS_KUBERNETES_CORE and HAS_CLIENT

PAGE_SIZE = 500
MAX_PAGES = 10000


def auth_argument_spec():
    return copy.deepcopy(AUTH_ARG_SPEC)


def new_module(argument_spec, **kwargs):
    """An AnsibleK8SModule with the cluster auth options added to argument_spec."""
    spec = auth_argument_spec()
    spec.update(argument_spec)
    if AnsibleK8SModule is None:
        from ansible.module_utils.basic import AnsibleModule
        module = AnsibleModule(argument_spec=spec, **kwargs)
        module.fail_json(msg='the kubernetes.core collection (>= 6.2.0) is missing. Fix: pip install ansible==12.x '
                             'or ansible-galaxy collection install -r requirements.yml')
    # Api() reports a missing kubernetes client, so a module that does not reach the cluster still runs.
    return unmask_kubeconfig_path(make_module(AnsibleK8SModule, spec, check_k8s=False, **kwargs))


def unmask_kubeconfig_path(module):
    """kubernetes.core marks ``kubeconfig`` no_log, for a kubeconfig given inline as a dict (credentials); a path is
    no secret, and masking it turned 'the kubeconfig /x does not exist' into 'the kubeconfig ******** does not
    exist'. A path stays out of the masked values; a dict's values stay masked."""
    path = module.params.get('kubeconfig')
    if isinstance(path, str):
        # AnsibleModule and the in-process module keep them in no_log_values (AnsibleK8SModule wraps one).
        values = getattr(getattr(module, '_module', module), 'no_log_values', None)
        if isinstance(values, set):
            values.discard(path)
    return module


class Api(object):
    """Requests by path on one API client; every call bounded by request_timeout seconds. One Api serves
    several threads (the client's urllib3 pool is thread-safe and keeps a connection per concurrent request)."""

    def __init__(self, module, request_timeout=30):
        self.timeout = request_timeout
        client, self.source = connect(module, request_timeout)
        self.transport = ClientTransport(client)
        self.host = self.transport.host

    def _call(self, method, path, body=None, query=None, timeout=None, stream=False, content_type=None,
              headers=None):
        headers = dict(headers or {}, Accept='application/json')
        headers['Content-Type'] = content_type or 'application/json'
        answer = self.send(method, path, body=body, query=query, headers=headers, timeout=timeout, stream=stream)
        if answer.status >= 400:
            raise ClusterError(*describe_api_error(method, path, answer.status, answer.data, answer.reason,
                                                   self.source))
        return answer

    def send(self, method, path, body=None, query=None, headers=None, timeout=None, stream=False):
        """The Response whatever its status; a ClusterError only where no answer came."""
        try:
            return self.transport.call(method, path, body=body, query=query, headers=headers,
                                       timeout=timeout or self.timeout, stream=stream)
        except ConnectionError as exc:
            raise unreachable(exc, self.source, host=self.host, proxy=self.transport.proxy)

    def request(self, method, path, body=None, query=None, timeout=None, content_type=None, headers=None):
        """The decoded JSON answer; headers are sent as well (e.g. the gate's admin key through a pod proxy)."""
        response = self._call(method, path, body=body, query=query, timeout=timeout, content_type=content_type,
                              headers=headers)
        data = response.data
        if not data:
            return {}
        try:
            return json.loads(data)
        except ValueError:
            return {'raw': data.decode('utf-8', 'replace')}

    def stream_lines(self, method, path, body=None, timeout=None, headers=None):
        """Yield each line of a streamed answer (Ollama's progress stream), decoded as JSON. A read that outlasts
        timeout, or a stream that breaks off, raises ConnectionError with the client's text: the caller tells a
        stall (its 'timed out') from a break."""
        answer = self._call(method, path, body=body, timeout=timeout, stream=True, headers=headers)
        for line in answer.lines():
            yield json.loads(line)

    def get(self, path, **query):
        return self.request('GET', path, query=query)

    def get_or_none(self, path, **query):
        try:
            return self.get(path, **query)
        except ClusterError as exc:
            if exc.status == 404:
                return None
            raise

    def iter_all(self, path, **query):
        """Every item of a collection, one page of PAGE_SIZE at a time: a caller that keeps only what it
        needs of each item never holds the whole list (thousands of nodes)."""
        token = None
        for _page in range(MAX_PAGES):
            params = dict(query, limit=PAGE_SIZE)
            if token:
                params['continue'] = token
            page = self.get(path, **params)
            yield from page.get('items') or []
            token = (page.get('metadata') or {}).get('continue')
            if not token:
                return
        raise ClusterError('listing %s returned more than %d pages' % (path, MAX_PAGES), 'report this as a bug')

    def list_all(self, path, **query):
        return list(self.iter_all(path, **query))

    def version(self):
        return self.get('/version')


def selector_text(selector):
    """A label selector as the API takes it: a dict becomes key=value,key2=value2; text stays as it is."""
    if isinstance(selector, dict):
        return ','.join('%s=%s' % (k, v) for k, v in sorted(selector.items()))
    return selector


def pod_summary(pod):
    """A pod's name, node, phase, readiness, IP and image, and one line for reports."""
    meta, spec, status = pod.get('metadata') or {}, pod.get('spec') or {}, pod.get('status') or {}
    ready = any(c.get('type') == 'Ready' and c.get('status') == 'True' for c in status.get('conditions') or [])
    node = spec.get('nodeName') or '(not scheduled)'
    phase = status.get('phase') or 'Unknown'
    image = ((spec.get('containers') or [{}])[0]).get('image', '')
    terminating = bool(meta.get('deletionTimestamp'))
    line = '%s on %s (%s%s, %s, %s)' % (meta.get('name'), node, phase, ', terminating' if terminating else '',
                                        'ready' if ready else 'not ready', image)
    return {'name': meta.get('name'), 'namespace': meta.get('namespace'), 'uid': meta.get('uid'), 'node': node,
            'phase': phase, 'ready': ready, 'terminating': terminating, 'ip': status.get('podIP') or '',
            'image': image, 'line': line, 'init_error': init_error(status)}


def init_error(status, failures=2):
    """``container: message`` of an init container that failed ``failures`` runs (the last one's termination
    message: one failure may be a blip the kubelet's retry mends), or ''."""
    for st in status.get('initContainerStatuses') or []:
        now = (st.get('state') or {}).get('terminated')
        last = (st.get('lastState') or {}).get('terminated')
        if now and now.get('exitCode') == 0:
            continue  # it ended well at last
        failed_now = bool(now and now.get('exitCode') not in (0, None))
        runs = (st.get('restartCount') or 0) + (1 if failed_now else 0)
        term = now if failed_now else last
        if term and term.get('exitCode') not in (0, None) and runs >= failures:
            return '%s: %s' % (st.get('name'), _telling_line(term.get('message') or '')
                               or 'exit code %s' % term.get('exitCode'))
    return ''


def _telling_line(message):
    """The line of a termination message that says why: the last one with a fix, else a Go panic's or a fatal log
    line (a stack trace follows it), else the last line."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    fixes = [line for line in lines if 'Fix:' in line]
    if fixes:
        return fixes[-1]
    fatal = [line for line in lines if line.startswith('panic:') or 'level=fatal' in line]
    if fatal:
        return fatal[0]
    return lines[-1] if lines else ''


def read_pods(api, namespace, selector):
    """The summaries of the pods matching selector, sorted by name, and the names of those that run and are
    not terminating."""
    listed = api.list_all('/api/v1/namespaces/%s/pods' % namespace, labelSelector=selector_text(selector))
    pods = sorted((pod_summary(p) for p in listed), key=lambda p: p['name'])
    return pods, [p['name'] for p in pods if p['phase'] == 'Running' and not p['terminating']]


def pod_proxy_path(namespace, pod, port, path):
    return '/api/v1/namespaces/%s/pods/%s:%s/proxy%s' % (namespace, pod, port, path)


def service_proxy_path(namespace, service, port, path):
    return '/api/v1/namespaces/%s/services/%s:%s/proxy%s' % (namespace, service, port, path)


def describe_api_error(method, path, status, body, reason, source=None):
    """(message, fix, status) for an error answer; a refused credential names where it came from."""
    text = body.decode('utf-8', 'replace') if isinstance(body, bytes) else (body or '')
    try:
        answer = json.loads(text)
        message = answer.get('message') or answer.get('error') or reason
    except (TypeError, ValueError, AttributeError):
        message = text.strip() or reason
    if status == 401:
        where = source.describe() if source is not None else 'the kubeconfig'
        fix = ('the credentials of %s were refused (expired or revoked): renew them (a new token, certificate or '
               'login) or choose another ollama_context' % where)
    elif status == 403:
        fix = 'grant this user the permissions listed in docs/rbac.md (or run with a more privileged context)'
    elif status == 404:
        fix = 'the object or API is not there'
    else:
        fix = 'see the API server message above'
    return ('%s %s answered %s: %s' % (method, path, status, message), fix, status)


class Response(object):
    """An answer: status, reason and body (data), or for a stream its lines."""

    def __init__(self, status, reason, data=None, raw=None):
        self.status = status
        self.reason = reason
        self.data = data
        self._raw = raw

    def lines(self):
        """Each non-empty line of a streamed answer."""
        for line in iter(self._raw.readline, b''):
            if line.strip():
                yield line


class ClientTransport(object):
    """Requests by path through kubernetes.core's client: its ApiClient adds the credentials (and refreshes an
    exec plugin's token when its expirationTimestamp passes) and sends over its urllib3 pool."""

    def __init__(self, client):
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError
        self._errors = (ApiException, HTTPError)
        self.api_client = client.client.client
        self.host = client.configuration.host
        self.proxy = client.configuration.proxy

    def call(self, method, path, body=None, query=None, headers=None, timeout=30, stream=False):
        """The Response; ConnectionError (with the client's text) where the server gave no answer."""
        try:
            answer = self.api_client.call_api(
                path, method, query_params=list((query or {}).items()), header_params=headers, body=body,
                auth_settings=['BearerToken'], _preload_content=False, _return_http_data_only=True,
                _request_timeout=(min(10, timeout), timeout))
        except self._errors[0] as exc:
            if not exc.status:  # status 0: the client's own TLS or connection failure, not an answer
                raise ConnectionError(exc.reason)
            return Response(exc.status, exc.reason, data=exc.body)
        except self._errors[1] as exc:
            raise ConnectionError(getattr(exc, 'reason', None) or exc)
        if stream:
            return Response(answer.status, answer.reason, raw=_ClientStream(answer, self._errors[1]))
        return Response(answer.status, answer.reason, data=answer.data)


class _ClientStream(object):
    """A urllib3 stream whose read errors are ConnectionErrors (with the text, so a timeout still says "timed out")."""

    def __init__(self, answer, errors):
        self._answer = answer
        self._errors = errors

    def readline(self):
        try:
            return self._answer.readline()
        except self._errors as exc:
            raise ConnectionError(str(exc))
