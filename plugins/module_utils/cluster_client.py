# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one adapter between the collection's modules and kubernetes.core's client.

``connect(module, timeout)`` returns kubernetes.core's K8SClient (``get_api_client``), so the collection's
modules take the same auth options, ``K8S_AUTH_*`` variables, kubeconfig merging, exec credential plugins,
in-cluster service account, proxy settings and client cache as every kubernetes.core task. What is left here
is what the client does not do, or does in a way that cannot serve a converge:

- every failure is a ClusterError that names the kubeconfig file (and context, user, plugin) with the fix: the
  client logs a failing exec plugin and carries on without credentials, which the API server then answers
  with a 401 that hides the cause;
- every step is bounded by the request timeout: the client waits for an exec plugin forever and sends its
  discovery requests (when it has no cache file) without a timeout and with urllib3's three retries;
- an exec plugin never prompts (a converge has no terminal to answer it);
- the kubeconfig's ``proxy-url``, which the client ignores, is passed on as kubernetes.core's ``proxy``
  option (``http://`` and ``https://`` proxies, through urllib3);
- in the controller process (plugins/module_utils/inprocess.py) the environment of the task is read as a
  module process would read it, and the client's temporary certificate files are removed after the task
  (the client removes them at exit, which a forked worker never reaches).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import logging
import os
import re
import subprocess
import threading
import types

from ansible_collections.llmops.ollama.plugins.module_utils import inprocess

try:
    from kubernetes.config import exec_provider, kube_config
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.dynamic.exceptions import DynamicApiError
    from urllib3.exceptions import HTTPError as Urllib3Error
    from urllib3.exceptions import MaxRetryError
    from urllib3.util.retry import Retry
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_MAP
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s import client as core_client
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.exceptions import CoreException
    HAS_CLIENT = True
    CLIENT_IMPORT_ERROR = None
except ImportError as exc:  # reported by connect() with the fix
    HAS_CLIENT = False
    CLIENT_IMPORT_ERROR = exc
    AUTH_ARG_MAP = {}

SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token'
KUBECONFIG_FIX = ('set ollama_kubeconfig (or K8S_AUTH_KUBECONFIG) to an existing kubeconfig file and ollama_context '
                  '(or K8S_AUTH_CONTEXT) to a context in it')
TLS_FIX = ('fix the certificate-authority, client-certificate or client-key path in the kubeconfig (a relative path is '
           'relative to the kubeconfig file), or the ca_cert, client_cert and client_key options')
_LOCK = threading.Lock()


class ClusterError(Exception):
    """An API answer or a connection failure, with the fix to show the user."""

    def __init__(self, message, fix, status=None):
        super(ClusterError, self).__init__(message)
        self.message = message
        self.fix = fix
        self.status = status

    def __str__(self):
        return '%s. Fix: %s' % (self.message, self.fix)


def _short(exc):
    text = str(exc)
    return text if len(text) < 400 else text[:400] + '...'


# The credentials' source, for messages (kubernetes.core decides; this only names what it decided on)


def _auth_value(params, name, environ):
    """An auth option as kubernetes.core's _create_auth_spec reads it: the module option, then
    K8S_AUTH_<OPTION>, then K8S_AUTH_<CLIENT NAME> (e.g. K8S_AUTH_CLIENT_CERT, then K8S_AUTH_CERT_FILE)."""
    if params.get(name) is not None:
        return params[name]
    client_name = next((true for true, arg in AUTH_ARG_MAP.items() if arg == name), name)
    return environ.get('K8S_AUTH_' + name.upper()) or environ.get('K8S_AUTH_' + client_name.upper())


class Source(object):
    """Where kubernetes.core takes one module's credentials from: options (host and a credential), a kubeconfig,
    or the pod's service account; with what the messages need to name it."""

    def __init__(self, params, environ=None):
        environ = os.environ if environ is None else environ
        self.params, self.environ = params, environ

        def value(name):
            return _auth_value(params, name, environ)
        self.kubeconfig = value('kubeconfig')
        self.context = value('context')
        self.proxy = value('proxy')
        enough = value('host') and (value('api_key') or (value('username') and value('password'))
                                    or (value('client_cert') and value('client_key')))
        if enough:
            self.kind = 'options'
        elif self.kubeconfig or self.context:
            self.kind = 'kubeconfig'
        elif environ.get('KUBERNETES_SERVICE_HOST') and os.path.exists(SERVICE_ACCOUNT_TOKEN):
            self.kind = 'in-cluster'
        else:
            self.kind = 'kubeconfig'
        # Where no option names one: the client's default, read from the environment now as a module process would.
        self.defaulted = None
        if self.kind == 'kubeconfig' and not self.kubeconfig:
            self.defaulted = 'KUBECONFIG' if environ.get('KUBECONFIG') else 'home'
            self.kubeconfig = environ.get('KUBECONFIG') or '~/.kube/config'
        self._merged = None

    @property
    def inline(self):
        return isinstance(self.kubeconfig, dict)

    @property
    def paths(self):
        if self.kind != 'kubeconfig' or self.inline:
            return []
        return [os.path.expanduser(p) for p in str(self.kubeconfig).split(os.pathsep) if p]

    @property
    def file_text(self):
        """The kubeconfig as the user named it: a path, a list of paths, or an inline kubeconfig."""
        return 'the inline kubeconfig' if self.inline else 'the kubeconfig %s' % self.kubeconfig

    def check_files(self):
        """A ClusterError when no file of the kubeconfig exists (the client would say 'No configuration
        found'); a list of files (a:b) is merged as KUBECONFIG is, where missing files are skipped."""
        paths = self.paths
        if paths and not any(os.path.exists(p) for p in paths):
            fix = 'set ollama_kubeconfig (or K8S_AUTH_KUBECONFIG) to the path of an existing kubeconfig'
            if self.defaulted == 'home':  # the HOME of the user the module runs as (a become task's is another's)
                raise ClusterError('no kubeconfig at %s (the default: neither ollama_kubeconfig, K8S_AUTH_KUBECONFIG '
                                   'nor KUBECONFIG is set)' % ', '.join(paths), fix)
            raise ClusterError('the kubeconfig %s%s does not exist'
                               % (self.kubeconfig, ' (from KUBECONFIG)' if self.defaulted else ''), fix)

    def merged(self):
        """The kubeconfig as the client merges it (a ConfigNode), or None where there is none or it cannot be
        read (the client's own load then reports why)."""
        if self._merged is None and self.kind == 'kubeconfig':
            try:
                if self.inline:
                    self._merged = kube_config.ConfigNode('inline kubeconfig', self.kubeconfig)
                else:
                    self._merged = kube_config.KubeConfigMerger(str(self.kubeconfig)).config
            except Exception:  # pylint: disable=broad-except
                self._merged = None
        return self._merged

    def active(self):
        """(context name, context, cluster, user) of the kubeconfig the client loads; entries are dicts, {} where
        missing."""
        merged = self.merged()
        if merged is None:
            return None, {}, {}, {}
        try:
            name = self.context or merged.safe_get('current-context')
            context = merged['contexts'].get_with_name(name, safe=True)
            context = context.value.get('context') or {} if context is not None else {}
        except Exception:  # pylint: disable=broad-except
            return None, {}, {}, {}

        def entry(section, key):
            try:
                found = merged[section].get_with_name(context.get(key), safe=True)
            except Exception:  # pylint: disable=broad-except
                return {}
            return (found.value.get(key) or {}) if found is not None else {}
        return name, context, entry('clusters', 'cluster'), entry('users', 'user')

    def describe(self):
        """'the kubeconfig F (context C, user U)', 'the module options ...' or 'the pod's service account'."""
        if self.kind == 'options':
            return 'the credentials given as options (host with api_key, a password or a client certificate)'
        if self.kind == 'in-cluster':
            return "the pod's service account (%s)" % SERVICE_ACCOUNT_TOKEN
        name, context, _cluster, _user = self.active()
        if not name:
            return self.file_text
        return '%s (context %s, user %s)' % (self.file_text, name, context.get('user') or '(none)')

    def proxy_url(self):
        """The active cluster's proxy-url, where no proxy option (or K8S_AUTH_PROXY) is set; else None. The file
        is parsed a second time only when it names a proxy-url at all."""
        if self.proxy or self.kind != 'kubeconfig':
            return None
        if not self.inline and not any(_mentions(p, b'proxy-url') for p in self.paths):
            return None
        return self.active()[2].get('proxy-url')


def _mentions(path, text):
    try:
        with open(path, 'rb') as handle:
            return text in handle.read()
    except OSError:
        return False  # the client's load reports it


# Bounds and no prompt for the client's exec credential plugin


class _ExecProcess(subprocess.Popen if hasattr(subprocess, 'Popen') else object):
    """The client's ExecProvider runs the plugin with this Popen: bounded by the request timeout, with no
    terminal (it hands the plugin stdin and stderr when stdout is a terminal, and waits forever)."""

    timeout = 30

    def __init__(self, args, **kwargs):
        kwargs.update(stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        env = kwargs.get('env')
        if env and env.get('KUBERNETES_EXEC_INFO'):
            info = json.loads(env['KUBERNETES_EXEC_INFO'])
            info.setdefault('spec', {})['interactive'] = False
            env['KUBERNETES_EXEC_INFO'] = json.dumps(info)
        super(_ExecProcess, self).__init__(args, **kwargs)

    def communicate(self, input=None, timeout=None):  # pylint: disable=redefined-builtin
        limit = self.timeout if timeout is None else timeout
        try:
            return super(_ExecProcess, self).communicate(input, timeout=limit)
        except subprocess.TimeoutExpired:
            self.kill()
            super(_ExecProcess, self).communicate()
            raise ConfigException('exec: %s did not answer within %d seconds' % (self.args[0], limit))


if HAS_CLIENT:
    _exec_subprocess = types.ModuleType('subprocess')
    _exec_subprocess.__dict__.update(subprocess.__dict__)
    _exec_subprocess.Popen = _ExecProcess
    exec_provider.subprocess = _exec_subprocess


class _ErrorsLogged(logging.Handler):
    """The ERROR records this thread logs (the client logs a failing exec plugin, then carries on)."""

    def __init__(self):
        super(_ErrorsLogged, self).__init__(logging.ERROR)
        self.thread = threading.current_thread().ident
        self.messages = []

    def emit(self, record):
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


# The client


# A refused connection is tried once more; a request that went out is never sent again (a POST or a PATCH may have
# run), and a read that timed out is not waited for twice. One object, so every Api of a process shares one pool.
RETRIES = Retry(total=1, connect=1, read=0, redirect=0, status=0, other=0) if HAS_CLIENT else None
# How long past the request timeout the load may take before it is given up (an exec plugin is stopped at the
# request timeout itself, and says so).
LOAD_MARGIN = 2


def connect(module, timeout):
    """(kubernetes.core's K8SClient, Source) for module's auth options; a ClusterError with the fix when the
    credentials cannot be loaded, all within about timeout seconds."""
    if not HAS_CLIENT:
        raise ClusterError('the kubernetes Python client or the kubernetes.core collection is missing: %s'
                           % CLIENT_IMPORT_ERROR, 'pip install -r requirements.txt (kubernetes) and '
                           'ansible-galaxy collection install -r requirements.yml')
    source = Source(module.params)
    source.check_files()
    extra = {}
    proxy = source.proxy_url()
    if proxy:
        extra['proxy'] = proxy
    temp_files, pooled = set(kube_config._temp_files), set(core_client._pool)
    if inprocess.running():
        inprocess.after_run(lambda: _forget(temp_files, pooled))
    with _LOCK:
        saved = kube_config.KUBE_CONFIG_DEFAULT_LOCATION
        # A module process reads KUBECONFIG when the client is imported; in the controller it is the task's.
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = os.environ.get('KUBECONFIG') or '~/.kube/config'
        _ExecProcess.timeout = timeout
        try:
            done = _load(module, extra, timeout + LOAD_MARGIN)
        finally:
            kube_config.KUBE_CONFIG_DEFAULT_LOCATION = saved
    client, error, logged = done
    if client is None and error is None:
        server = source.active()[2].get('server') or 'in the kubeconfig'
        raise ClusterError('no answer from the Kubernetes API server %s within %d seconds, for %s (the client\'s '
                           'first discovery requests)' % (server, timeout, source.describe()),
                           'check that the server is up and reachable from the controller%s'
                           % (' through the proxy %s' % proxy if proxy else ''))
    if error is not None:
        raise _load_error(error, source, proxy)
    if logged:
        raise _credential_error(logged, source)
    pool_manager = client.client.client.rest_client.pool_manager
    if pool_manager.connection_pool_kw.get('retries') is not RETRIES:
        pool_manager.clear()  # the discovery's connections (urllib3's retries): every request then uses one pool
        pool_manager.connection_pool_kw['retries'] = RETRIES
    return client, source


def _load(module, extra, limit):
    """(client, exception, messages logged) of get_api_client, run in a thread given up after limit seconds
    ((None, None, None) then): the client's first discovery requests carry no timeout. The messages are the ERROR records that
    thread logged (the client logs a failing exec plugin, then carries on without credentials)."""
    done = []

    def load():
        logged = _ErrorsLogged()
        root = logging.getLogger()
        root.addHandler(logged)
        try:
            done.append((core_client.get_api_client(module=module, **extra), None, logged.messages))
        except Exception as exc:  # pylint: disable=broad-except
            done.append((None, exc, logged.messages))
        finally:
            root.removeHandler(logged)
    worker = threading.Thread(target=load, name='llmops-client-load')
    worker.daemon = True  # given up: it ends with the process
    worker.start()
    worker.join(limit)
    return done[0] if done else (None, None, None)


def _forget(temp_files, pooled):
    """Remove the certificate files the client wrote since (it removes them only at exit) and the clients
    cached since, which name them."""
    for key in set(kube_config._temp_files) - temp_files:
        try:
            os.remove(kube_config._temp_files.pop(key))
        except OSError:
            pass
    for key in set(core_client._pool) - pooled:
        core_client._pool.pop(key, None)


def _credential_error(messages, source):
    """The exec plugin (or another credential) the client failed to load and logged."""
    _name, _context, _cluster, user = source.active()
    spec = user.get('exec') or {}
    text = '; '.join(m.strip() for m in messages)
    if spec:
        hint = (' (%s)' % spec['installHint'].strip()) if spec.get('installHint') else ''
        return ClusterError('the exec credential plugin %s of %s failed: %s'
                            % (spec.get('command'), source.describe(), text),
                            'run the command by hand to see what it needs (e.g. a fresh login)%s, or set '
                            'ollama_kubeconfig and ollama_context to another user' % hint)
    return ClusterError('cannot load the credentials of %s: %s' % (source.describe(), text), KUBECONFIG_FIX)


def _load_error(exc, source, proxy):
    """A ClusterError for an exception of get_api_client, naming the file it concerns."""
    import yaml  # ansible-core's own dependency
    where = source.describe()
    if isinstance(exc, OSError) and getattr(exc, 'filename', None):
        name = str(exc.filename)
        if os.path.abspath(name) in [os.path.abspath(p) for p in source.paths]:
            return ClusterError('cannot read the kubeconfig %s: %s' % (name, exc.strerror),
                                'make it readable by the user that runs ansible-playbook (e.g. chmod 600 %s as its '
                                'owner), or set ollama_kubeconfig to a readable copy' % name)
        return ClusterError('cannot load the TLS files of the kubeconfig (%s) for %s: %s' % (name, where, exc.strerror),
                            TLS_FIX)
    if isinstance(exc, yaml.YAMLError):
        return ClusterError('%s is not valid YAML: %s' % (source.file_text, _short(exc)),
                            'repair the file (kubectl config view --kubeconfig FILE shows where) or set '
                            'ollama_kubeconfig to another file')
    missing = re.search(r'File does not exist: (\S+)', str(exc))
    if missing:  # the client checks the certificate-authority, client-certificate and client-key paths
        return ClusterError('cannot load the TLS files of the kubeconfig (%s) for %s: it does not exist'
                            % (missing.group(1), where), TLS_FIX)
    if isinstance(exc, (CoreException, ConfigException)):
        message = str(exc).replace('Could not create API client: ', '')
        return ClusterError('cannot load the cluster credentials from %s: %s' % (where, _short(message)),
                            KUBECONFIG_FIX)
    if isinstance(exc, DynamicApiError):  # the discovery request of a first connection was refused
        from ansible_collections.llmops.ollama.plugins.module_utils.k8s import describe_api_error
        return ClusterError(*describe_api_error('GET', '/version', exc.status, exc.body, exc.reason, source))
    if isinstance(exc, Urllib3Error):
        return unreachable(getattr(exc, 'reason', None) or exc, source, proxy=proxy or source.proxy)
    return ClusterError('cannot load the cluster credentials from %s: %s' % (where, _short(exc)), KUBECONFIG_FIX)


def unreachable(reason, source, host=None, proxy=None):
    """A ClusterError for a request that got no answer: the server (or the proxy) named, with the fix."""
    text = _short(reason.reason if isinstance(reason, MaxRetryError) and reason.reason else reason)
    through = ' through the proxy %s' % proxy if proxy else ''
    where = 'the Kubernetes API server%s' % (' at %s' % host if host else '')
    if proxy and 'CERTIFICATE_VERIFY_FAILED' in text and 'proxy' in text.lower():
        fix = ('the https proxy\'s certificate is checked against the cluster\'s CA (certificate-authority of the '
               'kubeconfig, or ca_cert): give the proxy a certificate that CA signed, or use an http:// proxy-url')
    elif proxy:
        fix = ('check that the proxy (proxy-url of the kubeconfig, the proxy option or K8S_AUTH_PROXY) is up and '
               'lets the controller reach the API server, or set no_proxy (K8S_AUTH_NO_PROXY) for it')
    else:
        fix = ('check that the server in %s is up and reachable from the controller, and that ollama_context '
               '(K8S_AUTH_CONTEXT) names the right cluster' % source.describe())
    return ClusterError('cannot reach %s%s: %s' % (where, through, text), fix)
