# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Exposure decisions of the plan: the Ingress, the HTTPRoute and the NetworkPolicies.

Pure functions of the cluster facts (``cluster_facts.build_facts``) and the user's settings, called by
:func:`ansible_collections.llmops.ollama.plugins.module_utils.plan.compute_plan`. Each error names the variable,
what is wrong and the fix (``report.error(key, message, fix)``, keys as the plan's config keys).

Every client path reaches Ollama through the gate in its pod; these objects only decide who may reach the gate
and where Ollama may connect to:

- the Ingress and the HTTPRoute route the client paths (the inference routes) and never the admin ones unless
  the user opened them; they carry no controller-specific authentication, the gate authenticates;
- the ingress policy admits the gate port from the namespaces and pods the user lists, from where the ingress
  controller or Gateway runs, and from where the API server's pod proxy comes from (the collection's own pulls
  and verification), plus the user's CIDRs;
- the egress policy lets Ollama reach DNS and the model registries' ports only, plus what the user adds.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import ipaddress
import re

from ansible_collections.llmops.ollama.plugins.module_utils import gate
from ansible_collections.llmops.ollama.plugins.module_utils.cluster_facts import CONTROLLER_PODS, GATEWAY_GROUP

# The inference routes a client may use: the gate's own list, so the controller routes what the gate allows.
CLIENT_PATHS = tuple('/api/' + name for name in gate.CLIENT_ENDPOINTS) + ('/v1',)
# Endpoints that change the model store; never routed unless the user opens them.
ADMIN_PATHS = tuple('/api/' + name for name in gate.ADMIN_ENDPOINTS)
# The named container port every client path and the collection's own calls reach (the gate's).
GATE_PORT = 'http'
DNS_NAMESPACE = 'kube-system'
METADATA_NAME = 'kubernetes.io/metadata.name'
# Where the distribution runs the ingress controller when its pods are not seen (k3s: Traefik in kube-system).
DISTRIBUTION_CONTROLLER_NAMESPACES = {
    ('k3s', 'traefik.io/ingress-controller'): 'kube-system',
    ('k3s', 'traefik.io/gateway-controller'): 'kube-system',
}
# Load balancers that reach pods straight from the VPC (target type ip): no controller pod sends the traffic.
VPC_CONTROLLERS = ('ingress.k8s.aws/alb', 'gateway.k8s.aws/alb')
OLLAMA_REGISTRY = 'registry.ollama.ai'

_DNS_LABEL = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')
_DNS_SUBDOMAIN = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')
_LABEL_NAME = re.compile(r'^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$')
_SECTION_NAME = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')
PEER_KEYS = frozenset(['ipBlock', 'namespaceSelector', 'podSelector'])
PORT_KEYS = frozenset(['port', 'protocol', 'endPort'])
PROTOCOLS = ('TCP', 'UDP', 'SCTP')


def variable(key):
    """The user-facing variable of a config key (``workload_allowed_cidrs`` -> ``ollama_workload_allowed_cidrs``)."""
    return 'ollama_' + key.replace('.', '_')


def _is_list(value):
    return isinstance(value, (list, tuple))


# ---------------------------------------------------------------- names, labels, addresses

def is_dns_label(value):
    return isinstance(value, str) and len(value) <= 63 and bool(_DNS_LABEL.match(value))


def is_dns_subdomain(value):
    return isinstance(value, str) and len(value) <= 253 and bool(_DNS_SUBDOMAIN.match(value))


def is_host_name(value):
    """A DNS name, with one leading ``*.`` wildcard label allowed (Ingress and HTTPRoute hosts)."""
    if not isinstance(value, str):
        return False
    return is_dns_subdomain(value[2:] if value.startswith('*.') else value)


def label_key_problem(key):
    """Why ``key`` is not a label key (``[prefix/]name``, Kubernetes' qualified name), or None."""
    if not isinstance(key, str) or not key:
        return 'the key %r is empty or not a string' % (key,)
    prefix, name = key.rpartition('/')[0::2]
    if '/' in key and not is_dns_subdomain(prefix):
        return 'the prefix %r of key %r is not a DNS subdomain' % (prefix, key)
    if len(name) > 63 or not _LABEL_NAME.match(name):
        return ('the name %r of key %r is not 1-63 letters, digits, "-", "_" or ".", starting and ending with a '
                'letter or digit' % (name, key))
    return None


def label_value_problem(value):
    """Why ``value`` is not a label value (empty, or 1-63 characters as a label name), or None."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return 'the value %r is not a string (quote values such as "true")' % (value,)
    text = str(value)
    if text and (len(text) > 63 or not _LABEL_NAME.match(text)):
        return ('the value %r is not at most 63 letters, digits, "-", "_" or ".", starting and ending with a letter '
                'or digit' % text)
    return None


def labels_problem(labels):
    """Why ``labels`` is not a non-empty ``matchLabels`` mapping, or None."""
    if not isinstance(labels, dict) or not labels:
        return 'labels must be a non-empty mapping of label keys to values'
    for key, value in labels.items():
        problem = label_key_problem(key) or label_value_problem(value)
        if problem:
            return problem
    return None


def parse_cidr(text):
    """An ``ipaddress`` network for a CIDR (host bits allowed, as Kubernetes allows them), or None."""
    if not isinstance(text, str) or '/' not in text:
        return None
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def host_cidr(address):
    """``10.0.0.1`` -> ``10.0.0.1/32``; ``fd00::1`` -> ``fd00::1/128``; None when not an address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return '%s/%d' % (ip, ip.max_prefixlen)


def node_pod_network_addresses(pod_cidr):
    """The addresses a node itself uses on its pod network: the first two of its pod CIDR (flannel's VXLAN
    interface takes the network address, the cni0 bridge the next one), as /32 (or /128) CIDRs."""
    network = parse_cidr(pod_cidr)
    if network is None or network.num_addresses < 4:
        return []
    return ['%s/%d' % (network.network_address + i, network.max_prefixlen) for i in (0, 1)]


def selector_matches(selector, labels):
    """A LabelSelector (matchLabels, matchExpressions) against a set of labels."""
    selector = selector or {}
    for key, value in (selector.get('matchLabels') or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get('matchExpressions') or []:
        key, operator, values = expr.get('key'), expr.get('operator'), expr.get('values') or []
        if operator == 'In' and labels.get(key) not in values:
            return False
        if operator == 'NotIn' and key in labels and labels[key] in values:
            return False
        if operator == 'Exists' and key not in labels:
            return False
        if operator == 'DoesNotExist' and key in labels:
            return False
    return True


# ---------------------------------------------------------------- routes

def check_paths(paths, open_admin_paths, report):
    """The client paths the Ingress and the HTTPRoute route, plus the admin paths the user opened
    (``open_admin_paths``, a subset of :data:`ADMIN_PATHS`). A path that would route an admin endpoint that stays
    closed is refused."""
    key = 'workload_ingress_paths'
    opened = [a for a in ADMIN_PATHS if a in (open_admin_paths or [])]
    if not _is_list(paths) or not paths:
        report.error(key, '%s must be a non-empty list of paths, got %r' % (variable(key), paths),
                     'set %s to a list such as %s, or leave it out' % (variable(key), list(CLIENT_PATHS)))
        paths = list(CLIENT_PATHS)
    result = []
    for path in paths:
        if not isinstance(path, str) or not path.startswith('/') or re.search(r'\s', path):
            report.error(key, '%s entry %r is not a path' % (variable(key), path),
                         'write paths like /api/chat or /v1')
            continue
        trimmed = path.rstrip('/') or '/'
        routed = [a for a in ADMIN_PATHS if a not in opened and (
            trimmed == '/' or a == trimmed or a.startswith(trimmed + '/') or trimmed.startswith(a + '/'))]
        if routed:
            report.error(key, '%s entry %s routes the model-admin endpoint %s, which stays closed'
                         % (variable(key), path, ', '.join(routed)),
                         'remove %s from %s, or set %s: true to route the admin endpoints on purpose'
                         % (path, variable(key), variable('ingress.open_admin_endpoints')))
            continue
        if trimmed not in result:
            result.append(trimmed)
    result.extend(a for a in opened if a not in result)
    return result


def _controller_namespaces(facts, controllers):
    """Namespaces where the pods of these controllers run, from the facts; else where the distribution puts them."""
    found = set()
    for pod in facts.get('controller_pods') or []:
        if any(c in CONTROLLER_PODS.get(pod.get('name'), ()) for c in controllers):
            found.add(pod.get('namespace'))
    if not found:
        for controller in controllers:
            known = DISTRIBUTION_CONTROLLER_NAMESPACES.get((facts.get('distribution'), controller))
            if known:
                found.add(known)
    return sorted(n for n in found if n)


def decide_ingress(facts, ingress, paths, report):
    """The Ingress as the template renders it (``enabled``, ``host``, ``class_name``, ``tls_secret``, ``paths``,
    ``controller``, ``controller_namespaces``). The class defaults to the cluster's default IngressClass and must
    exist."""
    result = dict(ingress, paths=paths, controller=None, controller_namespaces=[], class_source=None)
    if not ingress['enabled']:
        return result
    host = ingress.get('host')
    if not host:
        report.error('ingress.host', '%s is empty but the Ingress is enabled' % variable('ingress.host'),
                     'set %s to the public host name, e.g. ollama.example.com' % variable('ingress.host'))
    elif not is_host_name(host):
        report.error('ingress.host', '%s %r is not a DNS name' % (variable('ingress.host'), host),
                     'set %s to a lower-case DNS name such as ollama.example.com' % variable('ingress.host'))
    tls = ingress.get('tls_secret') or ''
    if tls and not is_dns_subdomain(tls):
        report.error('ingress.tls_secret', '%s %r is not a Secret name' % (variable('ingress.tls_secret'), tls),
                     'set %s to the name of a kubernetes.io/tls Secret in the namespace, or ""'
                     % variable('ingress.tls_secret'))
    classes = facts.get('ingress_classes')
    name = ingress.get('class_name') or ''
    key = 'ingress.class_name'
    if not isinstance(name, str):
        report.error(key, '%s must be an IngressClass name, got %r' % (variable(key), name),
                     'set %s to an IngressClass name, or "" for the cluster default' % variable(key))
        return result
    if classes is None:
        if name:
            report.warn('the IngressClasses could not be read (RBAC), so %s %s is not checked; see docs/rbac.md'
                        % (variable(key), name))
            result.update(class_name=name, class_source='named')
        else:
            report.error(key, 'the IngressClasses could not be read (no list permission), so the cluster\'s default '
                         'class is unknown', 'name the class in %s, or grant list on ingressclasses (docs/rbac.md)'
                         % variable(key))
        return result
    by_name = dict((c['name'], c) for c in classes)
    existing = ', '.join(sorted(by_name)) or 'none'
    if not by_name:
        report.error(key, 'the cluster has no IngressClass, so no ingress controller would serve the Ingress',
                     'install an ingress controller (k3s ships Traefik, class traefik; on EKS the AWS Load Balancer '
                     'Controller, class alb), or set %s: false (docs/exposure.md)' % variable('ingress.enabled'))
        return result
    if name and name not in by_name:
        report.error(key, 'IngressClass %r does not exist (existing: %s)' % (name, existing),
                     'set %s to one of: %s, or "" for the cluster default' % (variable(key), existing))
        return result
    if not name:
        name = facts.get('default_ingress_class')
        if not name:
            report.error(key, '%s is empty and the cluster has no (single) default IngressClass (existing: %s)'
                         % (variable(key), existing),
                         'set %s to one of: %s' % (variable(key), existing))
            return result
        result['class_source'] = 'default'
    else:
        result['class_source'] = 'named'
    controller = by_name[name]['controller']
    result.update(class_name=name, controller=controller,
                  controller_namespaces=_controller_namespaces(facts, [controller]))
    return result


def _gateway_admits(gateway, listener, namespace, namespace_labels):
    allowed = listener.get('from') or 'Same'
    if allowed == 'All':
        return True
    if allowed == 'Same':
        return gateway.get('namespace') == namespace
    if allowed == 'Selector':
        return selector_matches(listener.get('selector'), namespace_labels)
    return False


def check_parent_refs(refs, namespace, report):
    """Normalised parent refs (``group``, ``kind``, ``name``, ``namespace``, ``sectionName``), or [] after errors."""
    key = 'httproute_parent_refs'
    example = '[{name: traefik-gateway, namespace: kube-system}]'
    if not _is_list(refs):
        report.error(key, '%s must be a list of Gateway references, got %r' % (variable(key), refs),
                     'set %s to e.g. %s' % (variable(key), example))
        return []
    result = []
    for index, ref in enumerate(refs):
        problem = None
        if not isinstance(ref, dict):
            problem = 'is not a mapping'
        else:
            unknown = sorted(set(ref) - set(['name', 'namespace', 'sectionName', 'port']))
            if unknown:
                problem = 'has unknown keys %s (name, namespace, sectionName, port are known)' % ', '.join(unknown)
            elif not is_dns_subdomain(ref.get('name')):
                problem = 'has no valid name (the Gateway\'s name)'
            elif ref.get('namespace') not in (None, '') and not is_dns_label(ref.get('namespace')):
                problem = 'namespace %r is not a namespace name' % (ref.get('namespace'),)
            elif ref.get('sectionName') not in (None, '') and not (
                    isinstance(ref.get('sectionName'), str) and len(ref['sectionName']) <= 253
                    and _SECTION_NAME.match(ref['sectionName'])):
                problem = 'sectionName %r is not a listener name' % (ref.get('sectionName'),)
            elif ref.get('port') not in (None, '') and not (
                    isinstance(ref.get('port'), int) and not isinstance(ref.get('port'), bool)
                    and 1 <= ref['port'] <= 65535):
                problem = 'port %r is not a port number' % (ref.get('port'),)
        if problem:
            report.error(key, '%s entry %d %s: %r' % (variable(key), index, problem, ref),
                         'write each entry as {name: GATEWAY, namespace: ITS_NAMESPACE, sectionName: LISTENER}, e.g. %s'
                         % example)
            continue
        entry = {'group': GATEWAY_GROUP, 'kind': 'Gateway', 'name': ref['name'],
                 'namespace': ref.get('namespace') or namespace}
        if ref.get('sectionName'):
            entry['sectionName'] = ref['sectionName']
        if ref.get('port'):
            entry['port'] = ref['port']
        result.append(entry)
    return result


def decide_httproute(facts, settings, namespace, namespace_labels, paths, report):
    """The HTTPRoute as the template renders it (``enabled``, ``parent_refs``, ``hostnames``, ``paths`` and their
    PathPrefix ``matches``, ``gateway_namespaces``, ``controller_namespaces``), after checking the Gateway API is served and every parent
    Gateway exists and admits routes from the namespace."""
    enabled = settings['enabled']
    result = {'enabled': enabled, 'parent_refs': [], 'hostnames': [], 'paths': paths, 'gateway_namespaces': [],
              'controller_namespaces': [], 'served': bool((facts.get('gateway_api') or {}).get('installed')),
              'matches': [{'path': {'type': 'PathPrefix', 'value': path}} for path in paths]}
    hostnames = settings['hostnames']
    if hostnames in (None, ''):
        hostnames = []
    if not _is_list(hostnames) or not all(is_host_name(h) for h in hostnames):
        report.error('httproute_hostnames', '%s must be a list of DNS names (a leading *. allowed), got %r'
                     % (variable('httproute_hostnames'), hostnames),
                     'set %s to e.g. [ollama.example.com], or [] for every host the Gateway serves'
                     % variable('httproute_hostnames'))
        hostnames = []
    if not enabled:
        return result
    api = facts.get('gateway_api') or {}
    refs = check_parent_refs(settings['parent_refs'], namespace, report)
    result['hostnames'] = list(hostnames)
    if not api.get('installed'):
        report.error('httproute_enabled', 'the cluster does not serve the Gateway API (no %s/v1 HTTPRoute and '
                     'Gateway: its CRDs are not installed)' % GATEWAY_GROUP,
                     'install the Gateway API CRDs (standard channel) and a controller that serves them (on k3s: '
                     'Traefik with its Gateway provider, docs/exposure.md), or set %s: false and use the Ingress'
                     % variable('httproute_enabled'))
        return result
    if not settings['parent_refs'] and _is_list(settings['parent_refs']):
        known = ', '.join('%s/%s' % (g['namespace'], g['name']) for g in facts.get('gateways') or []) or 'none'
        report.error('httproute_parent_refs', '%s is empty: an HTTPRoute attaches to no Gateway without it'
                     % variable('httproute_parent_refs'),
                     'set %s to the Gateway that serves it, e.g. [{name: traefik-gateway, namespace: kube-system}] '
                     'on k3s (Gateways here: %s)' % (variable('httproute_parent_refs'), known))
        return result
    gateways = facts.get('gateways')
    if gateways is None:
        report.error('httproute_parent_refs', 'the Gateways could not be read (no list permission), so the parent '
                     'Gateways cannot be checked', 'grant list on gateways and gatewayclasses (docs/rbac.md)')
        return result
    by_key = dict(((g['namespace'], g['name']), g) for g in gateways)
    classes = dict((c['name'], c['controller']) for c in facts.get('gateway_classes') or [])
    known = ', '.join(sorted('%s/%s' % k for k in by_key)) or 'none'
    controllers = set()
    for ref in refs:
        gateway = by_key.get((ref['namespace'], ref['name']))
        if gateway is None:
            report.error('httproute_parent_refs', 'Gateway %s/%s does not exist (Gateways: %s)'
                         % (ref['namespace'], ref['name'], known),
                         'name an existing Gateway in %s (with its namespace), or create it first'
                         % variable('httproute_parent_refs'))
            continue
        listeners = gateway.get('listeners') or []
        if ref.get('sectionName'):
            listeners = [item for item in listeners if item.get('name') == ref['sectionName']]
            if not listeners:
                report.error('httproute_parent_refs', 'Gateway %s/%s has no listener %s (listeners: %s)'
                             % (ref['namespace'], ref['name'], ref['sectionName'],
                                ', '.join(item.get('name') or '?' for item in gateway.get('listeners') or [])
                                or 'none'),
                             'set sectionName to one of its listeners, or leave it out')
                continue
        if not any(_gateway_admits(gateway, item, namespace, namespace_labels) for item in listeners):
            froms = ', '.join(sorted(set('%s: %s' % (item.get('name'), item.get('from')) for item in listeners)))
            report.error('httproute_parent_refs', 'Gateway %s/%s admits no route from namespace %s (listeners '
                         'allowedRoutes.namespaces.from: %s), so the HTTPRoute would never attach'
                         % (ref['namespace'], ref['name'], namespace, froms or 'none'),
                         'let a listener admit routes from %s (allowedRoutes.namespaces.from: All, or a Selector '
                         'matching it; with k3s\'s Traefik chart: gateway.listeners.web.namespacePolicy: All in a '
                         'HelmChartConfig, docs/exposure.md), or name another Gateway' % namespace)
            continue
        result['parent_refs'].append(ref)
        if ref['namespace'] not in result['gateway_namespaces']:
            result['gateway_namespaces'].append(ref['namespace'])
        if classes.get(gateway.get('class')):
            controllers.add(classes[gateway['class']])
    result['controller_namespaces'] = _controller_namespaces(facts, sorted(controllers))
    return result


# ---------------------------------------------------------------- network policies

def _check_namespaces(value, report):
    key = 'workload_allowed_namespaces'
    if not _is_list(value):
        report.error(key, '%s must be a list of namespace names, got %r' % (variable(key), value),
                     'set %s to e.g. [open-webui]' % variable(key))
        return []
    result = []
    for entry in value:
        if not is_dns_label(entry):
            report.error(key, '%s entry %r is not a namespace name (a DNS-1123 label)' % (variable(key), entry),
                         'list namespace names such as open-webui')
        elif entry not in result:
            result.append(entry)
    return sorted(result)


def _check_pods(value, report):
    key = 'workload_allowed_pods'
    fix = 'write each entry as {labels: {app: open-webui}} (pods of the Ollama namespace) or {namespace: apps, ' \
          'labels: {app: open-webui}}, with valid label keys and values'
    if not _is_list(value):
        report.error(key, '%s must be a list, got %r' % (variable(key), value), fix)
        return []
    result = []
    for entry in value:
        problem = None
        if not isinstance(entry, dict):
            problem = 'is not a mapping'
        elif set(entry) - set(['labels', 'namespace']):
            problem = 'has unknown keys %s' % ', '.join(sorted(set(entry) - set(['labels', 'namespace'])))
        elif entry.get('namespace') not in (None, '') and not is_dns_label(entry.get('namespace')):
            problem = 'namespace %r is not a namespace name' % (entry.get('namespace'),)
        else:
            problem = labels_problem(entry.get('labels'))
        if problem:
            report.error(key, '%s entry %r: %s' % (variable(key), entry, problem), fix)
            continue
        result.append({'namespace': entry.get('namespace') or None,
                       'labels': dict((k, str(v)) for k, v in entry['labels'].items())})
    return result


def _check_cidrs(key, value, report):
    if not _is_list(value):
        report.error(key, '%s must be a list of CIDRs, got %r' % (variable(key), value),
                     'set %s to e.g. [10.0.0.0/16]' % variable(key))
        return []
    result = []
    for entry in value:
        if parse_cidr(entry) is None:
            report.error(key, '%s entry %r is not a CIDR' % (variable(key), entry),
                         'write it like 10.0.0.0/16 or 192.168.1.10/32')
        elif entry.strip() not in result:
            result.append(entry.strip())
    return result


def _peer_problem(peer):
    if not isinstance(peer, dict) or not peer or set(peer) - PEER_KEYS:
        return 'each "to" entry is a mapping of ipBlock, namespaceSelector and/or podSelector'
    if 'ipBlock' in peer:
        block = peer['ipBlock']
        if not isinstance(block, dict) or parse_cidr(block.get('cidr')) is None:
            return 'ipBlock needs a cidr such as 10.0.0.0/8'
        if not all(parse_cidr(e) is not None for e in block.get('except') or []):
            return 'ipBlock.except holds something that is not a CIDR'
        if len(peer) > 1:
            return 'an ipBlock peer takes no selectors'
    for name in ('namespaceSelector', 'podSelector'):
        if name in peer:
            selector = peer[name]
            if not isinstance(selector, dict) or set(selector) - set(['matchLabels', 'matchExpressions']):
                return '%s must be a LabelSelector (matchLabels, matchExpressions)' % name
            if selector.get('matchLabels'):
                problem = labels_problem(selector['matchLabels'])
                if problem:
                    return '%s: %s' % (name, problem)
    return None


def _check_extra_egress(value, report):
    key = 'workload_extra_egress'
    fix = 'write NetworkPolicyEgressRules, e.g. [{to: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{port: 5432, ' \
          'protocol: TCP}]}]'
    if not _is_list(value):
        report.error(key, '%s must be a list of NetworkPolicy egress rules, got %r' % (variable(key), value), fix)
        return []
    result = []
    for index, rule in enumerate(value):
        problem = None
        if not isinstance(rule, dict) or not rule or set(rule) - set(['to', 'ports']):
            problem = 'is not a mapping of "to" and "ports"'
        elif 'to' in rule and not (_is_list(rule['to']) and rule['to']):
            problem = '"to" must be a non-empty list (leave it out for every destination)'
        elif 'ports' in rule and not (_is_list(rule['ports']) and rule['ports']):
            problem = '"ports" must be a non-empty list (leave it out for every port)'
        else:
            for peer in rule.get('to') or []:
                problem = problem or _peer_problem(peer)
            for port in rule.get('ports') or []:
                if not isinstance(port, dict) or set(port) - PORT_KEYS or (
                        port.get('protocol') not in (None,) + PROTOCOLS) or not (
                        isinstance(port.get('port'), (int, str)) and not isinstance(port.get('port'), bool)):
                    problem = problem or 'port %r is not {port, protocol (TCP, UDP or SCTP), endPort}' % (port,)
        if problem:
            report.error(key, '%s entry %d %s: %r' % (variable(key), index, problem, rule), fix)
            continue
        result.append(copy.deepcopy(rule))
    return result


def registry_ports(models, insecure_registries):
    """``[(host, port)]`` Ollama connects to for the declared models: 443 for https (registry.ollama.ai), 80 for a
    registry in ``insecure_registries`` without a port, the port a host names otherwise."""
    insecure = set(str(r).strip().lower() for r in insecure_registries or [])
    found = []
    for model in models or []:
        host = (model.get('full') or '').split('/', 1)[0] or OLLAMA_REGISTRY
        name, port = host.rpartition(':')[0::2] if ':' in host and not host.endswith(']') else (host, '')
        if port.isdigit():
            entry = (name, int(port))
        else:
            entry = (host, 80 if host.lower() in insecure else 443)
        if entry not in found:
            found.append(entry)
    return found


def decide_api_server_sources(facts, allowed_cidrs, report):
    """``(cidrs, source)``: where the API server's pod proxy reaches the pods from. On k3s and kubeadm the
    control-plane nodes' InternalIPs and their own pod-network addresses; where the facts show no control plane
    (EKS, managed clusters), none: the user lists the CIDR (for EKS, the VPC's) in ollama_workload_allowed_cidrs."""
    cidrs = []
    for node in facts.get('control_plane') or []:
        for address in node.get('internal_ips') or []:
            cidr = host_cidr(address)
            if cidr and cidr not in cidrs:
                cidrs.append(cidr)
        for pod_cidr in node.get('pod_cidrs') or []:
            for cidr in node_pod_network_addresses(pod_cidr):
                if cidr not in cidrs:
                    cidrs.append(cidr)
    if cidrs:
        return cidrs, 'control-plane nodes'
    if facts.get('distribution') == 'eks':
        if not allowed_cidrs:
            report.warn('EKS runs the API server outside the cluster\'s nodes: under an enforcing network policy '
                        'engine the collection\'s own pulls and verification (through the API server\'s pod proxy) '
                        'need the VPC CIDR in %s (docs/security.md)' % variable('workload_allowed_cidrs'))
        return [], 'eks'
    if not allowed_cidrs:
        report.warn('no control-plane node is visible, so the policy cannot admit the API server\'s pod proxy; '
                    'list its source addresses in %s if the network plugin enforces NetworkPolicy'
                    % variable('workload_allowed_cidrs'))
    return [], 'unknown'


def _namespace_peer(name):
    return {'namespaceSelector': {'matchLabels': {METADATA_NAME: name}}}


def check_cache_reach(cache, egress_cidrs, report):
    """A registry named by its address outside ollama_workload_egress_cidrs: the cache's egress policy would shut it
    out, which the plan can tell before any write (a registry named by host name is only found out at pull time)."""
    if not egress_cidrs:
        return
    networks = [parse_cidr(c) for c in egress_cidrs]
    for upstream in cache.get('upstreams') or []:
        host = upstream['host']
        address = host[1:].split(']', 1)[0] if host.startswith('[') else host.rsplit(':', 1)[0]
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            continue
        if not any(n is not None and ip.version == n.version and ip in n for n in networks):
            report.error('workload_egress_cidrs', 'the model cache could not reach registry %s: its address is in '
                         'none of %s (%s), which the cache\'s egress policy allows'
                         % (host, variable('workload_egress_cidrs'), ', '.join(egress_cidrs)),
                         'add %s/%d (or its network) to %s, or clear it' % (
                             ip, 32 if ip.version == 4 else 128, variable('workload_egress_cidrs')))


def decide_network_policies(facts, settings, namespace, pod_selector, ingress, httproute, models, report):
    """The two NetworkPolicies (``ingress_spec``, ``egress_spec``), each selecting only the collection's pods."""
    enabled = settings['network_policy']
    egress_enabled = settings['egress_policy']
    namespaces = _check_namespaces(settings['allowed_namespaces'], report)
    pods = _check_pods(settings['allowed_pods'], report)
    allowed_cidrs = _check_cidrs('workload_allowed_cidrs', settings['allowed_cidrs'], report)
    egress_cidrs = _check_cidrs('workload_egress_cidrs', settings['egress_cidrs'], report)
    extra_egress = _check_extra_egress(settings['extra_egress'], report)
    controller_ns = settings['controller_namespace'] or ''
    if controller_ns and not is_dns_label(controller_ns):
        report.error('workload_ingress_controller_namespace', '%s %r is not a namespace name'
                     % (variable('workload_ingress_controller_namespace'), controller_ns),
                     'set %s to the namespace the ingress controller runs in, e.g. kube-system'
                     % variable('workload_ingress_controller_namespace'))
        controller_ns = ''
    result = {'enabled': enabled, 'egress_enabled': enabled and egress_enabled, 'pod_selector': dict(pod_selector),
              'port': GATE_PORT, 'api_server_cidrs': [], 'api_server_source': None, 'controller_namespaces': [],
              'registry_ports': [], 'ingress_spec': None, 'egress_spec': None, 'cache_ingress_spec': None,
              'cache_egress_spec': None}
    if not enabled:
        return result

    exposed = ingress.get('enabled') or httproute.get('enabled')
    controller_namespaces = []
    if controller_ns:
        controller_namespaces.append(controller_ns)
    elif exposed:
        controller_namespaces.extend(ingress.get('controller_namespaces') or [])
        controller_namespaces.extend(httproute.get('controller_namespaces') or [])
    if httproute.get('enabled'):
        controller_namespaces.extend(httproute.get('gateway_namespaces') or [])
    controller_namespaces = sorted(set(controller_namespaces))
    if exposed and not controller_namespaces:
        vpc = ingress.get('enabled') and ingress.get('controller') in VPC_CONTROLLERS
        if vpc and not allowed_cidrs:
            report.error('workload_allowed_cidrs', 'IngressClass %s (%s) sends its traffic from the load balancer in '
                         'the VPC, not from a pod, and %s is empty, so the policy would shut the Ingress out'
                         % (ingress.get('class_name'), ingress.get('controller'), variable('workload_allowed_cidrs')),
                         'add the VPC CIDR (or the load balancer subnets) to %s' % variable('workload_allowed_cidrs'))
        elif not vpc and not allowed_cidrs:
            report.error('workload_ingress_controller_namespace', 'cannot tell where the ingress controller runs '
                         '(%s): no pod of a known controller was found' % (
                             ingress.get('controller') or 'Gateway %s' % ', '.join(
                                 httproute.get('gateway_namespaces') or [])),
                         'set %s to the namespace of the ingress controller\'s pods, or list its addresses in %s'
                         % (variable('workload_ingress_controller_namespace'), variable('workload_allowed_cidrs')))
    api_cidrs, source = decide_api_server_sources(facts, allowed_cidrs, report)

    clients = []
    if namespaces:
        clients.append({'namespaceSelector': {'matchExpressions': [
            {'key': METADATA_NAME, 'operator': 'In', 'values': namespaces}]}})
    for entry in pods:
        peer = {'podSelector': {'matchLabels': entry['labels']}}
        if entry['namespace'] and entry['namespace'] != namespace:
            peer['namespaceSelector'] = {'matchLabels': {METADATA_NAME: entry['namespace']}}
        clients.append(peer)
    clients.extend(_namespace_peer(name) for name in controller_namespaces)
    clients.extend({'ipBlock': {'cidr': cidr}} for cidr in allowed_cidrs)
    ports = [{'port': GATE_PORT, 'protocol': 'TCP'}]
    rules = []
    if clients:
        rules.append({'from': clients, 'ports': ports})
    extra_api = [c for c in api_cidrs if c not in allowed_cidrs]
    if extra_api:
        # The API server's pod proxy: the collection's model pulls and verification, through the gate.
        rules.append({'from': [{'ipBlock': {'cidr': cidr}} for cidr in extra_api], 'ports': ports})
    result.update(api_server_cidrs=api_cidrs, api_server_source=source, controller_namespaces=controller_namespaces)
    result['ingress_spec'] = {'podSelector': {'matchLabels': dict(pod_selector)}, 'policyTypes': ['Ingress'],
                              'ingress': rules}

    cache = settings.get('model_cache') or {}
    if cache.get('enabled'):
        # The model cache's pod: only the Ollama pods reach its ports (they pull through it).
        cache_ports = [{'port': port, 'protocol': 'TCP'} for port in cache['ports']]
        result['cache_ingress_spec'] = {
            'podSelector': {'matchLabels': dict(cache['selector'])}, 'policyTypes': ['Ingress'],
            'ingress': [{'from': [{'podSelector': {'matchLabels': dict(pod_selector)}}], 'ports': cache_ports}]
            if cache_ports else []}
    if result['egress_enabled']:
        targets = registry_ports(models, settings['insecure_registries'])
        result['registry_ports'] = ['%s:%d' % t for t in targets]
        destinations = [{'ipBlock': {'cidr': cidr}} for cidr in egress_cidrs]
        dns = {'to': [{'namespaceSelector': {'matchLabels': {METADATA_NAME: DNS_NAMESPACE}}}],
               'ports': [{'port': 53, 'protocol': 'UDP'}, {'port': 53, 'protocol': 'TCP'}]}
        egress = [dns]
        ports = sorted(set(port for _host, port in targets))
        registry_rule = None
        if ports:
            registry_rule = {'ports': [{'port': port, 'protocol': 'TCP'} for port in ports]}
            if destinations:
                registry_rule['to'] = destinations
        if cache.get('enabled'):
            check_cache_reach(cache, egress_cidrs, report)
            # Ollama pulls through the cache only; the cache alone reaches the registries.
            if cache['ports']:
                egress.append({'to': [{'podSelector': {'matchLabels': dict(cache['selector'])}}],
                               'ports': [{'port': port, 'protocol': 'TCP'} for port in cache['ports']]})
            result['cache_egress_spec'] = {
                'podSelector': {'matchLabels': dict(cache['selector'])}, 'policyTypes': ['Egress'],
                'egress': [copy.deepcopy(dns)] + ([copy.deepcopy(registry_rule)] if registry_rule else [])
                + copy.deepcopy(extra_egress)}
        elif registry_rule:
            egress.append(registry_rule)
        egress.extend(extra_egress)
        result['egress_spec'] = {'podSelector': {'matchLabels': dict(pod_selector)}, 'policyTypes': ['Egress'],
                                 'egress': egress}
    return result
