#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: gate_keys
short_description: Keep the gate's client keys and admin key in their Secrets, generated once, never shown
description:
  - Writes the two Secrets the gate in front of Ollama reads (see C(docs/security.md)), with server-side apply
    under I(field_manager).
  - C(<name>-gate-admin) holds the admin key in C(key) (sent by the collection's own calls in the header
    C(X-Llmops-Admin-Key)) and the nginx map C(admin.map) made from it. The admin key is generated once and kept.
  - C(<name>-api-keys) holds the client keys in C(keys), one a line, and the nginx map C(keys.map) made from
    them. With I(api_keys) given, the Secret holds exactly those. With I(api_keys) empty, the keys already in the
    Secret are kept (generated once, or written there by hand), else one key is generated when I(generate) is
    true. Keys given before and then removed from I(api_keys) are replaced by a generated key (with a warning).
  - No key is ever returned, logged or shown in a diff; the diff shows a keyed digest of each value. The
    C(fingerprint) it returns (an HMAC of the keys, keyed with the admin key) goes on the pod template, so a key
    change rolls the pods.
  - Nothing is written when the Secrets hold what they should (a second run reports no change).
version_added: 0.2.0
author:
  - llmops.ollama maintainers (@llmops-ollama)
options:
  name:
    description: The workload's name (C(ollama_name)); the Secrets are C(<name>-api-keys) and C(<name>-gate-admin).
    type: str
    required: true
  namespace:
    description: The namespace of the workload; it must exist.
    type: str
    required: true
  api_keys:
    description:
      - The client keys (C(ollama_api_keys)), each at least 32 characters of letters, digits and C(- . _ ~ + /)
        (a Bearer token), with C(=) only at the end.
      - Empty keeps the Secret's keys or generates one (I(generate)).
    type: list
    elements: str
    default: []
  generate:
    description: Generate one client key when I(api_keys) is empty and the Secret holds none.
    type: bool
    default: true
  client_keys:
    description:
      - Manage C(<name>-api-keys). With C(false), when the gate asks for no client key
        (C(ollama_auth_required=false)), that Secret is left as it is, so turning authentication on again brings
        the same keys back.
    type: bool
    default: true
  labels:
    description: Labels of both Secrets.
    type: dict
    default: {}
  field_manager:
    description: The server-side apply field manager.
    type: str
    default: llmops-ollama
  request_timeout:
    description: Seconds each API request may take.
    type: int
    default: 30
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the Secrets and reports what would be written; generates and writes nothing.
  diff_mode:
    support: full
    details: The Secrets before and after, each value as a keyed digest (never the key).
  platform:
    platforms: posix
notes:
  - Needs C(get), C(create) and C(patch) on C(secrets) in the namespace (see C(docs/rbac.md)).
'''

EXAMPLES = r'''
- name: Keep the gate's keys (one client key generated into ollama-api-keys)
  llmops.ollama.gate_keys:
    name: ollama
    namespace: ollama
  register: keys

- name: Use the keys from a vault
  llmops.ollama.gate_keys:
    name: ollama
    namespace: ollama
    api_keys: "{{ vault_ollama_api_keys }}"

- name: Read the generated client key to hand it to a client (it is never printed)
  kubernetes.core.k8s_info:
    kind: Secret
    namespace: ollama
    name: ollama-api-keys
  register: client_keys
  no_log: true
'''

RETURN = r'''
fingerprint:
  description:
    - HMAC-SHA256 of the client keys' map, keyed with the admin key; C(pending) in check mode when a key would be
      generated. The role puts it on the pod template (C(llmops.ollama/gate-keys)).
  returned: success
  type: str
secrets:
  description: The names of the Secrets, C(api_keys) and C(admin).
  returned: success
  type: dict
key_count:
  description: The number of client keys (0 with I(client_keys=false)).
  returned: success
  type: int
keys_source:
  description: C(given) (I(api_keys)), C(generated) (or written into the Secret by hand), or C(none).
  returned: success
  type: str
generated:
  description: What was (in check mode, would be) generated now, C(admin) and C(api_keys).
  returned: success
  type: list
  elements: str
'''

import base64
import copy

from ansible_collections.llmops.ollama.plugins.module_utils import gate
from ansible_collections.llmops.ollama.plugins.module_utils.apply import apply_objects
from ansible_collections.llmops.ollama.plugins.module_utils.k8s import Api, ClusterError, new_module


def _read(api, namespace, name):
    """The Secret's decoded data and its annotations, the raw object; (None, None) when it does not exist."""
    obj = api.get_or_none('/api/v1/namespaces/%s/secrets/%s' % (namespace, name))
    if obj is None:
        return None, None
    data = {}
    for key, value in (obj.get('data') or {}).items():
        data[key] = base64.b64decode(value or '').decode('utf-8', 'replace')
    return {'data': data, 'annotations': (obj.get('metadata') or {}).get('annotations') or {}}, obj


def _secret(name, namespace, labels, data, annotations=None):
    metadata = {'name': name, 'namespace': namespace, 'labels': dict(labels)}
    if annotations:
        metadata['annotations'] = dict(annotations)
    return {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': metadata, 'type': 'Opaque',
            'data': dict((k, base64.b64encode(v.encode('utf-8')).decode('ascii')) for k, v in data.items())}


def _holds(existing, raw, want):
    """Whether an existing Secret already holds what the apply would write."""
    if existing is None:
        return False
    meta = raw.get('metadata') or {}
    labels = meta.get('labels') or {}
    annotations = meta.get('annotations') or {}
    return existing['data'] == want['data'] and raw.get('type', 'Opaque') == 'Opaque' and all(
        labels.get(k) == v for k, v in want['labels'].items()) and all(
        annotations.get(k) == v for k, v in (want.get('annotations') or {}).items())


def _shown(admin_key, name, data):
    return {'name': name, 'data': dict((k, gate.data_digest(admin_key, v)) for k, v in sorted(data.items()))}


def main():
    module = new_module(dict(
        name=dict(type='str', required=True),
        namespace=dict(type='str', required=True),
        api_keys=dict(type='list', elements='str', default=[], no_log=True),
        generate=dict(type='bool', default=True),
        client_keys=dict(type='bool', default=True),
        labels=dict(type='dict', default={}),
        field_manager=dict(type='str', default='llmops-ollama'),
        request_timeout=dict(type='int', default=30),
    ), supports_check_mode=True)
    params = module.params
    namespace = params['namespace']
    names = {'api_keys': '%s-api-keys' % params['name'], 'admin': '%s-gate-admin' % params['name']}
    labels = dict((str(k), str(v)) for k, v in (params['labels'] or {}).items())
    try:
        api = Api(module, request_timeout=params['request_timeout'])
        admin_now, admin_raw = _read(api, namespace, names['admin'])
        client_now, client_raw = (_read(api, namespace, names['api_keys']) if params['client_keys']
                                  else (None, None))
        try:
            wanted = gate.plan_secrets(admin_now, client_now, params['api_keys'], params['generate'],
                                       params['client_keys'])
        except gate.GateKeyError as exc:
            module.fail_json(msg='%s (namespace %s, Secrets %s and %s); nothing was written.'
                                 % (exc, namespace, names['admin'], names['api_keys']))
        for warning in wanted['warnings']:
            module.warn(warning)
        admin_key = wanted['admin']['data']['key']
        todo = []
        plans = [('admin', admin_now, admin_raw, dict(wanted['admin'], labels=labels))]
        if wanted['client'] is not None:
            plans.append(('api_keys', client_now, client_raw, dict(wanted['client'], labels=labels)))
        diffs = []
        for kind, now, raw, want in plans:
            if _holds(now, raw, want):
                continue
            todo.append(_secret(names[kind], namespace, labels, want['data'], want.get('annotations')))
            diffs.append({'before': _shown(admin_key, names[kind], now['data']) if now else {},
                          'after': _shown(admin_key, names[kind], want['data']),
                          'before_header': 'Secret %s/%s' % (namespace, names[kind]),
                          'after_header': 'Secret %s/%s' % (namespace, names[kind])})
        if todo:
            # force: these Secrets belong to the gate; a hand edit of "keys" is read back above, not fought.
            apply_objects(api, copy.deepcopy(todo), params['field_manager'], force_conflicts=True,
                          check_mode=module.check_mode)
    except ClusterError as exc:
        fix = exc.fix
        if exc.status == 404 and 'namespaces' in exc.message:
            fix = 'create the namespace %s first (storage_provisioner does in playbooks/site.yml)' % namespace
        module.fail_json(msg='%s. Fix: %s' % (exc.message, fix), cause=exc.message, fix=fix)
    client_map_text = (wanted['client'] or {}).get('data', {}).get(gate.CLIENT_MAP_FILE, '')
    pending = module.check_mode and wanted['generated']
    result = dict(
        changed=bool(todo),
        fingerprint='pending' if pending else gate.fingerprint(admin_key, client_map_text),
        secrets=names, key_count=wanted['key_count'], keys_source=wanted['source'],
        generated=list(wanted['generated']))
    if module._diff:
        result['diff'] = diffs
    module.exit_json(**result)


if __name__ == '__main__':
    main()
