#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: ollama_generate_check
short_description: Generation smoke test with tokens/s and GPU residency
description:
  - Sends one short prompt (small I(num_predict), fixed I(seed), temperature 0) to a model on one Ollama endpoint and
    returns tokens/s (C(eval_count) / C(eval_duration)), the load time and the total time.
  - Then reads C(/api/ps) and fails when the model is not fully in GPU memory (C(size_vram) < C(size)) unless
    I(allow_cpu=true); Ollama silently offloads layers to the CPU and answers at a few tokens/s.
  - Fails below I(min_tokens_per_second) or above I(max_load_seconds) / I(max_total_seconds) when they are set.
version_added: 0.1.0
author:
  - llmops.ollama maintainers (@llmops-ollama)
options:
  model:
    description: The model to run; it must already be on the endpoint (M(llmops.ollama.ollama_model)).
    type: str
    required: true
  prompt:
    description: The prompt.
    type: str
    default: Why is the sky blue?
  num_predict:
    description: Tokens to generate.
    type: int
    default: 16
  seed:
    description: Sampling seed, so runs are comparable.
    type: int
    default: 42
  keep_alive:
    description: How long Ollama keeps the model loaded afterwards (e.g. C(5m)); Ollama's default when unset.
    type: str
  min_tokens_per_second:
    description: Fail below this many generated tokens per second; C(0) checks nothing.
    type: float
    default: 0
  max_load_seconds:
    description: Fail when loading the model took longer; C(0) checks nothing.
    type: float
    default: 0
  max_total_seconds:
    description: Fail when the whole request took longer; C(0) checks nothing.
    type: float
    default: 0
  allow_cpu:
    description: Accept a model that is partly or wholly in CPU memory (only warn).
    type: bool
    default: false
  timeout:
    description: Seconds the generation may take, loading included.
    type: int
    default: 300
  request_timeout:
    description: Seconds the first request (C(/api/version)) may take.
    type: int
    default: 30
extends_documentation_fragment:
  - llmops.ollama.endpoint
  - ansible.builtin.action_common_attributes
  - kubernetes.core.k8s_auth_options
attributes:
  check_mode:
    support: full
    details: >-
      Runs in check mode too: it changes no model and no cluster object (it loads the model into memory as any
      request would), so C(--check) still verifies. It always reports C(changed=false).
  diff_mode:
    support: none
    details: Changes nothing.
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Check that llama3.2 answers from GPU memory at 20 tokens/s or more
  llmops.ollama.ollama_generate_check:
    namespace: ollama
    pod: ollama-0
    admin_key: "{{ gate_admin_key }}"  # the key of the Secret ollama-gate-admin
    model: llama3.2:3b
    min_tokens_per_second: 20
  register: smoke

- name: Accept a CPU-only Ollama behind an Ingress (a test cluster), with a client key
  llmops.ollama.ollama_generate_check:
    url: https://ollama.example.com
    api_key: "{{ vault_ollama_api_key }}"
    model: tiny-a
    allow_cpu: true
'''

RETURN = r'''
tokens_per_second:
  description: eval_count / eval_duration.
  returned: success
  type: float
eval_count:
  description: Tokens generated.
  returned: success
  type: int
load_seconds:
  description: Time Ollama took to load the model (0 when it was loaded).
  returned: success
  type: float
total_seconds:
  description: Time of the whole request.
  returned: success
  type: float
eval_seconds:
  description: Time spent generating.
  returned: success
  type: float
response:
  description: The generated text.
  returned: success
  type: str
residency:
  description: >-
    The model's entry in /api/ps: size, size_vram, gpu_percent, fully_on_gpu, processor; null when it is not loaded.
  returned: success
  type: dict
thresholds:
  description: The thresholds checked.
  returned: success
  type: dict
warnings_cpu:
  description: Whether the model was accepted off the GPU because of I(allow_cpu).
  returned: success
  type: bool
'''

from ansible_collections.llmops.ollama.plugins.module_utils.k8s import new_module
from ansible_collections.llmops.ollama.plugins.module_utils.ollama_client import (
    ENDPOINT_ARGS,
    OllamaError,
    generate_check,
    make_endpoint,
    parse_wanted,
)


def main():
    spec = dict(
        model=dict(type='str', required=True),
        prompt=dict(type='str', default='Why is the sky blue?'),
        num_predict=dict(type='int', default=16),
        seed=dict(type='int', default=42),
        keep_alive=dict(type='str'),
        min_tokens_per_second=dict(type='float', default=0, no_log=False),
        max_load_seconds=dict(type='float', default=0),
        max_total_seconds=dict(type='float', default=0),
        allow_cpu=dict(type='bool', default=False),
        timeout=dict(type='int', default=300),
    )
    spec.update(ENDPOINT_ARGS)
    module = new_module(spec, supports_check_mode=True, mutually_exclusive=[('pod', 'service', 'url')],
                        required_one_of=[('pod', 'service', 'url')])
    params = module.params
    wanted, errors = parse_wanted([params['model']])
    if errors:
        module.fail_json(msg=errors[0])
    endpoint = make_endpoint(module)
    try:
        endpoint.version(timeout=params['request_timeout'])
        result, failures = generate_check(
            endpoint, wanted[0]['name'], prompt=params['prompt'], num_predict=params['num_predict'],
            seed=params['seed'], keep_alive=params['keep_alive'],
            min_tokens_per_second=params['min_tokens_per_second'], max_load_seconds=params['max_load_seconds'],
            max_total_seconds=params['max_total_seconds'], allow_cpu=params['allow_cpu'], timeout=params['timeout'])
    except OllamaError as exc:
        module.fail_json(msg=str(exc), error_kind=exc.kind)
    residency = result['residency']
    result['warnings_cpu'] = bool(residency and not residency['fully_on_gpu'] and params['allow_cpu'])
    if result['warnings_cpu']:
        module.warn('%s on %s is not fully in GPU memory (%s); accepted because allow_cpu is true'
                    % (result['model'], endpoint.description, residency['processor']))
    if failures:
        module.fail_json(msg='the generation check failed:\n- ' + '\n- '.join(failures), **result)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
