#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: k8s_dry_run
short_description: Check Kubernetes objects with a server-side dry run before anything is written
description:
  - Sends every object of I(definition) to the API server as a server-side apply with C(dryRun=All) under
    I(field_manager). The API server validates, defaults and admits each object as the real apply will (conflicts
    and immutable fields included) and persists nothing. One request per object, no reads.
  - An object whose namespace does not exist yet is sent as a dry-run create into I(fallback_namespace) instead,
    since the API server refuses anything in a missing namespace before it validates it.
  - Fails when the API server refuses an object, naming for each refusal the variable that rendered the field (a
    table of field paths, C(plugins/module_utils/dry_run.py)), the API server's message and the fix.
  - With I(problems), fails with them before any request, so that a role checks its own settings and its objects
    in one task.
  - With I(settings_of), the collection's action plugin first checks that role's variables in the controller, the
    types and choices of the role's C(meta/argument_specs.yml) and then what a spec cannot say (patterns, names the
    role owns, rules that read the plan, in C(plugins/module_utils/settings_checks.py)). I(definition) is rendered
    only when they are sound.
  - The collection's playbooks/site.yml runs it for the objects of every role before the first write.
version_added: 0.2.0
author:
  - llmops.ollama maintainers (@llmops-ollama)
options:
  definition:
    description: The objects, a list of dicts (or one dict), each with C(apiVersion), C(kind) and C(metadata.name).
    type: raw
    required: true
  problems:
    description:
      - Problems the caller found in the settings already, each a message that names the variable and the fix.
        Any of them fails the task before the dry run (then I(definition) may be empty).
    type: list
    elements: str
    default: []
  settings_of:
    description:
      - The role whose variables the action plugin checks before the dry run (see above); their problems join
        I(problems). The task must run in that role (C(tasks_from) of the role, as its C(tasks/validate.yml) does).
      - Without it only I(problems) and I(definition) are checked.
    type: str
    choices: [ollama_workload, ha_policy, storage_provisioner]
  field_manager:
    description: The field manager of the real apply (conflicts are judged for it).
    type: str
    default: llmops-ollama
  fallback_namespace:
    description:
      - Where an object whose namespace does not exist yet is checked (a dry-run create; nothing is written there).
      - The user needs the right to create the object's kind there; without it the object is reported as not
        checked, not as refused.
    type: str
    default: default
  sources:
    description:
      - Values of the variables the field table names, to tell which of several variables caused a refusal.
      - The collection's action plugin fills it from the task's variables.
    type: dict
    default: {}
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
    details: Writes nothing in either mode.
  diff_mode:
    support: none
  platform:
    platforms: posix
'''

EXAMPLES = r'''
- name: Check the workload's objects before the first write
  llmops.ollama.k8s_dry_run:
    definition: "{{ lookup('ansible.builtin.template', 'objects.yml.j2') | ansible.builtin.from_yaml_all | list }}"

- name: Check ollama_workload's variables, then its objects, in one task (in the role's tasks/validate.yml)
  llmops.ollama.k8s_dry_run:
    settings_of: ollama_workload
    definition: "{{ ollama_workload_definition }}"
'''

RETURN = r'''
checked:
  description: One entry per object, in the order given.
  returned: always
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
    checked_in:
      description: The namespace the dry run went to (I(fallback_namespace) when the object's does not exist yet).
      type: str
    refused:
      description: Whether the API server refused the object.
      type: bool
problems:
  description: Each refusal, with the variable that rendered the field and the fix.
  returned: always
  type: list
  elements: dict
  contains:
    variable:
      description: The variable (or variables) that rendered the refused field.
      type: str
    object:
      description: Kind, namespace and name of the object.
      type: str
    field:
      description: The field path the API server named.
      type: str
    message:
      description: The API server's message.
      type: str
    fix:
      description: What to change.
      type: str
objects:
  description: The objects as given (the values of a Secret replaced by C(********)).
  returned: success
  type: list
  elements: dict
'''

from ansible_collections.llmops.ollama.plugins.module_utils.apply import redacted
from ansible_collections.llmops.ollama.plugins.module_utils.dry_run import describe, dry_run_objects
from ansible_collections.llmops.ollama.plugins.module_utils.k8s import Api, ClusterError, new_module


def main():
    module = new_module(dict(
        definition=dict(type='raw', required=True),
        problems=dict(type='list', elements='str', default=[]),
        settings_of=dict(type='str', choices=['ollama_workload', 'ha_policy', 'storage_provisioner']),
        field_manager=dict(type='str', default='llmops-ollama'),
        fallback_namespace=dict(type='str', default='default'),
        sources=dict(type='dict', default={}),
        request_timeout=dict(type='int', default=30),
    ), supports_check_mode=True)
    params = module.params
    if params['problems']:
        module.fail_json(msg='%d problem(s) with the settings; nothing was written.\n%s' % (
            len(params['problems']), '\n'.join('- %s' % p for p in params['problems'])), problems_found=params['problems'])
    objects = params['definition']
    objects = [objects] if isinstance(objects, dict) else objects
    if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
        module.fail_json(msg='definition must be an object or a list of objects. Fix: give dicts with apiVersion, '
                             'kind and metadata')
    if not objects:
        module.exit_json(changed=False, checked=[], problems=[], objects=[])
    try:
        api = Api(module, request_timeout=params['request_timeout'])
        problems, notes, checked = dry_run_objects(api, objects, params['field_manager'],
                                                   params['fallback_namespace'], params['sources'])
    except ClusterError as exc:
        module.fail_json(msg=str(exc), cause=exc.message, fix=exc.fix)
    for note in notes:
        module.warn(note)
    if problems:
        refused = sum(1 for c in checked if c['refused'])
        module.fail_json(msg='The API server refuses %d of the %d objects to be written (a server-side dry run; '
                             'nothing was written).\n%s' % (refused, len(objects), describe(problems)),
                         checked=checked, problems=problems)
    module.exit_json(changed=False, checked=checked, problems=[], objects=[redacted(o) for o in objects])


if __name__ == '__main__':
    main()
