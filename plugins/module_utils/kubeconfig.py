# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster credentials and an HTTPS transport from the standard library.

The same inputs as every kubernetes.core task (module options, then K8S_AUTH_* variables, then in-cluster
service account or kubeconfig, with KUBECONFIG's list of files merged), resolved without the kubernetes client:
importing that client costs a quarter of a second and 40 MB in every ansible-playbook run and in every module
process. Kubeconfig users of a legacy `auth-provider` raise Unsupported, and k8s.py then uses the kubernetes
client instead.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import json
import os
import select
import shutil
import socket
import ssl
import subprocess
import tempfile

try:
    import http.client as http_client
    from urllib.parse import quote, unquote, urlencode, urlsplit
except ImportError:  # Python 2 is not supported; sanity imports this file under it
    http_client = None

# Option name -> environment variable suffixes, as kubernetes.core reads them (K8S_AUTH_<NAME>).
ENV_NAMES = {
    'kubeconfig': ('KUBECONFIG',), 'context': ('CONTEXT',), 'host': ('HOST',), 'api_key': ('API_KEY',),
    'username': ('USERNAME',), 'password': ('PASSWORD',), 'validate_certs': ('VALIDATE_CERTS', 'VERIFY_SSL'),
    'ca_cert': ('CA_CERT', 'SSL_CA_CERT'), 'client_cert': ('CLIENT_CERT', 'CERT_FILE'),
    'client_key': ('CLIENT_KEY', 'KEY_FILE'), 'proxy': ('PROXY',), 'no_proxy': ('NO_PROXY',),
    'impersonate_user': ('IMPERSONATE_USER',), 'impersonate_groups': ('IMPERSONATE_GROUPS',),
}
PROXY_HEADER_NAMES = ('proxy_basic_auth', 'basic_auth', 'user_agent')
SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'
EXEC_TIMEOUT = 60


class Unsupported(Exception):
    """A credential this module does not resolve itself (a legacy auth-provider)."""


class ConfigError(Exception):
    """Credentials that cannot be loaded, with the reason."""


def _false(text):
    return str(text).strip().lower() in ('0', 'false', 'no', 'off')


def auth_options(params, environ=None):
    """The auth options that are set: module options first, then K8S_AUTH_* variables."""
    environ = os.environ if environ is None else environ
    auth = {}
    for name, suffixes in ENV_NAMES.items():
        value = params.get(name)
        if value is None:
            value = next((environ['K8S_AUTH_' + s] for s in suffixes if environ.get('K8S_AUTH_' + s)), None)
            if value is not None and name == 'validate_certs':
                value = not _false(value)
            elif value is not None and name == 'impersonate_groups':
                value = [group for group in value.split(',') if group]
        if value is not None:
            auth[name] = value
    headers = dict(params.get('proxy_headers') or {})
    for name in PROXY_HEADER_NAMES:
        if headers.get(name) is None and environ.get('K8S_AUTH_PROXY_HEADERS_' + name.upper()):
            headers[name] = environ['K8S_AUTH_PROXY_HEADERS_' + name.upper()]
    if any(v for v in headers.values()):
        auth['proxy_headers'] = headers
    return auth


class Endpoint(object):
    """Where the API server is and how to authenticate to it."""

    def __init__(self, server):
        self.server = server.rstrip('/')
        self.ca_file = self.ca_data = None
        self.verify = True
        self.tls_server_name = None
        self.cert_file = self.key_file = None
        self.cert_data = self.key_data = None
        self.headers = {}
        self.proxy = None
        self.no_proxy = None
        self.proxy_headers = None

    def bearer(self, token):
        self.headers['Authorization'] = 'Bearer %s' % token.strip()

    def basic(self, username, password):
        pair = ('%s:%s' % (username, password)).encode('utf-8')
        self.headers['Authorization'] = 'Basic %s' % base64.b64encode(pair).decode('ascii')


def load_endpoint(params, environ=None):
    """The Endpoint for these module params, resolved as kubernetes.core resolves them."""
    environ = os.environ if environ is None else environ
    auth = auth_options(params, environ)
    host = auth.get('host')
    enough = host and (auth.get('api_key') or (auth.get('username') and auth.get('password'))
                       or (auth.get('client_cert') and auth.get('client_key')))
    if enough:
        endpoint = Endpoint(host)
    elif auth.get('kubeconfig') or auth.get('context'):
        endpoint = from_kubeconfig(auth.get('kubeconfig'), auth.get('context'), environ)
    else:
        endpoint = in_cluster(environ) or from_kubeconfig(None, None, environ)
    _override(endpoint, auth)
    return endpoint


def _override(endpoint, auth):
    if auth.get('host'):
        endpoint.server = auth['host'].rstrip('/')
    if auth.get('api_key'):
        endpoint.bearer(auth['api_key'])
    elif auth.get('username') and auth.get('password'):
        endpoint.basic(auth['username'], auth['password'])
    if auth.get('validate_certs') is not None:
        endpoint.verify = bool(auth['validate_certs'])
    if auth.get('ca_cert'):
        endpoint.ca_file, endpoint.ca_data = os.path.expanduser(auth['ca_cert']), None
    if auth.get('client_cert'):
        endpoint.cert_file, endpoint.cert_data = os.path.expanduser(auth['client_cert']), None
    if auth.get('client_key'):
        endpoint.key_file, endpoint.key_data = os.path.expanduser(auth['client_key']), None
    if auth.get('proxy'):
        endpoint.proxy = auth['proxy']
    if auth.get('no_proxy'):
        endpoint.no_proxy = auth['no_proxy']
    if auth.get('proxy_headers'):
        endpoint.proxy_headers = _proxy_headers(auth['proxy_headers'])
    if auth.get('impersonate_user'):
        endpoint.headers['Impersonate-User'] = auth['impersonate_user']
    if auth.get('impersonate_groups'):
        endpoint.headers['Impersonate-Group'] = list(auth['impersonate_groups'])


def _proxy_headers(settings):
    headers = {}
    for name, header in (('proxy_basic_auth', 'Proxy-Authorization'), ('basic_auth', 'Authorization')):
        if settings.get(name):
            headers[header] = 'Basic %s' % base64.b64encode(settings[name].encode('utf-8')).decode('ascii')
    if settings.get('user_agent'):
        headers['User-Agent'] = settings['user_agent']
    return headers


def in_cluster(environ):
    """The pod's service account, when this runs in a pod; else None."""
    host, port = environ.get('KUBERNETES_SERVICE_HOST'), environ.get('KUBERNETES_SERVICE_PORT')
    token_file = os.path.join(SERVICE_ACCOUNT_DIR, 'token')
    if not (host and port and os.path.exists(token_file)):
        return None
    endpoint = Endpoint('https://%s:%s' % ('[%s]' % host if ':' in host else host, port))
    with open(token_file) as handle:
        endpoint.bearer(handle.read())
    endpoint.ca_file = os.path.join(SERVICE_ACCOUNT_DIR, 'ca.crt')
    return endpoint


def _read_yaml(path):
    import yaml  # ansible-core's own dependency
    with open(path) as handle:
        return yaml.load(handle, Loader=getattr(yaml, 'CSafeLoader', yaml.SafeLoader)) or {}


def merged_kubeconfig(kubeconfig, environ):
    """(config, directory of each named entry) for a path, a list of paths (KUBECONFIG) or a dict.
    As kubectl merges: the first file that names a cluster, user or context wins, and the first
    current-context set wins."""
    if isinstance(kubeconfig, dict):
        return kubeconfig, {}
    paths = kubeconfig or environ.get('KUBECONFIG') or '~/.kube/config'
    paths = [os.path.expanduser(p) for p in str(paths).split(os.pathsep) if p]
    existing = [p for p in paths if os.path.exists(p)]
    if not existing:
        raise ConfigError('no kubeconfig at %s' % ', '.join(paths))
    merged, origin = {'clusters': [], 'users': [], 'contexts': []}, {}
    for path in existing:
        config = _read_yaml(path)
        if not isinstance(config, dict):
            raise ConfigError('%s is not a kubeconfig (a YAML mapping)' % path)
        if not merged.get('current-context'):
            merged['current-context'] = config.get('current-context')
        for section in ('clusters', 'users', 'contexts'):
            known = set(entry.get('name') for entry in merged[section])
            for entry in config.get(section) or []:
                if isinstance(entry, dict) and entry.get('name') not in known:
                    merged[section].append(entry)
                    origin[(section, entry.get('name'))] = os.path.dirname(os.path.abspath(path))
                    known.add(entry.get('name'))
    return merged, origin


def _named(config, section, name, key):
    for entry in config.get(section) or []:
        if entry.get('name') == name:
            return entry.get(key) or {}
    raise ConfigError('the kubeconfig has no %s named %r' % (section[:-1], name))


def from_kubeconfig(kubeconfig, context, environ):
    config, origin = merged_kubeconfig(kubeconfig, environ)
    context = context or config.get('current-context')
    if not context:
        raise ConfigError('the kubeconfig sets no current-context and no context was given')
    ctx = _named(config, 'contexts', context, 'context')
    cluster = _named(config, 'clusters', ctx.get('cluster'), 'cluster')
    user = _named(config, 'users', ctx.get('user'), 'user') if ctx.get('user') else {}
    cluster_dir = origin.get(('clusters', ctx.get('cluster')), os.getcwd())
    user_dir = origin.get(('users', ctx.get('user')), os.getcwd())
    if not cluster.get('server'):
        raise ConfigError('the cluster %r of context %r has no server' % (ctx.get('cluster'), context))
    endpoint = Endpoint(cluster['server'])
    endpoint.verify = not cluster.get('insecure-skip-tls-verify', False)
    endpoint.tls_server_name = cluster.get('tls-server-name')
    endpoint.proxy = cluster.get('proxy-url')
    if cluster.get('certificate-authority-data'):
        endpoint.ca_data = _decoded(cluster['certificate-authority-data'])
    elif cluster.get('certificate-authority'):
        endpoint.ca_file = os.path.join(cluster_dir, cluster['certificate-authority'])
    if user.get('auth-provider'):
        raise Unsupported('auth-provider %s' % (user['auth-provider'] or {}).get('name'))
    if user.get('client-certificate-data'):
        endpoint.cert_data = _decoded(user['client-certificate-data'])
    elif user.get('client-certificate'):
        endpoint.cert_file = os.path.join(user_dir, user['client-certificate'])
    if user.get('client-key-data'):
        endpoint.key_data = _decoded(user['client-key-data'])
    elif user.get('client-key'):
        endpoint.key_file = os.path.join(user_dir, user['client-key'])
    if user.get('token'):
        endpoint.bearer(user['token'])
    elif user.get('tokenFile'):
        with open(os.path.join(user_dir, user['tokenFile'])) as handle:
            endpoint.bearer(handle.read())
    elif user.get('username') and user.get('password'):
        endpoint.basic(user['username'], user['password'])
    # kubectl runs the plugin only for a user without a token, password or client certificate of its own.
    if user.get('exec') and not ('Authorization' in endpoint.headers or endpoint.cert_file or endpoint.cert_data):
        _exec_credential(endpoint, user['exec'], user_dir, environ, cluster)
    if user.get('as'):
        endpoint.headers['Impersonate-User'] = user['as']
    if user.get('as-uid'):
        endpoint.headers['Impersonate-Uid'] = user['as-uid']
    if user.get('as-groups'):
        endpoint.headers['Impersonate-Group'] = list(user['as-groups'])
    for key, values in (user.get('as-user-extra') or {}).items():
        endpoint.headers['Impersonate-Extra-' + quote(key, safe='')] = list(values or [])
    return endpoint


def _decoded(data):
    try:
        return base64.b64decode(data).decode('utf-8')
    except (TypeError, ValueError) as exc:
        raise ConfigError('a *-data field of the kubeconfig is not base64 PEM: %s' % exc)


def _exec_credential(endpoint, spec, base_dir, environ, cluster):
    """Run the kubeconfig's credential plugin (e.g. `aws eks get-token`) and take its token or certificate."""
    command = spec.get('command')
    if not command:
        raise ConfigError('the exec credential of the kubeconfig user has no command')
    if os.sep in command and not os.path.isabs(command):
        command = os.path.join(base_dir, command)
    env = dict(environ)
    for item in spec.get('env') or []:
        if not isinstance(item, dict) or 'name' not in item or 'value' not in item:
            raise ConfigError('an env entry of the exec credential of the kubeconfig user needs a name and a '
                              'value: %r' % (item,))
        env[item['name']] = str(item['value'])
    api_version = spec.get('apiVersion') or 'client.authentication.k8s.io/v1'
    info = {'interactive': False}
    if spec.get('provideClusterInfo'):
        info['cluster'] = _exec_cluster_info(endpoint, cluster)
    env['KUBERNETES_EXEC_INFO'] = json.dumps({'apiVersion': api_version, 'kind': 'ExecCredential', 'spec': info})
    try:
        done = subprocess.run([command] + list(spec.get('args') or []), env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=EXEC_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        hint = spec.get('installHint') or ''
        raise ConfigError('the kubeconfig credential command %s did not run: %s %s' % (command, exc, hint))
    if done.returncode != 0:
        raise ConfigError('the kubeconfig credential command %s failed (%d): %s'
                          % (command, done.returncode, done.stderr.decode('utf-8', 'replace').strip()[-500:]))
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ConfigError('the kubeconfig credential command %s printed no ExecCredential JSON' % command)
    status = answer.get('status') or {}
    has_cert = status.get('clientCertificateData') and status.get('clientKeyData')
    if not (status.get('token') or has_cert):
        # Else the requests would go out anonymous and fail with a 401 that hides the cause.
        raise ConfigError('the kubeconfig credential command %s returned neither a token nor a client '
                          'certificate and key' % command)
    if status.get('token'):
        endpoint.bearer(status['token'])
    if has_cert:
        endpoint.cert_data, endpoint.key_data = status['clientCertificateData'], status['clientKeyData']
        endpoint.cert_file = endpoint.key_file = None


def _exec_cluster_info(endpoint, cluster):
    """The Cluster object of KUBERNETES_EXEC_INFO, as kubectl fills it for provideClusterInfo."""
    info = {'server': endpoint.server, 'insecure-skip-tls-verify': not endpoint.verify}
    if endpoint.ca_data:
        info['certificate-authority-data'] = base64.b64encode(endpoint.ca_data.encode('utf-8')).decode('ascii')
    elif endpoint.ca_file:
        with open(endpoint.ca_file, 'rb') as handle:
            info['certificate-authority-data'] = base64.b64encode(handle.read()).decode('ascii')
    for name in ('tls-server-name', 'proxy-url', 'disable-compression'):
        if cluster.get(name):
            info[name] = cluster[name]
    for extension in cluster.get('extensions') or []:
        if isinstance(extension, dict) and extension.get('name') == 'client.authentication.k8s.io/exec':
            info['config'] = extension.get('extension')
    return info


def _no_proxy_matches(host, no_proxy, port=None):
    """Whether NO_PROXY's list names host: `*`, a name and its subdomains, an IP, a CIDR range, each with an
    optional :port, as Go and requests read it."""
    import ipaddress  # Python 3 only; sanity imports this file under Python 2
    host = host.lower().strip('[]')
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in (no_proxy or '').split(','):
        entry = entry.strip().lower()
        if entry == '*':
            return True
        entry_port = None
        if entry.startswith('['):  # [::1] or [::1]:6443
            entry, _sep, rest = entry[1:].partition(']')
            entry_port = rest[1:]
        elif entry.count(':') == 1:  # name:6443 or 10.0.0.1:6443
            entry, _sep, entry_port = entry.partition(':')
        if entry_port and port is not None and entry_port != str(port):
            continue
        if address is not None and '/' in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        entry = entry.lstrip('*')
        if entry and (host == entry.lstrip('.') or host.endswith(entry if entry.startswith('.') else '.' + entry)):
            return True
    return False


class _TLSConnection(http_client.HTTPConnection if http_client else object):
    """HTTPS with our own SSL context and server name (tls-server-name), through a CONNECT proxy if given."""

    default_port = 443

    def __init__(self, host, port, context, server_name, timeout):
        super(_TLSConnection, self).__init__(host, port, timeout=timeout)
        self._tls_context = context
        self._server_name = server_name

    def connect(self):
        super(_TLSConnection, self).connect()
        self.sock = self._tls_context.wrap_socket(self.sock, server_hostname=self._server_name)


class Response(object):
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


class HttpTransport(object):
    """Requests to one API server over one kept-alive connection."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        parts = urlsplit(endpoint.server)
        if parts.scheme not in ('https', 'http') or not parts.hostname:
            raise ConfigError('the API server address %r is not an http(s) URL' % endpoint.server)
        self.host = endpoint.server
        self._scheme = parts.scheme
        self._hostname = parts.hostname
        self._port = parts.port or (443 if parts.scheme == 'https' else 80)
        self._prefix = parts.path.rstrip('/')
        self._proxy, self._proxy_headers = self._proxy_settings()
        try:
            self._context = self._tls_context() if parts.scheme == 'https' else None
        except (OSError, ssl.SSLError) as exc:
            # ssl names no file in its errors ("[Errno 2] No such file or directory").
            files = [f for f in (endpoint.ca_file, endpoint.cert_file, endpoint.key_file) if f]
            raise ConfigError('cannot load the TLS files of the kubeconfig%s: %s'
                              % (' (%s)' % ', '.join(files) if files else '', exc))
        self._connection = None
        self._used = False

    def _proxy_settings(self):
        """(proxy URL parts, CONNECT headers), or (None, None) where no proxy is used for this server."""
        endpoint = self.endpoint
        if not endpoint.proxy or _no_proxy_matches(self._hostname, endpoint.no_proxy, self._port):
            return None, None
        proxy = urlsplit(endpoint.proxy if '://' in endpoint.proxy else 'http://' + endpoint.proxy)
        if proxy.scheme != 'http' or not proxy.hostname:
            raise ConfigError('the proxy %s is not supported: only an http:// proxy (CONNECT) is' % endpoint.proxy)
        headers = dict(endpoint.proxy_headers or {})
        if proxy.username is not None and 'Proxy-Authorization' not in headers:
            pair = ('%s:%s' % (unquote(proxy.username), unquote(proxy.password or ''))).encode('utf-8')
            headers['Proxy-Authorization'] = 'Basic %s' % base64.b64encode(pair).decode('ascii')
        return proxy, headers or None

    def _tls_context(self):
        endpoint = self.endpoint
        if endpoint.verify:
            context = ssl.create_default_context(cafile=endpoint.ca_file, cadata=endpoint.ca_data)
        else:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if endpoint.cert_data or endpoint.key_data:
            # load_cert_chain reads files only: write them to a private directory and remove it at once.
            private = tempfile.mkdtemp(prefix='llmops-ollama-')
            try:
                cert, key = os.path.join(private, 'cert.pem'), os.path.join(private, 'key.pem')
                for path, data, source in ((cert, endpoint.cert_data, endpoint.cert_file),
                                           (key, endpoint.key_data, endpoint.key_file)):
                    if data is None and source is None:
                        raise ConfigError('the kubeconfig user has a client certificate without its key, or a key '
                                          'without its certificate')
                    if data is None:
                        shutil.copyfile(source, path)
                    else:
                        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), 'w') as handle:
                            handle.write(data)
                context.load_cert_chain(cert, key)
            finally:
                shutil.rmtree(private, ignore_errors=True)
        elif endpoint.cert_file:
            context.load_cert_chain(endpoint.cert_file, endpoint.key_file)
        return context

    def _connect(self, connect_timeout):
        proxy = self._proxy
        target = (proxy.hostname, proxy.port or 80) if proxy else (self._hostname, self._port)
        if self._scheme == 'https':
            connection = _TLSConnection(target[0], target[1], self._context,
                                        self.endpoint.tls_server_name or self._hostname, connect_timeout)
        else:
            connection = http_client.HTTPConnection(target[0], target[1], timeout=connect_timeout)
        if proxy:
            connection.set_tunnel(self._hostname, self._port, headers=self._proxy_headers)
        connection.connect()
        return connection

    def _dropped(self):
        """Whether the server closed the idle kept-alive connection (it is readable before any request)."""
        sock = self._connection.sock
        if sock is None:
            return True
        try:
            return bool(select.select([sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def close(self):
        if self._connection is not None:
            self._connection.close()
        self._connection, self._used = None, False

    def call(self, method, path, body=None, query=None, headers=None, timeout=30, stream=False):
        """The Response; a stream's body is read with Response.lines(). Raises OSError or HTTPException
        when the server cannot be reached."""
        url = self._prefix + path
        if query:
            url += '?' + urlencode(query, doseq=True)
        # Impersonate-Group repeats, once per group.
        header_pairs = [(name, item) for name, value in self.endpoint.headers.items()
                        for item in (value if isinstance(value, list) else [value])]
        header_pairs += list((headers or {}).items())
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        for attempt in (1, 2):
            if self._connection is not None and self._dropped():
                self.close()
            reused = self._connection is not None and self._used
            sent = False
            try:
                if self._connection is None:
                    self._connection = self._connect(min(10, timeout))
                self._connection.sock.settimeout(timeout)
                self._connection.putrequest(method, url, skip_accept_encoding=True)
                for name, value in header_pairs:
                    self._connection.putheader(name, value)
                encoded = body.encode('utf-8') if isinstance(body, str) else body
                if encoded is not None:
                    self._connection.putheader('Content-Length', str(len(encoded)))
                self._connection.endheaders(encoded)
                sent = True
                answer = self._connection.getresponse()
            except (http_client.RemoteDisconnected, ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
                # A kept-alive connection the server closed meanwhile: one fresh try. A POST (a create, an
                # Ollama generate) that went out may have run, so it is tried again only if it never went out.
                self.close()
                if reused and attempt == 1 and (method != 'POST' or not sent):
                    continue
                raise
            except (OSError, http_client.HTTPException):
                self.close()
                raise
            self._used = True
            if stream and answer.status < 400:
                # The stream owns the connection now; the next request opens a new one.
                self._connection = None
                return Response(answer.status, answer.reason, raw=answer)
            try:
                data = answer.read()
            except (OSError, http_client.HTTPException):
                self.close()
                raise
            if answer.will_close:
                self.close()
            return Response(answer.status, answer.reason, data=data)


def socket_errors():
    """The exceptions that mean the API server could not be reached or answered badly."""
    return (OSError, socket.timeout, http_client.HTTPException)
