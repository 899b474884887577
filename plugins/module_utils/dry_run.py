# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A server-side dry run of the objects the roles will write, before the first write, and the API server's
refusals told as the variables that caused them.

One request per object and no read: a server-side apply with ``dryRun=All`` under the roles' field manager, so the
API server validates, defaults and admits each object exactly as the real apply will, conflicts and immutable
fields included, and persists nothing. An object whose namespace does not exist yet (the first run: storage
creates it) is sent as a dry-run create into a namespace that exists (``default`` unless told otherwise): the API
server refuses anything in a missing namespace before it validates the object.

:data:`FIELDS` maps the field paths the API server names to the variables that render them, with the fix.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import re

from ansible_collections.llmops.ollama.plugins.module_utils.apply import APPLY_CONTENT_TYPE, Resources, label
from ansible_collections.llmops.ollama.plugins.module_utils.k8s import ClusterError

WORKLOADS = ('Deployment', 'StatefulSet')
POD = r'^spec\.template\.spec\.'
CONTAINER = POD + r'(?P<list>initContainers|containers)\[(?P<container>[^\]]+)\]\.'

RESOURCES_FIX = ('keep every request at or below its limit and write quantities as Kubernetes does (cpu "500m" or '
                 '"2", memory "4Gi"), e.g. {requests: {cpu: "1", memory: 4Gi, ephemeral-storage: 1Gi}, limits: '
                 '{cpu: "8", memory: 32Gi, ephemeral-storage: 8Gi}}')
LABEL_FIX = ('write label keys as [prefix/]name (the name: at most 63 letters, digits, "-", "_" or ".", starting and '
             'ending with a letter or digit; the prefix a DNS subdomain) and values the same way, or empty')

# What a container's fields come from, by container name: aspect -> variables.
CONTAINERS = {
    'ollama': {
        'resources': ['ollama_workload_resources'],
        'env': ['ollama_workload_env', 'ollama_workload_env_defaults'],
        'image': ['ollama_image', 'ollama_image_tag'],
        'probes': ['ollama_workload_startup_seconds'],
        'security': ['ollama_workload_uid', 'ollama_workload_gid', 'ollama_workload_read_only_root_filesystem'],
        'mounts': ['ollama_workload_data_path'],
    },
    'gate': {
        'resources': ['ollama_workload_gate_resources'],
        'image': ['ollama_gate_image', 'ollama_gate_image_tag'],
        'security': ['ollama_workload_uid', 'ollama_workload_gid'],
    },
    # The self-heal sidecar (an init container with restartPolicy Always), from Ollama's image.
    'models': {
        'resources': ['ollama_workload_self_heal_resources'],
        'env': ['ollama_self_heal_interval', 'ollama_self_heal_pull_timeout'],
        'image': ['ollama_image', 'ollama_image_tag'],
        'probes': ['ollama_self_heal_interval'],
        'security': ['ollama_workload_uid', 'ollama_workload_gid'],
    },
}

# Where a container's aspect needs another fix than ASPECT_FIXES gives: (container, aspect) -> fix.
CONTAINER_FIXES = {
    ('models', 'env'): 'set ollama_self_heal_interval and ollama_self_heal_pull_timeout to whole numbers of seconds',
    ('models', 'probes'): 'set ollama_self_heal_interval to a whole number of seconds',
}

ASPECT_FIXES = {
    'resources': RESOURCES_FIX,
    'env': 'use environment variable names (letters, digits and "_") with string values',
    'image': 'set the image repository and a pinned tag (see the role README)',
    'probes': 'set ollama_workload_startup_seconds to a whole number of seconds',
    'security': 'set ollama_workload_uid and ollama_workload_gid to whole numbers above 0 (10001 by default)',
    'mounts': 'set ollama_workload_data_path to an absolute path such as /var/lib/ollama',
}

# (kinds or None for any, field path pattern, variables, fix). The first row that matches names the variables; a
# row whose variables hold the '{container}' aspect looks the container up in CONTAINERS.
FIELDS = [
    (WORKLOADS, CONTAINER + r'resources', '{container}:resources', None),
    (WORKLOADS, CONTAINER + r'env', '{container}:env', None),
    (WORKLOADS, CONTAINER + r'image', '{container}:image', None),
    (WORKLOADS, CONTAINER + r'(?:startupProbe|readinessProbe|livenessProbe)', '{container}:probes', None),
    (WORKLOADS, CONTAINER + r'securityContext', '{container}:security', None),
    (WORKLOADS, CONTAINER + r'volumeMounts', '{container}:mounts', None),
    (WORKLOADS, POD + r'securityContext', ['ollama_workload_uid', 'ollama_workload_gid'], ASPECT_FIXES['security']),
    (WORKLOADS, POD + r'tolerations', ['ollama_tolerations'],
     'write tolerations as Kubernetes does, e.g. {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}'),
    (WORKLOADS, POD + r'nodeSelector', ['ollama_node_selector'],
     'map label keys to string values (quote "true"); ' + LABEL_FIX),
    (WORKLOADS, POD + r'affinity\.nodeAffinity', ['ollama_gpu_node_label', 'ollama_node_selector'],
     'set ollama_gpu_node_label to {key: <label key>, value: "<value>"}; ' + LABEL_FIX),
    (WORKLOADS, POD + r'(?:affinity|topologySpreadConstraints)', ['ollama_anti_affinity', 'ollama_zone_spread'],
     'set ollama_anti_affinity: hard or soft and ollama_zone_spread: auto, true or false'),
    (WORKLOADS, POD + r'runtimeClassName', ['ollama_runtime_class'],
     'set ollama_runtime_class to an existing RuntimeClass, "auto", or "" for none'),
    (WORKLOADS, r'^spec\.volumeClaimTemplates', ['ollama_storage_class', 'ollama_claim_size'],
     'set ollama_storage_class and ollama_claim_size back to the claims\' values (Kubernetes cannot change them)'),
    (('StatefulSet',), r'^spec$', ['ollama_storage_class', 'ollama_claim_size', 'ollama_storage_mode'],
     'set ollama_storage_class, ollama_claim_size and ollama_storage_mode back to what the StatefulSet was made '
     'with, or kubectl -n NAMESPACE delete statefulset NAME --cascade=orphan and run again (pods and claims stay)'),
    (WORKLOADS, r'^spec\.selector', ['ollama_name'],
     'the existing workload selects its pods by other labels and Kubernetes cannot change a selector: '
     'kubectl -n NAMESPACE delete KIND NAME --cascade=orphan and run again (the pods stay until replaced)'),
    (WORKLOADS, r'^spec\.replicas', ['ollama_replicas'], 'set ollama_replicas to a whole number of at least 1'),
    (WORKLOADS, r'^(?:metadata|spec\.template\.metadata)\.labels', ['ollama_name', 'ollama_image_tag'],
     'set ollama_name to a DNS-1123 label and ollama_image_tag to a release such as "0.11.4"'),
    (('NetworkPolicy',), r'^spec\.ingress\[\d+\]\.from\[\d+\]\.podSelector', ['ollama_workload_allowed_pods'],
     'write each entry as {labels: {app: open-webui}} or {namespace: apps, labels: {app: open-webui}}; ' + LABEL_FIX),
    (('NetworkPolicy',), r'^spec\.ingress\[\d+\]\.from\[\d+\]\.namespaceSelector',
     ['ollama_workload_allowed_pods', 'ollama_workload_allowed_namespaces',
      'ollama_workload_ingress_controller_namespace'],
     'name namespaces by their names (DNS-1123 labels such as open-webui); ' + LABEL_FIX),
    (('NetworkPolicy',), r'^spec\.ingress\[\d+\]\.from\[\d+\]\.ipBlock', ['ollama_workload_allowed_cidrs'],
     'write CIDRs like 10.0.0.0/16'),
    (('NetworkPolicy',), r'^spec\.egress\[\d+\]\.to\[\d+\]\.ipBlock',
     ['ollama_workload_egress_cidrs', 'ollama_workload_extra_egress'], 'write CIDRs like 10.0.0.0/16'),
    (('NetworkPolicy',), r'^spec\.egress', ['ollama_workload_extra_egress'],
     'write each rule as a NetworkPolicyEgressRule, e.g. {to: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{port: 443, '
     'protocol: TCP}]}; ' + LABEL_FIX),
    (('HTTPRoute',), r'^spec\.parentRefs', ['ollama_httproute_parent_refs'],
     'write each parent as {name: GATEWAY, namespace: NAMESPACE} (optionally sectionName: LISTENER), naming a '
     'Gateway of the cluster'),
    (('HTTPRoute',), r'^spec\.hostnames', ['ollama_httproute_hostnames'],
     'write host names in lower case, such as ollama.example.com or *.example.com'),
    (('HTTPRoute',), r'^spec\.rules', ['ollama_workload_ingress_paths'], 'write paths like /api/chat'),
    (('Ingress',), r'^spec\.(?:rules\[\d+\]\.host|tls\[\d+\]\.hosts)', ['ollama_ingress_host'],
     'set ollama_ingress_host to a lower-case DNS name such as ollama.example.com'),
    (('Ingress',), r'^spec\.rules\[\d+\]\.http\.paths', ['ollama_workload_ingress_paths'],
     'write paths like /api/chat'),
    (('Ingress',), r'^spec\.tls\[\d+\]\.secretName', ['ollama_ingress_tls_secret'],
     'set ollama_ingress_tls_secret to the name of a TLS Secret'),
    (('Ingress',), r'^spec\.ingressClassName', ['ollama_ingress_class_name'],
     'set ollama_ingress_class_name to an IngressClass of the cluster'),
    (('Ingress',), r'^metadata\.annotations', ['ollama_workload_ingress_annotations'],
     'write annotation keys as [prefix/]name with string values'),
    (('PodDisruptionBudget',), r'^spec\.minAvailable', ['ollama_pdb_min_available'],
     'set ollama_pdb_min_available to a whole number, a percentage such as "50%", or "" for replicas - 1'),
    (('ResourceQuota',), r'^spec', ['ollama_gpu_quota'], 'set ollama_gpu_quota to "", "auto" or a number'),
    (('Namespace',), r'^metadata\.labels', ['ollama_workload_pod_security_level', 'ollama_workload_pod_security_version'],
     'set ollama_workload_pod_security_level to restricted, baseline or privileged and '
     'ollama_workload_pod_security_version to latest or a Kubernetes minor version such as v1.34'),
    (('PersistentVolumeClaim',), r'^spec\.resources', ['ollama_claim_size'],
     'set ollama_claim_size to the claim\'s size or more (a claim cannot shrink), or "" to size it from the models'),
    (('PersistentVolumeClaim',), r'^spec', ['ollama_storage_class', 'ollama_claim_size', 'ollama_storage_mode'],
     'keep ollama_storage_class and ollama_storage_mode as they were when the claim was made, or delete the claim '
     'yourself (its models are lost)'),
    (('StorageClass',), r'', ['ollama_storage_classes'],
     'give each entry of ollama_storage_classes a DNS-subdomain name, a provisioner and parameters of that '
     'provisioner (see the storage_provisioner README)'),
    (None, r'^metadata\.name', ['ollama_name', 'ollama_namespace'],
     'set ollama_name and ollama_namespace to DNS-1123 labels such as "ollama"'),
]

# Objects of the local-path provisioner come from its own variables.
LOCAL_PATH_VARIABLES = ['storage_provisioner_local_path_image', 'storage_provisioner_local_path_helper_image',
                        'storage_provisioner_local_path_namespace', 'storage_provisioner_local_path_node_path']

_VALUE = re.compile(r'(?:Invalid|Unsupported|Duplicate|Forbidden) value: "((?:[^"\\]|\\.)*)"')


# Values that may hold credentials (a proxy URL in the environment) never travel as module arguments.
PRIVATE_SOURCES = ('ollama_workload_env', 'ollama_workload_env_defaults')


def source_variables():
    """The variables the table can name: their values tell which of several candidates caused a refusal."""
    names = set(LOCAL_PATH_VARIABLES)
    for _kinds, _pattern, variables, _fix in FIELDS:
        if isinstance(variables, list):
            names.update(variables)
    for aspects in CONTAINERS.values():
        for variables in aspects.values():
            names.update(variables)
    return sorted(names.difference(PRIVATE_SOURCES))


def normalize_field(field):
    """A field path as the validation and the apply patch name it: ``.spec.x[name="a"]`` -> ``spec.x[a]``."""
    field = (field or '').lstrip('.')
    return re.sub(r'\[name="([^"]*)"\]', r'[\1]', field)


def _container_name(obj, reference, in_list='containers'):
    """The container a field path names, by name or by its index in its own list (containers or initContainers)."""
    if reference.isdigit():
        spec = ((obj.get('spec') or {}).get('template') or {}).get('spec') or {}
        containers = spec.get(in_list or 'containers') or []
        index = int(reference)
        return containers[index].get('name') if index < len(containers) else None
    return reference


def _mentions(value, text):
    if isinstance(value, dict):
        return any(_mentions(k, text) or _mentions(v, text) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_mentions(v, text) for v in value)
    return value is not None and str(value) == text


def culprits(obj, field, message, sources=None):
    """``(variables, fix)`` for a refused field of obj, or ``([], None)`` when the table does not know it."""
    kind = obj.get('kind')
    namespace = (obj.get('metadata') or {}).get('namespace')
    local_path = (sources or {}).get('storage_provisioner_local_path_namespace') or 'local-path-storage'
    if namespace and namespace == local_path:
        return list(LOCAL_PATH_VARIABLES), 'set the storage_provisioner_local_path_* variables as the README shows'
    variables, fix = [], None
    for kinds, pattern, names, row_fix in FIELDS:
        if kinds and kind not in kinds:
            continue
        match = re.search(pattern, field)
        if not match:
            continue
        if isinstance(names, str):
            container, aspect = names.split(':')
            container = _container_name(obj, match.group('container'), match.group('list'))
            variables = list((CONTAINERS.get(container) or {}).get(aspect) or [])
            fix = CONTAINER_FIXES.get((container, aspect)) or ASPECT_FIXES[aspect]
            if not variables:
                variables = ['the %s container\'s settings' % container]
        else:
            variables, fix = list(names), row_fix
        break
    if len(variables) > 1 and sources:
        value = _VALUE.search(message or '')
        if value:
            named = [v for v in variables if v in sources and _mentions(sources[v], value.group(1))]
            if named:
                variables = named
    return variables, fix


def _status(data):
    try:
        answer = json.loads(data.decode('utf-8', 'replace') if isinstance(data, bytes) else data or '{}')
    except ValueError:
        answer = {'message': (data or b'').decode('utf-8', 'replace') if isinstance(data, bytes) else str(data)}
    return answer if isinstance(answer, dict) else {'message': str(answer)}


def explain(obj, answer, sources=None):
    """One problem per cause of a refusal: ``{variable, object, field, message, fix}``."""
    details = answer.get('details') or {}
    causes = details.get('causes') or []
    message = answer.get('message') or ''
    if not causes:
        # A server-side apply that does not fit the schema: "... failed to create typed patch object (...): .f: why"
        match = re.search(r'\): (\.[^:]+): (.*)$', message)
        if match:
            causes = [{'field': match.group(1), 'message': match.group(2)}]
        else:
            causes = [{'field': '', 'message': message}]
    problems = []
    for cause in causes:
        field = normalize_field(cause.get('field'))
        text = cause.get('message') or message
        variables, fix = culprits(obj, field, text, sources)
        problems.append({
            'variable': ', '.join(variables) if variables else 'the role\'s settings',
            'object': label(obj),
            'field': field,
            'message': text,
            'fix': fix or 'see the API server\'s message; the role README lists what renders this object',
        })
    return problems


def describe(problems):
    return '\n'.join('- %s: %s%s: %s Fix: %s' % (
        p['variable'], p['object'], ' ' + p['field'] if p['field'] else '', p['message'].rstrip('.') + '.', p['fix'])
        for p in problems)


class DryRun(object):
    """Dry runs over one API client; namespaces found missing are remembered for the objects after."""

    def __init__(self, api, field_manager, fallback_namespace='default', resources=None):
        self.api = api
        self.field_manager = field_manager
        self.fallback_namespace = fallback_namespace
        self.resources = resources or Resources(api)
        self.missing_namespaces = set()

    def _send(self, method, path, body, query, content_type='application/json'):
        headers = {'Accept': 'application/json', 'Content-Type': content_type}
        # A refusal is the answer looked for here; only no answer at all is a ClusterError.
        answer = self.api.send(method, path, body=body, query=query, headers=headers, timeout=self.api.timeout)
        return answer.status, _status(answer.data)

    def _create_elsewhere(self, obj, path):
        """A dry-run create into the fallback namespace: validation runs before the name is looked up, so an
        object of that name there (409) still means this one is valid."""
        moved = copy.deepcopy(obj)
        moved['metadata']['namespace'] = self.fallback_namespace
        collection = self.resources.path(moved).rsplit('/', 1)[0]
        status, answer = self._send('POST', collection, moved, {'dryRun': 'All', 'fieldManager': self.field_manager})
        return status, answer

    def check(self, obj, sources=None):
        """``(problems, note)``: the refusals of obj, and a note when it could not be checked."""
        try:
            path = self.resources.path(obj)
        except ClusterError as exc:
            return [{'variable': 'the role\'s settings', 'object': label(obj) if obj.get('kind') else str(obj)[:80],
                     'field': '', 'message': exc.message, 'fix': exc.fix}], None
        namespace = (obj.get('metadata') or {}).get('namespace')
        checked_in = namespace
        if namespace and namespace in self.missing_namespaces:
            status, answer = self._create_elsewhere(obj, path)
            checked_in = self.fallback_namespace
        else:
            query = {'fieldManager': self.field_manager, 'force': 'false', 'dryRun': 'All'}
            status, answer = self._send('PATCH', path, obj, query, APPLY_CONTENT_TYPE)
            details = answer.get('details') or {}
            if status == 404 and namespace and details.get('kind') == 'namespaces' and \
                    details.get('name') == namespace:
                self.missing_namespaces.add(namespace)
                status, answer = self._create_elsewhere(obj, path)
                checked_in = self.fallback_namespace
        if status < 400 or (status == 409 and checked_in != namespace and answer.get('reason') == 'AlreadyExists'):
            return [], None
        if status == 403 and checked_in != namespace:
            return [], ('%s was not checked: the namespace %s does not exist yet and this user may not create it '
                        'in %s (k8s_dry_run fallback_namespace); the API server checks it when it is written'
                        % (label(obj), namespace, self.fallback_namespace))
        if status == 404 and checked_in != namespace:
            return [], ('%s was not checked: neither its namespace %s nor %s exists'
                        % (label(obj), namespace, self.fallback_namespace))
        if status == 409:
            return [{'variable': 'the field manager %s' % self.field_manager, 'object': label(obj), 'field': '',
                     'message': 'another field manager owns fields this apply sets (%s)' % answer.get('message'),
                     'fix': 'let llmops-ollama own them (k8s_apply force_conflicts: true), or stop the other tool '
                            'from managing them'}], None
        if status in (401, 403):
            return [{'variable': 'the cluster credentials', 'object': label(obj), 'field': '',
                     'message': answer.get('message') or 'refused (%d)' % status,
                     'fix': 'grant this user the permissions listed in docs/rbac.md, or choose another '
                            'ollama_context'}], None
        return explain(obj, answer, sources), None


def dry_run_objects(api, objects, field_manager, fallback_namespace='default', sources=None):
    """Every object through a server-side dry run. Returns ``(problems, notes, checked)``; checked lists, per
    object, the namespace it was checked in."""
    runner = DryRun(api, field_manager, fallback_namespace)
    problems, notes, checked = [], [], []
    for obj in objects:
        found, note = runner.check(obj, sources)
        problems.extend(found)
        if note:
            notes.append(note)
        meta = obj.get('metadata') or {}
        namespace = meta.get('namespace')
        checked.append({'kind': obj.get('kind'), 'name': meta.get('name'), 'namespace': namespace,
                        'checked_in': fallback_namespace if namespace in runner.missing_namespaces else namespace,
                        'refused': bool(found)})
    return problems, notes, checked
