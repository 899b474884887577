#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: ollama_info
short_description: Version, models and GPU residency of Ollama endpoints
description:
  - For each endpoint given (pods by name or label selector, a service, URLs) returns Ollama's version, its models
    (C(/api/tags)) and the models loaded in memory (C(/api/ps)) with their GPU residency
    (C(size_vram) / C(size) as a percentage, and what C(ollama ps) prints as PROCESSOR).
  - Pods and services are reached through the Kubernetes API server's proxy with the same credentials as every
    kubernetes.core task; URLs directly.
version_added: 0.1.0
author:
  - llmops.ollama maintainers (@llmops-ollama)
options:
  namespace:
    description: Namespace of I(pods), I(label_selector) and I(service).
    type: str
  pods:
    description: Ollama pods by name.
    type: list
    elements: str
    default: []
  label_selector:
    description:
      - Also every Running pod in I(namespace) with these labels (a dict, or C(key=value,key2=value2)).
      - For example the plan's C(affinity.label_selector).
    type: raw
  service:
    description: An Ollama service, through the service proxy (one replica answers).
    type: str
  urls:
    description: URLs where the controller reaches Ollama directly.
    type: list
    elements: str
    default: []
  port:
    description:
      - The port in the pods and the service. Unset, pods are reached on the gate's port C(8080) (the collection's
        pods) and the service on C(11434). Give C(11434) for plain Ollama pods without the gate.
    type: int
  url_validate_certs:
    description: Verify the TLS certificates of I(urls).
    type: bool
    default: true
  url_headers:
    description: Extra HTTP headers for I(urls).
    type: dict
    default: {}
  admin_key:
    description:
      - The gate's admin key, sent in the header C(X-Llmops-Admin-Key) to every endpoint (kube-apiserver's proxy
        consumes C(Authorization) itself). The collection's roles read it from the Secret C(<ollama_name>-gate-admin).
      - Falls back to the environment variable C(LLMOPS_OLLAMA_ADMIN_KEY).
    type: str
  admin_key_secret:
    description:
      - The name of a Secret in I(namespace) whose data key C(key) holds the gate's admin key (the roles pass
        C(<ollama_name>-gate-admin)). Read by the module itself when I(admin_key) is empty, for the endpoints
        reached through the API server (not I(urls)); the key is never returned. A missing Secret or key means
        no admin key, as in check mode before the first converge.
    type: str
  api_key:
    description:
      - A client key of the gate, sent to I(urls) as C(Authorization) C(Bearer <key>).
      - Falls back to the environment variable C(LLMOPS_OLLAMA_API_KEY).
    type: str
  request_timeout:
    description: Seconds each request may take; an endpoint that does not answer in time is reported unreachable.
    type: int
    default: 30
  fail_on_unreachable:
    description: Fail when an endpoint does not answer. With C(false) it is reported with C(reachable=false).
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kubernetes.core.k8s_auth_options
attributes:
  check_mode:
    support: full
    details: Only reads.
  diff_mode:
    support: none
    details: Changes nothing.
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Read every replica
  llmops.ollama.ollama_info:
    namespace: ollama
    label_selector:
      app.kubernetes.io/name: ollama
      app.kubernetes.io/instance: ollama
  register: info

- name: Show the GPU residency of the loaded models
  ansible.builtin.debug:
    msg: "{{ item.endpoint.description }}: {{ item.loaded | map(attribute='processor') | list }}"
  loop: "{{ info.endpoints }}"

- name: Read an Ollama behind an Ingress with a client key of the gate
  llmops.ollama.ollama_info:
    urls: [https://ollama.example.com]
    api_key: "{{ vault_ollama_api_key }}"
'''

RETURN = r'''
endpoints:
  description: One entry per endpoint, in the order given (pods, label-selected pods, service, URLs).
  returned: always
  type: list
  elements: dict
  contains:
    endpoint:
      description: Namespace, pod, service, port, url and a description.
      type: dict
    reachable:
      description: Whether Ollama answered.
      type: bool
    version:
      description: Ollama's version.
      type: str
    models:
      description: The models on disk (name, digest C(sha256:...), size in bytes, modified_at, details).
      type: list
      elements: dict
    loaded:
      description: >-
        Loaded models: name, size, size_vram, gpu_percent (size_vram / size x 100), fully_on_gpu,
        processor (C(100% GPU), C(100% CPU), C(48%/52% CPU/GPU)), expires_at, context_length.
      type: list
      elements: dict
    all_loaded_on_gpu:
      description: Whether at least one model is loaded and every loaded model is fully in GPU memory.
      type: bool
    error:
      description: Why the endpoint is unreachable.
      type: str
pods:
  description: The pod names read (given and label-selected).
  returned: always
  type: list
  elements: str
'''

from ansible_collections.llmops.ollama.plugins.module_utils.k8s import Api, ClusterError, new_module, read_pods
from ansible_collections.llmops.ollama.plugins.module_utils.ollama_client import (
    KEY_ARGS,
    ProxyEndpoint,
    UrlEndpoint,
    admin_key,
    endpoint_info,
)


def main():
    module = new_module(dict(
        namespace=dict(type='str'),
        pods=dict(type='list', elements='str', default=[]),
        label_selector=dict(type='raw'),
        service=dict(type='str'),
        urls=dict(type='list', elements='str', default=[]),
        port=dict(type='int'),
        url_validate_certs=dict(type='bool', default=True),
        url_headers=dict(type='dict', default={}, no_log=True),
        request_timeout=dict(type='int', default=30),
        fail_on_unreachable=dict(type='bool', default=True),
        **KEY_ARGS
    ), supports_check_mode=True)
    params = module.params
    if not (params['pods'] or params['label_selector'] or params['service'] or params['urls']):
        module.fail_json(msg='no endpoint given. Fix: set pods, label_selector or service (with namespace), or urls')
    if (params['pods'] or params['label_selector'] or params['service']) and not params['namespace']:
        module.fail_json(msg='pods, label_selector and service need namespace. Fix: set namespace')
    endpoints, pods = [], list(params['pods'])
    if params['pods'] or params['label_selector'] or params['service']:
        try:
            api = Api(module, request_timeout=params['request_timeout'])
            key = admin_key(module, api, params['namespace'])
            if params['label_selector']:
                running = read_pods(api, params['namespace'], params['label_selector'])[1]
                pods += [p for p in running if p not in pods]
        except ClusterError as exc:
            module.fail_json(msg=str(exc))
        endpoints += [ProxyEndpoint(api, params['namespace'], pod=p, port=params['port'],
                                    admin_key=key) for p in pods]
        if params['service']:
            endpoints.append(ProxyEndpoint(api, params['namespace'], service=params['service'], port=params['port'],
                                           admin_key=key))
    endpoints += [UrlEndpoint(u, validate_certs=params['url_validate_certs'], headers=params['url_headers'],
                              api_key=params['api_key'], admin_key=params['admin_key']) for u in params['urls']]
    results = [endpoint_info(e, params['request_timeout']) for e in endpoints]
    unreachable = [r for r in results if not r['reachable']]
    if unreachable and params['fail_on_unreachable']:
        module.fail_json(msg='%d of %d Ollama endpoints did not answer:\n- %s' % (
            len(unreachable), len(results), '\n- '.join(r['error'] for r in unreachable)),
            endpoints=results, pods=pods)
    module.exit_json(changed=False, endpoints=results, pods=pods)


if __name__ == '__main__':
    main()
