# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Server-side apply and delete of a list of objects, with rollout and deletion waits.

What kubectl apply --server-side does, over one API client: a GET of each object (for the diff), one
apply PATCH (a server-side dry run in check mode), and a rollout wait for workloads. An object counts as
changed when its content differs from before, leaving out what the server keeps for itself
(managedFields, resourceVersion, generation, status).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import time

from ansible_collections.llmops.ollama.plugins.module_utils.k8s import ClusterError

APPLY_CONTENT_TYPE = 'application/apply-patch+yaml'
SERVER_KEPT = ('managedFields', 'resourceVersion', 'generation', 'creationTimestamp', 'uid')
POLL_SECONDS = 1.0


# Built-in kinds every supported Kubernetes version (1.27+) serves, with their fixed plural and scope: a converge
# that writes only these needs no discovery request.
BUILT_IN = {
    ('v1', 'Namespace'): ('namespaces', False), ('v1', 'ServiceAccount'): ('serviceaccounts', True),
    ('v1', 'Service'): ('services', True), ('v1', 'ConfigMap'): ('configmaps', True),
    ('v1', 'Secret'): ('secrets', True), ('v1', 'PersistentVolumeClaim'): ('persistentvolumeclaims', True),
    ('v1', 'ResourceQuota'): ('resourcequotas', True), ('v1', 'Pod'): ('pods', True),
    ('apps/v1', 'Deployment'): ('deployments', True), ('apps/v1', 'StatefulSet'): ('statefulsets', True),
    ('apps/v1', 'DaemonSet'): ('daemonsets', True), ('policy/v1', 'PodDisruptionBudget'): ('poddisruptionbudgets', True),
    ('networking.k8s.io/v1', 'NetworkPolicy'): ('networkpolicies', True),
    ('networking.k8s.io/v1', 'Ingress'): ('ingresses', True),
    ('storage.k8s.io/v1', 'StorageClass'): ('storageclasses', False),
    ('rbac.authorization.k8s.io/v1', 'ClusterRole'): ('clusterroles', False),
    ('rbac.authorization.k8s.io/v1', 'ClusterRoleBinding'): ('clusterrolebindings', False),
    ('rbac.authorization.k8s.io/v1', 'Role'): ('roles', True),
    ('rbac.authorization.k8s.io/v1', 'RoleBinding'): ('rolebindings', True),
}


class Resources(object):
    """Kind -> (plural, namespaced): built-in kinds from BUILT_IN, others from the API's discovery, one request per
    group version."""

    def __init__(self, api):
        self.api = api
        self._by_group_version = {}

    def lookup(self, api_version, kind):
        if (api_version, kind) in BUILT_IN:
            return BUILT_IN[(api_version, kind)]
        if api_version not in self._by_group_version:
            path = '/api/v1' if api_version == 'v1' else '/apis/' + api_version
            try:
                listing = self.api.get(path)
            except ClusterError as exc:
                if exc.status == 404:
                    raise ClusterError('the cluster does not serve %s' % api_version,
                                       'install the API (CRD or add-on) that serves %s %s, or drop the object'
                                       % (api_version, kind), status=404)
                raise
            self._by_group_version[api_version] = dict(
                (r['kind'], (r['name'], r['namespaced'])) for r in listing.get('resources') or []
                if '/' not in r['name'])
        found = self._by_group_version[api_version].get(kind)
        if found is None:
            raise ClusterError('the cluster serves no kind %s in %s' % (kind, api_version),
                               'check the apiVersion and kind of the object', status=404)
        return found

    def path(self, obj):
        api_version, kind = obj.get('apiVersion'), obj.get('kind')
        meta = obj.get('metadata') or {}
        if not api_version or not kind or not meta.get('name'):
            raise ClusterError('an object lacks apiVersion, kind or metadata.name: %s' % json.dumps(obj)[:200],
                               'give every object apiVersion, kind and metadata.name')
        plural, namespaced = self.lookup(api_version, kind)
        prefix = '/api/v1' if api_version == 'v1' else '/apis/' + api_version
        if namespaced:
            if not meta.get('namespace'):
                raise ClusterError('%s %s has no metadata.namespace' % (kind, meta['name']),
                                   'set metadata.namespace on every namespaced object')
            prefix += '/namespaces/' + meta['namespace']
        return '%s/%s/%s' % (prefix, plural, meta['name'])


def comparable(obj):
    """The object without what the server keeps for itself."""
    if obj is None:
        return None
    out = copy.deepcopy(obj)
    out.pop('status', None)
    meta = out.get('metadata') or {}
    for key in SERVER_KEPT:
        meta.pop(key, None)
    return out


def redacted(obj):
    """A Secret with its values hidden, for diffs and results; other objects as they are."""
    if not obj or obj.get('kind') != 'Secret':
        return obj
    out = copy.deepcopy(obj)
    for key in ('data', 'stringData'):
        if isinstance(out.get(key), dict):
            out[key] = dict((name, '********') for name in out[key])
    return out


def label(obj):
    meta = obj.get('metadata') or {}
    return '%s %s%s' % (obj.get('kind'), meta['namespace'] + '/' if meta.get('namespace') else '', meta.get('name'))


def apply_objects(api, objects, field_manager, force_conflicts=False, check_mode=False, resources=None):
    """Apply each object; a result per object with before and after (comparable) and changed."""
    resources = resources or Resources(api)
    # Every path first: an object the cluster cannot take stops the call before its first write.
    paths = [resources.path(obj) for obj in objects]
    results = []
    for obj, path in zip(objects, paths):
        before = api.get_or_none(path)
        query = {'fieldManager': field_manager, 'force': 'true' if force_conflicts else 'false'}
        if check_mode:
            query['dryRun'] = 'All'
        try:
            # The client sends an apply patch as JSON, which the server reads as YAML.
            after = api.request('PATCH', path, body=obj, query=query, content_type=APPLY_CONTENT_TYPE)
        except ClusterError as exc:
            if check_mode and before is None and exc.status == 404:
                # Its namespace is only created by this run (a dry run persists nothing): it would be created.
                results.append(_result(obj, path, before, copy.deepcopy(obj)))
                continue
            if exc.status == 409:
                raise ClusterError('%s: another field manager owns fields this apply sets (%s)' % (
                    label(obj), exc.message), 'let llmops-ollama own them (force_conflicts: true), or stop the '
                    'other tool from managing them', status=409)
            raise ClusterError('%s: %s' % (label(obj), exc.message), exc.fix, status=exc.status)
        results.append(_result(obj, path, before, after))
    return results


def delete_objects(api, objects, propagation='Background', check_mode=False, resources=None):
    resources = resources or Resources(api)
    # Every path first: an object the cluster cannot take stops the call before its first write.
    paths = [resources.path(obj) for obj in objects]
    results = []
    for obj, path in zip(objects, paths):
        before = api.get_or_none(path)
        deleting = before is not None and not (before.get('metadata') or {}).get('deletionTimestamp')
        if deleting:
            # The API server reads DeleteOptions from the body when there is one and then ignores the query, so
            # the dry run goes in the body.
            options = {'propagationPolicy': propagation}
            if check_mode:
                options['dryRun'] = ['All']
            try:
                api.request('DELETE', path, body=options, query={})
            except ClusterError as exc:
                if exc.status != 404:
                    raise ClusterError('%s: %s' % (label(obj), exc.message), exc.fix, status=exc.status)
        results.append(dict(_result(obj, path, before, None), changed=deleting))
    return results


def _result(obj, path, before, after):
    meta = obj.get('metadata') or {}
    was, now = comparable(before), comparable(after)
    return {'kind': obj.get('kind'), 'api_version': obj.get('apiVersion'), 'name': meta.get('name'),
            'namespace': meta.get('namespace'), 'path': path, 'changed': was != now, 'before': was, 'after': now,
            'object': after}


def rollout_created(obj):
    """None when every replica of the workload is created from its current pod template, Ready or not (a replica
    that becomes Ready only once it has its models), else what it still waits for."""
    kind, spec, status = obj.get('kind'), obj.get('spec') or {}, obj.get('status') or {}
    meta = obj.get('metadata') or {}
    if status.get('observedGeneration', 0) < meta.get('generation', 0):
        return 'the controller has not seen generation %s yet' % meta.get('generation')
    if kind in ('Deployment', 'StatefulSet'):
        want = spec.get('replicas', 1)
        if kind == 'Deployment':
            for condition in status.get('conditions') or []:
                if condition.get('type') == 'Progressing' and condition.get('reason') == 'ProgressDeadlineExceeded':
                    return 'failed: ' + condition.get('message', 'progress deadline exceeded')
        if status.get('updatedReplicas', 0) < want:
            return '%s of %s replicas created from the new pod template' % (status.get('updatedReplicas', 0), want)
        # A StatefulSet keeps no replica of an old revision once all are updated; a Deployment may, until it scales
        # the old ReplicaSet down.
        if kind == 'Deployment' and status.get('replicas', 0) != want:
            return '%s replicas, %s wanted: a replica of the old pod template still runs' % (
                status.get('replicas', 0), want)
    elif kind == 'DaemonSet':
        want = status.get('desiredNumberScheduled', 0)
        if status.get('updatedNumberScheduled', 0) < want:
            return '%s of %s pods created from the new pod template' % (status.get('updatedNumberScheduled', 0), want)
    return None


def rollout_done(obj):
    """None when the workload finished its rollout (every replica created from the new pod template, as
    :func:`rollout_created`, and Ready), else what it still waits for."""
    waiting = rollout_created(obj)
    if waiting is not None:
        return waiting
    kind, spec, status = obj.get('kind'), obj.get('spec') or {}, obj.get('status') or {}
    if kind in ('Deployment', 'StatefulSet'):
        want = spec.get('replicas', 1)
        ready = status.get('availableReplicas' if kind == 'Deployment' else 'readyReplicas', 0)
        if status.get('replicas', 0) != want or ready < want:
            return '%s of %s replicas updated and ready' % (min(ready, status.get('updatedReplicas', 0)), want)
        if kind == 'StatefulSet' and status.get('currentRevision') != status.get('updateRevision') and \
                (spec.get('updateStrategy') or {}).get('type', 'RollingUpdate') == 'RollingUpdate':
            return 'revision %s still rolling out' % status.get('updateRevision')
    elif kind == 'DaemonSet':
        want = status.get('desiredNumberScheduled', 0)
        if status.get('numberReady', 0) < want:
            return '%s of %s pods updated and ready' % (status.get('numberReady', 0), want)
    return None


WAIT_CONDITIONS = {'ready': rollout_done, 'created': rollout_created}


def wait_for_rollouts(api, results, timeout, clock=time.monotonic, sleep=time.sleep, wait_for='ready'):
    """Wait until every applied Deployment, StatefulSet and DaemonSet has rolled out (``wait_for`` ready: every
    replica updated and Ready; created: every replica created from the new pod template); the last objects read.

    The apply's answer is read first, so a workload that has rolled out already costs no request."""
    condition = WAIT_CONDITIONS[wait_for]
    deadline = clock() + timeout
    for result in results:
        if result['kind'] not in ('Deployment', 'StatefulSet', 'DaemonSet'):
            continue
        waiting = condition(result['object'])
        while waiting is not None:
            if waiting.startswith('failed: ') or clock() >= deadline:
                raise ClusterError('%s did not roll out within %s s: %s' % (label(result['object']), timeout,
                                                                            waiting),
                                   'see the pods and the warning events of the namespace', status=None)
            sleep(POLL_SECONDS)
            result['object'] = api.get(result['path'])
            waiting = condition(result['object'])
    return results


def wait_for_deletion(api, results, timeout, clock=time.monotonic, sleep=time.sleep):
    deadline = clock() + timeout
    for result in results:
        if result['before'] is None:
            continue
        while api.get_or_none(result['path']) is not None:
            if clock() >= deadline:
                raise ClusterError('%s is still there after %s s' % (label(result['before']), timeout),
                                   'check its finalizers and the pods it owns')
            sleep(POLL_SECONDS)
    return results
