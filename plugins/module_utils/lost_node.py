# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lost-node runbook (playbooks/lost_node.yml): which Ollama claims a lost node strands, and where their
replicas could run instead.

A node-local volume (local-path) carries node affinity to its node: while the node is gone, the replica whose
claim it backs can never be scheduled, and a StatefulSet does not even replace a pod whose node stopped
answering (it waits for the kubelet to confirm the pod's end). Deleting the claim and the pod lets the
workload recreate the replica on another node with a new, empty claim; its self-heal then fetches the models.

:func:`plan_recovery` decides from raw API objects (pure, unit-tested); :func:`recover` carries it out through
the API (module plugins/modules/lost_node.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import decimal
import re
import time

from ansible_collections.llmops.ollama.plugins.module_utils.cluster_facts import pod_resource_request
from ansible_collections.llmops.ollama.plugins.module_utils.k8s import ClusterError
from ansible_collections.llmops.ollama.plugins.module_utils.quantity import QuantityError, parse_quantity

HOSTNAME = 'kubernetes.io/hostname'
GPU = 'nvidia.com/gpu'
POLL_SECONDS = 1.0
# Seconds a replacement stays Unschedulable before that counts as the scheduler's answer (its back-off is 10 s).
UNSCHEDULABLE_SETTLE = 25


class Refusal(Exception):
    """The runbook must not act: the message says why, the fix what to do instead."""

    def __init__(self, message, fix):
        super(Refusal, self).__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self):
        return '%s. Fix: %s' % (self.message, self.fix)


def _meta(obj):
    return obj.get('metadata') or {}


def _condition(obj, kind):
    for cond in (obj.get('status') or {}).get('conditions') or []:
        if cond.get('type') == kind:
            return cond
    return {}


def node_ready(node):
    return _condition(node, 'Ready').get('status') == 'True'


def node_state(node):
    """A line for the report: Ready, or why not."""
    if node is None:
        return 'deleted from the cluster'
    cond = _condition(node, 'Ready')
    if cond.get('status') == 'True':
        return 'Ready'
    return 'Ready=%s (%s)' % (cond.get('status', 'Unknown'), cond.get('reason') or cond.get('message') or 'no reason')


def volume_nodes(pv):
    """The host names a PersistentVolume's node affinity pins it to, or None when it is not pinned to nodes
    (a zonal or network volume follows its replica by itself)."""
    terms = ((((pv or {}).get('spec') or {}).get('nodeAffinity') or {}).get('required') or {}).get(
        'nodeSelectorTerms') or []
    hosts = set()
    for term in terms:
        pinned = None
        for expr in term.get('matchExpressions') or []:
            if expr.get('key') == HOSTNAME and expr.get('operator') == 'In':
                pinned = set(expr.get('values') or [])
        for field in term.get('matchFields') or []:
            if field.get('key') == 'metadata.name' and field.get('operator') == 'In':
                pinned = set(field.get('values') or [])
        if pinned is None:
            return None  # one term without a host: the volume can be used elsewhere
        hosts |= pinned
    return hosts or None


def workload_claims(workload, claims):
    """The existing claims the workload's replicas mount: a StatefulSet's template claims TEMPLATE-NAME-<ordinal>
    (every ordinal, also above the replica count), or the claims a Deployment's pod template names."""
    spec = workload.get('spec') or {}
    name = _meta(workload).get('name', '')
    if workload.get('kind') == 'StatefulSet':
        patterns = [re.compile(r'^%s-%s-(\d+)$' % (re.escape(_meta(t).get('name', '')), re.escape(name)))
                    for t in spec.get('volumeClaimTemplates') or []]

        def ordinal(claim):
            for pattern in patterns:
                match = pattern.match(_meta(claim).get('name', ''))
                if match:
                    return int(match.group(1))
            return None
        return sorted((c for c in claims if ordinal(c) is not None), key=lambda c: (ordinal(c), _meta(c)['name']))
    names = set((v.get('persistentVolumeClaim') or {}).get('claimName')
                for v in ((spec.get('template') or {}).get('spec') or {}).get('volumes') or [])
    return [c for c in claims if _meta(c).get('name') in names]


def pods_using(claim_name, pods):
    out = []
    for pod in pods:
        for volume in (pod.get('spec') or {}).get('volumes') or []:
            if (volume.get('persistentVolumeClaim') or {}).get('claimName') == claim_name:
                out.append(pod)
                break
    return out


# ---------------------------------------------------------------- where a replica fits

def _tolerates(tolerations, taint):
    for tol in tolerations or []:
        if tol.get('effect') and tol.get('effect') != taint.get('effect'):
            continue
        if tol.get('operator') == 'Exists':
            if not tol.get('key') or tol.get('key') == taint.get('key'):
                return True
        elif tol.get('key') == taint.get('key') and (tol.get('value') or '') == (taint.get('value') or ''):
            return True
    return False


def _matches_expression(labels, expr):
    key, op, values = expr.get('key'), expr.get('operator'), expr.get('values') or []
    if op == 'In':
        return labels.get(key) in values
    if op == 'NotIn':
        return labels.get(key) not in values
    if op == 'Exists':
        return key in labels
    if op == 'DoesNotExist':
        return key not in labels
    if op in ('Gt', 'Lt'):
        try:
            have, want = int(labels.get(key)), int(values[0])
        except (TypeError, ValueError, IndexError):
            return False
        return have > want if op == 'Gt' else have < want
    return False


def _node_affinity_ok(spec, node):
    labels = _meta(node).get('labels') or {}
    for key, value in (spec.get('nodeSelector') or {}).items():
        if labels.get(key) != value:
            return False
    required = (((spec.get('affinity') or {}).get('nodeAffinity') or {})
                .get('requiredDuringSchedulingIgnoredDuringExecution') or {}).get('nodeSelectorTerms')
    if not required:
        return True
    for term in required:
        fields = {'metadata.name': _meta(node).get('name')}
        if all(_matches_expression(labels, e) for e in term.get('matchExpressions') or []) and \
                all(_matches_expression(fields, f) for f in term.get('matchFields') or []):
            return True
    return False


def _selects(selector, labels):
    if not selector:
        return False
    if any(labels.get(k) != v for k, v in (selector.get('matchLabels') or {}).items()):
        return False
    return all(_matches_expression(labels, e) for e in selector.get('matchExpressions') or [])


def _requests(pod_spec, resource):
    """The pod's effective request of cpu or memory (a Decimal), as the scheduler sums it."""
    def amount(container):
        res = container.get('resources') or {}
        value = (res.get('requests') or {}).get(resource)
        if value is None:
            value = (res.get('limits') or {}).get(resource)
        try:
            return parse_quantity(value) if value is not None else decimal.Decimal(0)
        except QuantityError:
            return decimal.Decimal(0)
    sidecars, peak = decimal.Decimal(0), decimal.Decimal(0)
    for init in pod_spec.get('initContainers') or []:
        if init.get('restartPolicy') == 'Always':
            sidecars += amount(init)
        else:
            peak = max(peak, amount(init) + sidecars)
    return max(sum((amount(c) for c in pod_spec.get('containers') or []), decimal.Decimal(0)) + sidecars, peak)


def _allocatable(node, resource):
    value = ((node.get('status') or {}).get('allocatable') or {}).get(resource)
    try:
        return parse_quantity(value) if value is not None else decimal.Decimal(0)
    except QuantityError:
        return decimal.Decimal(0)


def _live(pod):
    return (pod.get('status') or {}).get('phase') not in ('Succeeded', 'Failed')


def room(template_spec, nodes, pods, lost_names, leaving):
    """``(slots, excluded)``: how many replicas of the pod template the nodes other than the lost one can take
    now (GPUs, CPU and memory left, taints, node affinity, the replicas' hard anti-affinity), and for every
    other node why it takes none. ``leaving`` are the uids of the pods about to be deleted."""
    gpus = pod_resource_request({'spec': template_spec})
    cpu, memory = _requests(template_spec, 'cpu'), _requests(template_spec, 'memory')
    anti = [term for term in (((template_spec.get('affinity') or {}).get('podAntiAffinity') or {})
                              .get('requiredDuringSchedulingIgnoredDuringExecution') or [])
            if term.get('topologyKey') == HOSTNAME]
    tolerations = template_spec.get('tolerations') or []
    by_node = {}
    for pod in pods:
        node_name = (pod.get('spec') or {}).get('nodeName')
        if node_name and _live(pod) and _meta(pod).get('uid') not in leaving:
            by_node.setdefault(node_name, []).append(pod)
    slots, excluded = 0, {}
    for node in sorted(nodes, key=lambda n: _meta(n).get('name', '')):
        name = _meta(node).get('name')
        if name in lost_names:
            continue
        if not node_ready(node):
            excluded[name] = 'not Ready'
            continue
        if (node.get('spec') or {}).get('unschedulable'):
            excluded[name] = 'cordoned'
            continue
        blocking = [t for t in (node.get('spec') or {}).get('taints') or []
                    if t.get('effect') in ('NoSchedule', 'NoExecute') and not _tolerates(tolerations, t)]
        if blocking:
            excluded[name] = 'taint %s not tolerated' % ', '.join(
                '%s=%s:%s' % (t.get('key'), t.get('value', ''), t.get('effect')) for t in blocking)
            continue
        if not _node_affinity_ok(template_spec, node):
            excluded[name] = 'does not match the pods\' node selector or affinity'
            continue
        here = by_node.get(name, [])
        if anti and any(_selects(term.get('labelSelector'), _meta(p).get('labels') or {})
                        for p in here for term in anti):
            excluded[name] = 'runs a replica already (one replica per node)'
            continue
        fits = []
        if gpus:
            free = _allocatable(node, GPU) - sum(pod_resource_request(p) for p in here)
            fits.append(int(free // gpus) if free > 0 else 0)
            if fits[-1] < 1:
                excluded[name] = '%s of %s GPUs free, %d needed' % (max(free, 0), _allocatable(node, GPU), gpus)
                continue
        for resource, want in (('cpu', cpu), ('memory', memory)):
            if want:
                free = _allocatable(node, resource) - sum(_requests(p.get('spec') or {}, resource) for p in here)
                fits.append(int(free // want) if free > 0 else 0)
                if fits[-1] < 1:
                    excluded[name] = 'not enough %s free' % resource
                    break
        if name in excluded:
            continue
        take = min(fits) if fits else 1
        slots += min(take, 1) if anti else take
    return slots, excluded


# ---------------------------------------------------------------- the decision

def plan_recovery(node_name, node, workload, claims, volumes, pods, nodes):
    """What the runbook does for the lost node: ``{node, node_state, kind, stranded: [{claim, volume, pods}],
    kept: [{claim, why}], slots, excluded}``. Raises :class:`Refusal` when it must not act."""
    if node is not None and node_ready(node):
        raise Refusal('node %s is Ready: it is not lost, and its claims hold the models of its replicas'
                      % node_name,
                      'for planned work on a node that is up, run playbooks/drain.yml -e ollama_drain_node=%s; run '
                      'this runbook only for a node that is gone (NotReady or Unknown for good, or deleted)'
                      % node_name)
    hosts = set([node_name])
    if node is not None:
        hosts.add((_meta(node).get('labels') or {}).get(HOSTNAME) or node_name)
    result = {'node': node_name, 'node_state': node_state(node), 'kind': None, 'stranded': [], 'kept': [],
              'slots': 0, 'excluded': {}}
    if workload is None:
        return result
    kind = workload.get('kind')
    spec = workload.get('spec') or {}
    result['kind'] = kind
    volumes_by_name = dict((_meta(v).get('name'), v) for v in volumes)
    live_pods = [p for p in pods if _live(p)]
    for claim in workload_claims(workload, claims):
        claim_id = _meta(claim).get('name')
        volume = volumes_by_name.get((claim.get('spec') or {}).get('volumeName'))
        users = pods_using(claim_id, live_pods)
        if volume is None:
            result['kept'].append({'claim': claim_id, 'why': 'not bound to a volume'})
            continue
        pinned = volume_nodes(volume)
        if not pinned:
            result['kept'].append({'claim': claim_id, 'why': 'volume %s is not pinned to a node' % _meta(volume)['name']})
            continue
        if not pinned & hosts:
            result['kept'].append({'claim': claim_id, 'why': 'volume %s is on %s' % (
                _meta(volume)['name'], ', '.join(sorted(pinned)))})
            continue
        result['stranded'].append({
            'claim': claim_id, 'claim_uid': _meta(claim).get('uid'), 'volume': _meta(volume)['name'],
            'pods': [_meta(p).get('name') for p in users],
            'pod_uids': [_meta(p).get('uid') for p in users],
            'claim_spec': claim.get('spec') or {}, 'claim_labels': _meta(claim).get('labels') or {},
        })
    if result['stranded']:
        leaving = set(uid for s in result['stranded'] for uid in s['pod_uids'])
        template = (spec.get('template') or {}).get('spec') or {}
        result['slots'], result['excluded'] = room(template, nodes, pods, hosts, leaving)
        if result['slots'] < len(result['stranded']):
            raise Refusal(
                'no eligible node has room for %s of the replica(s) on %s (%s): %s; nothing was deleted' % (
                    'any' if not result['slots'] else '%d' % (len(result['stranded']) - result['slots']),
                    node_name, ', '.join(s['claim'] for s in result['stranded']),
                    '; '.join('%s: %s' % kv for kv in sorted(result['excluded'].items())) or 'no other node'),
                'add or repair a GPU node (or free a GPU on one) and run again, or bring %s back: its replica '
                'then runs again with its models' % node_name)
    return result


# ---------------------------------------------------------------- carrying it out

def _wait(what, check, timeout, clock=time.monotonic, sleep=time.sleep):
    deadline = clock() + timeout
    while True:
        done = check()
        if done:
            return done
        if clock() >= deadline:
            raise ClusterError('%s did not happen within %s s' % (what, timeout),
                               'see kubectl get pods,pvc -n NAMESPACE and the warning events; run again to go on')
        sleep(POLL_SECONDS)


def _pod_path(namespace, name):
    return '/api/v1/namespaces/%s/pods/%s' % (namespace, name)


def _claim_path(namespace, name):
    return '/api/v1/namespaces/%s/persistentvolumeclaims/%s' % (namespace, name)


def new_claim(stranded, namespace):
    """The Deployment's claim again, empty, as the storage role writes it (nothing else recreates it)."""
    spec = stranded['claim_spec']
    keep = dict((k, spec[k]) for k in ('accessModes', 'resources', 'storageClassName', 'volumeMode') if k in spec)
    return {'apiVersion': 'v1', 'kind': 'PersistentVolumeClaim',
            'metadata': {'name': stranded['claim'], 'namespace': namespace, 'labels': stranded['claim_labels']},
            'spec': keep}


def unschedulable(pod):
    cond = _condition(pod, 'PodScheduled')
    if cond.get('status') == 'False' and cond.get('reason') == 'Unschedulable':
        return cond.get('message') or 'Unschedulable'
    return None


def recover(api, namespace, selector, plan, timeout, wait_ready, clock=time.monotonic, sleep=time.sleep):
    """Delete each stranded claim, then its pods at once (their node cannot confirm a graceful end), wait for the
    claim to go, recreate a Deployment's claim, and wait until the replacement is scheduled (and Ready with its
    models, with ``wait_ready``). Returns one line per claim."""
    lines = []
    for item in plan['stranded']:
        claim = item['claim']
        api.request('DELETE', _claim_path(namespace, claim), body={'propagationPolicy': 'Background'})
        for pod in item['pods']:
            try:
                api.request('DELETE', _pod_path(namespace, pod), body={'gracePeriodSeconds': 0})
            except ClusterError as exc:
                if exc.status != 404:
                    raise

        def gone():
            # A StatefulSet makes a new claim of the same name at once: a new uid counts as gone.
            current = api.get_or_none(_claim_path(namespace, claim))
            return current is None or _meta(current).get('uid') != item['claim_uid']
        _wait('the deletion of claim %s/%s' % (namespace, claim), gone, timeout, clock, sleep)
        if plan['kind'] == 'Deployment':
            api.request('POST', '/api/v1/namespaces/%s/persistentvolumeclaims' % namespace,
                        body=new_claim(item, namespace))
        lines.append(_follow(api, namespace, selector, claim, set(item['pod_uids']), timeout, wait_ready, clock,
                             sleep))
    return lines


def _follow(api, namespace, selector, claim, old_uids, timeout, wait_ready, clock, sleep):
    """Wait for the replica that mounts the claim again: scheduled (or refused by the scheduler), then Ready."""
    def replacement():
        pods = api.get('/api/v1/namespaces/%s/pods' % namespace, labelSelector=selector).get('items') or []
        for pod in pods_using(claim, pods):
            if _meta(pod).get('uid') not in old_uids and not _meta(pod).get('deletionTimestamp'):
                return pod
        return None

    refused_since = {}

    def placed():
        pod = replacement()
        if pod is None:
            return None
        if (pod.get('spec') or {}).get('nodeName'):
            return pod
        if unschedulable(pod):
            # A refusal from before the claim existed again is retried by the scheduler: final only once it lasts.
            first = refused_since.setdefault(_meta(pod).get('uid'), clock())
            if clock() - first >= UNSCHEDULABLE_SETTLE:
                return pod
        return None
    pod = _wait('a new replica for claim %s' % claim, placed, timeout, clock, sleep)
    name = _meta(pod)['name']
    refused = unschedulable(pod)
    if refused:
        raise ClusterError('claim %s was deleted and replica %s recreated, but the scheduler places it nowhere: %s'
                           % (claim, name, refused),
                           'add or repair a GPU node (or free a GPU); the replica starts there by itself and fetches '
                           'its models')
    node = pod['spec']['nodeName']
    if not wait_ready:
        return '%s: claim deleted; replica %s scheduled on %s and fetching its models' % (claim, name, node)

    def ready():
        current = api.get_or_none(_pod_path(namespace, name))
        return current is not None and _condition(current, 'Ready').get('status') == 'True'
    _wait('replica %s Ready with its models on %s' % (name, node), ready, timeout, clock, sleep)
    return '%s: claim deleted; replica %s runs on %s, Ready with all its models (fetched by itself)' % (
        claim, name, node)
