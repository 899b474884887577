#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: ollama_model
short_description: Make the models of one Ollama endpoint present or absent
description:
  - Compares the listed models with the endpoint's C(/api/tags) by name, with Ollama's normalisation
    (C(tiny-a) is C(registry.ollama.ai/library/tiny-a:latest)), and by digest when a model is pinned.
  - I(state=present) pulls only what is missing (or there with another digest than its pin), following
    C(/api/pull)'s progress stream; a pull that makes no progress for I(stall_timeout) seconds is retried,
    at most I(attempts) times in all (Ollama resumes the download it kept).
  - I(state=absent) deletes the listed models; I(prune=true) with I(state=present) deletes every model not listed.
  - The endpoint is one Ollama pod or service reached through the Kubernetes API server's proxy, with the same
    credentials as every kubernetes.core task, or a direct I(url); or several pods at once (I(pods)), where every
    missing model on every pod is pulled at the same time, at most I(concurrency) pulls at once.
  - Names are checked before anything is pulled or deleted. Errors name the model and the fix, for a model the
    registry does not have (Ollama's C(pull model manifest - file does not exist)), an invalid name, a full disk, a digest
    pin the registry does not serve and an endpoint that does not answer (bounded by I(request_timeout)).
version_added: 0.1.0
author:
  - llmops.ollama maintainers (@llmops-ollama)
options:
  models:
    description:
      - The models, as names (C(llama3.2:3b), C(registry.example.com/team/model:tag), C(name@sha256:<64 hex>)) or
        dicts with C(name) and optionally C(digest) (other keys, like the plan's C(size), are ignored).
      - A dict with C(via) (the plan sets it with C(ollama_model_cache)) is pulled by that name, the model cache's,
        with the insecure flag (plain HTTP inside the cluster), then copied to C(name) with C(/api/copy), and the
        manifest named C(via) is deleted (Ollama keeps the blobs C(name) uses).
      - With I(prune=true) an empty list removes every model.
    type: list
    elements: raw
    default: []
  pods:
    description:
      - Several Ollama pods in I(namespace), instead of one I(pod), I(service) or I(url); each is read and synced
        as I(pod) would be, all at the same time, and the result has one entry per pod in C(endpoints).
      - A pod that does not answer fails alone; the task fails after the others are done.
    type: list
    elements: str
  concurrency:
    description:
      - At most this many pulls run at the same time, over all the models and all the pods (each pod's first
        missing model starts first, then each one's second). C(1) pulls one model after the other.
      - Ollama shares the download of a blob that two pulls on one pod need, so concurrent pulls fetch nothing twice.
    type: int
    default: 4
  progress_interval:
    description:
      - Seconds between two progress reports that the task prints while it pulls (one line per endpoint, with
        each model's percentage); C(0) prints none.
      - Printed where the module runs inside the controller (a local connection without C(async), as the
        collection's playbooks run it); elsewhere the result comes at the end only.
    type: int
    default: 0
  state:
    description: Whether the models should be on the endpoint.
    type: str
    choices: [present, absent]
    default: present
  prune:
    description: With I(state=present), delete every model on the endpoint that I(models) does not list.
    type: bool
    default: false
  self_heal_models:
    description:
      - The models the replicas' self-heal keeps in every store (the plan's C(self_heal.models)). With
        I(state=absent), a listed model among them is refused before any request, since a new replica would pull
        it back.
    type: list
    elements: str
    default: []
  insecure:
    description: Pull every model with Ollama's C(insecure) flag (plain HTTP or self-signed registries).
    type: bool
    default: false
  insecure_registries:
    description: Registry hosts (C(host:port)) whose models are pulled with the C(insecure) flag.
    type: list
    elements: str
    default: []
  stall_timeout:
    description:
      - Seconds without progress (no new bytes, no new status, or nothing sent at all) after which an attempt
        is abandoned and retried.
      - Ollama sends nothing while it verifies the digests of a finished download (about a second per GB), so keep
        this above that time for the largest model.
    type: int
    default: 300
  attempts:
    description:
      - Attempts per model, the first included, before the pull fails.
      - When a stream breaks before any download progress (the kube-apiserver's HTTP/1.1 proxy can drop a stream
        whose first line arrives while it still forwards the request, golang/go#40747), the last attempt asks
        Ollama for a single answer at the end instead of a progress stream.
    type: int
    default: 3
  pull_timeout:
    description:
      - Seconds the pulls may take in all (the task fails after it, naming the pulls that had not ended), and a
        pull without a progress stream (see I(attempts)).
    type: int
    default: 7200
  keep_alive:
    description:
      - After the models are present, load each one that is not loaded yet, keeping it in memory this long
        (Ollama's C(keep_alive), e.g. C(30m), C(-1) for ever). Loading is not counted as a change.
      - Unset, nothing is loaded.
    type: str
  progress_file:
    description:
      - A controller path where the module keeps each model's progress as JSON (C(percent), C(status),
        C(completed), C(total)), at most once a second, for a task that polls an asynchronous pull.
      - With I(pods), one file per pod, C({pod}) in the path stands for the pod's name (it is required then).
    type: path
  request_timeout:
    description: Seconds each non-streamed request may take (the first one checks that the endpoint answers).
    type: int
    default: 30
extends_documentation_fragment:
  - llmops.ollama.endpoint
  - ansible.builtin.action_common_attributes
  - kubernetes.core.k8s_auth_options
attributes:
  check_mode:
    support: full
    details: Reads C(/api/tags) and reports what would be pulled or deleted; pulls and deletes nothing.
  diff_mode:
    support: full
    details: The model names on the endpoint before and after.
  platform:
    platforms: posix
notes:
  - Ollama cannot pull by digest; a pinned model is pulled by its tag and its digest checked afterwards. On a
    mismatch a model that was not there before is removed again and the task fails.
  - M(llmops.ollama.ollama_model_info) checks pins against the registry before anything is pulled.
'''

EXAMPLES = r'''
- name: Read the gate's admin key (pulls and deletes are admin routes)
  kubernetes.core.k8s_info:
    kind: Secret
    namespace: ollama
    name: ollama-gate-admin
  register: gate_admin
  no_log: true

- name: Pull two models into one replica
  llmops.ollama.ollama_model:
    namespace: ollama
    pod: ollama-0
    admin_key: "{{ gate_admin.resources[0].data.key | b64decode }}"
    models:
      - llama3.2:3b
      - name: qwen2.5:7b
        digest: sha256:845dbda0ea48ed749caafd9e6037047aa19acfcfd82e704d7ca97d631a0b697e
  register: pulled

- name: Keep exactly these models, removing the rest
  llmops.ollama.ollama_model:
    namespace: ollama
    service: ollama
    admin_key: "{{ gate_admin.resources[0].data.key | b64decode }}"
    models: [llama3.2:3b]
    prune: true

- name: Pull to three replicas at once, at most four pulls at a time, printing the progress every 5 s
  llmops.ollama.ollama_model:
    namespace: ollama
    pods: [ollama-0, ollama-1, ollama-2]
    admin_key: "{{ gate_admin.resources[0].data.key | b64decode }}"
    models: [llama3.2:3b, qwen2.5:7b]
    concurrency: 4
    progress_interval: 5

- name: Pull from a plain-HTTP private registry into an Ollama without the gate
  llmops.ollama.ollama_model:
    url: http://ollama.internal:11434
    models: [registry.internal:5000/team/assistant:v3]
    insecure_registries: [registry.internal:5000]

- name: Remove a model (LLMOPS_OLLAMA_ADMIN_KEY holds the admin key)
  llmops.ollama.ollama_model:
    namespace: ollama
    pod: ollama-0
    models: [llama3.2:3b]
    state: absent
'''

RETURN = r'''
models:
  description: One entry per listed (or pruned) model.
  returned: with pod, service or url
  type: list
  elements: dict
  contains:
    name:
      description: The model's short name.
      type: str
    action:
      description: >-
        C(pulled), C(present), C(deleted), C(pruned), C(absent), C(failed), C(digest_mismatch);
        in check mode C(pull) or C(delete).
      type: str
    changed:
      description: Whether this model changed.
      type: bool
    digest:
      description: The manifest digest (C(sha256:...)) on the endpoint.
      type: str
    size:
      description: Bytes on disk.
      type: int
    attempts:
      description: Pull attempts made.
      type: int
    loaded:
      description: With I(keep_alive), whether the model is loaded.
      type: bool
      returned: with keep_alive
    error:
      description: What went wrong, with the fix.
      type: str
      returned: on failure
pulled:
  description: Names pulled (or that would be, in check mode).
  returned: with pod, service or url
  type: list
  elements: str
deleted:
  description: Names deleted or pruned (or that would be, in check mode).
  returned: with pod, service or url
  type: list
  elements: str
before:
  description: Model names on the endpoint before.
  returned: with pod, service or url
  type: list
  elements: str
after:
  description: Model names on the endpoint after (predicted in check mode).
  returned: with pod, service or url
  type: list
  elements: str
version:
  description: Ollama's version on the endpoint.
  returned: with pod, service or url
  type: str
endpoint:
  description: The endpoint (namespace, pod, service, port, url, description).
  returned: with pod, service or url
  type: dict
endpoints:
  description:
    - With I(pods), one entry per pod, in their order, each with the keys above (C(endpoint), C(version),
      C(models), C(pulled), C(deleted), C(before), C(after), C(changed), C(elapsed)).
    - A pod whose sync failed has C(failed=true) and C(msg); one that did not answer has only C(endpoint),
      C(failed) and C(msg).
  returned: with pods
  type: list
  elements: dict
elapsed:
  description: Seconds the module took.
  returned: always
  type: float
'''

import time

from ansible_collections.llmops.ollama.plugins.module_utils.k8s import Api, ClusterError, new_module
from ansible_collections.llmops.ollama.plugins.module_utils.ollama_client import (
    ENDPOINT_ARGS,
    OllamaError,
    admin_key,
    ProxyEndpoint,
    endpoint_label,
    make_endpoint,
    parse_wanted,
    same_model,
    short_name,
    sync_endpoints,
    sync_models,
)


def _diff(result):
    return {'before': ''.join(n + '\n' for n in result['before']),
            'after': ''.join(n + '\n' for n in result['after']),
            'before_header': '%s models' % result['endpoint']['description'],
            'after_header': '%s models' % result['endpoint']['description']}


def _proxy_endpoints(module, pods):
    """One ProxyEndpoint per pod on one API (the pulls run in threads; the client's pool gives each concurrent
    request its own connection)."""
    params = module.params
    if not params.get('namespace'):
        module.fail_json(msg='pods needs namespace. Fix: set namespace to the namespace of the pods')
    try:
        api = Api(module, request_timeout=params.get('request_timeout') or 30)
        key = admin_key(module, api, params['namespace'])
    except ClusterError as exc:
        module.fail_json(msg=str(exc))
    return [ProxyEndpoint(api, params['namespace'], pod=pod, port=params.get('port'), admin_key=key) for pod in pods]


def _sync_pods(module, wanted, options, started):
    params = module.params
    pods = params['pods']
    if len(set(pods)) != len(pods):
        module.fail_json(msg='pods names a pod twice: %s. Fix: list each pod once' % ', '.join(pods))
    path = params['progress_file']
    if path and len(pods) > 1 and '{pod}' not in path:
        module.fail_json(msg='progress_file %s has no {pod}, so the pods would share one file. Fix: put {pod} in '
                             'the path, e.g. /tmp/pull/{pod}.json' % path)
    endpoints = _proxy_endpoints(module, pods)
    paths = [path.replace('{pod}', pod) if path else None for pod in pods]
    outcomes = sync_endpoints(endpoints, wanted, progress_paths=paths, timeout=params['pull_timeout'], **options)
    entries, failures, diffs = [], [], []
    for endpoint, (result, errors) in zip(endpoints, outcomes):
        if result is None:
            entry = {'endpoint': endpoint_label(endpoint), 'changed': False, 'failed': True, 'msg': errors[0]}
        else:
            entry = dict(result)
            diffs.append(_diff(result))
            if errors:
                entry.update(failed=True, msg='%d of %d model operations failed on %s:\n- %s' % (
                    len(errors), len(result['models']), result['endpoint']['description'], '\n- '.join(errors)))
        if entry.get('failed'):
            failures.append(entry['msg'])
        entries.append(entry)
    result = {'changed': any(e['changed'] for e in entries), 'endpoints': entries,
              'elapsed': round(time.monotonic() - started, 3)}
    if module._diff:
        result['diff'] = diffs
    if failures:
        module.fail_json(msg='the model sync failed on %d of %d pods:\n%s' % (len(failures), len(pods),
                                                                              '\n'.join(failures)), **result)
    module.exit_json(**result)


def main():
    spec = dict(
        models=dict(type='list', elements='raw', default=[]),
        pods=dict(type='list', elements='str'),
        concurrency=dict(type='int', default=4),
        progress_interval=dict(type='int', default=0),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        prune=dict(type='bool', default=False),
        self_heal_models=dict(type='list', elements='str', default=[]),
        insecure=dict(type='bool', default=False),
        insecure_registries=dict(type='list', elements='str', default=[]),
        stall_timeout=dict(type='int', default=300),
        attempts=dict(type='int', default=3),
        pull_timeout=dict(type='int', default=7200),
        keep_alive=dict(type='str'),
        progress_file=dict(type='path'),
    )
    spec.update(ENDPOINT_ARGS)
    module = new_module(spec, supports_check_mode=True, mutually_exclusive=[('pod', 'service', 'url', 'pods')],
                        required_one_of=[('pod', 'service', 'url', 'pods')])
    started = time.monotonic()
    params = module.params
    if params['attempts'] < 1 or params['stall_timeout'] < 1:
        module.fail_json(msg='attempts and stall_timeout must be at least 1. Fix: e.g. attempts: 3, stall_timeout: 300')
    if params['concurrency'] < 1 or params['pull_timeout'] < 1 or params['progress_interval'] < 0:
        module.fail_json(msg='concurrency (model_pull_concurrency) and pull_timeout (model_pull_timeout) must be at '
                             'least 1, progress_interval (model_pull_poll_interval) at least 0; nothing was pulled. '
                             'Fix: e.g. concurrency: 4, pull_timeout: 7200, progress_interval: 5')
    if params['prune'] and params['state'] == 'absent':
        module.fail_json(msg='prune applies to state=present. Fix: drop prune or use state: present')
    wanted, errors = parse_wanted(params['models'])
    if errors:
        module.fail_json(msg='bad model list; nothing was pulled or deleted.\n- ' + '\n- '.join(errors))
    healed = [w['name'] for w in wanted if params['state'] == 'absent'
              and any(same_model(w['name'], name) for name in params['self_heal_models'])]
    if healed:
        module.fail_json(msg='model_pull_state is absent for %s, which ollama_models still declares: every replica\'s '
                             'self-heal (the models sidecar) would pull it back into a new replica\'s store. Nothing was '
                             'deleted. Fix: remove it from ollama_models and run playbooks/site.yml first (the sidecars '
                             'then drop it from their list), then delete it with model_pull_models; or set '
                             'ollama_self_heal: false.' % ', '.join(short_name(name) for name in healed))
    options = dict(state=params['state'], prune=params['prune'], insecure=params['insecure'],
                   insecure_registries=params['insecure_registries'], stall_timeout=params['stall_timeout'],
                   attempts=params['attempts'], check_mode=module.check_mode, keep_alive=params['keep_alive'],
                   request_timeout=params['request_timeout'], pull_timeout=params['pull_timeout'],
                   concurrency=params['concurrency'])
    if params['pods'] is not None:
        if not params['pods']:
            module.exit_json(changed=False, endpoints=[], elapsed=0.0)
        _sync_pods(module, wanted, options, started)
    endpoint = make_endpoint(module)
    try:
        result, errors = sync_models(endpoint, wanted, progress_path=params['progress_file'], **options)
    except OllamaError as exc:
        module.fail_json(msg=str(exc), error_kind=exc.kind)
    if module._diff:
        result['diff'] = _diff(result)
    if errors:
        module.fail_json(msg='%d of %d model operations failed on %s:\n- %s' % (
            len(errors), len(result['models']), result['endpoint']['description'], '\n- '.join(errors)), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
