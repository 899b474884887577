# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Server-side apply bookkeeping without a cluster: what counts as a change, resource paths from discovery,
and when a rollout is done. The integration tests apply the same objects to the simulated cluster; the fake
API here stands in only to drive the decisions through shapes a test cluster does not easily produce (a
deadline passing, a conflict answer)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils import apply
from ansible_collections.llmops.ollama.plugins.module_utils.k8s import Api, ClusterError

DISCOVERY = {
    '/api/v1': {'resources': [{'name': 'namespaces', 'kind': 'Namespace', 'namespaced': False},
                              {'name': 'services', 'kind': 'Service', 'namespaced': True},
                              {'name': 'services/status', 'kind': 'Service', 'namespaced': True}]},
    '/apis/apps/v1': {'resources': [{'name': 'deployments', 'kind': 'Deployment', 'namespaced': True},
                                    {'name': 'deployments/scale', 'kind': 'Scale', 'namespaced': True}]},
    '/apis/example.com/v1': {'resources': [{'name': 'widgets', 'kind': 'Widget', 'namespaced': True},
                                           {'name': 'gadgets', 'kind': 'Gadget', 'namespaced': False}]},
}
SERVICE = {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 'ollama', 'namespace': 'ai'},
           'spec': {'ports': [{'port': 11434}]}}


class FakeApi(Api):
    """Objects by path behind Api's own get and get_or_none; an apply replaces the object, as the server would
    for these."""

    def __init__(self, objects=None, conflict=False, namespaces=None):  # pylint: disable=super-init-not-called
        self.objects = dict(objects or {})
        self.conflict = conflict
        self.namespaces = namespaces
        self.calls = []

    def request(self, method, path, body=None, query=None, timeout=None, content_type=None):
        self.calls.append((method, path, query))
        if method == 'GET':
            if path in DISCOVERY:
                return DISCOVERY[path]
            if path in self.objects:
                return copy.deepcopy(self.objects[path])
            raise ClusterError('GET %s answered 404' % path, 'the object or API is not there', status=404)
        if self.conflict:
            raise ClusterError('PATCH %s answered 409: conflict with "kubectl"' % path, 'see above', status=409)
        namespace = (body or {}).get('metadata', {}).get('namespace')
        if self.namespaces is not None and namespace and namespace not in self.namespaces:
            raise ClusterError('PATCH %s answered 404: namespaces "%s" not found' % (path, namespace), 'x', status=404)
        if method == 'PATCH':
            old = self.objects.get(path)
            new = copy.deepcopy(body)
            meta = new['metadata']
            meta['resourceVersion'] = str(int((old or {}).get('metadata', {}).get('resourceVersion', '0')) + 1)
            meta['managedFields'] = [{'manager': query['fieldManager']}]
            new['status'] = {'loadBalancer': {}}
            if old is not None and apply.comparable(old) == apply.comparable(new):
                new = copy.deepcopy(old)
            if query.get('dryRun') != 'All':
                self.objects[path] = new
            return copy.deepcopy(new)
        if method == 'DELETE':
            # As kube-apiserver: DeleteOptions come from the body when there is one, the query is then ignored.
            dry = (body or {}).get('dryRun') if body else query.get('dryRun')
            if dry not in (['All'], 'All'):
                self.objects.pop(path, None)
            return {}
        raise AssertionError(method)


def test_a_new_object_is_a_change_and_a_repeat_is_not():
    api = FakeApi()
    (first,) = apply.apply_objects(api, [SERVICE], 'llmops-ollama')
    assert first['changed'] and first['before'] is None and first['after']['spec'] == SERVICE['spec']
    assert ('PATCH', '/api/v1/namespaces/ai/services/ollama',
            {'fieldManager': 'llmops-ollama', 'force': 'false'}) in api.calls
    (second,) = apply.apply_objects(api, [SERVICE], 'llmops-ollama')
    assert not second['changed']


def test_server_kept_fields_are_not_changes():
    before = dict(copy.deepcopy(SERVICE), status={'x': 1})
    before['metadata'].update(resourceVersion='7', managedFields=[{'manager': 'a'}], generation=3, uid='u')
    after = copy.deepcopy(SERVICE)
    after['metadata'].update(resourceVersion='8', managedFields=[{'manager': 'b'}], generation=4, uid='u')
    assert apply.comparable(before) == apply.comparable(after)
    changed = copy.deepcopy(after)
    changed['spec']['ports'][0]['port'] = 8080
    assert apply.comparable(before) != apply.comparable(changed)


def test_check_mode_is_a_server_side_dry_run_that_writes_nothing():
    api = FakeApi()
    (result,) = apply.apply_objects(api, [SERVICE], 'llmops-ollama', check_mode=True)
    assert result['changed']
    assert api.calls[-1][2]['dryRun'] == 'All' and api.objects == {}


def test_a_conflict_names_the_option_that_resolves_it():
    with pytest.raises(ClusterError) as caught:
        apply.apply_objects(FakeApi(conflict=True), [SERVICE], 'llmops-ollama')
    assert caught.value.status == 409 and 'force_conflicts' in caught.value.fix
    assert 'Service ai/ollama' in caught.value.message


@pytest.mark.parametrize('obj, message', [
    ({'kind': 'Service', 'metadata': {'name': 'x', 'namespace': 'ai'}}, 'lacks apiVersion'),
    ({'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 'x'}}, 'has no metadata.namespace'),
    ({'apiVersion': 'v1', 'kind': 'Widget', 'metadata': {'name': 'x'}}, 'serves no kind Widget'),
    ({'apiVersion': 'example.org/v1', 'kind': 'Widget', 'metadata': {'name': 'x'}}, 'does not serve example.org/v1'),
])
def test_bad_objects_fail_before_any_write(obj, message):
    api = FakeApi()
    with pytest.raises(ClusterError) as caught:
        apply.apply_objects(api, [SERVICE, obj], 'llmops-ollama', check_mode=True)
    assert message in caught.value.message
    assert api.objects == {}


def test_paths_of_built_in_kinds_need_no_discovery_request():
    api = FakeApi()
    resources = apply.Resources(api)
    assert resources.path({'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'ai'}}) == '/api/v1/namespaces/ai'
    assert resources.path({'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': 'o', 'namespace': 'ai'}}) \
        == '/apis/apps/v1/namespaces/ai/deployments/o'
    assert api.calls == []


def test_paths_of_other_kinds_come_from_discovery_once_per_group_version():
    api = FakeApi()
    resources = apply.Resources(api)
    assert resources.path({'apiVersion': 'example.com/v1', 'kind': 'Widget', 'metadata': {'name': 'w', 'namespace': 'ai'}}) \
        == '/apis/example.com/v1/namespaces/ai/widgets/w'
    assert resources.path({'apiVersion': 'example.com/v1', 'kind': 'Gadget', 'metadata': {'name': 'g'}}) \
        == '/apis/example.com/v1/gadgets/g'
    assert [call[1] for call in api.calls] == ['/apis/example.com/v1']
    with pytest.raises(ClusterError) as caught:
        resources.path({'apiVersion': 'example.com/v1', 'kind': 'Gizmo', 'metadata': {'name': 'x'}})
    assert 'serves no kind Gizmo' in caught.value.message


def test_delete_reports_a_change_only_for_what_exists_and_is_not_already_going():
    path = '/api/v1/namespaces/ai/services/ollama'
    going = copy.deepcopy(SERVICE)
    going['metadata']['deletionTimestamp'] = '2026-11-27T00:00:00Z'
    assert [r['changed'] for r in apply.delete_objects(FakeApi({path: SERVICE}), [SERVICE])] == [True]
    assert [r['changed'] for r in apply.delete_objects(FakeApi(), [SERVICE])] == [False]
    assert [r['changed'] for r in apply.delete_objects(FakeApi({path: going}), [SERVICE])] == [False]
    api = FakeApi({path: SERVICE})
    apply.delete_objects(api, [SERVICE], check_mode=True)
    assert path in api.objects


def deployment(generation=2, observed=2, replicas=2, updated=2, available=2, total=None, conditions=None):
    return {'kind': 'Deployment', 'metadata': {'name': 'o', 'namespace': 'ai', 'generation': generation},
            'spec': {'replicas': replicas},
            'status': {'observedGeneration': observed, 'updatedReplicas': updated, 'availableReplicas': available,
                       'replicas': replicas if total is None else total, 'conditions': conditions or []}}


def statefulset(ready=2, updated=2, current='b', update='b'):
    return {'kind': 'StatefulSet', 'metadata': {'generation': 1}, 'spec': {'replicas': 2},
            'status': {'observedGeneration': 1, 'replicas': 2, 'readyReplicas': ready, 'updatedReplicas': updated,
                       'currentRevision': current, 'updateRevision': update}}


@pytest.mark.parametrize('obj, waiting', [
    (deployment(), None),
    (deployment(generation=3), 'has not seen generation 3'),
    (deployment(updated=1), '1 of 2 replicas'),
    (deployment(available=1), '1 of 2 replicas'),
    (deployment(total=3), 'a replica of the old pod template still runs'),
    (deployment(available=0, conditions=[{'type': 'Progressing', 'reason': 'ProgressDeadlineExceeded',
                                          'message': 'ReplicaSet "o-1" has timed out progressing.'}]),
     'failed: ReplicaSet "o-1" has timed out'),
    (statefulset(current='a'), 'revision b still rolling out'),
    (statefulset(), None),
    ({'kind': 'DaemonSet', 'metadata': {'generation': 1},
      'status': {'observedGeneration': 1, 'desiredNumberScheduled': 3, 'numberReady': 2,
                 'updatedNumberScheduled': 3}}, '2 of 3 pods'),
])
def test_rollout_done(obj, waiting):
    got = apply.rollout_done(obj)
    assert got == waiting if waiting is None else waiting in got


@pytest.mark.parametrize('obj, waiting', [
    (deployment(available=0), None),  # created, not Ready yet: done
    (deployment(generation=3), 'has not seen generation 3'),
    (deployment(updated=1), '1 of 2 replicas created from the new pod template'),
    (deployment(total=3), '3 replicas, 2 wanted: a replica of the old pod template still runs'),
    (deployment(available=0, conditions=[{'type': 'Progressing', 'reason': 'ProgressDeadlineExceeded',
                                          'message': 'ReplicaSet "o-1" has timed out progressing.'}]),
     'failed: ReplicaSet "o-1" has timed out'),
    (statefulset(ready=0), None),
    (statefulset(ready=1, updated=1), '1 of 2 replicas created'),
    ({'kind': 'DaemonSet', 'metadata': {'generation': 1},
      'status': {'observedGeneration': 1, 'desiredNumberScheduled': 3, 'numberReady': 0,
                 'updatedNumberScheduled': 3}}, None),
])
def test_rollout_created(obj, waiting):
    got = apply.rollout_created(obj)
    assert got == waiting if waiting is None else waiting in got


def test_a_created_wait_ends_before_the_replicas_are_ready():
    path = '/apis/apps/v1/namespaces/ai/deployments/o'
    api = FakeApi({path: deployment(available=0)})
    result = {'kind': 'Deployment', 'path': path, 'object': deployment(updated=0, available=0)}
    apply.wait_for_rollouts(api, [result], 60, sleep=lambda _: None, wait_for='created')
    assert api.calls == [('GET', path, {})] and result['object']['status']['availableReplicas'] == 0


def test_a_rollout_wait_is_bounded_by_its_timeout():
    path = '/apis/apps/v1/namespaces/ai/deployments/o'
    api = FakeApi({path: deployment(available=1)})
    clock = iter(range(0, 1000, 10))
    slept = []
    result = {'kind': 'Deployment', 'path': path, 'object': deployment(available=0)}
    with pytest.raises(ClusterError) as caught:
        apply.wait_for_rollouts(api, [result], 60, clock=lambda: next(clock), sleep=slept.append)
    assert 'did not roll out within 60 s: 1 of 2 replicas' in caught.value.message
    assert 0 < len(slept) < 10 and api.calls.count(('GET', path, {})) == len(slept)


def test_a_workload_the_apply_answered_as_rolled_out_costs_no_request():
    api = FakeApi()
    result = {'kind': 'Deployment', 'path': '/apis/apps/v1/namespaces/ai/deployments/o', 'object': deployment()}
    apply.wait_for_rollouts(api, [result], 60, sleep=lambda _: None)
    assert api.calls == []


def test_secret_values_are_hidden_in_what_the_module_shows():
    secret = {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': 's', 'namespace': 'ai'},
              'data': {'auth': 'c2VjcmV0'}, 'stringData': {'token': 'plain'}}
    shown = apply.redacted(secret)
    assert shown['data'] == {'auth': '********'} and shown['stringData'] == {'token': '********'}
    assert secret['data'] == {'auth': 'c2VjcmV0'}
    assert apply.redacted(SERVICE) is SERVICE and apply.redacted(None) is None


def test_check_mode_reports_a_create_in_a_namespace_the_same_run_would_create():
    api = FakeApi(namespaces=[])
    (result,) = apply.apply_objects(api, [SERVICE], 'llmops-ollama', check_mode=True)
    assert result['changed'] and result['after']['spec'] == SERVICE['spec'] and api.objects == {}
    with pytest.raises(ClusterError) as caught:
        apply.apply_objects(FakeApi(namespaces=[]), [SERVICE], 'llmops-ollama')
    assert caught.value.status == 404
