# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The model cache: an in-cluster pull-through OCI registry, so each model is fetched from its registry once.

With ``ollama_model_cache: true`` the plan's ``model_cache`` section describes one Deployment (one pod, Recreate, on
a ReadWriteOnce claim of its own) that runs CNCF Distribution (the ``registry`` image) in proxy mode, one
registry container per upstream model registry, behind an nginx front (the gate's image) and a warm-up step:

- **registry-N** (native sidecars): Distribution proxying upstream N, on 127.0.0.1 only, its blobs on the claim.
- **warm** (an init container after them): fetches every declared model's manifest and blobs through its registry
  once, one whole GET after the other. Distribution's proxy serves a blob it does not hold yet whole, ignoring
  Range, and sends concurrent requests for it to the upstream (registry/proxy/proxyblobstore.go), so Ollama's
  ranged, parallel part downloads must only ever meet blobs the cache holds. The pod is Ready (the front starts)
  only after it; a change of the list rolls the pod (the list's hash is in the pod template). When an upstream
  cannot be reached it exits with the reason and the fix, which the kubelet keeps as its termination message.
- **front** (nginx): the one listener, port ``port + N`` for upstream N, read-only (GET and HEAD). It adds the
  ``Location`` header Ollama takes a blob's download URL from (server/download.go: ``resp.Location()`` of the
  final response, in v0.11.4 as in v0.32.15; a filesystem-backed Distribution answers 200 without one).

Replicas pull ``<cache host>:<port>/<namespace>/<model>:<tag>`` (plain HTTP inside the cluster; Ollama checks every
blob's sha256), copy it to the model's own name (``/api/copy`` copies the manifest file) and delete the cache-named
manifest (``/api/delete`` removes only blobs no other manifest uses): clients see the models under their names.

:func:`plan_model_cache` is a pure function; the plan calls it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re

from ansible_collections.llmops.ollama.plugins.module_utils import values
from ansible_collections.llmops.ollama.plugins.module_utils.quantity import (
    GI, QuantityError, format_gi, format_size, quantity_to_bytes)

# The CNCF Distribution release the cache runs (docker.io/library/registry, pinned).
IMAGE = 'docker.io/library/registry'
IMAGE_TAG = '3.0.0'
DEFAULTS = {
    'model_cache': False,
    'model_cache_size': '',
    'model_cache_storage_class': '',
    'model_cache_image': IMAGE,
    'model_cache_image_tag': IMAGE_TAG,
    'model_cache_port': 5000,
    'model_cache_headroom_percent': 20,
}
MIN_GI = 10
# The registries listen on 127.0.0.1 at these ports (upstream N at REGISTRY_PORT_BASE + N); only the front reaches them.
REGISTRY_PORT_BASE = 5100
DATA_PATH = '/var/lib/registry'
CONFIG_DIR = '/etc/llmops-cache'
WARM_SCRIPT = 'warm.sh'
WARM_LIST = 'models'
TMP_DIR = '/tmp'
UID = 65532
SUFFIX = '-model-cache'
OLLAMA_REGISTRY = 'registry.ollama.ai'
_TAG = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$')


def _var(key):
    return 'ollama_%s' % key


def check_image(image, tag, report):
    ok = isinstance(image, str) and image.strip() and not re.search(r'\s', image) and '@' not in image \
        and image.rfind(':') <= image.rfind('/')
    if not ok:
        report.error('model_cache_image', '%s must be an image repository such as %s, got %r'
                     % (_var('model_cache_image'), IMAGE, image),
                     'set %s: %s' % (_var('model_cache_image'), IMAGE))
        image = IMAGE
    tag = '' if tag is None else str(tag).strip()
    if not tag or tag == 'latest' or not (_TAG.match(tag) or re.match(r'^sha256:[0-9a-f]{64}$', tag)):
        report.error('model_cache_image_tag', '%s %r is not a pinned release (a floating tag changes the cache '
                     'under a running cluster)' % (_var('model_cache_image_tag'), tag),
                     'set %s: "%s"' % (_var('model_cache_image_tag'), IMAGE_TAG))
        tag = IMAGE_TAG
    ref = '%s@%s' % (image, tag) if tag.startswith('sha256:') else '%s:%s' % (image, tag)
    return {'repository': image, 'tag': tag, 'ref': ref}


def upstreams(models, insecure_registries):
    """``[{index, host, url}]``: the registries the declared models come from, in order of first use. Plain HTTP
    for a host in ``insecure_registries`` or a model named with ``http://``, as Ollama pulls them."""
    insecure = set(str(r).strip().lower() for r in insecure_registries or [])
    found = []
    for model in models or []:
        host = (model.get('full') or '').split('/', 1)[0] or OLLAMA_REGISTRY
        given = model.get('given') or ''
        plain = host.lower() in insecure or given.startswith('http://')
        if any(u['host'] == host for u in found):
            continue
        found.append({'index': len(found), 'host': host, 'url': '%s://%s' % ('http' if plain else 'https', host)})
    return found


def check_size(size, headroom, models, report):
    """``(size, bytes)`` of the cache's claim: sized from the models like the model claims, or as given, which must
    hold every declared model."""
    sized = [m for m in models if m.get('size_bytes')]
    total = sum(m['size_bytes'] for m in sized)
    wanted = -(-total * (100 + headroom) // 100)
    if size in ('', None, 'auto'):
        text = format_gi(wanted, minimum_gi=MIN_GI)
        return text, int(text[:-2]) * GI
    try:
        size_bytes = quantity_to_bytes(size)
    except QuantityError:
        report.error('model_cache_size', '%s %r is not a Kubernetes quantity' % (_var('model_cache_size'), size),
                     'set %s like "100Gi", or "" to size it from the models' % _var('model_cache_size'))
        return None, None
    if size_bytes < total:
        report.error('model_cache_size', '%s %s (%s) is smaller than the models it must hold: %s = %s'
                     % (_var('model_cache_size'), size, format_size(size_bytes),
                        ' + '.join('%s %s' % (m['name'], m['size']) for m in sized), format_size(total)),
                     'set %s to at least %s, or "" to size it from the models'
                     % (_var('model_cache_size'), format_gi(wanted)))
    return str(size), size_bytes


def choose_class(facts, name, models_class, report):
    """The cache claim's StorageClass: the one named, else the cluster's default, else the models' class."""
    classes = dict((c['name'], c) for c in facts.get('storage_classes') or [])
    existing = ', '.join(sorted(classes)) or 'none'
    if not isinstance(name, str):
        report.error('model_cache_storage_class', '%s must be a StorageClass name or "", got %r'
                     % (_var('model_cache_storage_class'), name),
                     'set %s to one of: %s' % (_var('model_cache_storage_class'), existing))
        return None
    if name:
        if name in classes or name == models_class:
            return name
        report.error('model_cache_storage_class', 'StorageClass %r for the model cache\'s claim does not exist '
                     '(existing: %s)' % (name, existing),
                     'set %s to one of the existing classes, or "" for the cluster default'
                     % _var('model_cache_storage_class'))
        return None
    default = facts.get('default_storage_class')
    if default in classes:
        return default
    if models_class:
        return models_class
    report.error('model_cache_storage_class', 'the model cache\'s claim has no StorageClass: none is named, the '
                 'cluster has no default one and the models\' claims have none (existing: %s)' % existing,
                 'set %s to an existing class, or give the cluster a default StorageClass'
                 % _var('model_cache_storage_class'))
    return None


def cache_models(models, cache, host):
    """Each model's name through the cache (what a replica pulls), and the upstream that serves it."""
    by_host = dict((u['host'], u) for u in cache)
    result = []
    for model in models or []:
        full = model.get('full') or ''
        registry, rest = (full.split('/', 1) + [''])[:2]
        upstream = by_host.get(registry)
        if upstream is None or not rest:
            continue
        repository, tag = rest.rsplit(':', 1) if ':' in rest else ('', rest)
        result.append({'name': model['name'], 'via': '%s:%d/%s' % (host, upstream['port'], rest),
                       'upstream': upstream['index'], 'repository': repository, 'tag': tag})
    return result


def warm_list(entries, cache):
    """The warm step's list: one model a line, ``<registry port> <repository> <tag> <upstream URL>``."""
    urls = dict((u['index'], u['url']) for u in cache)
    lines = ['# llmops.ollama model cache: registry port, repository, tag, upstream']
    for entry in entries:
        lines.append('%d %s %s %s' % (REGISTRY_PORT_BASE + entry['upstream'], entry['repository'], entry['tag'],
                                      urls[entry['upstream']]))
    return '\n'.join(lines) + '\n'


def plan_model_cache(cfg, name, namespace, models, facts, storage, report):
    """The plan's ``model_cache``; ``{'enabled': False}`` unless ``ollama_model_cache`` is true."""
    enabled = values.as_bool(cfg.get('model_cache'))
    if enabled is None:
        report.error('model_cache', '%s must be true or false, got %r' % (_var('model_cache'), cfg.get('model_cache')),
                     'set %s: true (each model fetched from its registry once per cluster) or false'
                     % _var('model_cache'))
        enabled = False
    if not enabled:
        return {'enabled': False}
    service = '%s%s' % (name, SUFFIX)
    if len(service) > 63:
        report.error('name', 'the model cache\'s Service %s is longer than 63 characters' % service,
                     'shorten ollama_name to at most %d characters, or set %s: false'
                     % (63 - len(SUFFIX), _var('model_cache')))
    port = values.as_int(cfg.get('model_cache_port'))
    cache = upstreams(models, cfg.get('insecure_registries'))
    if port is None or port < 1 or port + len(cache) > 65535 or REGISTRY_PORT_BASE <= port < REGISTRY_PORT_BASE + 100:
        report.error('model_cache_port', '%s must be a TCP port (1-65535, not %d-%d: the registries listen there), '
                     'got %r' % (_var('model_cache_port'), REGISTRY_PORT_BASE, REGISTRY_PORT_BASE + 99,
                                 cfg.get('model_cache_port')),
                     'set %s: %d' % (_var('model_cache_port'), DEFAULTS['model_cache_port']))
        port = DEFAULTS['model_cache_port']
    for upstream in cache:
        upstream['port'] = port + upstream['index']
        upstream['registry_port'] = REGISTRY_PORT_BASE + upstream['index']
        upstream['container'] = 'registry-%d' % upstream['index']
    headroom = values.as_int(cfg.get('model_cache_headroom_percent'))
    if headroom is None or headroom < 0:
        report.error('model_cache_headroom_percent', '%s must be a whole number >= 0, got %r'
                     % (_var('model_cache_headroom_percent'), cfg.get('model_cache_headroom_percent')),
                     'set %s: %d' % (_var('model_cache_headroom_percent'), DEFAULTS['model_cache_headroom_percent']))
        headroom = DEFAULTS['model_cache_headroom_percent']
    size, size_bytes = check_size(cfg.get('model_cache_size'), headroom, models, report)
    storage_class = choose_class(facts, cfg.get('model_cache_storage_class'), (storage or {}).get('class'), report)
    if not cache:
        # Nothing to fetch: no cache objects (a Service needs a port); its claim, if any, stays.
        report.warn('%s is true but %s is empty: no model cache is deployed' % (_var('model_cache'), _var('models')))
        return {'enabled': False}
    host = '%s.%s.svc' % (service, namespace)
    entries = cache_models(models, cache, host)
    listing = warm_list(entries, cache)
    # The existing claim of the cache: it cannot change class, and does not shrink.
    claim_name = service
    for claim in (facts.get('existing') or {}).get('claims') or []:
        if claim.get('name') != claim_name:
            continue
        if storage_class and claim.get('storage_class') and claim['storage_class'] != storage_class:
            report.error('model_cache_storage_class', 'claim %s holds the model cache on StorageClass %s, not %s, and a '
                         'claim cannot change class' % (claim_name, claim['storage_class'], storage_class),
                         'set %s: %s, or delete the claim yourself (the cache fetches the models again)'
                         % (_var('model_cache_storage_class'), claim['storage_class']))
        have = claim.get('size_bytes')
        if have and size_bytes and have > size_bytes:
            size, size_bytes = format_gi(have), have
    return {
        'enabled': True,
        'name': service,
        'namespace': namespace,
        'host': host,
        'image': check_image(cfg.get('model_cache_image'), cfg.get('model_cache_image_tag'), report),
        'claim_name': claim_name,
        'storage_class': storage_class,
        'size': size,
        'size_bytes': size_bytes,
        'upstreams': cache,
        'ports': [u['port'] for u in cache],
        'models': entries,
        'list': listing,
        'list_hash': hashlib.sha256(listing.encode('utf-8')).hexdigest()[:16],
        'config_map': '%s-config' % service,
        'config_dir': CONFIG_DIR,
        'data_path': DATA_PATH,
        'warm_script': WARM_SCRIPT,
        'warm_list': WARM_LIST,
        'tmp_dir': TMP_DIR,
        'uid': UID,
        'selector': {'app.kubernetes.io/name': 'ollama-model-cache', 'app.kubernetes.io/instance': name},
    }


def via_names(models, cache_plan):
    """The plan's models with ``via`` (the name to pull through the cache), when the cache is on."""
    if not (cache_plan or {}).get('enabled'):
        return models
    by_name = dict((e['name'], e['via']) for e in cache_plan.get('models') or [])
    return [dict(m, via=by_name[m['name']]) if m['name'] in by_name else m for m in models]
