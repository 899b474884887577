#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: plan
short_description: Decide every deployment choice from cluster facts and the wanted configuration
description:
  - A pure function of its inputs; it talks to no cluster and changes nothing. It runs on the controller.
  - Returns the plan (workload kind and strategy, storage layout and claim size, anti-affinity, zone spread,
    disruption budget, RuntimeClass, eligible GPU nodes, models, Ingress, HTTPRoute, NetworkPolicies, namespace
    ownership) that every later role renders.
  - When anything is wrong it fails with every problem found, each naming the variable, what is wrong and the fix.
version_added: 0.1.0
author:
  - llmops.ollama maintainers (@llmops-ollama)
options:
  facts:
    description:
      - The C(cluster) result of M(llmops.ollama.cluster_facts).
      - When left out, the plan reads the cluster itself with M(llmops.ollama.cluster_facts) (the auth options
        below apply) and returns the facts as C(cluster); thousands of nodes' facts then never pass through
        templating between tasks.
    type: dict
  request_timeout:
    description: Seconds each API request may take when the plan reads the cluster itself.
    type: int
    default: 30
  variables:
    description:
      - The user's C(ollama_*) variables (for example C(ollama_replicas), C(ollama_storage_class)); others are ignored.
      - When left out, every C(ollama_*) variable the task sees is used (inventory, play, role and extra vars).
      - Variables left out take the defaults documented in the role README of M(llmops.ollama.gpu_preflight).
    type: dict
  models:
    description:
      - The models with their sizes, as M(llmops.ollama.ollama_model_facts) returns them; they replace C(ollama_models).
    type: list
    elements: raw
  fact_name:
    description:
      - Also set the plan as this host fact, so that later plays of the run read it (the gpu_preflight role sets
        C(gpu_preflight_plan)).
    type: str
  fail_on_error:
    description: Fail when the plan has errors. With C(false) the errors come back in C(plan.errors).
    type: bool
    default: true
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - ansible.builtin.action_common_attributes
  - llmops.ollama.attributes.READ_ONLY
'''

EXAMPLES = r'''
- name: Plan the deployment
  llmops.ollama.plan:
    facts: "{{ cluster.cluster }}"
    variables:
      ollama_replicas: 2
      ollama_models: [llama3.2:3b]
  register: planned

- name: Plan from the cluster and every ollama_* variable, and keep the plan for later plays
  llmops.ollama.plan:
    fact_name: gpu_preflight_plan
'''

RETURN = r'''
cluster:
  description: The cluster facts, when the plan read them itself; see M(llmops.ollama.cluster_facts).
  returned: when I(facts) is left out
  type: dict
plan:
  description: Every decision; see the README of the gpu_preflight role for each key.
  returned: success
  type: dict
  contains:
    ok:
      description: Whether the plan has no errors.
      type: bool
    errors:
      description: Each problem with C(variable), C(message) and C(fix).
      type: list
      elements: dict
    warnings:
      description: Things worth knowing that do not stop the run.
      type: list
      elements: str
    workload_kind:
      description: C(Deployment) or C(StatefulSet).
      type: str
    strategy:
      description: C(Recreate) or C(RollingUpdate).
      type: str
    replicas:
      description: Number of Ollama replicas.
      type: int
    storage:
      description: Storage mode, class, access mode, claim size and claim names.
      type: dict
    affinity:
      description: Node label, anti-affinity (required, preferred or none) and zone spread.
      type: dict
    pdb:
      description: The PodDisruptionBudget's minAvailable, or null for one replica.
      type: dict
    runtime_class:
      description: RuntimeClass the pods name, or null.
      type: str
    eligible_nodes:
      description: GPU nodes the replicas may land on.
      type: list
      elements: str
    models:
      description: The models, normalised, with sizes where known.
      type: list
      elements: dict
    image:
      description: The Ollama image (C(ref), C(tag), C(digest), C(version)) and the C(known_cves) it is below.
      type: dict
    namespace_info:
      description: Whether the namespace exists, is the collection's (C(owned)), and whether its labels are managed.
      type: dict
    ingress:
      description: The Ingress (class from the cluster's default, routed paths, the controller's namespaces).
      type: dict
    httproute:
      description: The HTTPRoute (parent refs, hostnames, PathPrefix matches).
      type: dict
    network_policy:
      description: The ingress and egress NetworkPolicy specs over the collection's pods, and what they admit.
      type: dict
'''

from ansible_collections.llmops.ollama.plugins.module_utils.cluster_facts import read_cluster
from ansible_collections.llmops.ollama.plugins.module_utils.k8s import Api, ClusterError, new_module
from ansible_collections.llmops.ollama.plugins.module_utils.plan import (
    DEFAULTS, compute_plan, config_from_role_vars, describe_errors)


def main():
    """Runs where the action plugin is not used (the action plugin is the usual path)."""
    module = new_module(
        argument_spec=dict(
            facts=dict(type='dict'),
            variables=dict(type='dict'),
            models=dict(type='list', elements='raw'),
            fail_on_error=dict(type='bool', default=True),
            fact_name=dict(type='str'),
            request_timeout=dict(type='int', default=30),
        ),
        supports_check_mode=True,
    )
    config = config_from_role_vars(module.params['variables'] or {})
    if module.params['models'] is not None:
        config['models'] = module.params['models']
    result = {}
    facts = module.params['facts']
    if facts is None:
        try:
            facts = read_cluster(Api(module, module.params['request_timeout']),
                                 config.get('namespace') or DEFAULTS['namespace'])
        except ClusterError as exc:
            module.fail_json(msg=str(exc))
        result['cluster'] = facts
    plan = compute_plan(facts, config)
    for warning in plan['warnings']:
        module.warn(warning)
    if plan['errors'] and module.params['fail_on_error']:
        module.fail_json(msg='The plan found %d problem(s); nothing was changed in the cluster.\n%s'
                         % (len(plan['errors']), describe_errors(plan['errors'])), plan=plan)
    if module.params['fact_name']:
        result['ansible_facts'] = {module.params['fact_name']: plan}
    module.exit_json(changed=False, plan=plan, **result)


if __name__ == '__main__':
    main()
