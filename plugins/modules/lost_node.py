#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: lost_node
short_description: Move the Ollama replicas whose node-local claims are stranded on a lost node
description:
  - For a node that is gone (its Ready condition not C(True), or the node deleted), finds the claims of the Ollama
    workload I(name) in I(namespace) whose volume is pinned to that node (node affinity on C(kubernetes.io/hostname),
    as local-path volumes carry), deletes each such claim and then its pods at once (grace period 0, since the node cannot
    confirm a graceful end), and waits until the workload runs the replica again elsewhere on a new, empty claim.
    A StatefulSet recreates the claim itself; a Deployment's claim is created again from the old one's spec.
  - With I(wait_ready), waits until the new replica is Ready, which with the collection's self-heal means its models
    sidecar has fetched every declared model.
  - Refuses, before any change, a node that is Ready, and stranded replicas that no other node has room for (GPUs,
    CPU and memory left, taints, node affinity, one replica per node); the claims then stay for the node's return.
  - Deletes nothing without I(confirm). Claims on volumes that are not pinned to the node (zonal or network volumes)
    are left alone and reported.
version_added: 0.2.0
author:
  - llmops.ollama maintainers (@llmops-ollama)
options:
  node:
    description: The lost node's name.
    type: str
    required: true
  namespace:
    description: The Ollama namespace.
    type: str
    default: ollama
  name:
    description: The Ollama workload's name (C(ollama_name)).
    type: str
    default: ollama
  confirm:
    description:
      - Delete the stranded claims and their pods. The models on those claims are lost with the node; the new replica
        fetches them again. Without it the module fails before any change, after saying what it would delete.
    type: bool
    default: false
  wait_ready:
    description: Wait until each new replica is Ready (with self-heal, once its store holds every declared model).
    type: bool
    default: true
  wait_timeout:
    description: Seconds each wait (claim gone, replica scheduled, replica Ready) may take.
    type: int
    default: 600
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
    details: Reads and reports what it would delete; deletes nothing (no I(confirm) needed).
  diff_mode:
    support: none
    details: Reports the claims it deletes in C(actions) instead.
  platform:
    platforms: posix
notes:
  - Needs C(get) on nodes and persistentvolumes, C(list) on nodes and pods in all namespaces (the room check), and in
    the namespace C(get)/C(list)/C(delete) on pods and persistentvolumeclaims, C(create) on persistentvolumeclaims
    (see C(docs/rbac.md)).
'''

EXAMPLES = r'''
- name: See what a lost node strands (changes nothing)
  llmops.ollama.lost_node:
    node: k3s-gpu-0
  check_mode: true

- name: Move the replicas of a node that is gone for good
  llmops.ollama.lost_node:
    node: k3s-gpu-0
    namespace: ollama
    confirm: true
'''

RETURN = r'''
node_state:
  description: The node's state, C(Ready=Unknown (NodeStatusUnknown)) or C(deleted from the cluster).
  returned: always
  type: str
kind:
  description: The workload's kind, or null when it does not exist.
  returned: always
  type: str
stranded:
  description: The claims pinned to the node, each with C(claim), C(volume) and the C(pods) that mount it.
  returned: always
  type: list
  elements: dict
kept:
  description: The workload's other claims, each with C(claim) and C(why) it stays.
  returned: always
  type: list
  elements: dict
slots:
  description: How many replicas the other nodes have room for now.
  returned: always
  type: int
excluded:
  description: For each other node, why it takes no replica.
  returned: always
  type: dict
actions:
  description: One line per stranded claim, what was (in check mode, would be) done.
  returned: always
  type: list
  elements: str
refused:
  description: Whether the module refused to act (a Ready node, no room, no I(confirm)).
  returned: always
  type: bool
'''

from ansible_collections.llmops.ollama.plugins.module_utils import lost_node
from ansible_collections.llmops.ollama.plugins.module_utils.k8s import Api, ClusterError, new_module


def read(api, params):
    namespace, name = params['namespace'], params['name']
    node = api.get_or_none('/api/v1/nodes/%s' % params['node'])
    workload = None
    for kind, plural in (('StatefulSet', 'statefulsets'), ('Deployment', 'deployments')):
        found = api.get_or_none('/apis/apps/v1/namespaces/%s/%s/%s' % (namespace, plural, name))
        if found is not None:
            workload = dict(found, kind=kind)
            break
    claims = api.list_all('/api/v1/namespaces/%s/persistentvolumeclaims' % namespace) if workload else []
    volumes = []
    for claim in lost_node.workload_claims(workload, claims) if workload else []:
        volume_name = (claim.get('spec') or {}).get('volumeName')
        volume = api.get_or_none('/api/v1/persistentvolumes/%s' % volume_name) if volume_name else None
        if volume is not None:
            volumes.append(volume)
    pods = api.list_all('/api/v1/pods', fieldSelector='status.phase!=Succeeded,status.phase!=Failed') \
        if workload else []
    nodes = api.list_all('/api/v1/nodes') if workload else []
    return node, workload, claims, volumes, pods, nodes


def main():
    module = new_module(dict(
        node=dict(type='str', required=True),
        namespace=dict(type='str', default='ollama'),
        name=dict(type='str', default='ollama'),
        confirm=dict(type='bool', default=False),
        wait_ready=dict(type='bool', default=True),
        wait_timeout=dict(type='int', default=600),
        request_timeout=dict(type='int', default=30),
    ), supports_check_mode=True)
    params = module.params
    result = dict(changed=False, node_state=None, kind=None, stranded=[], kept=[], slots=0, excluded={}, actions=[],
                  refused=False)
    if not params['node'] or not params['node'].strip():
        result['refused'] = True
        module.fail_json(msg='node is empty. Fix: name the lost node (kubectl get nodes)', **result)
    try:
        api = Api(module, request_timeout=params['request_timeout'])
        node, workload, claims, volumes, pods, nodes = read(api, params)
        try:
            plan = lost_node.plan_recovery(params['node'], node, workload, claims, volumes, pods, nodes)
        except lost_node.Refusal as exc:
            result.update(node_state=lost_node.node_state(node), refused=True)
            module.fail_json(msg=str(exc), cause=exc.message, fix=exc.fix, **result)
        result.update(node_state=plan['node_state'], kind=plan['kind'], kept=plan['kept'], slots=plan['slots'],
                      excluded=plan['excluded'],
                      stranded=[dict((k, s[k]) for k in ('claim', 'volume', 'pods')) for s in plan['stranded']])
        if workload is None:
            result['actions'] = ['no StatefulSet or Deployment %s/%s: nothing to move'
                                 % (params['namespace'], params['name'])]
            module.exit_json(**result)
        if not plan['stranded']:
            result['actions'] = ['no claim of %s/%s is pinned to %s: nothing to move' % (
                params['namespace'], params['name'], params['node'])]
            module.exit_json(**result)
        would = ['%s (volume %s on %s%s): delete the claim, then %s, so the %s runs the replica elsewhere' % (
            s['claim'], s['volume'], params['node'],
            ', pods %s' % ', '.join(s['pods']) if s['pods'] else '',
            'its pods at once' if s['pods'] else 'wait', plan['kind']) for s in plan['stranded']]
        if module.check_mode:
            result.update(changed=True, actions=would)
            module.exit_json(**result)
        if not params['confirm']:
            result.update(actions=would, refused=True)
            module.fail_json(msg='confirm is false: nothing was deleted. It would: %s. Fix: run again with confirm: '
                                 'true once the node is gone for good (the models on these claims are lost with it)'
                                 % '; '.join(would), **result)
        match_labels = ((workload.get('spec') or {}).get('selector') or {}).get('matchLabels') or {}
        selector = ','.join('%s=%s' % kv for kv in sorted(match_labels.items()))
        result['changed'] = True
        result['actions'] = lost_node.recover(api, params['namespace'], selector, plan, params['wait_timeout'],
                                              params['wait_ready'])
    except ClusterError as exc:
        module.fail_json(msg=str(exc), cause=exc.message, fix=exc.fix, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
