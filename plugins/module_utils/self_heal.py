# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Self-heal: each replica fetches the declared models its store lacks, and is Ready only with all of them.

A native sidecar (an init container with ``restartPolicy: Always``) from the Ollama image itself runs
``roles/ollama_workload/files/self_heal.sh``: it waits until the pod's Ollama answers on 127.0.0.1, pulls every
declared model that is missing (``ollama pull``, the same names and insecure flag as the model_pull role), and
writes a marker file once every one is there. Its readiness probe reads the marker, so the pod is Ready (and gets
traffic from the Service, an Ingress or an HTTPRoute) only with all its models. It only adds what is missing:
prune, deletions, digest checks and progress stay with Ansible. docs/design.md says why it is built so.

:func:`plan_self_heal` is the plan's ``self_heal`` section, a pure function (the plan calls it).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.llmops.ollama.plugins.module_utils import values

# Config keys (the variables are ollama_<key>) with their defaults.
DEFAULTS = {
    'self_heal': True,
    'self_heal_interval': 30,
    'self_heal_pull_timeout': 7200,
    'insecure_registries': [],
}

CONTAINER = 'models'
CONFIG_DIR = '/etc/llmops-heal'
STATE_DIR = '/run/llmops-heal'
MARKER = STATE_DIR + '/ready'
LIST_KEY = 'models'
SCRIPT_KEY = 'self_heal.sh'
# Native sidecars (init containers with restartPolicy Always) are on by default from Kubernetes 1.29 (beta; GA in
# 1.33). Before, the API server drops the field and the sidecar would block the pod's start as a plain init container.
SIDECARS_FROM = (1, 29)
# The sidecar's readiness: the marker, checked every few seconds (a file test, no request to Ollama).
PROBE = {'period': 2, 'timeout': 5, 'failure_threshold': 1}

_REGISTRY = re.compile(r'^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$')


def _var(key):
    return 'ollama_%s' % key


def _seconds(key, value, report, minimum):
    number = values.as_int(value)
    if number is None or number < minimum:
        report.error(key, '%s must be whole seconds of at least %d, got %r' % (_var(key), minimum, value),
                     'set %s: %d' % (_var(key), DEFAULTS[key]))
        return DEFAULTS[key]
    return number


def check_insecure_registries(value, report):
    """The registries (``host[:port]``) pulled from over plain HTTP or with an untrusted certificate."""
    if value in (None, ''):
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        report.error('insecure_registries', '%s must be a list of registry hosts (host:port), got %r'
                     % (_var('insecure_registries'), value),
                     'set %s: ["registry.example:5000"], or []' % _var('insecure_registries'))
        return []
    result = []
    for index, item in enumerate(value, 1):
        host = item.strip() if isinstance(item, str) else item
        if not isinstance(host, str) or not _REGISTRY.match(host):
            report.error('insecure_registries', '%s entry %d %r is not a registry host[:port]'
                         % (_var('insecure_registries'), index, item),
                         'write it as the host part of the model names, e.g. "10.0.0.5:5000" (no scheme, no path)')
            continue
        if host not in result:
            result.append(host)
    return result


def heal_models(models, insecure_registries):
    """The sidecar's list from the plan's models: the name ``ollama list`` prints, the name to pull (as the
    model_pull role pulls it), the insecure flag (as model_pull decides it from the same registries), the
    first 12 hex digits of a pinned digest (the ID ``ollama list`` prints), or None, and the name through the
    model cache (``via``), or None."""
    result = []
    for model in models or []:
        given = model.get('given') or model['name']
        full = model.get('full') or model['name']
        scheme = given.split('://', 1)[0] if '://' in given else None
        pull_name = '%s://%s' % (scheme, full) if scheme else model['name']
        host = full.split('/', 1)[0]
        digest = model.get('digest')
        result.append({
            'name': model['name'],
            'pull_name': pull_name,
            'insecure': host in insecure_registries or scheme == 'http',
            'digest_id': digest.split(':', 1)[1][:12] if digest else None,
            # Through the model cache: pulled by this name (plain HTTP), copied to the model's name, removed.
            'via': model.get('via'),
        })
    return result


def list_text(entries):
    """The ConfigMap's model list: one model a line, ``<name> <pull name> <insecure 0|1> <id or ->[ <via>]``."""
    lines = ['# llmops.ollama self-heal: name, pull name, insecure, pinned ID (12 hex digits) or -'
             '[, name through the model cache]']
    for entry in entries:
        line = '%s %s %d %s' % (entry['name'], entry['pull_name'], 1 if entry['insecure'] else 0,
                                entry['digest_id'] or '-')
        lines.append(line + (' ' + entry['via'] if entry.get('via') else ''))
    return '\n'.join(lines) + '\n'


def plan_self_heal(cfg, name, models, storage, report, kubernetes_version=None):
    """The plan's ``self_heal``: whether the sidecar runs, whether it pulls (a store of its own) or only waits (a
    shared store, which the model_pull role fills once), its list and its settings."""
    enabled = values.as_bool(cfg.get('self_heal'))
    if enabled is None:
        report.error('self_heal', '%s must be true or false, got %r' % (_var('self_heal'), cfg.get('self_heal')),
                     'set %s: true (replicas fetch missing models themselves and are Ready only with all of '
                     'them) or false' % _var('self_heal'))
        enabled = True
    version = kubernetes_version or {}
    major, minor = version.get('major'), version.get('minor')
    if enabled and major is not None and minor is not None and (major, minor) < SIDECARS_FROM:
        report.error('self_heal', '%s needs native sidecar containers, on by default from Kubernetes %d.%d; the '
                     'cluster runs %d.%d' % ((_var('self_heal'),) + SIDECARS_FROM + (major, minor)),
                     'upgrade the cluster to Kubernetes %d.%d or newer, or set %s: false (a replica on an empty '
                     'store then waits for a run of playbooks/models.yml)' % (SIDECARS_FROM + (_var('self_heal'),)))
    insecure = check_insecure_registries(cfg.get('insecure_registries'), report)
    interval = _seconds('self_heal_interval', cfg.get('self_heal_interval'), report, 1)
    pull_timeout = _seconds('self_heal_pull_timeout', cfg.get('self_heal_pull_timeout'), report, 60)
    # Two Ollama processes must never download into one store: on a shared (ReadWriteMany) store the sidecar
    # only waits for the models, which the model_pull role pulls once.
    pulls = (storage or {}).get('access_mode') != 'ReadWriteMany'
    entries = heal_models(models, insecure)
    return {
        'enabled': enabled,
        'pulls': pulls,
        'container': CONTAINER,
        'config_map': '%s-self-heal' % name,
        'config_dir': CONFIG_DIR,
        'state_dir': STATE_DIR,
        'marker': MARKER,
        'list_key': LIST_KEY,
        'script_key': SCRIPT_KEY,
        'interval': interval,
        'pull_timeout': pull_timeout,
        'probe': dict(PROBE),
        'insecure_registries': insecure,
        'models': entries,
        'list': list_text(entries),
    }
