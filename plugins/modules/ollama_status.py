#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: ollama_status
short_description: The Ollama deployment as a table and a self-contained HTML page
description:
  - Reads the GPU nodes (allocatable GPUs, the GPUs every pod on them requests, GPU memory from the
    C(nvidia.com/gpu.memory) label), the Ollama replicas (node, phase, readiness, restarts) and, through the API
    server's pod proxy and the gate, each replica's models (C(/api/tags)) and the loaded ones (C(/api/ps)) with size,
    digest, loaded or not, the share in GPU memory (C(size_vram) / C(size)) and the last measured tokens/s.
  - Returns the report, its lines as a terminal table (C(table)) and the problems found (a replica not Ready or
    not answering, a declared model missing on a replica, a loaded model partly or wholly on the CPU, a replica on
    a node without GPUs or on a node that is not Ready, restarts, a model whose digest differs between replicas).
  - With I(html_path), writes the same report as one HTML page with inline CSS, no script and no external asset.
  - Writes nothing to the cluster. Tokens/s come from I(measurements) (e.g. the results of
    M(llmops.ollama.ollama_generate_check)) or, with I(measure=true), from one short generation per replica and
    model, which loads the model into memory as any request would.
  - Fails with the fix when the namespace holds no Ollama deployment.
version_added: 0.1.0
author:
  - llmops.ollama maintainers (@llmops-ollama)
options:
  namespace:
    description: The deployment's namespace (the plan's C(namespace), C(ollama_namespace)).
    type: str
    required: true
  name:
    description: The workload's name (the plan's C(name), C(ollama_name)); the gate's admin key is read from the
      Secret C(<name>-gate-admin) unless I(admin_key) is given.
    type: str
    default: ollama
  label_selector:
    description:
      - The labels of the Ollama pods (a dict, or C(key=value,key2=value2)); the plan's C(affinity.label_selector).
      - Unset, the collection's own labels for I(name) (C(app.kubernetes.io/name=ollama),
        C(app.kubernetes.io/instance=<name>)).
    type: raw
  models:
    description: The models every replica should hold (names, or dicts with C(name) such as the plan's C(models));
      one missing on a replica is a problem. Other models a replica holds are listed too.
    type: list
    elements: raw
    default: []
  measurements:
    description:
      - Earlier measurements to show as the last tokens/s, each a dict with C(model), C(tokens_per_second) and
        C(pod) (or C(endpoint.pod), as M(llmops.ollama.ollama_generate_check) returns it; a loop's C(results)
        work as they are), and optionally C(source). Entries without a figure are skipped.
    type: list
    elements: raw
    default: []
  measure:
    description:
      - Run one short generation (I(measure_num_predict) tokens, fixed seed) per Running replica and model on it to
        measure tokens/s now; it loads each model into memory. Not in check mode.
    type: bool
    default: false
  measure_num_predict:
    description: Tokens each measuring generation produces.
    type: int
    default: 8
  measure_timeout:
    description: Seconds each measuring generation may take, loading included.
    type: int
    default: 120
  allow_cpu:
    description: Report a loaded model that is not fully in GPU memory as a warning instead of an error (a
      cluster without real GPUs, such as the simulator).
    type: bool
    default: false
  fail_on_problems:
    description: Fail when the report holds an error (after writing I(html_path)).
    type: bool
    default: false
  html_path:
    description:
      - Where to write the HTML page (on the host the task runs on; the controller for the collection's
        playbooks). Its directory must exist. Unset, no page is written.
    type: path
  max_nodes:
    description: At most this many GPU nodes are shown (those that run a replica first); the others are counted.
    type: int
    default: 50
  admin_key:
    description:
      - The gate's admin key, sent in the header C(X-Llmops-Admin-Key) (kube-apiserver's proxy consumes
        C(Authorization) itself). Unset, read from the Secret C(<name>-gate-admin).
      - Falls back to the environment variable C(LLMOPS_OLLAMA_ADMIN_KEY).
    type: str
  port:
    description: The port of the pods; unset, the gate's port C(8080). Give C(11434) for plain Ollama pods.
    type: int
  request_timeout:
    description: Seconds each request may take.
    type: int
    default: 30
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - kubernetes.core.k8s_auth_options
attributes:
  check_mode:
    support: full
    details: Reads the same; does not write I(html_path) (reports C(changed) when it would) and runs no measuring
      generation.
  diff_mode:
    support: none
    details: The page is a report, not a configuration; C(changed) says whether it was (or would be) rewritten.
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Show the deployment and write the page
  llmops.ollama.ollama_status:
    namespace: ollama
    models: [llama3.2:3b]
    html_path: /tmp/ollama-status.html
  register: status

- name: Print the table
  ansible.builtin.debug:
    msg: "{{ status.table }}"

- name: Show the tokens/s the verification measured
  llmops.ollama.ollama_status:
    namespace: ollama
    measurements: "{{ verify_generation.results }}"
'''

RETURN = r'''
table:
  description: The report as lines of aligned text (GPU nodes, replicas, models, problems).
  returned: success
  type: list
  elements: str
report:
  description: >-
    C(namespace), C(name), C(generated_at), C(nodes) (name, ready, gpu_allocatable, gpu_used, gpu_memory_mib per
    card, gpu_memory_bytes, vram_used_bytes, gpu_product, zone, replicas), C(nodes_hidden), C(replicas) (name, node,
    phase, ready, terminating, restarts, gpus, reachable, version, error, and C(models): name, declared, present,
    size, digest, loaded, size_loaded, size_vram, gpu_percent, processor, tokens_per_second, tokens_source),
    C(models), C(problems) (severity, text, replica, model, node), C(counts) and C(ok).
  returned: success
  type: dict
problems:
  description: The problems' texts, errors first.
  returned: success
  type: list
  elements: str
html_path:
  description: The page written (or, in check mode, that would be written); null without I(html_path).
  returned: success
  type: str
'''

import os
import tempfile

from ansible_collections.llmops.ollama.plugins.module_utils.k8s import Api, ClusterError, new_module
from ansible_collections.llmops.ollama.plugins.module_utils.ollama_client import KEY_ARGS
from ansible_collections.llmops.ollama.plugins.module_utils.status import (
    ERROR,
    NoDeployment,
    collect,
    render_html,
    render_table,
)
from ansible_collections.llmops.ollama.plugins.module_utils.plan import workload_selector


def write_page(module, path, text):
    """Whether the page changes; written atomically unless in check mode."""
    data = text.encode('utf-8')
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        module.fail_json(msg='html_path %s: the directory %s does not exist. Fix: create it, or give a path in an '
                             'existing directory' % (path, directory))
    try:
        with open(path, 'rb') as handle:
            if handle.read() == data:
                return False
    except (IOError, OSError):
        pass
    if module.check_mode:
        return True
    handle, tmp = tempfile.mkstemp(prefix='.ollama-status-', dir=directory)
    try:
        with os.fdopen(handle, 'wb') as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except (IOError, OSError) as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        module.fail_json(msg='cannot write html_path %s: %s. Fix: give a writable path' % (path, exc))
    return True


def main():
    module = new_module(dict(
        namespace=dict(type='str', required=True),
        name=dict(type='str', default='ollama'),
        label_selector=dict(type='raw'),
        models=dict(type='list', elements='raw', default=[]),
        measurements=dict(type='list', elements='raw', default=[]),
        measure=dict(type='bool', default=False),
        measure_num_predict=dict(type='int', default=8),
        measure_timeout=dict(type='int', default=120),
        allow_cpu=dict(type='bool', default=False),
        fail_on_problems=dict(type='bool', default=False),
        html_path=dict(type='path'),
        max_nodes=dict(type='int', default=50),
        port=dict(type='int'),
        request_timeout=dict(type='int', default=30),
        admin_key=KEY_ARGS['admin_key'],
    ), supports_check_mode=True)
    params = module.params
    selector = params['label_selector'] or workload_selector(params['name'])
    try:
        api = Api(module, request_timeout=params['request_timeout'])
        report = collect(api, params['namespace'], params['name'], selector, admin_key=params['admin_key'],
                         declared=params['models'], measurements=params['measurements'], measure=params['measure'],
                         measure_num_predict=params['measure_num_predict'], measure_timeout=params['measure_timeout'],
                         allow_cpu=params['allow_cpu'], port=params['port'], request_timeout=params['request_timeout'],
                         max_nodes=params['max_nodes'], check_mode=module.check_mode)
    except NoDeployment as exc:
        module.fail_json(msg=str(exc), no_deployment=True)
    except ClusterError as exc:
        module.fail_json(msg=str(exc))
    changed = False
    if params['html_path']:
        changed = write_page(module, params['html_path'], render_html(report))
    problems = sorted(report['problems'], key=lambda p: p['severity'] != ERROR)
    result = dict(changed=changed, table=render_table(report), report=report,
                  problems=['%s: %s' % (p['severity'], p['text']) for p in problems],
                  html_path=params['html_path'])
    if params['fail_on_problems'] and not report['ok']:
        module.fail_json(msg='the deployment has %d error(s):\n- %s' % (report['counts']['errors'], '\n- '.join(
            p['text'] for p in problems if p['severity'] == ERROR)), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
