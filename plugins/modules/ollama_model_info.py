#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: ollama_model_info
short_description: Real model sizes and digests from the registry manifests, before the plan
description:
  - For each declared model reads its manifest from the registry (C(/v2/<namespace>/<model>/manifests/<tag or digest>))
    when the controller reaches the registry, within I(timeout) seconds per model, and fills in C(size) (the bytes
    of its layers and config, as Ollama counts them) so the plan's capacity checks use real sizes.
  - A model whose registry cannot be read keeps its declared size (or none); the reason is in C(details).
  - With I(read_architecture), also reads the GGUF header of each model blob with HTTP range requests (the header
    alone, not the weights) and its C(num_ctx) parameter, and sets C(architecture) on the model (layers, attention
    and KV heads, head size, trained context length, the bytes of each layer) so the plan's GPU memory estimate
    counts the KV cache and the compute graph. Where the header cannot be read a declared C(architecture) stays,
    else C(architecture_error) says why and the estimate falls back to the file size.
  - A model pinned to a digest is checked against the digest its tag has at the registry (Ollama pulls by tag);
    a pin the registry does not serve fails the task (I(fail_on_digest_mismatch)) before anything is written to
    the cluster.
  - Talks to no cluster; it runs on the controller only.
version_added: 0.1.0
author:
  - llmops.ollama maintainers (@llmops-ollama)
options:
  models:
    description:
      - The plan's models input (C(ollama_models)), as names or dicts with C(name) and optionally C(size) and C(digest).
    type: list
    elements: raw
    default: []
  insecure_registries:
    description: Registry hosts (C(host:port)) read over plain HTTP (the others over HTTPS).
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds each manifest request may take; all look-ups together take at most three times this.
    type: int
    default: 10
  fail_on_digest_mismatch:
    description: Fail when the registry serves another digest for a model's tag than its pin.
    type: bool
    default: true
  fail_on_unknown_model:
    description: Fail when the registry answers that it does not have a model (HTTP 404 on its manifest).
    type: bool
    default: false
  read_architecture:
    description:
      - Read each model's GGUF header from the registry (range requests on the model blob) for the GPU memory estimate.
      - Each header read takes at most I(timeout) seconds, all of them together three times that.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Only reads registries.
  diff_mode:
    support: none
    details: Changes nothing.
  platform:
    platforms: posix
notes:
  - Registries that require a token for reading manifests are not read; declared sizes are used for their models.
'''

EXAMPLES = r'''
- name: Resolve model sizes before planning
  llmops.ollama.ollama_model_info:
    models: "{{ ollama_models }}"
    insecure_registries: "{{ ollama_insecure_registries | default([]) }}"
  register: model_facts

- name: Plan with the real sizes
  llmops.ollama.plan:
    facts: "{{ cluster.cluster }}"
    variables: "{{ vars | dict2items | selectattr('key', 'match', '^ollama_') | items2dict
                   | combine({'ollama_models': model_facts.models}) }}"
'''

RETURN = r'''
models:
  description: The input list in the same shape (strings become dicts with C(name)), with C(size) in bytes filled
    from the registry where it was read, C(architecture) from the GGUF header where it was read, and
    C(architecture_error) where neither the header nor a declared architecture is known.
  returned: always
  type: list
  elements: dict
details:
  description: Per model C(name), C(source) (registry, declared, unknown), C(size), C(declared_size), C(digest) (the
    pin), C(registry_digest), C(digest_mismatch) and C(error) (why the registry was not read); C(architecture_source)
    (C(gguf header), C(declared) or null), C(architecture_error), and for a header read C(header_bytes),
    C(fetched_bytes), C(range_requests), C(range_statuses) (206 when the registry honoured Range) and C(blob_bytes).
  returned: always
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ollama.plugins.module_utils.inprocess import make_module
from ansible_collections.llmops.ollama.plugins.module_utils.ollama_client import resolve_model_sizes


def main():
    module = make_module(AnsibleModule, dict(
        models=dict(type='list', elements='raw', default=[]),
        insecure_registries=dict(type='list', elements='str', default=[]),
        timeout=dict(type='int', default=10),
        fail_on_digest_mismatch=dict(type='bool', default=True),
        fail_on_unknown_model=dict(type='bool', default=False),
        read_architecture=dict(type='bool', default=True),
    ), supports_check_mode=True)
    params = module.params
    models, details = resolve_model_sizes(params['models'], params['insecure_registries'], params['timeout'],
                                          architecture=params['read_architecture'])
    problems = []
    for detail in details:
        if detail['digest_mismatch'] and params['fail_on_digest_mismatch']:
            problems.append('model %s is pinned to %s but the registry serves %s. Fix: update the digest in '
                            'ollama_models, or pin the tag that holds it' % (
                                detail['name'], detail['digest'], detail['registry_digest']))
        if detail.get('unknown_model') and params['fail_on_unknown_model']:
            problems.append('model %s: %s. Fix: check the name and tag at the registry' % (
                detail['name'], detail['error']))
    if problems:
        module.fail_json(msg='the model list does not match the registry; nothing was changed:\n- '
                         + '\n- '.join(problems), models=models, details=details)
    module.exit_json(changed=False, models=models, details=details)


if __name__ == '__main__':
    main()
