#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: k8s_apply
short_description: Server-side apply or delete a list of Kubernetes objects, and wait for their rollout
description:
  - With I(state=present), applies every object of I(definition) with server-side apply under I(field_manager),
    like C(kubectl apply --server-side); in check mode as a server-side dry run, so the reported change is the
    server's answer. With I(wait), waits until every Deployment, StatefulSet and DaemonSet has rolled out.
  - With I(state=absent), deletes the objects that exist (with I(propagation_policy)); with I(wait), until they are
    gone.
  - With I(state=present), I(absent) names objects to delete first, in the same call (for example what other
    settings wrote); with I(wait), the apply starts once they are gone.
  - An object counts as changed when its content differs from before, leaving out what the server keeps for itself
    (C(managedFields), C(resourceVersion), C(generation), C(status)). In diff mode each changed object is shown.
  - Resource paths come from the API's discovery, one request per API group version; a kind the cluster does not
    serve fails before anything is written.
  - The collection's roles use it for every object they own, so a converge that changes nothing makes one API
    client and a few requests (with the collection's action plugin, inside the controller process).
version_added: 0.1.0
author:
  - llmops.ollama maintainers (@llmops-ollama)
options:
  definition:
    description: The objects, a list of dicts (or one dict), each with C(apiVersion), C(kind) and C(metadata.name).
    type: raw
    required: true
  absent:
    description:
      - With I(state=present), objects to delete before the apply, each with C(apiVersion), C(kind) and
        C(metadata.name); those that do not exist are left alone. Deleted with I(propagation_policy).
    type: list
    elements: dict
    default: []
  state:
    description: Whether the objects should exist.
    type: str
    choices: [present, absent]
    default: present
  field_manager:
    description: The server-side apply field manager.
    type: str
    default: llmops-ollama
  force_conflicts:
    description: Take over fields that another field manager owns, instead of failing with the conflict.
    type: bool
    default: false
  wait:
    description:
      - With I(state=present), wait until every Deployment, StatefulSet and DaemonSet has rolled out (all replicas
        updated and ready); with I(state=absent), until every object is gone. Not in check mode.
    type: bool
    default: false
  wait_for:
    description:
      - What I(wait) waits for with I(state=present). C(ready) every replica updated and ready (as C(kubectl rollout
        status)); C(created) every replica created from the new pod template, ready or not (for pods that become
        ready only later, such as Ollama replicas that are ready once they hold their models).
    type: str
    choices: [ready, created]
    default: ready
  wait_timeout:
    description: Seconds the waits of I(wait) may take in all.
    type: int
    default: 300
  propagation_policy:
    description: How a delete removes dependents.
    type: str
    choices: [Background, Foreground, Orphan]
    default: Background
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
    details: A server-side dry run of every apply and delete.
  diff_mode:
    support: full
    details: Before and after of each changed object.
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Apply a ServiceAccount and a Deployment, and wait for the rollout
  llmops.ollama.k8s_apply:
    definition:
      - apiVersion: v1
        kind: ServiceAccount
        metadata: {name: ollama, namespace: ollama}
      - "{{ lookup('ansible.builtin.template', 'deployment.yml.j2') | from_yaml }}"
    wait: true
    wait_timeout: 600

- name: Remove the workload of the other kind, then apply this one
  llmops.ollama.k8s_apply:
    absent:
      - apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: ollama, namespace: ollama}
    propagation_policy: Foreground
    definition: "{{ lookup('ansible.builtin.template', 'deployment.yml.j2') | from_yaml }}"
    wait: true

- name: Remove an old budget
  llmops.ollama.k8s_apply:
    state: absent
    definition:
      apiVersion: policy/v1
      kind: PodDisruptionBudget
      metadata: {name: ollama, namespace: ollama}
'''

RETURN = r'''
results:
  description: One entry per object, in the order given (the objects of I(absent) first).
  returned: success
  type: list
  elements: dict
  contains:
    kind:
      description: The object's kind.
      type: str
    name:
      description: The object's name.
      type: str
    namespace:
      description: The object's namespace (none for cluster-wide objects).
      type: str
    changed:
      description: Whether the apply or delete changed (or, in check mode, would change) the object.
      type: bool
    object:
      description:
        - The object as the server answered (after the rollout wait for workloads); none once deleted.
        - The values of a Secret are replaced by C(********), here and in the diff.
      type: dict
'''

from ansible_collections.llmops.ollama.plugins.module_utils.apply import (
    Resources, apply_objects, delete_objects, label, redacted, wait_for_deletion, wait_for_rollouts)
from ansible_collections.llmops.ollama.plugins.module_utils.k8s import Api, ClusterError, new_module


def main():
    module = new_module(dict(
        definition=dict(type='raw', required=True),
        absent=dict(type='list', elements='dict', default=[]),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        field_manager=dict(type='str', default='llmops-ollama'),
        force_conflicts=dict(type='bool', default=False),
        wait=dict(type='bool', default=False),
        wait_for=dict(type='str', choices=['ready', 'created'], default='ready'),
        wait_timeout=dict(type='int', default=300),
        propagation_policy=dict(type='str', choices=['Background', 'Foreground', 'Orphan'], default='Background'),
        request_timeout=dict(type='int', default=30),
    ), supports_check_mode=True)
    params = module.params
    objects = params['definition']
    objects = [objects] if isinstance(objects, dict) else objects
    if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
        module.fail_json(msg='definition must be an object or a list of objects. Fix: give dicts with apiVersion, '
                             'kind and metadata')
    try:
        api = Api(module, request_timeout=params['request_timeout'])
        resources = Resources(api)
        if params['state'] == 'present':
            removed = []
            if params['absent']:
                removed = delete_objects(api, params['absent'], params['propagation_policy'], module.check_mode,
                                         resources)
                if params['wait'] and not module.check_mode:
                    wait_for_deletion(api, removed, params['wait_timeout'])
            results = apply_objects(api, objects, params['field_manager'], params['force_conflicts'],
                                    module.check_mode, resources)
            if params['wait'] and not module.check_mode:
                wait_for_rollouts(api, results, params['wait_timeout'], wait_for=params['wait_for'])
            results = removed + results
        else:
            results = delete_objects(api, objects, params['propagation_policy'], module.check_mode, resources)
            if params['wait'] and not module.check_mode:
                wait_for_deletion(api, results, params['wait_timeout'])
    except ClusterError as exc:
        module.fail_json(msg=str(exc), cause=exc.message, fix=exc.fix)
    changed = [r for r in results if r['changed']]
    output = dict(changed=bool(changed), results=[
        dict(dict((k, r[k]) for k in ('kind', 'api_version', 'name', 'namespace', 'changed')),
             object=redacted(r['object'])) for r in results])
    if module._diff:
        # A changed Secret shows which keys changed value, not the values.
        output['diff'] = [dict(before=redacted(r['before']) or {}, after=redacted(r['after']) or {},
                               before_header=label(r['before'] or r['after'] or {}),
                               after_header=label(r['after'] or r['before'] or {})) for r in changed]
    module.exit_json(**output)


if __name__ == '__main__':
    main()
