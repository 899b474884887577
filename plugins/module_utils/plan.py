# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The plan: every decision the roles render, from cluster facts and wanted config.

:func:`compute_plan` is a pure function of two plain dicts: the facts from
:func:`ansible_collections.llmops.ollama.plugins.module_utils.cluster_facts.build_facts`
and the wanted config (the ``ollama_*`` role variables, without the prefix).
It returns the decisions and, instead of stopping at the first problem, every
error it finds, each naming the user-facing variable, what is wrong and the fix.

Each decision lives in a small function below so it can be tested alone.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import difflib
import re

from ansible_collections.llmops.ollama.plugins.module_utils import gate
from ansible_collections.llmops.ollama.plugins.module_utils.cluster_facts import LABEL_MANAGED_BY, RWX_PROVISIONERS
from ansible_collections.llmops.ollama.plugins.module_utils import exposure
from ansible_collections.llmops.ollama.plugins.module_utils import values, vram
from ansible_collections.llmops.ollama.plugins.module_utils import self_heal
from ansible_collections.llmops.ollama.plugins.module_utils import env_settings
from ansible_collections.llmops.ollama.plugins.module_utils import model_cache
from ansible_collections.llmops.ollama.plugins.module_utils.quantity import (
    GI,
    MI,
    QuantityError,
    format_gi,
    format_size,
    parse_size,
    quantity_to_bytes,
)

MIN_KUBERNETES = (1, 28)
# The default Ollama release: the newest one tagged in github.com/ollama/ollama when last checked (v0.32.15).
DEFAULT_OLLAMA_TAG = '0.32.15'
# Known critical CVEs of Ollama with the first release that fixes each: a tag below any of them is refused
# unless ollama_image_allow_known_vulnerable is true. Add rows here as advisories appear.
KNOWN_CVES = (
    ('CVE-2024-37032', (0, 1, 34), 'path traversal through a model digest in /api/pull: remote code execution'),
    ('CVE-2024-45436', (0, 1, 47), 'path traversal in the zip extraction of /api/create: arbitrary file write'),
    ('CVE-2026-7482', (0, 17, 1), '"Bleeding Llama": heap memory read through /api/create, sent away with '
                                  '/api/push'),
)
MIN_OLLAMA = max(fixed for _cve, fixed, _what in KNOWN_CVES)
# Namespaces Kubernetes itself owns: the collection never deploys into them.
SYSTEM_NAMESPACES = ('kube-system', 'kube-public', 'kube-node-lease', 'default')
MIN_CLAIM_GI = 10
OLLAMA_REGISTRY = 'registry.ollama.ai'
OLLAMA_NAMESPACE = 'library'
OLLAMA_TAG = 'latest'
LOCAL_PATH_CLASS = 'local-path'
LOCAL_PATH_PROVISIONER = 'rancher.io/local-path'
HOSTNAME_KEY = 'kubernetes.io/hostname'
ZONE_KEY = 'topology.kubernetes.io/zone'
GPU_TAINT_KEY = 'nvidia.com/gpu'
# Endpoints that change the model store; never routed by the Ingress or HTTPRoute unless opened.
ADMIN_ENDPOINTS = exposure.ADMIN_PATHS
# Provisioners whose volumes live on one node's disk: the claim pins the pod to that node.
NODE_LOCAL_PROVISIONERS = frozenset([
    LOCAL_PATH_PROVISIONER, 'kubernetes.io/no-provisioner', 'openebs.io/local', 'topolvm.io',
    'local.csi.openebs.io', 'lvm.csi.metal-stack.io',
])
STORAGE_MODES = ('auto', 'per_replica', 'shared')
ANTI_AFFINITY = ('hard', 'soft')
TAINT_EFFECTS = ('', 'NoSchedule', 'PreferNoSchedule', 'NoExecute')
BLOCKING_EFFECTS = ('NoSchedule', 'NoExecute')

INGRESS_DEFAULTS = {
    'enabled': False,
    'host': '',
    'open_admin_endpoints': False,
    # "" takes the cluster's default IngressClass.
    'class_name': '',
    'tls_secret': '',
}
# Retired: the gate in each pod authenticates every path, so the Ingress carries no controller-specific auth.
RETIRED_INGRESS = {
    'auth_type': 'the gate in each Ollama pod authenticates every client with an API key (ollama_api_keys)',
    'auth_secret': 'client API keys (ollama_api_keys, or the generated Secret) replace the htpasswd Secret',
    'auth_url': 'the gate authenticates with API keys; put an external authenticator in front of the Ingress '
                'yourself if you need one',
    'allow_unauthenticated': 'ollama_auth_required: false is the one way to run without keys',
}

# Security settings: the image digest and CVE opt-out, namespace ownership, the HTTPRoute, and the
# ollama_workload_* knobs the plan decides the NetworkPolicies from (documented in the ollama_workload role).
SECURITY_DEFAULTS = {
    'image_digest': '',
    'image_allow_known_vulnerable': False,
    'namespace_manage_labels': False,
    'httproute_enabled': False,
    'httproute_parent_refs': [],
    'httproute_hostnames': [],
    'insecure_registries': [],
    'workload_ingress_paths': list(exposure.CLIENT_PATHS),
    'workload_network_policy': True,
    'workload_egress_policy': True,
    'workload_allowed_namespaces': [],
    'workload_allowed_pods': [],
    'workload_allowed_cidrs': [],
    'workload_ingress_controller_namespace': '',
    'workload_egress_cidrs': [],
    'workload_extra_egress': [],
}

DEFAULTS = {
    'name': 'ollama',
    'namespace': 'ollama',
    'replicas': 1,
    'gpus_per_pod': 1,
    'image': 'docker.io/ollama/ollama',
    'image_tag': '0.11.4',
    'storage_mode': 'auto',
    'storage_class': '',
    'storage_class_rwx': 'auto',
    'install_local_path': False,
    'storage_classes': [],
    'claim_size': '',
    'claim_headroom_percent': 30,
    'models': [],
    'anti_affinity': 'hard',
    'gpu_node_label': {'key': 'nvidia.com/gpu.present', 'value': 'true'},
    'gpu_label_nodes': False,
    'tolerations': [{'key': GPU_TAINT_KEY, 'operator': 'Exists', 'effect': 'NoSchedule'}],
    'node_selector': {},
    'zone_spread': 'auto',
    'pdb_min_available': '',
    # ResourceQuota on requests.nvidia.com/gpu: "" none, "auto" what the replicas and a surge pod need, or a number.
    'gpu_quota': '',
    'runtime_class': 'auto',
    'require_device_plugin': True,
    'gpu_memory_check': True,
    'allow_cpu_offload': False,
    # Ollama's environment, as the ollama_workload role sets it: the GPU memory estimate reads it.
    'workload_env': {},
    'workload_env_defaults': None,
    'existing_replicas': None,
    'ingress': INGRESS_DEFAULTS,
}
# The gate's settings (auth, keys, routes, limits, startup budget): decided in gate.py.
DEFAULTS.update(gate.DEFAULTS)
DEFAULTS.update(SECURITY_DEFAULTS)
DEFAULTS['image_tag'] = DEFAULT_OLLAMA_TAG
# Self-heal (missing models fetched by each replica, readiness on its models): decided in self_heal.py.
DEFAULTS.update(self_heal.DEFAULTS)
# The model cache (an in-cluster pull-through registry): decided in model_cache.py.
DEFAULTS.update(model_cache.DEFAULTS)

# The Ollama server settings (ollama_workload_env over ollama_workload_env_defaults), checked by the plan so that a
# bad value stops the run before any write (plugins/module_utils/env_settings.py).
DEFAULTS.update({
    'workload_env': {},
    'workload_env_defaults': env_settings.DEFAULTS,
})

# config key -> the role variable a user sets. Keys of the ingress dict map to
# ollama_ingress_<key>. Variables without the ollama_ prefix name a cluster fact.
VARIABLES = dict((key, 'ollama_%s' % key) for key in DEFAULTS)
VARIABLES.update(('ingress.%s' % key, 'ollama_ingress_%s' % key) for key in INGRESS_DEFAULTS)
VARIABLES.update(('ingress.%s' % key, 'ollama_ingress_%s' % key) for key in RETIRED_INGRESS)
VARIABLES.update({
    'install_local_path': 'ollama_storage_install_local_path',
    'kubernetes_version': 'kubernetes_version',
    'nodes': 'nodes',
})

_DNS_LABEL = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')
_DNS_SUBDOMAIN = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')
_VERSION_TAG = re.compile(r'^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z][0-9A-Za-z.-]*))?$')
_DIGEST = re.compile(r'^sha256:[0-9a-f]{64}$')
_PERCENT = re.compile(r'^(\d+)%$')


def workload_selector(name):
    """The labels of the Ollama pods of the workload ``name`` (the plan's affinity.label_selector)."""
    return {'app.kubernetes.io/name': 'ollama', 'app.kubernetes.io/instance': name}


def variable(key):
    """The user-facing variable for a config key (``replicas`` -> ``ollama_replicas``)."""
    return VARIABLES.get(key, key)


def config_from_role_vars(role_vars):
    """Config for :func:`compute_plan` from ``ollama_*`` variables (the inverse of
    :data:`VARIABLES`); other variables are ignored."""
    reverse = dict((v, k) for k, v in VARIABLES.items() if v.startswith('ollama_'))
    config = {}
    ingress = {}
    for name, value in (role_vars or {}).items():
        key = reverse.get(name)
        if key is None:
            continue
        if key.startswith('ingress.'):
            ingress[key[len('ingress.'):]] = value
        elif key == 'ingress' and isinstance(value, dict):
            ingress = dict(value, **ingress)
        else:
            config[key] = value
    if ingress:
        config['ingress'] = ingress
    return config


def describe_errors(errors):
    """One line per error: the variable, what is wrong, the fix."""
    return '\n'.join('- %s: %s Fix: %s' % (e['variable'], e['message'], e['fix']) for e in errors)


class Report(object):
    """Collects every error and warning; decisions keep going after an error."""

    def __init__(self):
        self.errors = []
        self.warnings = []

    def error(self, key, message, fix):
        self.errors.append({'variable': variable(key), 'message': message, 'fix': fix})

    def warn(self, message):
        if message not in self.warnings:
            self.warnings.append(message)


# ---------------------------------------------------------------- config values

_as_bool = values.as_bool
_as_int = values.as_int


def merge_config(config, report):
    """Defaults under the given config; ``None`` means not given. Unknown keys warn."""
    merged = copy.deepcopy(DEFAULTS)
    for key, value in (config or {}).items():
        if key not in DEFAULTS:
            close = difflib.get_close_matches(str(key), list(DEFAULTS), n=1)
            report.warn('unknown setting ollama_%s is ignored%s' % (
                key, ' (did you mean %s?)' % variable(close[0]) if close else ''))
            continue
        if value is None:
            continue
        if key == 'ingress' and isinstance(value, dict):
            ingress = copy.deepcopy(INGRESS_DEFAULTS)
            for sub, subvalue in value.items():
                if sub in RETIRED_INGRESS:
                    name = variable('ingress.%s' % sub)
                    report.error('ingress.%s' % sub, '%s is retired: %s' % (name, RETIRED_INGRESS[sub]),
                                 'remove %s from the inventory (docs/exposure.md)' % name)
                elif sub not in INGRESS_DEFAULTS:
                    report.warn('unknown setting %s is ignored' % variable('ingress.%s' % sub))
                elif subvalue is not None:
                    ingress[sub] = subvalue
            merged['ingress'] = ingress
        else:
            merged[key] = value
    return merged


def check_bool(key, value, report, default=False):
    result = _as_bool(value)
    if result is None:
        report.error(key, '%s must be true or false, got %r' % (variable(key), value),
                     'set %s: true or %s: false' % (variable(key), variable(key)))
        return default
    return result


def check_positive_int(key, value, report, minimum=1):
    """An integer >= minimum, or None after reporting an error."""
    number = _as_int(value)
    if number is None or number < minimum:
        report.error(key, '%s must be a whole number >= %d, got %r' % (variable(key), minimum, value),
                     'set %s to a whole number of at least %d' % (variable(key), minimum))
        return None
    return number


def check_dns_label(key, value, report):
    if not isinstance(value, str) or len(value) > 63 or not _DNS_LABEL.match(value):
        report.error(key, '%s %r is not a DNS-1123 label (lower-case letters, digits and "-", '
                          'starting and ending with a letter or digit, at most 63 characters)'
                     % (variable(key), value),
                     'set %s to a name such as "ollama"' % variable(key))
        return None
    return value


def check_kubernetes_version(facts, report):
    version = facts.get('kubernetes_version') or {}
    major, minor = version.get('major'), version.get('minor')
    if major is None or minor is None:
        report.warn('the Kubernetes server version is unknown; assuming at least %d.%d' % MIN_KUBERNETES)
        return
    if (major, minor) < MIN_KUBERNETES:
        report.error('kubernetes_version',
                     'the cluster runs Kubernetes %d.%d (%s); this collection needs %d.%d or newer '
                     '(topology spread node inclusion policies and the PDB unhealthy pod eviction policy)'
                     % ((major, minor, version.get('git_version') or '?') + MIN_KUBERNETES),
                     'upgrade the cluster to Kubernetes %d.%d or newer' % MIN_KUBERNETES)


def parse_ollama_version(tag):
    """``"0.11.4"``, ``"v0.11.4"``, ``"0.11.4-rocm"`` -> ((0, 11, 4), "rocm"); else None."""
    match = _VERSION_TAG.match(tag or '')
    if not match:
        return None
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))), match.group(4)


def known_cves(version):
    """The rows of :data:`KNOWN_CVES` a release is below, oldest fix first."""
    return [(cve, fixed, what) for cve, fixed, what in KNOWN_CVES if version < fixed]


def _dotted(version):
    return '.'.join(str(p) for p in version)


def check_image(image, tag, report, digest=None, allow_vulnerable=False):
    """``{repository, tag, digest, version, ref, known_cves}`` for the Ollama image; refuses floating tags and
    releases below the table of known critical CVEs (unless ``allow_vulnerable``, which warns). ``digest``
    (``ollama_image_digest``) pins the image: the reference becomes repository:tag@digest."""
    result = {'repository': image, 'tag': tag, 'digest': None, 'version': None, 'ref': None, 'known_cves': []}
    if not isinstance(image, str) or not image.strip() or re.search(r'\s', image):
        report.error('image', '%s must be an image repository such as docker.io/ollama/ollama, got %r'
                     % (variable('image'), image), 'set %s: docker.io/ollama/ollama' % variable('image'))
        image = None
    elif '@' in image or image.rfind(':') > image.rfind('/'):
        report.error('image', '%s %r carries a tag or digest; the version belongs in %s and the digest in %s'
                     % (variable('image'), image, variable('image_tag'), variable('image_digest')),
                     'set %s to the repository alone (e.g. docker.io/ollama/ollama), the version in %s and the '
                     'digest in %s' % (variable('image'), variable('image_tag'), variable('image_digest')))
        image = None
    tag = '' if tag is None else str(tag).strip()
    inline_digest = None
    if '@' in tag:
        tag, inline_digest = tag.split('@', 1)
    elif tag.startswith('sha256:'):
        tag, inline_digest = '', tag
    fix = 'set %s to a pinned Ollama release at least %s, e.g. "%s"' % (
        variable('image_tag'), _dotted(MIN_OLLAMA), DEFAULT_OLLAMA_TAG)
    if inline_digest is not None and not _DIGEST.match(inline_digest):
        report.error('image_tag', '%s digest %r is not sha256:<64 hex digits>' % (variable('image_tag'), inline_digest),
                     fix)
        inline_digest = None
    digest = '' if digest is None else str(digest).strip()
    if digest and not _DIGEST.match(digest):
        report.error('image_digest', '%s %r is not sha256:<64 lower-case hex digits>'
                     % (variable('image_digest'), digest),
                     'copy the digest of the image index from the registry (e.g. docker buildx imagetools inspect '
                     'docker.io/ollama/ollama:%s, or crane digest), or set %s: ""'
                     % (tag or DEFAULT_OLLAMA_TAG, variable('image_digest')))
        digest = ''
    elif digest and inline_digest and digest != inline_digest:
        report.error('image_digest', '%s %s and the digest in %s (%s) differ' % (
            variable('image_digest'), digest, variable('image_tag'), inline_digest),
            'keep the digest in %s only' % variable('image_digest'))
    digest = digest or inline_digest
    allow_vulnerable = _as_bool(allow_vulnerable) is True
    version = None
    if not tag and digest is None:
        report.error('image_tag', '%s is empty; a floating image changes under a running cluster'
                     % variable('image_tag'), fix)
    elif tag.lower() == 'latest':
        report.error('image_tag', '%s "latest" is not a pinned version: every node may run a different '
                     'Ollama and a restart can pull an untested one' % variable('image_tag'), fix)
    elif tag:
        parsed = parse_ollama_version(tag)
        if parsed is None:
            report.error('image_tag', '%s %r is not a release version (like "%s", "v%s" or "%s-rocm")'
                         % (variable('image_tag'), tag, DEFAULT_OLLAMA_TAG, DEFAULT_OLLAMA_TAG, DEFAULT_OLLAMA_TAG),
                         fix)
        else:
            version, suffix = parsed
            below = known_cves(version)
            result['known_cves'] = [cve for cve, _fixed, _what in below]
            if below:
                listed = '; '.join('%s (%s; fixed in %s)' % (cve, what, _dotted(fixed)) for cve, fixed, what in below)
                if allow_vulnerable:
                    opt_out = variable('image_allow_known_vulnerable').upper()
                    report.warn('OLLAMA %s HAS KNOWN CRITICAL CVEs AND RUNS ONLY BECAUSE %s IS TRUE: %s. Upgrade to '
                                '%s or newer as soon as you can' % (tag, opt_out, listed, _dotted(MIN_OLLAMA)))
                else:
                    report.error('image_tag', 'Ollama %s has known critical CVEs: %s' % (tag, listed),
                                 '%s; to run this old version anyway (at your own risk) set %s: true'
                                 % (fix, variable('image_allow_known_vulnerable')))
            if suffix and 'rocm' in suffix:
                report.warn('%s %r is the AMD ROCm build; on nvidia.com/gpu nodes it runs on the CPU'
                            % (variable('image_tag'), tag))
    else:
        report.warn('%s pins a digest only; the CVE table (fixed in %s and later) cannot be checked: name the '
                    'release in %s and the digest in %s'
                    % (variable('image_tag'), _dotted(MIN_OLLAMA), variable('image_tag'), variable('image_digest')))
    result.update(tag=tag or None, digest=digest, version=_dotted(version) if version else None)
    if image:
        ref = image
        if tag:
            ref += ':' + tag
        if digest:
            ref += '@' + digest
        result['ref'] = ref
    return result


def check_namespace(facts, namespace, manage_labels, report):
    """``{name, exists, owned, manage_labels, labels}``. System namespaces are refused. A namespace that exists
    without the collection's managed-by label is someone else's: its labels (Pod Security included) are left alone
    unless ``manage_labels``."""
    result = {'name': namespace, 'exists': False, 'owned': True, 'manage_labels': True, 'labels': {}}
    if namespace in SYSTEM_NAMESPACES or (namespace or '').startswith('kube-'):
        report.error('namespace', '%s %s is a namespace Kubernetes owns; the collection never deploys into it, '
                     'relabels it or puts policies over its pods' % (variable('namespace'), namespace),
                     'set %s to a namespace of its own, e.g. ollama (the collection creates it)' % variable('namespace'))
    existing = facts.get('existing') or {}
    if not existing.get('namespace_exists'):
        return result
    labels = dict(existing.get('namespace_labels') or {})
    owned = labels.get(LABEL_MANAGED_BY) == 'llmops.ollama'
    manage = owned or manage_labels
    result.update(exists=True, owned=owned, manage_labels=manage, labels=labels)
    if not owned and not manage_labels:
        report.warn('namespace %s was not created by llmops.ollama (no %s=llmops.ollama label): its labels, Pod '
                    'Security included, stay as they are; set %s: true to have the collection set them'
                    % (namespace, LABEL_MANAGED_BY, variable('namespace_manage_labels')))
    return result


# ---------------------------------------------------------------- models

def _valid_model_part(kind, part):
    limit = 350 if kind == 'host' else 80
    if not part or len(part) > limit:
        return False
    if not (part[0].isalnum() or part[0] == '_') or not part[0].isascii():
        return False
    for ch in part[1:]:
        if ch in '_-':
            continue
        if ch == '.':
            if kind == 'namespace':
                return False
            continue
        if ch == ':':
            if kind != 'host':
                return False
            continue
        if not (ch.isascii() and ch.isalnum()):
            return False
    return True


def parse_model_name(name):
    """Split an Ollama model name ``[host/][namespace/]model[:tag][@digest]`` by Ollama's
    rules (types/model/name.go). Returns ``(parts, reason)``: parts is a dict with the
    defaults filled in (registry.ollama.ai, library, latest), or None with the reason."""
    if not isinstance(name, str) or not name.strip():
        return None, 'the name is empty'
    text = name.strip()
    digest = None
    if '@' in text:
        text, digest = text.rsplit('@', 1)
        if not _DIGEST.match(digest):
            return None, 'digest %r is not sha256:<64 hex digits>' % digest
    scheme = ''
    if '://' in text:
        scheme, text = text.split('://', 1)
        if scheme not in ('http', 'https'):
            return None, 'scheme %r is not http or https' % scheme
    tag = None
    if text.rfind(':') > text.rfind('/'):
        text, tag = text.rsplit(':', 1)
        if not _valid_model_part('tag', tag):
            return None, 'tag %r is not valid (1-80 letters, digits, "_", "-", ".", starting with a ' \
                         'letter, digit or "_")' % tag
    parts = text.split('/')
    if len(parts) > 3:
        return None, 'too many "/" parts (at most host/namespace/model)'
    kinds = ('host', 'namespace', 'model')[3 - len(parts):]
    for kind, part in zip(kinds, parts):
        if not _valid_model_part(kind, part):
            return None, '%s part %r is not valid' % (kind, part)
    values = dict(zip(kinds, parts))
    return {
        'host': values.get('host', OLLAMA_REGISTRY),
        'namespace': values.get('namespace', OLLAMA_NAMESPACE),
        'model': values['model'],
        'tag': tag or OLLAMA_TAG,
        'digest': digest,
        'scheme': scheme or None,
    }, None


def model_display_name(parts):
    """The shortest name Ollama prints: ``llama3.2:3b``, ``ns/model:tag``, ``host/ns/model:tag``."""
    short = '%s:%s' % (parts['model'], parts['tag'])
    if parts['host'] != OLLAMA_REGISTRY:
        return '%s/%s/%s' % (parts['host'], parts['namespace'], short)
    if parts['namespace'] != OLLAMA_NAMESPACE:
        return '%s/%s' % (parts['namespace'], short)
    return short


def normalize_models(models, report):
    """``[{name, full, size_bytes, size, digest}]`` from the user's list (strings or dicts)."""
    result = []
    seen = set()
    if not isinstance(models, list):
        report.error('models', '%s must be a list of models, got %r' % (variable('models'), models),
                     'set %s to a list such as [{name: "llama3.2:3b", size: "2GB"}]' % variable('models'))
        return result
    unsized = []
    for index, item in enumerate(models):
        if isinstance(item, str):
            item = {'name': item}
        if not isinstance(item, dict) or not item.get('name'):
            report.error('models', '%s entry %d has no name: %r' % (variable('models'), index, item),
                         'give each entry a name, e.g. {name: "llama3.2:3b", size: "2GB"}')
            continue
        name = item['name']
        parts, reason = parse_model_name(name)
        if parts is None:
            report.error('models', 'model %r is not a valid Ollama model name: %s' % (name, reason),
                         'write it as [host/][namespace/]model[:tag], e.g. "llama3.2:3b" or '
                         '"hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"')
            continue
        size_bytes = None
        if item.get('size') not in (None, ''):
            try:
                size_bytes = parse_size(item['size'])
            except QuantityError as exc:
                report.error('models', 'model %r: size %r is not a size (%s)' % (name, item['size'], exc),
                             'write the size like "4.7GB", "4.7 GiB" or 5000000000 (bytes)')
        digest = item.get('digest') or parts['digest']
        if digest and not _DIGEST.match(str(digest)):
            report.error('models', 'model %r: digest %r is not sha256:<64 hex digits>' % (name, digest),
                         'copy the digest from the registry manifest, e.g. "sha256:6a0746a1ec1a..." '
                         '(64 hex digits), or leave it out')
            digest = None
        display = model_display_name(parts)
        full = '%s/%s/%s:%s' % (parts['host'], parts['namespace'], parts['model'], parts['tag'])
        if full.lower() in seen:
            report.warn('model %s is listed twice in %s; pulled once' % (display, variable('models')))
            continue
        seen.add(full.lower())
        if size_bytes is None:
            unsized.append(display)
        result.append({
            'name': display,
            'given': name,
            'full': full,
            'size_bytes': size_bytes,
            'size': format_size(size_bytes),
            'digest': digest,
            # from the GGUF header at the registry (ollama_model_info) or declared on the entry
            'architecture': item.get('architecture'),
            'architecture_error': item.get('architecture_error'),
        })
    if unsized:
        report.warn('no size given for %s: the claim size and the GPU memory fit do not count them '
                    '(add size: to each model in %s)' % (', '.join(unsized), variable('models')))
    return result


# ---------------------------------------------------------------- nodes

def check_tolerations(tolerations, report):
    """Validated tolerations (Kubernetes shape), or the defaults' after an error."""
    if not isinstance(tolerations, list):
        report.error('tolerations', '%s must be a list of tolerations, got %r' % (variable('tolerations'), tolerations),
                     'set %s to e.g. [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]'
                     % variable('tolerations'))
        return []
    result = []
    for tol in tolerations:
        problem = None
        if not isinstance(tol, dict):
            problem = 'is not a mapping'
        else:
            operator = tol.get('operator') or 'Equal'
            if operator not in ('Equal', 'Exists'):
                problem = 'operator %r is not Equal or Exists' % operator
            elif (tol.get('effect') or '') not in TAINT_EFFECTS:
                problem = 'effect %r is not NoSchedule, PreferNoSchedule or NoExecute' % tol.get('effect')
            elif operator == 'Exists' and tol.get('value'):
                problem = 'operator Exists takes no value'
            elif operator == 'Equal' and not tol.get('key'):
                problem = 'an empty key needs operator Exists'
        if problem:
            report.error('tolerations', 'toleration %r in %s %s' % (tol, variable('tolerations'), problem),
                         'write tolerations as Kubernetes does, e.g. {key: nvidia.com/gpu, operator: Exists, '
                         'effect: NoSchedule}')
            continue
        result.append(dict(tol))
    return result


def tolerates(toleration, taint):
    """Kubernetes' toleration matching (k8s.io/api/core/v1 Toleration.ToleratesTaint)."""
    effect = toleration.get('effect') or ''
    if effect and effect != taint.get('effect'):
        return False
    key = toleration.get('key') or ''
    if key and key != taint.get('key'):
        return False
    if (toleration.get('operator') or 'Equal') == 'Exists':
        return True
    return (toleration.get('value') or '') == (taint.get('value') or '')


def untolerated_taints(node, tolerations):
    """Taints on a node that keep a pod with these tolerations off it."""
    return [t for t in node.get('taints') or []
            if t.get('effect') in BLOCKING_EFFECTS and not any(tolerates(tol, t) for tol in tolerations)]


def format_taint(taint):
    if taint.get('value'):
        return '%s=%s:%s' % (taint['key'], taint['value'], taint['effect'])
    return '%s:%s' % (taint['key'], taint['effect'])


def check_node_label(value, report):
    """``{key, value}`` or None (no node label affinity). Also takes "key=value"."""
    if value in ({}, ''):
        return None
    if isinstance(value, str) and '=' in value:
        key, val = value.split('=', 1)
        value = {'key': key, 'value': val}
    if not isinstance(value, dict) or not value.get('key') or not isinstance(value.get('key'), str):
        report.error('gpu_node_label', '%s must be {key, value}, got %r' % (variable('gpu_node_label'), value),
                     'set %s: {key: nvidia.com/gpu.present, value: "true"}' % variable('gpu_node_label'))
        return None
    label_value = value.get('value', '')
    if isinstance(label_value, bool):
        # YAML turns an unquoted true into a boolean; a label value is the string "true".
        label_value = 'true' if label_value else 'false'
    return {'key': value['key'], 'value': str(label_value)}


def check_node_selector(value, report):
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        report.error('node_selector', '%s must map label keys to string values, got %r'
                     % (variable('node_selector'), value),
                     'set %s to e.g. {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3} (quote values like "true")'
                     % variable('node_selector'))
        return {}
    return dict(value)


def select_eligible_nodes(facts, node_label, tolerations, gpus_per_pod, node_selector, label_nodes, report,
                          gpu_error_reported=False):
    """GPU nodes a replica can land on: ready, schedulable, carrying the node label
    (or to be labelled when ``label_nodes``), all blocking taints tolerated, enough
    allocatable GPUs, matching the node selector. Filters run in that order; when one
    empties the set, its error explains why. Returns ``(eligible, excluded, to_label)``."""
    excluded = {}
    gpu_nodes = [n for n in facts.get('nodes') or [] if n.get('gpu_allocatable', 0) > 0]
    if not gpu_nodes:
        if not gpu_error_reported:
            present = [n['name'] for n in facts.get('nodes') or [] if n.get('gpu_present_label')]
            report.error('nodes', 'no node advertises nvidia.com/gpu%s' % (
                ' (labelled nvidia.com/gpu.present=true but 0 allocatable: %s)' % ', '.join(present)
                if present else ''),
                'add GPU nodes and run the NVIDIA device plugin or GPU operator on them so they '
                'advertise nvidia.com/gpu')
        return [], excluded, []

    def step(nodes, keep, reason):
        kept = []
        for node in nodes:
            why = reason(node) if not keep(node) else None
            if why:
                excluded[node['name']] = why
            else:
                kept.append(node)
        return kept

    usable = step(gpu_nodes, lambda n: n.get('ready') and n.get('schedulable'),
                  lambda n: 'not ready' if not n.get('ready') else 'cordoned (unschedulable)')
    if not usable:
        report.error('nodes', 'no GPU node is ready and schedulable: %s' % ', '.join(
            '%s (%s)' % (name, why) for name, why in sorted(excluded.items())),
            'repair or uncordon a GPU node (kubectl uncordon NODE) and run again')
        return [], excluded, []

    to_label = []
    labelled = usable
    if node_label:
        def has_label(n):
            return (n.get('labels') or {}).get(node_label['key']) == node_label['value']
        if label_nodes:
            to_label = [n['name'] for n in usable if not has_label(n)]
        else:
            labelled = step(usable, has_label, lambda n: 'no label %s=%s' % (node_label['key'], node_label['value']))
            if not labelled:
                report.error('gpu_node_label',
                             'GPU nodes %s do not carry the label %s=%s that the pods require'
                             % (', '.join(n['name'] for n in usable), node_label['key'], node_label['value']),
                             'set ollama_gpu_label_nodes: true to label them, run NVIDIA GPU feature discovery '
                             '(or the GPU operator) which sets nvidia.com/gpu.present=true, or set %s to a '
                             'label the GPU nodes carry' % variable('gpu_node_label'))
                return [], excluded, []

    tolerated = step(labelled, lambda n: not untolerated_taints(n, tolerations),
                     lambda n: 'taints not tolerated: %s' % ', '.join(
                         format_taint(t) for t in untolerated_taints(n, tolerations)))
    if not tolerated:
        taints = sorted(set(format_taint(t) for n in labelled for t in untolerated_taints(n, tolerations)))
        report.error('tolerations', 'every GPU node has a taint the pods do not tolerate: %s (nodes: %s)'
                     % (', '.join(taints), ', '.join(n['name'] for n in labelled)),
                     'add a toleration for %s to %s, or remove the taint from a GPU node'
                     % (taints[0], variable('tolerations')))
        return [], excluded, []

    big = step(tolerated, lambda n: n.get('gpu_allocatable', 0) >= gpus_per_pod,
               lambda n: '%d allocatable GPUs < %d per pod' % (n.get('gpu_allocatable', 0), gpus_per_pod))
    if not big:
        most = max(n.get('gpu_allocatable', 0) for n in tolerated)
        report.error('gpus_per_pod', '%s is %d but the largest eligible GPU node has %d allocatable GPUs'
                     % (variable('gpus_per_pod'), gpus_per_pod, most),
                     'set %s to at most %d, or add nodes with more GPUs' % (variable('gpus_per_pod'), most))
        return [], excluded, []

    eligible = big
    if node_selector:
        eligible = step(big, lambda n: all((n.get('labels') or {}).get(k) == v for k, v in node_selector.items()),
                        lambda n: 'does not match %s' % variable('node_selector'))
        if not eligible:
            report.error('node_selector', '%s %s matches none of the eligible GPU nodes (%s)'
                         % (variable('node_selector'), ', '.join('%s=%s' % kv for kv in sorted(node_selector.items())),
                            ', '.join(n['name'] for n in big)),
                         'change %s to labels a GPU node carries, or clear it' % variable('node_selector'))
            return [], excluded, []
    to_label = [name for name in to_label if name in set(n['name'] for n in eligible)]
    return eligible, excluded, to_label


def check_device_plugin(facts, require, report):
    """The NVIDIA device plugin must run and be healthy. Returns True when an error was
    reported. GPUs advertised without a plugin DaemonSet (a host-level plugin, as on
    Bottlerocket) only warn."""
    if not require:
        return False
    plugin = facts.get('device_plugin') or {}
    advertised = any(n.get('gpu_allocatable', 0) > 0 for n in facts.get('nodes') or [])
    fix = ('install the NVIDIA device plugin (nvidia/k8s-device-plugin) or the NVIDIA GPU operator; set '
           '%s: false only when GPUs are advertised another way' % variable('require_device_plugin'))
    if not plugin.get('found'):
        if advertised:
            report.warn('no NVIDIA device plugin DaemonSet found, yet nodes advertise nvidia.com/gpu '
                        '(a host-level plugin?)')
            return False
        report.error('require_device_plugin', 'no NVIDIA device plugin DaemonSet runs and no node advertises '
                     'nvidia.com/gpu, so no pod can get a GPU', fix)
        return True
    if not plugin.get('healthy'):
        report.error('require_device_plugin', 'the NVIDIA device plugin DaemonSet %s/%s is not healthy: %d of %d '
                     'ready' % (plugin.get('namespace'), plugin.get('name'), plugin.get('ready', 0),
                                plugin.get('desired', 0)),
                     'fix the device plugin pods (kubectl -n %s describe daemonset %s); %s'
                     % (plugin.get('namespace'), plugin.get('name'), fix))
        return True
    return False


def decide_runtime_class(facts, value, report):
    """``"auto"``: ``nvidia`` on k3s without the GPU operator (k3s registers it when the
    NVIDIA container toolkit is installed); none elsewhere. ``""``: none. A name must exist."""
    existing = facts.get('runtime_classes') or []
    if value in ('', None):
        return None
    if value == 'auto':
        if facts.get('distribution') != 'k3s' or facts.get('gpu_operator'):
            return None
        if 'nvidia' in existing:
            return 'nvidia'
        report.error('runtime_class', 'this k3s cluster has no "nvidia" RuntimeClass and no GPU operator: '
                     'Ollama pods would start under runc and see no GPU',
                     'install the NVIDIA container toolkit on the k3s GPU hosts and restart k3s so it registers '
                     'the nvidia runtime and RuntimeClass, or set %s: "" when containerd already defaults to '
                     'the nvidia runtime' % variable('runtime_class'))
        return None
    if not isinstance(value, str) or value not in existing:
        report.error('runtime_class', 'RuntimeClass %r does not exist (existing: %s)'
                     % (value, ', '.join(existing) or 'none'),
                     'set %s to one of the existing RuntimeClasses, "auto", or "" for none'
                     % variable('runtime_class'))
        return None
    return value


# ---------------------------------------------------------------- capacity and HA

def node_slots(node, gpus_per_pod, one_per_node, free=True):
    """Replicas a node can take: its (free or allocatable) GPUs // gpus_per_pod, at most
    one under required anti-affinity."""
    gpus = node.get('gpu_free' if free else 'gpu_allocatable', 0)
    slots = gpus // gpus_per_pod if gpus_per_pod else 0
    return min(slots, 1) if one_per_node else slots


def decide_anti_affinity(value, replicas, eligible, report):
    """``required`` (hard), ``preferred`` (soft) or ``none`` for a single replica."""
    if value not in ANTI_AFFINITY:
        report.error('anti_affinity', '%s must be hard or soft, got %r' % (variable('anti_affinity'), value),
                     'set %s: hard (one replica per node) or soft' % variable('anti_affinity'))
        return 'none' if replicas <= 1 else 'required'
    if replicas <= 1:
        return 'none'
    if value == 'soft':
        report.warn('%s is soft: several replicas may share a node, and losing that node takes them all down'
                    % variable('anti_affinity'))
        return 'preferred'
    if eligible and replicas > len(eligible):
        report.error('replicas', '%s is %d but hard anti-affinity puts at most one replica on each of the %d '
                     'eligible GPU nodes (%s)' % (variable('replicas'), replicas, len(eligible),
                                                  ', '.join(n['name'] for n in eligible)),
                     'lower %s to %d, add GPU nodes, or set %s: soft'
                     % (variable('replicas'), len(eligible), variable('anti_affinity')))
    return 'required'


def check_free_gpus(eligible, replicas, gpus_per_pod, existing_replicas, one_per_node, report):
    """Enough free GPUs for the replicas not yet running. Returns the spare slots (free
    slots beyond those needed), which decide whether a rolling update may surge."""
    if not eligible:
        return 0
    slots = sum(node_slots(n, gpus_per_pod, one_per_node) for n in eligible)
    needed = max(0, replicas - existing_replicas)
    if slots < needed:
        report.error('replicas', 'all GPUs taken: %d more replica(s) of %d GPU(s) need room but the eligible '
                     'nodes have room for %d (free/allocatable: %s)'
                     % (needed, gpus_per_pod, slots, ', '.join(
                         '%s %d/%d' % (n['name'], n.get('gpu_free', 0), n.get('gpu_allocatable', 0))
                         for n in eligible)),
                     'free GPUs (scale down other GPU workloads), add GPU nodes, or lower %s or %s'
                     % (variable('replicas'), variable('gpus_per_pod')))
    return max(0, slots - needed)


def even_spread_feasible(replicas, zone_capacity):
    """Can ``replicas`` spread over these zones with maxSkew 1? Each zone then holds
    ``replicas // zones`` or one more."""
    zones = len(zone_capacity)
    if zones == 0:
        return False
    base, extra = divmod(replicas, zones)
    caps = list(zone_capacity.values())
    return all(c >= base for c in caps) and sum(1 for c in caps if c >= base + 1) >= extra


def decide_zone_spread(value, replicas, eligible, anti_affinity, gpus_per_pod, report):
    """``{zone_spread, zone_spread_when, zones}``: spread over zones with maxSkew 1;
    DoNotSchedule only under hard anti-affinity when an even spread fits."""
    zones = sorted(set(n['zone'] for n in eligible if n.get('zone')))
    if isinstance(value, str) and value != 'auto':
        value = _as_bool(value)
    if value not in ('auto', True, False):
        report.error('zone_spread', '%s must be auto, true or false, got %r' % (variable('zone_spread'), value),
                     'set %s: auto' % variable('zone_spread'))
        value = 'auto'
    if value == 'auto':
        enabled = replicas > 1 and len(zones) >= 2
    else:
        enabled = value
    when = 'ScheduleAnyway'
    if enabled and len(zones) < 2:
        # Only an explicit true gets here (auto needs two zones): asked for, it must not be dropped silently.
        report.error('zone_spread', '%s is true but the eligible GPU nodes (%s) %s, so a spread over zones would '
                     'have no effect' % (variable('zone_spread'), ', '.join(n['name'] for n in eligible),
                                         'span one zone (%s)' % zones[0] if zones
                                         else 'carry no %s label' % ZONE_KEY),
                     'label the GPU nodes with their zones (kubectl label node NODE %s=ZONE) or add GPU nodes in '
                     'another zone, or set %s: auto (spread where there are zones) or false'
                     % (ZONE_KEY, variable('zone_spread')))
        enabled = False
    elif enabled:
        unzoned = [n['name'] for n in eligible if not n.get('zone')]
        capacity = {}
        for node in eligible:
            if node.get('zone'):
                capacity[node['zone']] = capacity.get(node['zone'], 0) + node_slots(
                    node, gpus_per_pod, anti_affinity == 'required', free=False)
        if anti_affinity == 'required' and not unzoned and even_spread_feasible(replicas, capacity):
            when = 'DoNotSchedule'
        elif anti_affinity == 'required':
            report.warn('%d replicas cannot spread evenly over zones %s (GPU node slots per zone: %s%s); the zone '
                        'spread is only preferred' % (replicas, ', '.join(zones), ', '.join(
                            '%s=%d' % kv for kv in sorted(capacity.items())),
                            '; nodes without a zone label: %s' % ', '.join(unzoned) if unzoned else ''))
    return {'zone_spread': bool(enabled), 'zone_spread_when': when, 'zones': zones}


def decide_pdb(value, replicas, report):
    """``{min_available, unhealthy_pod_eviction_policy}`` or None. Auto: replicas - 1."""
    if value in ('', None, 'auto'):
        if replicas <= 1:
            report.warn('one replica: no PodDisruptionBudget, so draining its node takes the endpoint down '
                        '(raise %s for availability)' % variable('replicas'))
            return None
        return {'min_available': replicas - 1, 'unhealthy_pod_eviction_policy': 'AlwaysAllow'}
    if replicas <= 1:
        fix = 'set %s: "" (one replica gets no PodDisruptionBudget), or raise %s' % (
            variable('pdb_min_available'), variable('replicas'))
    else:
        fix = 'set %s to less than %s (%d), or "" for replicas - 1' % (
            variable('pdb_min_available'), variable('replicas'), replicas)
    match = _PERCENT.match(value) if isinstance(value, str) else None
    if match:
        percent = int(match.group(1))
        if percent > 100:
            report.error('pdb_min_available', '%s %s is above 100%%' % (variable('pdb_min_available'), value), fix)
            return None
        effective = -(-percent * replicas // 100)
        shown = value
    else:
        effective = _as_int(value)
        if effective is None or effective < 0:
            report.error('pdb_min_available', '%s must be a whole number >= 0, a percentage or "", got %r'
                         % (variable('pdb_min_available'), value), fix)
            return None
        shown = effective
    if effective >= replicas:
        report.error('pdb_min_available', '%s %s keeps all %d replica(s) up, so a node drain could never proceed'
                     % (variable('pdb_min_available'), value, replicas), fix)
        return None
    if effective == 0:
        report.warn('%s is 0: no PodDisruptionBudget is created' % variable('pdb_min_available'))
        return None
    return {'min_available': shown, 'unhealthy_pod_eviction_policy': 'AlwaysAllow'}


def decide_gpu_quota(value, replicas, gpus_per_pod, rolling_update, report):
    """The GPUs of the namespace's quota on requests.nvidia.com/gpu, or None for no quota."""
    raw = '' if value is None or value is False else str(value).strip()
    if raw == '':
        return None
    surge = int((rolling_update or {}).get('max_surge') or 0)
    needed = (replicas + surge) * gpus_per_pod
    if raw == 'auto':
        return needed
    if raw.isdigit() and int(raw) >= needed:
        return int(raw)
    report.error('gpu_quota', '%s is %s, but it must be "", "auto" or a whole number of GPUs of at least %d (%d '
                 'replica(s) x %d GPU(s)%s)' % (variable('gpu_quota'), json.dumps(value), needed, replicas,
                                                gpus_per_pod, ' + one surge pod' if surge else ''),
                 'set %s to "auto", to %d or more, or to "" for no quota' % (variable('gpu_quota'), needed))
    return None


def object_names(name):
    """The name of every object the roles write for the workload ``name`` (the plan's ``objects``)."""
    cache = '%s-model-cache' % name
    return {
        'workload': name,
        'service': name,
        'service_account': name,
        'headless_service': '%s-headless' % name,
        'pdb': name,
        'gpu_quota': '%s-gpu' % name,
        'self_heal_config_map': '%s-self-heal' % name,
        'network_policies': {'ingress': '%s-ingress' % name, 'egress': '%s-egress' % name,
                             'cache_ingress': '%s-ingress' % cache, 'cache_egress': '%s-egress' % cache},
        'model_cache': cache,
        'model_cache_config_map': '%s-config' % cache,
    }


def stale_objects(names, namespace, decided):
    """What each role wrote under other settings and these no longer ask for: deleted where it exists. Claims
    are never among them (a converge never deletes a claim holding models)."""
    def ref(api_version, kind, name):
        return {'apiVersion': api_version, 'kind': kind, 'metadata': {'name': name, 'namespace': namespace}}

    workload = [ref('apps/v1', 'StatefulSet' if decided['workload_kind'] == 'Deployment' else 'Deployment',
                    names['workload'])]
    if decided['workload_kind'] != 'StatefulSet':
        workload.append(ref('v1', 'Service', names['headless_service']))
    if not decided['ingress'].get('enabled'):
        workload.append(ref('networking.k8s.io/v1', 'Ingress', names['workload']))
    httproute = decided['httproute'] or {}
    if not httproute.get('enabled') and httproute.get('served'):
        workload.append(ref('gateway.networking.k8s.io/v1', 'HTTPRoute', names['workload']))
    policy = decided['network_policy'] or {}
    for part in ('ingress', 'egress'):
        if not policy.get('%s_spec' % part):
            workload.append(ref('networking.k8s.io/v1', 'NetworkPolicy', names['network_policies'][part]))
    if not (decided['self_heal'] or {}).get('enabled'):
        workload.append(ref('v1', 'ConfigMap', names['self_heal_config_map']))
    if not (decided['model_cache'] or {}).get('enabled'):
        workload.extend([ref('apps/v1', 'Deployment', names['model_cache']), ref('v1', 'Service', names['model_cache']),
                         ref('v1', 'ConfigMap', names['model_cache_config_map'])])
    for part in ('ingress', 'egress'):
        if not policy.get('cache_%s_spec' % part):
            workload.append(ref('networking.k8s.io/v1', 'NetworkPolicy', names['network_policies']['cache_' + part]))
    ha = []
    if not decided['pdb']:
        ha.append(ref('policy/v1', 'PodDisruptionBudget', names['pdb']))
    if decided['gpu_quota'] is None:
        ha.append(ref('v1', 'ResourceQuota', names['gpu_quota']))
    return {'ollama_workload': workload, 'ha_policy': ha}


# ---------------------------------------------------------------- storage

def planned_storage_classes(facts, wanted, report):
    """Facts as they will be once storage_provisioner has created the ``wanted`` classes; and those classes."""
    if not isinstance(wanted, list) or not all(isinstance(c, dict) for c in wanted):
        report.error('storage_classes', '%s must be a list of classes ({name, provisioner, ...})'
                     % variable('storage_classes'), 'see the storage_provisioner README for the keys of each class')
        return facts, []
    existing = dict((c['name'], c) for c in facts.get('storage_classes') or [])
    classes, created = list(existing.values()), []
    for index, sc in enumerate(wanted):
        name, provisioner = sc.get('name'), sc.get('provisioner')
        if not (isinstance(name, str) and _DNS_SUBDOMAIN.match(name or '')) or not provisioner:
            report.error('storage_classes', 'class %d needs a DNS-subdomain name and a provisioner, got %r' % (index, sc),
                         'give each entry of %s a name and a provisioner' % variable('storage_classes'))
            continue
        if name in existing:
            # StorageClass parameters are immutable: an existing class is used as it is, unless the entry asks for
            # something else, which must not be dropped silently.
            check_existing_class(existing[name], sc, report)
            continue
        planned = {'name': name, 'provisioner': provisioner, 'default': bool(sc.get('default')),
                   'binding_mode': sc.get('binding_mode') or 'WaitForFirstConsumer',
                   'allow_expansion': bool(sc.get('allow_expansion', True)),
                   'reclaim_policy': sc.get('reclaim_policy') or 'Delete',
                   'rwx': provisioner in RWX_PROVISIONERS, 'parameters': dict(sc.get('parameters') or {})}
        classes.append(planned)
        created.append(planned)
    facts = dict(facts, storage_classes=classes)
    if any(c['default'] for c in created) and not facts.get('default_storage_class'):
        facts['default_storage_class'] = next(c['name'] for c in created if c['default'])
    return facts, created


def check_existing_class(have, wanted, report):
    """An entry of ollama_storage_classes that names an existing class must ask for what the class is."""
    asked = [('provisioner', wanted.get('provisioner'), have.get('provisioner'))]
    for key in ('binding_mode', 'reclaim_policy'):
        if wanted.get(key):
            asked.append((key, wanted[key], have.get(key)))
    if wanted.get('allow_expansion') is not None:
        asked.append(('allow_expansion', _as_bool(wanted['allow_expansion']), have.get('allow_expansion')))
    for key, value in sorted((wanted.get('parameters') or {}).items()):
        asked.append(('parameters.%s' % key, str(value), (have.get('parameters') or {}).get(key)))
    differ = ['%s %r (the class has %r)' % (key, want, got) for key, want, got in asked if want != got]
    if differ:
        report.error('storage_classes', 'StorageClass %s exists, and the entry of %s that names it asks for %s; a '
                     'StorageClass cannot change, so the entry would be ignored'
                     % (have['name'], variable('storage_classes'), ', '.join(differ)),
                     'remove %s from %s to use the class as it is, make the entry match it, or give the entry '
                     'another name' % (have['name'], variable('storage_classes')))


def check_csi_driver(facts, sc, report):
    """A CSI provisioner without its registered driver leaves every claim Pending."""
    provisioner = (sc or {}).get('provisioner') or ''
    if '.csi.' not in provisioner and not provisioner.endswith('csi.k8s.io'):
        return
    if provisioner in (facts.get('csi_drivers') or []):
        return
    hints = {'efs.csi.aws.com': 'install the Amazon EFS CSI driver (EKS add-on aws-efs-csi-driver)',
             'ebs.csi.aws.com': 'install the Amazon EBS CSI driver (EKS add-on aws-ebs-csi-driver)'}
    report.error('storage_class', 'StorageClass %s uses provisioner %s, but no CSI driver of that name is registered, '
                 'so its claims would stay Pending' % (sc['name'], provisioner),
                 '%s, or set %s to another class' % (hints.get(provisioner, 'install the %s CSI driver' % provisioner),
                                                     variable('storage_class')))


def choose_storage_class(facts, name, install_local_path, report):
    """``{name, provisioner, binding_mode, rwx, allow_expansion, install_local_path}`` or None.
    "" takes the cluster default; without one, a class named local-path (k3s bundles it),
    else the local-path provisioner when ``install_local_path``."""
    classes = dict((c['name'], c) for c in facts.get('storage_classes') or [])
    existing = ', '.join(sorted(classes)) or 'none'
    local_path = {'name': LOCAL_PATH_CLASS, 'provisioner': LOCAL_PATH_PROVISIONER,
                  'binding_mode': 'WaitForFirstConsumer', 'rwx': False, 'allow_expansion': False,
                  'install_local_path': True}

    def pick(sc):
        return {'name': sc['name'], 'provisioner': sc.get('provisioner'),
                'binding_mode': sc.get('binding_mode') or 'Immediate', 'rwx': bool(sc.get('rwx')),
                'allow_expansion': bool(sc.get('allow_expansion')), 'install_local_path': False}

    if not isinstance(name, str):
        report.error('storage_class', '%s must be a StorageClass name or "", got %r' % (variable('storage_class'), name),
                     'set %s to one of: %s, or "" for the cluster default' % (variable('storage_class'), existing))
        return None
    if name:
        if name in classes:
            return pick(classes[name])
        if name == LOCAL_PATH_CLASS and install_local_path:
            return local_path
        report.error('storage_class', 'StorageClass %r does not exist (existing: %s)' % (name, existing),
                     'set %s to one of the existing classes, or "" for the cluster default%s'
                     % (variable('storage_class'), '' if name != LOCAL_PATH_CLASS else
                        ', or set ollama_storage_install_local_path: true to install local-path'))
        return None
    default = facts.get('default_storage_class')
    if default in classes:
        return pick(classes[default])
    if LOCAL_PATH_CLASS in classes:
        report.warn('no default StorageClass; using %s' % LOCAL_PATH_CLASS)
        return pick(classes[LOCAL_PATH_CLASS])
    if install_local_path:
        return local_path
    report.error('storage_class', 'no StorageClass named and the cluster has no default one (existing: %s)' % existing,
                 'set ollama_storage_install_local_path: true to install the local-path provisioner, or set %s '
                 'to an existing class' % variable('storage_class'))
    return None


def decide_storage_layout(mode, replicas, rwx, class_name, rwx_classes, report, class_known=True):
    """``(mode, workload_kind, strategy, access_mode)``.

    auto: one replica -> one claim, Deployment (Recreate on RWO, RollingUpdate on RWX);
    several -> one RWX claim shared by a Deployment when the class is RWX, else a
    StatefulSet with a claim per replica. shared with several replicas needs RWX
    (an RWO volume cannot attach to pods on several nodes: Multi-Attach); that is not
    judged when the class itself is in error (``class_known`` false)."""
    if mode not in STORAGE_MODES:
        report.error('storage_mode', '%s must be one of %s, got %r'
                     % (variable('storage_mode'), ', '.join(STORAGE_MODES), mode),
                     'set %s: auto' % variable('storage_mode'))
        mode = 'auto'
    if mode == 'auto':
        mode = 'shared' if replicas == 1 or rwx else 'per_replica'
    if mode == 'per_replica':
        return 'per_replica', 'StatefulSet', 'RollingUpdate', 'ReadWriteOnce'
    if replicas > 1 and not rwx and class_known:
        report.error('storage_mode', '%s is shared with %d replicas but StorageClass %s is ReadWriteOnce: the '
                     'volume cannot attach to pods on several nodes (Multi-Attach error)'
                     % (variable('storage_mode'), replicas, class_name or '(none)'),
                     'set %s: per_replica (a claim per replica, no RWX needed) or %s to a ReadWriteMany class%s'
                     % (variable('storage_mode'), variable('storage_class'),
                        ' (here: %s)' % ', '.join(rwx_classes) if rwx_classes else ' (EFS, NFS, CephFS, ...)'))
    if rwx:
        return 'shared', 'Deployment', 'RollingUpdate', 'ReadWriteMany'
    return 'shared', 'Deployment', 'Recreate', 'ReadWriteOnce'


def decide_claim_size(claim_size, headroom, models, report):
    """``(size, bytes)``. "" sizes the claim for the models: sum * (1 + headroom%), whole Gi
    rounded up, at least 10Gi. An explicit size must hold the models."""
    total = sum(m['size_bytes'] for m in models if m.get('size_bytes'))
    wanted = -(-total * (100 + headroom) // 100)
    if claim_size in ('', None, 'auto'):
        size = format_gi(wanted, minimum_gi=MIN_CLAIM_GI)
        return size, int(size[:-2]) * GI
    try:
        size_bytes = quantity_to_bytes(claim_size)
    except QuantityError:
        report.error('claim_size', '%s %r is not a Kubernetes quantity' % (variable('claim_size'), claim_size),
                     'set %s like "50Gi", or "" to size it from the models' % variable('claim_size'))
        return None, None
    if size_bytes < total:
        report.error('claim_size', '%s %s (%s) is smaller than the models it must hold: %s = %s'
                     % (variable('claim_size'), claim_size, format_size(size_bytes), ' + '.join(
                         '%s %s' % (m['name'], m['size']) for m in models if m.get('size_bytes')),
                        format_size(total)),
                     'set %s to at least %s, or "" to size it from the models'
                     % (variable('claim_size'), format_gi(wanted)))
    elif size_bytes < wanted:
        report.warn('%s %s leaves less than %d%% headroom over the models (%s)'
                    % (variable('claim_size'), claim_size, headroom, format_size(total)))
    return str(claim_size), size_bytes


def _env_mapping(key, value, report):
    if value is None or isinstance(value, dict):
        return value
    report.warn('%s is not a mapping (%r); the GPU memory estimate ignores it' % (variable(key), value))
    return None if key == 'workload_env_defaults' else {}


def _fix_text(name, value, result, arch):
    """One setting that makes a model fit, as the user writes it."""
    needs = 'needs %s' % vram.format_bytes(result['total_bytes'])
    env = variable('workload_env')
    if name == 'OLLAMA_CONTEXT_LENGTH':
        if arch.get('num_ctx'):
            return 'a copy of the model with PARAMETER num_ctx %d in its Modelfile (it sets %d; %s)' % (
                value, arch['num_ctx'], needs)
        return 'OLLAMA_CONTEXT_LENGTH: "%d" in %s (%s)' % (value, env, needs)
    if name == 'OLLAMA_NUM_PARALLEL':
        return 'OLLAMA_NUM_PARALLEL: "%d" in %s (%s)' % (value, env, needs)
    if name == 'OLLAMA_KV_CACHE_TYPE':
        return 'OLLAMA_FLASH_ATTENTION: "1" and OLLAMA_KV_CACHE_TYPE: %s in %s (%s)' % (value, env, needs)
    return '%s: %d (%s over %d GPUs)' % (variable('gpus_per_pod'), value, needs, value)


def _model_architecture(model, report):
    """``(architecture, why not)`` of a model: from the registry's GGUF header, else declared fields."""
    declared = model.get('architecture')
    if declared in (None, {}):
        why = model.get('architecture_error') or 'no GGUF header was read and it declares no architecture'
        return None, why
    arch, problem = vram.declared_architecture(declared, model.get('size_bytes'))
    if problem:
        report.error('models', 'model %s: %s' % (model['name'], problem),
                     'declare architecture: {layers: 32, kv_heads: 8, head_size: 128, context_length: 131072} '
                     '(from ollama show --verbose: <arch>.block_count, .attention.head_count_kv, '
                     '.attention.key_length, .context_length), or leave it out to read the GGUF header')
        return None, None
    return arch, None


def check_gpu_memory(models, eligible, gpus_per_pod, allow_cpu_offload, report, env_defaults=None, env=None):
    """Each model's GPU memory once Ollama loads it (weights, the KV cache for its context times the parallel
    requests, the compute graph, the runner's fixed memory; module_utils/vram.py) against each type of
    eligible node's GPU memory times the GPUs per pod. A model that does not fit is an error naming the
    settings that would make it fit, or a warning when CPU offload is allowed. A model whose architecture is
    unknown (no readable GGUF header, none declared) is compared by its file size, and the plan says so."""
    if not eligible or not models:
        return None
    unknown = [n['name'] for n in eligible if not n.get('gpu_memory_mib')]
    known = [n for n in eligible if n.get('gpu_memory_mib')]
    if unknown:
        report.warn('GPU memory unknown on %s (no nvidia.com/gpu.memory label); the model fit is %s'
                    % (', '.join(unknown), 'checked on the other nodes only' if known else 'not checked'))
    if not known:
        return None
    settings, problems = vram.server_settings(_env_mapping('workload_env_defaults', env_defaults, report),
                                              _env_mapping('workload_env', env, report))
    for problem in problems:
        report.warn('%s: %s' % (variable('workload_env'), problem))
    # one check per node type: the same GPU product and memory
    types = {}
    for node in sorted(known, key=lambda n: (n['gpu_memory_mib'], n['name'])):
        key = (node.get('gpu_product') or 'GPU', node['gpu_memory_mib'])
        types.setdefault(key, []).append(node)
    smallest = min(known, key=lambda n: n['gpu_memory_mib'])
    offload_fix = ('set %s: true to accept CPU offload' % variable('allow_cpu_offload'))
    for model in models:
        arch, why = _model_architecture(model, report)
        if arch is None and why is None:
            continue  # a declared architecture in error, reported
        if arch is None:
            _check_file_size(model, smallest, gpus_per_pod, allow_cpu_offload, report, why)
            continue
        problem = vram.flash_attention_problem(arch, settings)
        if problem:
            report.warn('model %s: %s; set OLLAMA_FLASH_ATTENTION: "0" in %s for it' % (
                model['name'], problem, variable('workload_env')))
        for (product, memory_mib), nodes in sorted(types.items(), key=lambda kv: kv[0][1]):
            free = vram.usable_bytes(memory_mib)
            need = vram.estimate(arch, settings, gpus_per_pod)
            placed = vram.estimate(arch, settings, gpus_per_pod, free)
            where = '%s nodes (%s: %d x %d MiB per pod, %s free)' % (
                product, ', '.join(n['name'] for n in nodes[:3]) + (', ...' if len(nodes) > 3 else ''),
                gpus_per_pod, memory_mib, vram.format_bytes(free * gpus_per_pod))
            if model.get('vram') is None:
                model['vram'] = dict(
                    (k, need[k]) for k in ('num_ctx', 'parallel', 'context_total', 'kv_cache_type', 'weights_bytes',
                                           'kv_bytes', 'graph_bytes', 'overhead_bytes', 'total_bytes', 'notes'))
                model['vram'].update(source=arch.get('source'), fits=placed['fits'], node_type=product,
                                     layers_on_gpu=placed['layers_on_gpu'], layers=placed['layers'])
            if placed['fits']:
                if need['total_bytes'] * 10 > free * gpus_per_pod * 9:
                    report.warn('model %s needs %s of the %s free on %s: more than 90%%; a longer context or more '
                                'parallel requests spill it to the CPU' % (
                                    model['name'], vram.format_bytes(need['total_bytes']),
                                    vram.format_bytes(free * gpus_per_pod), where))
                continue
            message = ('model %s needs %s of GPU memory once loaded (weights %s + KV cache %s for %d x %d tokens at '
                       '%s + compute graph %s + runner overhead %s; %s), more than %s: Ollama would keep %d of its %d layers '
                       'on the GPU and run the rest on the CPU at a few tokens/s' % (
                           model['name'], vram.format_bytes(need['total_bytes']),
                           vram.format_bytes(need['weights_bytes']), vram.format_bytes(need['kv_bytes']),
                           need['parallel'], need['num_ctx'], need['kv_cache_type'],
                           vram.format_bytes(need['graph_bytes']), vram.format_bytes(need['overhead_bytes']),
                           'architecture from the %s' % arch.get('source') if arch.get('source') != 'declared'
                           else 'declared architecture', where, placed['layers_on_gpu'], placed['layers']))
            if need['notes']:
                message += ' (%s)' % '; '.join(need['notes'])
            if allow_cpu_offload:
                report.warn(message + ' (allowed by %s)' % variable('allow_cpu_offload'))
                continue
            most = max(n.get('gpu_allocatable', 0) for n in nodes)
            fixes = [_fix_text(name, value, result, arch)
                     for name, value, result in vram.fix_settings(arch, settings, gpus_per_pod, free, most)]
            fix = ('any one of: %s; or pick a smaller model or quantization, or %s' % ('; '.join(fixes), offload_fix)
                   if fixes else 'pick a smaller model or quantization, select larger GPUs with %s, or %s'
                   % (variable('node_selector'), offload_fix))
            report.error('models', message, fix)
    return smallest['gpu_memory_mib']


def _check_file_size(model, smallest, gpus_per_pod, allow_cpu_offload, report, why):
    """The fit by file size alone, for a model whose architecture is unknown."""
    size = model.get('size_bytes')
    if not size:
        return
    report.warn('model %s: %s, so the GPU memory check compares its file size only (no KV cache, no compute graph); '
                'declare architecture: {layers, kv_heads, head_size, context_length} on it in %s to count them'
                % (model['name'], why, variable('models')))
    model['vram'] = {'source': 'file size', 'total_bytes': size, 'fits': None}
    vram_bytes = smallest['gpu_memory_mib'] * MI * gpus_per_pod
    where = '%s (%s, %d MiB x %d GPU)' % (
        smallest['name'], smallest.get('gpu_product') or 'GPU', smallest['gpu_memory_mib'], gpus_per_pod)
    if size > vram_bytes:
        model['vram']['fits'] = False
        message = ('model %s (%s) is larger than the GPU memory of %s; Ollama would offload layers to the '
                   'CPU and answer at a few tokens/s' % (model['name'], model['size'], where))
        if allow_cpu_offload:
            report.warn(message + ' (allowed by %s)' % variable('allow_cpu_offload'))
        else:
            fix = ('pick a smaller model or quantization, raise %s, select larger GPUs with %s, or set %s: true '
                   'to accept CPU offload' % (variable('gpus_per_pod'), variable('node_selector'),
                                              variable('allow_cpu_offload')))
            report.error('models', message, fix)
    elif size * 10 > vram_bytes * 9:
        report.warn('model %s (%s) fills more than 90%% of the GPU memory of %s; a long context may spill '
                    'to the CPU' % (model['name'], model['size'], where))


def check_existing_objects(facts, name, workload_kind, storage, report, explicit_size=False):
    """Warn about what a run would change on objects that already exist; refuse what they cannot take.
    ``explicit_size``: the claim size was set (ollama_claim_size), not sized from the models."""
    existing = facts.get('existing') or {}
    for workload in existing.get('workloads') or []:
        if workload.get('name') == name and workload.get('kind') != workload_kind:
            report.warn('%s %s exists and will be replaced by a %s; models are pulled again into the new claims'
                        % (workload['kind'], name, workload_kind))
    claims = dict((c['name'], c) for c in existing.get('claims') or [])
    for claim_name in storage.get('claim_names') or []:
        claim = claims.get(claim_name)
        if not claim:
            continue
        if storage.get('class') and claim.get('storage_class') and claim['storage_class'] != storage['class']:
            report.error('storage_class', 'claim %s holds the models on StorageClass %s, not %s, and a claim cannot '
                         'change class' % (claim_name, claim['storage_class'], storage['class']),
                         'set %s: %s to keep the models, or delete the claim yourself to move them (they are lost)'
                         % (variable('storage_class'), claim['storage_class']))
        if storage.get('access_mode') and claim.get('access_modes') and storage['access_mode'] not in claim['access_modes']:
            report.error('storage_mode', 'claim %s is %s, the plan needs %s' % (
                claim_name, ', '.join(claim['access_modes']), storage['access_mode']),
                'keep %s as it was when the claim was made, or delete the claim yourself (its models are lost)'
                % variable('storage_mode'))
        have, want = claim.get('size_bytes'), storage.get('size_bytes')
        if not (have and want):
            continue
        if have > want and explicit_size:
            # Asked for explicitly, a smaller size must not be dropped silently.
            report.error('claim_size', 'claim %s holds %s, more than %s %s, and a claim cannot shrink'
                         % (claim_name, format_gi(have), variable('claim_size'), storage['size']),
                         'set %s to %s or more, or "" to keep the claims as they are (or delete the claim yourself '
                         'to make it smaller: its models are lost)' % (variable('claim_size'), format_gi(have)))
        elif have > want:
            # A claim never shrinks: keep the bigger size rather than fail the apply.
            storage['size'], storage['size_bytes'] = format_gi(have), have
        elif have < want and not storage.get('allow_expansion'):
            report.error('claim_size', 'claim %s holds %s, less than the planned %s, and StorageClass %s does not allow '
                         'expansion' % (claim_name, format_gi(have), storage['size'], storage.get('class')),
                         'set %s to %s or less (and fewer models), or use a class with allowVolumeExpansion'
                         % (variable('claim_size'), format_gi(have)))
        elif have < want:
            report.warn('claim %s grows from %s to %s' % (claim_name, format_gi(have), storage['size']))
    if workload_kind == 'StatefulSet':
        check_claim_template(facts, name, storage, report)


def same_quantity(first, second):
    """Whether two quantities are equal (``10Gi`` and ``10737418240`` are); None when one is not a quantity."""
    try:
        return quantity_to_bytes(first) == quantity_to_bytes(second)
    except QuantityError:
        return None


# The setting behind each part of a claim template, in the order an error names them.
CLAIM_TEMPLATE_SETTINGS = {'storage_class': 'storage_class', 'access_modes': 'storage_mode', 'name': 'storage_mode',
                           'size': 'claim_size'}


def check_claim_template(facts, name, storage, report):
    """Kubernetes forbids changing a StatefulSet's volumeClaimTemplates: a plan that would change them is refused
    with the way out that keeps the pods and the claims."""
    existing = facts.get('existing') or {}
    for workload in existing.get('workloads') or []:
        have = workload.get('claim_template')
        if workload.get('kind') != 'StatefulSet' or workload.get('name') != name or not have:
            continue
        want = {
            'name': storage.get('claim_template_name') or '',
            'access_modes': [storage['access_mode']] if storage.get('access_mode') else [],
            'storage_class': storage.get('class') or '',
            'size': storage.get('size') or '',
        }
        differs = [key for key in ('name', 'access_modes', 'storage_class') if have[key] != want[key]]
        if same_quantity(have['size'], want['size']) is False:
            differs.append('size')
        if not differs:
            continue
        namespace = workload.get('namespace') or ''
        keys = []
        for part, setting in CLAIM_TEMPLATE_SETTINGS.items():
            if part in differs and setting not in keys:
                keys.append(setting)
        report.error(keys[0],
                     'StatefulSet %s/%s has the claim template %s, but the plan wants %s; Kubernetes forbids '
                     'changing volumeClaimTemplates' % (
                         namespace, name, ', '.join('%s %s' % (k, json.dumps(have[k])) for k in differs),
                         ', '.join('%s %s' % (k, json.dumps(want[k])) for k in differs)),
                     'set %s back to the existing value, or run kubectl -n %s delete statefulset %s '
                     '--cascade=orphan and run again (the pods and the claims with their models stay; a bigger '
                     'size needs a class that allows expansion: kubectl edit pvc to grow each claim first)'
                     % (' and '.join(variable(k) for k in keys), namespace, name))


# ---------------------------------------------------------------- ingress

def normalize_ingress(ingress, report):
    """The Ingress settings with their booleans checked; the route and class decisions are
    :func:`exposure.decide_ingress`'s."""
    if not isinstance(ingress, dict):
        report.error('ingress', '%s must be a mapping, got %r' % (variable('ingress'), ingress),
                     'set %s: {enabled: false}' % variable('ingress'))
        ingress = {}
    result = copy.deepcopy(INGRESS_DEFAULTS)
    result.update((k, v) for k, v in ingress.items() if k in INGRESS_DEFAULTS)
    for key in ('enabled', 'open_admin_endpoints'):
        result[key] = check_bool('ingress.%s' % key, result[key], report)
    result['blocked_paths'] = [] if result['open_admin_endpoints'] else list(ADMIN_ENDPOINTS)
    return result


def decide_exposure(facts, cfg, namespace, namespace_info, selector, models, report, gate_open=(), cache=None):
    """``(ingress, httproute, network_policy)``: the objects that let clients reach the gate, and the policies.

    ``gate_open``: the admin endpoints the gate opens to clients; the Ingress and HTTPRoute route those too."""
    ingress = normalize_ingress(cfg['ingress'], report)
    httproute_enabled = check_bool('httproute_enabled', cfg['httproute_enabled'], report)
    open_admin = ingress['open_admin_endpoints']
    exposed = ingress['enabled'] or httproute_enabled
    # The admin paths routed at the controller: all of them when opened (the gate still decides who may use them).
    open_admin_paths = list(ADMIN_ENDPOINTS) if open_admin else ['/api/' + n for n in gate_open or ()]
    paths = exposure.check_paths(cfg['workload_ingress_paths'], open_admin_paths, report) if exposed else []
    if exposed and open_admin:
        report.warn('%s: true routes %s through the Ingress / HTTPRoute (the gate still decides)'
                    % (variable('ingress.open_admin_endpoints'), ', '.join(ADMIN_ENDPOINTS)))
    ingress = exposure.decide_ingress(facts, ingress, paths, report)
    labels = dict(namespace_info.get('labels') or {}, **{'kubernetes.io/metadata.name': namespace or ''})
    httproute = exposure.decide_httproute(facts, {
        'enabled': httproute_enabled, 'parent_refs': cfg['httproute_parent_refs'],
        'hostnames': cfg['httproute_hostnames']}, namespace, labels, paths, report)
    policy = exposure.decide_network_policies(facts, {
        'network_policy': check_bool('workload_network_policy', cfg['workload_network_policy'], report,
                                     default=True),
        'egress_policy': check_bool('workload_egress_policy', cfg['workload_egress_policy'], report, default=True),
        'allowed_namespaces': cfg['workload_allowed_namespaces'],
        'allowed_pods': cfg['workload_allowed_pods'],
        'allowed_cidrs': cfg['workload_allowed_cidrs'],
        'egress_cidrs': cfg['workload_egress_cidrs'],
        'extra_egress': cfg['workload_extra_egress'],
        'controller_namespace': cfg['workload_ingress_controller_namespace'],
        'insecure_registries': cfg['insecure_registries'],
        'model_cache': cache,
    }, namespace, selector, ingress, httproute, models, report)
    return ingress, httproute, policy


# ---------------------------------------------------------------- Ollama settings

def check_ollama_env(cfg, image, report):
    """The Ollama settings merged and checked as Ollama reads them (env_settings.check_env); the image's version
    decides the version-dependent rules."""
    version = parse_ollama_version(image.get('tag') or '') if image else None
    return env_settings.check_env(
        cfg['workload_env_defaults'], cfg['workload_env'], report, ollama_version=version[0] if version else None,
        variable=variable('workload_env'), defaults_variable=variable('workload_env_defaults'))


# ---------------------------------------------------------------- the plan

def compute_plan(facts, config):
    """Every decision, or every error with its fix. See the module docstring."""
    report = Report()
    for message in (facts or {}).get('warnings') or []:
        report.warn(message)
    facts = facts or {}
    cfg = merge_config(config, report)

    check_kubernetes_version(facts, report)
    name = check_dns_label('name', cfg['name'], report) or DEFAULTS['name']
    namespace = check_dns_label('namespace', cfg['namespace'], report)
    replicas = check_positive_int('replicas', cfg['replicas'], report) or 1
    gpus_per_pod = check_positive_int('gpus_per_pod', cfg['gpus_per_pod'], report) or 1
    image = check_image(cfg['image'], cfg['image_tag'], report, digest=cfg['image_digest'],
                        allow_vulnerable=check_bool('image_allow_known_vulnerable',
                                                    cfg['image_allow_known_vulnerable'], report))
    namespace_info = check_namespace(facts, namespace, check_bool(
        'namespace_manage_labels', cfg['namespace_manage_labels'], report), report)
    install_local_path = check_bool('install_local_path', cfg['install_local_path'], report)
    label_nodes = check_bool('gpu_label_nodes', cfg['gpu_label_nodes'], report)
    require_plugin = check_bool('require_device_plugin', cfg['require_device_plugin'], report, default=True)
    memory_check = check_bool('gpu_memory_check', cfg['gpu_memory_check'], report, default=True)
    allow_offload = check_bool('allow_cpu_offload', cfg['allow_cpu_offload'], report)
    headroom = check_positive_int('claim_headroom_percent', cfg['claim_headroom_percent'], report, minimum=0)
    headroom = DEFAULTS['claim_headroom_percent'] if headroom is None else headroom
    existing_replicas = cfg['existing_replicas']
    if existing_replicas is None:
        existing_replicas = (facts.get('existing') or {}).get('ollama_replicas') or 0
    existing_replicas = check_positive_int('existing_replicas', existing_replicas, report, minimum=0) or 0

    models = normalize_models(cfg['models'], report)
    tolerations = check_tolerations(cfg['tolerations'], report)
    node_label = check_node_label(cfg['gpu_node_label'], report)
    node_selector = check_node_selector(cfg['node_selector'], report)

    plugin_error = check_device_plugin(facts, require_plugin, report)
    runtime_class = decide_runtime_class(facts, cfg['runtime_class'], report)
    eligible, excluded, to_label = select_eligible_nodes(
        facts, node_label, tolerations, gpus_per_pod, node_selector, label_nodes, report,
        gpu_error_reported=plugin_error)

    errors_before = len(report.errors)
    anti_affinity = decide_anti_affinity(cfg['anti_affinity'], replicas, eligible, report)
    spare_slots = 0
    if len(report.errors) == errors_before:
        spare_slots = check_free_gpus(eligible, replicas, gpus_per_pod, existing_replicas,
                                      anti_affinity == 'required', report)
    spread = decide_zone_spread(cfg['zone_spread'], replicas, eligible, anti_affinity, gpus_per_pod, report)
    pdb = decide_pdb(cfg['pdb_min_available'], replicas, report)

    # storage
    facts, create_classes = planned_storage_classes(facts, cfg['storage_classes'], report)
    sc = choose_storage_class(facts, cfg['storage_class'], install_local_path, report)
    check_csi_driver(facts, sc, report)
    rwx_override = cfg['storage_class_rwx']
    if rwx_override == 'auto':
        rwx = bool(sc and sc['rwx'])
    else:
        rwx = check_bool('storage_class_rwx', rwx_override, report)
    rwx_classes = sorted(c['name'] for c in facts.get('storage_classes') or []
                         if c.get('rwx') or c.get('provisioner') in RWX_PROVISIONERS)
    mode, workload_kind, strategy, access_mode = decide_storage_layout(
        cfg['storage_mode'], replicas, rwx, sc['name'] if sc else None, rwx_classes, report,
        class_known=sc is not None or rwx_override != 'auto')
    size, size_bytes = decide_claim_size(cfg['claim_size'], headroom, models, report)
    if workload_kind == 'StatefulSet':
        claim_name, template_name = None, 'models'
        claim_names = ['models-%s-%d' % (name, i) for i in range(replicas)]
    else:
        claim_name, template_name = '%s-models' % name, None
        claim_names = [claim_name]
    storage = {
        'mode': mode,
        'class': sc['name'] if sc else None,
        'provisioner': sc['provisioner'] if sc else None,
        'access_mode': access_mode,
        'size': size,
        'size_bytes': size_bytes,
        'binding_mode': sc['binding_mode'] if sc else None,
        'allow_expansion': sc['allow_expansion'] if sc else False,
        'install_local_path': bool(sc and sc['install_local_path']),
        'create_classes': create_classes,
        'claim_name': claim_name,
        'claim_template_name': template_name,
        'claim_names': claim_names,
        'pull_scope': 'each_replica' if workload_kind == 'StatefulSet' and replicas > 1 else 'once',
    }
    if sc and sc['provisioner'] in NODE_LOCAL_PROVISIONERS:
        report.warn('StorageClass %s keeps models on one node\'s disk: a replica is pinned to the node its claim '
                    'first bound on, and stays Pending while that node is gone' % sc['name'])
    all_zones = set(facts.get('zones') or (n.get('zone') for n in facts.get('nodes') or [] if n.get('zone')))
    if sc and sc['binding_mode'] == 'Immediate' and access_mode == 'ReadWriteOnce' and len(all_zones) > 1:
        report.warn('StorageClass %s binds Immediately: a volume may be created in a zone without a GPU node; '
                    'prefer volumeBindingMode WaitForFirstConsumer' % sc['name'])

    rolling_update = None
    if workload_kind == 'Deployment' and strategy == 'RollingUpdate':
        # A surge pod needs a free GPU slot; without one, take a replica down first.
        rolling_update = ({'max_surge': 1, 'max_unavailable': 0} if spare_slots >= 1
                          else {'max_surge': 0, 'max_unavailable': 1})

    gpu_quota = decide_gpu_quota(cfg['gpu_quota'], replicas, gpus_per_pod, rolling_update, report)

    if memory_check:
        check_gpu_memory(models, eligible, gpus_per_pod, allow_offload, report,
                         cfg['workload_env_defaults'], cfg['workload_env'])
    check_existing_objects(facts, name, workload_kind, storage, report,
                           explicit_size=cfg['claim_size'] not in ('', None, 'auto'))
    selector = workload_selector(name)
    gate_plan = gate.plan_gate(cfg, name, replicas, workload_kind, strategy, rolling_update, report)
    cache_plan = model_cache.plan_model_cache(cfg, name, namespace or DEFAULTS['namespace'], models, facts, storage,
                                              report)
    models = model_cache.via_names(models, cache_plan)
    ingress, httproute, network_policy = decide_exposure(
        facts, cfg, namespace, namespace_info, dict(selector, **{LABEL_MANAGED_BY: 'llmops.ollama'}), models, report,
        gate_open=gate_plan['open_admin_endpoints'], cache=cache_plan)
    heal_plan = self_heal.plan_self_heal(cfg, name, models, storage, report, facts.get('kubernetes_version'))
    ollama_env = check_ollama_env(cfg, image, report)
    names = object_names(name)
    stale = stale_objects(names, namespace, {
        'workload_kind': workload_kind, 'ingress': ingress, 'httproute': httproute, 'network_policy': network_policy,
        'self_heal': heal_plan, 'model_cache': cache_plan, 'pdb': pdb, 'gpu_quota': gpu_quota})

    return {
        'ok': not report.errors,
        'errors': report.errors,
        'warnings': report.warnings,
        'name': name,
        'namespace': namespace,
        'distribution': facts.get('distribution'),
        'image': image,
        'workload_kind': workload_kind,
        'strategy': strategy,
        'rolling_update': rolling_update,
        'pod_management_policy': 'Parallel' if workload_kind == 'StatefulSet' else None,
        'replicas': replicas,
        'gpus_per_pod': gpus_per_pod,
        'storage': storage,
        'affinity': {
            'node_label': node_label,
            'anti_affinity': anti_affinity,
            'anti_affinity_topology_key': HOSTNAME_KEY,
            'label_selector': selector,
            'zone_spread': spread['zone_spread'],
            'zone_spread_when': spread['zone_spread_when'],
            'zone_topology_key': ZONE_KEY,
            'max_skew': 1,
            'node_affinity_policy': 'Honor',
            'node_taints_policy': 'Honor',
        },
        'tolerations': tolerations,
        'node_selector': node_selector,
        'runtime_class': runtime_class,
        'pdb': pdb,
        'gpu_quota': {'name': names['gpu_quota'], 'gpus': gpu_quota} if gpu_quota is not None else None,
        # The name of every object, and per role what other settings wrote that these no longer ask for.
        'objects': names,
        'stale': stale,
        'eligible_nodes': [n['name'] for n in eligible],
        'excluded_nodes': excluded,
        'label_nodes': to_label,
        'zones': spread['zones'],
        'models': models,
        'ingress': ingress,
        'gate': gate_plan,
        # Security: namespace ownership, the HTTPRoute and the NetworkPolicies (docs/security.md).
        'namespace_info': namespace_info,
        'httproute': httproute,
        'network_policy': network_policy,
        'self_heal': heal_plan,
        # The in-cluster pull-through registry the replicas pull through (model_cache.py), or {enabled: false}.
        'model_cache': cache_plan,
        # The Ollama settings the pods get (the names only of other variables), the durations in seconds (-1: forever).
        'env_settings': ollama_env,
    }
