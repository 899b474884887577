#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pod_info
short_description: The pods of a label selector with their node, phase and readiness, optionally waiting for them
description:
  - Lists the pods of I(namespace) that match I(label_selector) and returns, for each, its node, phase, readiness,
    IP, image and whether it is terminating.
  - With I(wait_running), polls until at least that many pods run and are not terminating, within I(wait_timeout)
    seconds, and fails after it with what runs.
  - The collection's roles use it to find the Ollama replicas; with the collection's action plugin it runs inside
    the controller process.
version_added: 0.1.0
author:
  - llmops.ollama maintainers (@llmops-ollama)
options:
  namespace:
    description: The pods' namespace.
    type: str
    required: true
  label_selector:
    description: The pods' labels, a dict or C(key=value,key2=value2).
    type: raw
    required: true
  wait_running:
    description: Wait until at least this many pods run (phase Running, not terminating). C(0) reads once.
    type: int
    default: 0
  wait_ready:
    description: With I(wait_running), also wait until those pods are Ready.
    type: bool
    default: false
  fail_on_init_error:
    description:
      - With I(wait_running), fail as soon as an init container of a matching pod failed twice (the kubelet retries
        it), with its termination message, instead of waiting for I(wait_timeout).
    type: bool
    default: false
  wait_timeout:
    description: Seconds I(wait_running) may wait.
    type: int
    default: 300
  request_timeout:
    description: Seconds each API request may take.
    type: int
    default: 30
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - ansible.builtin.action_common_attributes
  - llmops.ollama.attributes.READ_ONLY
'''

EXAMPLES = r'''
- name: Wait until both Ollama replicas run
  llmops.ollama.pod_info:
    namespace: ollama
    label_selector:
      app.kubernetes.io/name: ollama
      app.kubernetes.io/instance: ollama
    wait_running: 2
  register: replicas

- name: Show where they run
  ansible.builtin.debug:
    msg: "{{ replicas.pods | map(attribute='line') | list }}"
'''

RETURN = r'''
pods:
  description: Every matching pod, sorted by name.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The pod's name.
      type: str
    namespace:
      description: The pod's namespace.
      type: str
    uid:
      description: The pod's uid (a new pod has a new one).
      type: str
    node:
      description: The node it runs on, or C((not scheduled)).
      type: str
    phase:
      description: The pod's phase.
      type: str
    ready:
      description: Whether its Ready condition is true.
      type: bool
    terminating:
      description: Whether it is being deleted.
      type: bool
    ip:
      description: The pod's IP, empty before it has one.
      type: str
    image:
      description: The image of its first container.
      type: str
    init_error:
      description: The container name and the last line of the termination message of an init container that
        failed twice (a failed step before the pod starts), or empty.
      type: str
    line:
      description: One line for a report, e.g. C(ollama-0 on gpu-1 (Running, ready, ollama/ollama:0.11.4)).
      type: str
running:
  description: Names of the pods that run and are not terminating, sorted.
  returned: success
  type: list
  elements: str
'''

import time

from ansible_collections.llmops.ollama.plugins.module_utils.k8s import (
    Api, ClusterError, new_module, read_pods, selector_text)

POLL_SECONDS = 1.0


def main():
    module = new_module(dict(
        namespace=dict(type='str', required=True),
        label_selector=dict(type='raw', required=True),
        wait_running=dict(type='int', default=0),
        wait_ready=dict(type='bool', default=False),
        fail_on_init_error=dict(type='bool', default=False),
        wait_timeout=dict(type='int', default=300),
        request_timeout=dict(type='int', default=30),
    ), supports_check_mode=True)
    params = module.params
    selector = selector_text(params['label_selector'])
    if not isinstance(selector, str) or not selector:
        module.fail_json(msg='label_selector must be a non-empty dict or key=value string. Fix: e.g. '
                             '{app.kubernetes.io/name: ollama}')
    deadline = time.monotonic() + params['wait_timeout']
    try:
        api = Api(module, request_timeout=params['request_timeout'])
        while True:
            pods, running = read_pods(api, params['namespace'], selector)
            counted = [p for p in pods if p['name'] in running and (p['ready'] or not params['wait_ready'])]
            if len(counted) >= params['wait_running']:
                break
            failed = [p for p in pods if p['init_error'] and not p['terminating']] \
                if params['fail_on_init_error'] else []
            if failed:
                module.fail_json(msg='a pod matching %s in %s failed before it started: %s' % (
                    selector, params['namespace'], '; '.join('%s %s' % (p['name'], p['init_error']) for p in failed)),
                    pods=pods, running=running, init_error=failed[0]['init_error'])
            if time.monotonic() >= deadline:
                module.fail_json(
                    msg='%d of %d pods matching %s in %s run%s after %s s:\n- %s' % (
                        len(counted), params['wait_running'], selector, params['namespace'],
                        ' and are ready' if params['wait_ready'] else '', params['wait_timeout'],
                        '\n- '.join(p['line'] for p in pods) or 'no pod at all'),
                    pods=pods, running=running)
            time.sleep(POLL_SECONDS)
    except ClusterError as exc:
        module.fail_json(msg=str(exc), cause=exc.message, fix=exc.fix)
    module.exit_json(changed=False, pods=pods, running=running)


if __name__ == '__main__':
    main()
