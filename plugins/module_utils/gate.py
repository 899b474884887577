# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The gate in front of Ollama: which routes pass for whom, the client and admin keys, the probes.

An nginx container in every Ollama pod is the pod's one listener on the pod IP; Ollama listens on
127.0.0.1 only. Clients send ``Authorization: Bearer <key>``; the collection's own calls go through the
API server's pod proxy (which consumes ``Authorization``) with the admin key in ``X-Llmops-Admin-Key``.

:func:`plan_gate` is the plan's gate section, a pure function of the merged config (the plan calls it).
It never puts a key into the plan: it counts and checks them, and says which Secrets hold them. The
key helpers (:func:`client_map`, :func:`admin_map`, :func:`fingerprint`, :func:`generate_key`) are shared
with the ``gate_keys`` module that writes those Secrets.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import hmac
import math
import re
import secrets

from ansible_collections.llmops.ollama.plugins.module_utils import values

GATE_PORT = 8080
SERVICE_PORT = 11434
OLLAMA_LISTEN = '127.0.0.1:11434'
ADMIN_HEADER = 'X-Llmops-Admin-Key'
HEALTH_PATH = '/llmops/healthz'   # nginx itself: the gate's liveness
READY_PATH = '/llmops/readyz'     # Ollama's /api/version answers through the gate: readiness and startup
LIVE_PATH = '/llmops/livez'       # Ollama's / answers through the gate: Ollama's liveness
GATE_IMAGE = 'docker.io/nginxinc/nginx-unprivileged'
# nginx 1.30.4 stable (15 Jul 2026: fixes CVE-2026-42533 in map with regex, which the key maps use).
GATE_IMAGE_TAG = '1.30.4'

# Inference routes every client key opens: /api/<name>, and the OpenAI-compatible /v1/*.
CLIENT_ENDPOINTS = ('generate', 'chat', 'embed', 'embeddings', 'show', 'tags', 'ps', 'version')
# Routes that change the model store: only the admin key opens them, unless listed in
# ollama_gate_open_admin_endpoints.
ADMIN_ENDPOINTS = ('pull', 'push', 'create', 'delete', 'copy', 'blobs')

MIN_KEY_LENGTH = 32
# RFC 6750 b64token: what a Bearer credential may hold; also safe to write into an nginx regex.
_KEY = re.compile(r'^[A-Za-z0-9._~+/-]+=*$')
_SIZE = re.compile(r'^(\d+)([kKmMgG]?)$')
_DURATION_PART = re.compile(r'(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)')
_DURATION_UNITS = {'ns': 1e-9, 'us': 1e-6, '\u00b5s': 1e-6, '\u03bcs': 1e-6, 'ms': 1e-3, 's': 1.0, 'm': 60.0,
                   'h': 3600.0}

# ollama_workload_env_defaults' OLLAMA_LOAD_TIMEOUT (tests/unit keep the two equal); Ollama's own default
# applies when neither the defaults nor ollama_workload_env set it.
LOAD_TIMEOUT_DEFAULT = '10m'
OLLAMA_BUILTIN_LOAD_TIMEOUT = 300.0
# A started pod turns Ready within this many seconds of Ollama answering (the budget sets the threshold).
STARTUP_PERIOD = 2

# Config keys (the plan's variables are ollama_<key>) with their defaults. The workload_* keys are the
# ollama_workload role's settings the startup budget is checked against.
DEFAULTS = {
    'auth_required': True,
    'api_keys': [],
    'api_keys_generate': True,
    'gate_open_admin_endpoints': [],
    'gate_max_body_size': '32m',
    'gate_read_timeout': 3600,
    'gate_image': GATE_IMAGE,
    'gate_image_tag': GATE_IMAGE_TAG,
    'workload_startup_seconds': 600,
    'workload_env_defaults': None,
    'workload_env': {},
}

# Where the gate container mounts its files; the emptyDir /tmp holds nginx's pid and temp files.
PATHS = {
    'config_dir': '/etc/llmops-gate/nginx',
    'client_dir': '/etc/llmops-gate/client',
    'admin_dir': '/etc/llmops-gate/admin',
    'tmp_dir': '/tmp',
}
CLIENT_MAP_FILE = 'keys.map'
ADMIN_MAP_FILE = 'admin.map'


def _var(key):
    return 'ollama_%s' % key


def _bool(key, value, report, default):
    result = values.as_bool(value)
    if result is None:
        report.error(key, '%s must be true or false, got %r' % (_var(key), value),
                     'set %s: true or %s: false' % (_var(key), _var(key)))
        return default
    return result


_whole = values.as_int


# ---------------------------------------------------------------- keys

def key_problem(key):
    """Why a key cannot be used (without quoting it), or None."""
    if not isinstance(key, str):
        return 'is not a string'
    if len(key) < MIN_KEY_LENGTH:
        return 'is %d characters long; a key needs at least %d' % (len(key), MIN_KEY_LENGTH)
    if not _KEY.match(key):
        return ('holds characters a Bearer token cannot carry (only letters, digits and - . _ ~ + /, '
                'with = at the end)')
    return None


def check_api_keys(keys, report):
    """The number of valid keys in ``ollama_api_keys``; every problem is reported by position, never by value."""
    if keys in (None, ''):
        return 0
    if not isinstance(keys, list):
        report.error('api_keys', '%s must be a list of keys' % _var('api_keys'),
                     'set %s to a list, e.g. ["{{ vault_ollama_key }}"], or [] to have one generated'
                     % _var('api_keys'))
        return 0
    seen = {}
    fix = ('make each key at least %d characters of letters, digits and - . _ ~ + / (e.g. the output of '
           '`openssl rand -hex 32`), or leave %s empty to have one generated' % (MIN_KEY_LENGTH, _var('api_keys')))
    for index, key in enumerate(keys, 1):
        problem = key_problem(key)
        if problem:
            report.error('api_keys', '%s entry %d %s' % (_var('api_keys'), index, problem), fix)
            continue
        if key in seen:
            report.error('api_keys', '%s entries %d and %d are the same key' % (_var('api_keys'), seen[key], index),
                         'remove entry %d from %s (each client key once)' % (index, _var('api_keys')))
            continue
        seen[key] = index
    return len(seen)


def parse_keys_text(text):
    """The keys of a Secret's ``keys`` value: one a line; blank lines and ``#`` comments are skipped."""
    keys = []
    for line in (text or '').splitlines():
        line = line.strip()
        if line and not line.startswith('#'):
            keys.append(line)
    return keys


def keys_text(keys):
    return ''.join('%s\n' % key for key in keys)


def _regex_literal(key):
    # Only . and + of a b64token mean something in a regex; a character class needs no backslash,
    # which nginx's quoted strings would treat as an escape.
    return key.replace('.', '[.]').replace('+', '[+]')


def client_map(keys):
    """nginx map entries: an ``Authorization`` value that carries one of the keys -> 1. Regex entries
    compare case-sensitively (plain map strings would not); the scheme is case-insensitive as RFC 9110 says."""
    lines = ['# One line per client key of this Secret\'s "keys" (written by llmops.ollama.gate_keys).']
    lines += ['"~^[Bb][Ee][Aa][Rr][Ee][Rr] +%s$" 1;' % _regex_literal(k) for k in keys]
    return '\n'.join(lines) + '\n'


def admin_map(key):
    """nginx map entry: the ``X-Llmops-Admin-Key`` value that is the admin key -> 1."""
    return ('# The admin key of this Secret\'s "key" (written by llmops.ollama.gate_keys).\n'
            '"~^%s$" 1;\n' % _regex_literal(key))


def generate_key():
    """A new key: 256 random bits, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def fingerprint(admin_key, client_map_text):
    """The pod template's hash annotation: an HMAC of the client keys' map keyed with the admin key, so
    any key change rolls the pods and the annotation tells nothing about the keys."""
    message = 'llmops.ollama gate\n%s' % (client_map_text or '')
    return hmac.new(admin_key.encode('utf-8'), message.encode('utf-8'), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------- routes

def check_open_admin_endpoints(value, report):
    """The admin endpoints opened to client keys, in the canonical order."""
    if value in (None, ''):
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        report.error('gate_open_admin_endpoints', '%s must be a list of endpoint names, got %r'
                     % (_var('gate_open_admin_endpoints'), value),
                     'set %s to a list of %s, or []' % (_var('gate_open_admin_endpoints'), ', '.join(ADMIN_ENDPOINTS)))
        return []
    opened = set()
    for item in value:
        name = item.strip().lower() if isinstance(item, str) else item
        if isinstance(name, str) and name.startswith('/api/'):
            name = name[len('/api/'):]
        if name not in ADMIN_ENDPOINTS:
            report.error('gate_open_admin_endpoints', '%s names %r, which is not an admin endpoint'
                         % (_var('gate_open_admin_endpoints'), item),
                         'use only %s (the inference routes are always open to client keys)' % ', '.join(ADMIN_ENDPOINTS))
            continue
        opened.add(name)
    return [name for name in ADMIN_ENDPOINTS if name in opened]


def routes(open_admin):
    """Every route the gate passes: path, whether it is an exact path or a prefix, who may use it
    (``client``: a client or the admin key; ``admin``: the admin key only) and whether the request body is
    buffered (not for blob uploads). Everything else answers 404."""
    out = [{'name': name, 'path': '/api/' + name, 'exact': True, 'access': 'client', 'buffer': True}
           for name in CLIENT_ENDPOINTS]
    out.append({'name': 'v1', 'path': '/v1/', 'exact': False, 'access': 'client', 'buffer': True})
    for name in ADMIN_ENDPOINTS:
        blobs = name == 'blobs'
        out.append({'name': name, 'path': '/api/blobs/' if blobs else '/api/' + name, 'exact': not blobs,
                    'access': 'client' if name in open_admin else 'admin', 'buffer': not blobs})
    return out


def parse_size(value):
    """Bytes of an nginx size (``32m``, ``512k``, ``1g``, ``1048576``), or None."""
    match = _SIZE.match(str(value).strip()) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if not match:
        return None
    factor = {'': 1, 'k': 1024, 'm': 1024 ** 2, 'g': 1024 ** 3}[match.group(2).lower()]
    return int(match.group(1)) * factor


# ---------------------------------------------------------------- probes

def parse_go_duration(text):
    """Seconds of a Go duration (``10m``, ``1h30m``, ``500ms``, ``0``), or None."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    sign = -1.0 if text.startswith('-') else 1.0
    body = text[1:] if text[:1] in '+-' else text
    if body == '0':
        return 0.0
    if not body:
        return None
    total, pos = 0.0, 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if not match:
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return sign * total


def ollama_load_timeout(value):
    """Seconds as Ollama reads OLLAMA_LOAD_TIMEOUT (envconfig.LoadTimeout): a Go duration, else whole
    seconds; zero or negative means no limit (inf). None when Ollama could not read it."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return OLLAMA_BUILTIN_LOAD_TIMEOUT
    text = str(value).strip()
    seconds = parse_go_duration(text)
    if seconds is None and re.match(r'^[-+]?\d+$', text):
        seconds = float(int(text))
    if seconds is None:
        return None
    return math.inf if seconds <= 0 else seconds


def _load_timeout_setting(env_defaults, env):
    """(value, variable that set it) of OLLAMA_LOAD_TIMEOUT: ollama_workload_env over the defaults."""
    if isinstance(env, dict) and 'OLLAMA_LOAD_TIMEOUT' in env:
        return env['OLLAMA_LOAD_TIMEOUT'], _var('workload_env')
    if env_defaults is None:
        return LOAD_TIMEOUT_DEFAULT, _var('workload_env_defaults')
    if isinstance(env_defaults, dict) and 'OLLAMA_LOAD_TIMEOUT' in env_defaults:
        return env_defaults['OLLAMA_LOAD_TIMEOUT'], _var('workload_env_defaults')
    return None, None


def check_startup_budget(startup_seconds, env_defaults, env, report):
    """``(budget seconds, load timeout seconds)``: the startup budget must cover OLLAMA_LOAD_TIMEOUT, the
    longest a model load may stall before Ollama gives up."""
    budget = _whole(startup_seconds)
    if budget is None or budget < 1:
        report.error('workload_startup_seconds', '%s must be a whole number of seconds above 0, got %r'
                     % (_var('workload_startup_seconds'), startup_seconds),
                     'set %s: 600' % _var('workload_startup_seconds'))
        budget = None
    value, source = _load_timeout_setting(env_defaults, env)
    timeout = ollama_load_timeout(value)
    shown = 'OLLAMA_LOAD_TIMEOUT %s' % (('%r in %s' % (value, source)) if source else "unset (Ollama's 5m)")
    if timeout is None:
        pass  # not a duration Ollama reads: the plan's check of the Ollama settings (env_settings.py) refuses it
    elif timeout == math.inf:
        report.error('workload_env', '%s means no limit, so no startup budget can cover a model load' % shown,
                     'set a finite OLLAMA_LOAD_TIMEOUT such as "10m" in %s' % _var('workload_env'))
        timeout = None
    elif budget is not None and budget < timeout:
        need = int(math.ceil(timeout))
        report.error('workload_startup_seconds', '%s (%d s) is below %s (%d s): the startup probe would restart a '
                     'pod whose model load Ollama still waits for' % (_var('workload_startup_seconds'), budget,
                                                                      shown, need),
                     'set %s to at least %d, or lower OLLAMA_LOAD_TIMEOUT' % (_var('workload_startup_seconds'), need))
    return budget, (int(math.ceil(timeout)) if timeout is not None else None)


def probes(budget):
    """The probes of both containers; readiness and liveness never share an endpoint."""
    budget = budget or DEFAULTS['workload_startup_seconds']
    return {
        # Ollama: started once it answers through the gate, alive while its server answers /.
        'ollama_startup': {'path': READY_PATH, 'period': STARTUP_PERIOD, 'timeout': 5,
                           'failure_threshold': int(math.ceil(budget / float(STARTUP_PERIOD)))},
        'ollama_liveness': {'path': LIVE_PATH, 'period': 30, 'timeout': 5, 'failure_threshold': 6},
        # Ready while it answers through the gate: every container says whether it can serve (checkov CKV_K8S_9).
        'ollama_readiness': {'path': READY_PATH, 'period': 10, 'timeout': 5, 'failure_threshold': 3},
        # The gate: ready while Ollama answers /api/version through it, alive while nginx answers itself.
        'gate_readiness': {'path': READY_PATH, 'period': 2, 'timeout': 5, 'failure_threshold': 5},
        'gate_liveness': {'path': HEALTH_PATH, 'period': 10, 'timeout': 3, 'failure_threshold': 3},
    }


# ---------------------------------------------------------------- the plan's gate section

def check_rollout(replicas, workload_kind, strategy, rolling_update, report):
    """A key change rolls the pods: with two replicas or more one must stay Ready throughout."""
    if replicas < 2:
        report.warn('one replica: a change of the gate\'s keys restarts the only Ollama pod (raise %s to rotate '
                    'keys without downtime)' % _var('replicas'))
        return True
    if workload_kind == 'StatefulSet':
        return strategy == 'RollingUpdate'  # one pod at a time, the next once the last is Ready
    if strategy != 'RollingUpdate' or not rolling_update:
        report.warn('%s replicas roll with %s: a key rotation takes every replica down at once'
                    % (replicas, strategy))
        return False
    return rolling_update.get('max_unavailable', 1) < replicas


def check_image(image, tag, report):
    """``{repository, tag, ref}`` of the gate image; a floating tag is refused."""
    ok = isinstance(image, str) and image.strip() and not re.search(r'\s', image) and '@' not in image \
        and image.rfind(':') <= image.rfind('/')
    if not ok:
        report.error('gate_image', '%s must be an image repository such as %s, got %r'
                     % (_var('gate_image'), GATE_IMAGE, image), 'set %s: %s' % (_var('gate_image'), GATE_IMAGE))
        image = GATE_IMAGE
    tag = '' if tag is None else str(tag).strip()
    if not tag or tag.split('@', 1)[0].lower() in ('latest', 'stable', 'mainline', 'alpine'):
        report.error('gate_image_tag', '%s %r is not a pinned version' % (_var('gate_image_tag'), tag),
                     'set %s to a release such as "%s" (optionally with @sha256:<digest>)'
                     % (_var('gate_image_tag'), GATE_IMAGE_TAG))
        tag = GATE_IMAGE_TAG
    ref = '%s@%s' % (image, tag) if tag.startswith('sha256:') else '%s:%s' % (image, tag)
    return {'repository': image, 'tag': tag, 'ref': ref}


def plan_gate(cfg, name, replicas, workload_kind, strategy, rolling_update, report):
    """The plan's ``gate``: listeners, image, keys (counted, never copied), routes, limits and probes."""
    auth = _bool('auth_required', cfg.get('auth_required'), report, True)
    generate = _bool('api_keys_generate', cfg.get('api_keys_generate'), report, True)
    given = check_api_keys(cfg.get('api_keys'), report)
    if auth and not given and not generate:
        report.error('api_keys', '%s is true, %s is empty and %s is false: no client could authenticate'
                     % (_var('auth_required'), _var('api_keys'), _var('api_keys_generate')),
                     'list the client keys in %s (from a vault), set %s: true to have one generated into the Secret '
                     '%s-api-keys, or, on a network where every client may use every model, %s: false'
                     % (_var('api_keys'), _var('api_keys_generate'), name, _var('auth_required')))
    if not auth:
        report.warn('THE OLLAMA API HAS NO AUTHENTICATION (%s: false): every client that reaches the Service, an '
                    'Ingress or an HTTPRoute can use every model; the admin endpoints still need the admin key'
                    % _var('auth_required'))
        if given:
            report.warn('%s is ignored while %s is false' % (_var('api_keys'), _var('auth_required')))
    opened = check_open_admin_endpoints(cfg.get('gate_open_admin_endpoints'), report)
    if opened:
        report.warn('%s opens %s to %s' % (
            _var('gate_open_admin_endpoints'), ', '.join('/api/' + n for n in opened),
            'every client key' if auth else 'EVERY CLIENT, WITHOUT A KEY'))

    body = cfg.get('gate_max_body_size')
    if not parse_size(body):
        report.error('gate_max_body_size', '%s must be an nginx size above 0 such as "32m", got %r'
                     % (_var('gate_max_body_size'), body), 'set %s: 32m' % _var('gate_max_body_size'))
        body = DEFAULTS['gate_max_body_size']
    read_timeout = _whole(cfg.get('gate_read_timeout'))
    if read_timeout is None or read_timeout < 1:
        report.error('gate_read_timeout', '%s must be whole seconds above 0, got %r'
                     % (_var('gate_read_timeout'), cfg.get('gate_read_timeout')),
                     'set %s: 3600' % _var('gate_read_timeout'))
        read_timeout = DEFAULTS['gate_read_timeout']

    budget, load_timeout = check_startup_budget(cfg.get('workload_startup_seconds'), cfg.get('workload_env_defaults'),
                                                cfg.get('workload_env'), report)
    if load_timeout and read_timeout < load_timeout:
        report.warn('%s (%d s) is below OLLAMA_LOAD_TIMEOUT (%d s): a request that waits for a slow model load can '
                    'time out at the gate' % (_var('gate_read_timeout'), read_timeout, load_timeout))
    rolls_safely = check_rollout(replicas, workload_kind, strategy, rolling_update, report)

    return {
        'port': GATE_PORT,
        'listen': str(GATE_PORT),
        'service_port': SERVICE_PORT,
        'ollama_host': OLLAMA_LISTEN,
        'upstream': OLLAMA_LISTEN,
        'image': check_image(cfg.get('gate_image'), cfg.get('gate_image_tag'), report),
        'auth_required': auth,
        'api_keys': {'given': given, 'generate': generate,
                     'source': 'none' if not auth else 'given' if given else 'generated'},
        'secrets': {'api_keys': '%s-api-keys' % name, 'admin': '%s-gate-admin' % name},
        'config_map': '%s-gate' % name,
        'admin_header': ADMIN_HEADER,
        'open_admin_endpoints': opened,
        'routes': routes(opened),
        'max_body_size': str(body).strip(),
        'read_timeout': read_timeout,
        'startup_seconds': budget,
        'load_timeout_seconds': load_timeout,
        'probes': probes(budget),
        'health_path': HEALTH_PATH,
        'ready_path': READY_PATH,
        'live_path': LIVE_PATH,
        'paths': dict(PATHS),
        'client_map': '%s/%s' % (PATHS['client_dir'], CLIENT_MAP_FILE),
        'admin_map': '%s/%s' % (PATHS['admin_dir'], ADMIN_MAP_FILE),
        'rotation_keeps_an_endpoint': rolls_safely,
    }


# ---------------------------------------------------------------- the Secrets the gate reads

KEYS_SOURCE_ANNOTATION = 'llmops.ollama/keys-source'


class GateKeyError(Exception):
    """A key in a Secret or an option that the gate cannot use; the message names where, never the key."""


def _invalid_lines(keys):
    return [index for index, key in enumerate(keys, 1) if key_problem(key)]


def plan_secrets(existing_admin, existing_client, api_keys, generate, manage_client, make_key=generate_key):
    """What the two Secrets must hold. ``existing_*`` are ``{'data': {name: text}, 'annotations': {...}}`` or
    None. The admin key and a generated client key are made once and kept; given keys replace the Secret's.
    Returns ``{admin: {data}, client: {data, annotations} or None, key_count, source, generated, warnings}``;
    raises GateKeyError with the place and the fix."""
    generated, warnings = [], []
    admin_key = ((existing_admin or {}).get('data') or {}).get('key', '').strip()
    if admin_key and key_problem(admin_key):
        raise GateKeyError('the admin Secret\'s "key" %s. Fix: delete the Secret to have a new admin key '
                           'generated, or write a valid one' % key_problem(admin_key))
    if not admin_key:
        admin_key = make_key()
        generated.append('admin')
    result = {'admin': {'data': {'key': admin_key, ADMIN_MAP_FILE: admin_map(admin_key)}}, 'client': None,
              'key_count': 0, 'source': 'none', 'generated': generated, 'warnings': warnings}
    if not manage_client:
        return result
    api_keys = list(api_keys or [])
    bad = _invalid_lines(api_keys)
    if bad:
        lines = ', '.join(str(i) for i in bad)
        raise GateKeyError('api_keys entries %s cannot be used (%s). Fix: give keys of at least %d characters of '
                           'letters, digits and - . _ ~ + /' % (lines, key_problem(api_keys[bad[0] - 1]),
                                                                MIN_KEY_LENGTH))
    existing = existing_client or {}
    old_source = (existing.get('annotations') or {}).get(KEYS_SOURCE_ANNOTATION)
    old_keys = parse_keys_text((existing.get('data') or {}).get('keys', ''))
    if api_keys:
        keys, source = list(dict.fromkeys(api_keys)), 'given'
    elif old_keys and old_source != 'given':
        # Generated once, or written into the Secret by hand: kept.
        bad = _invalid_lines(old_keys)
        if bad:
            lines = ', '.join(str(i) for i in bad)
            raise GateKeyError('line %s of the "keys" of the client keys Secret cannot be used (%s). Fix: correct '
                               'or remove it (one key a line)' % (lines, key_problem(old_keys[bad[0] - 1])))
        keys, source = list(dict.fromkeys(old_keys)), old_source or 'generated'
    elif generate:
        keys, source = [make_key()], 'generated'
        generated.append('api_keys')
        if old_keys:
            warnings.append('the client keys given before are gone from api_keys: a new key was generated and the '
                            'old keys no longer pass the gate')
    else:
        raise GateKeyError('no client key: api_keys is empty, the Secret holds none and generate is false. Fix: '
                           'give api_keys, or set generate: true')
    result['client'] = {'data': {'keys': keys_text(keys), CLIENT_MAP_FILE: client_map(keys)},
                        'annotations': {KEYS_SOURCE_ANNOTATION: source}}
    result.update(key_count=len(keys), source=source)
    return result


def data_digest(admin_key, value):
    """A short keyed digest of one Secret value, for diffs: it changes with the value and tells nothing."""
    return 'hmac-sha256:%s' % hmac.new(admin_key.encode('utf-8'), value.encode('utf-8'), hashlib.sha256).hexdigest()[:12]
