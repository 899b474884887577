# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lost-node runbook's decisions from raw API objects: which claims a lost node strands, which stay, where a
replica fits, and every refusal. Pure functions; tests/integration/collection/test_faults.py runs the runbook
against the simulator's node loss."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils import lost_node as ln

SELECTOR = {'app.kubernetes.io/name': 'ollama', 'app.kubernetes.io/instance': 'ollama'}
GPU_TAINT = {'key': 'nvidia.com/gpu', 'value': 'present', 'effect': 'NoSchedule'}


def node(name, ready=True, gpus=1, taints=(GPU_TAINT,), labels=None, unschedulable=False, cpu='16', memory='64Gi'):
    all_labels = {'kubernetes.io/hostname': name, 'nvidia.com/gpu.present': 'true' if gpus else 'false'}
    all_labels.update(labels or {})
    return {'metadata': {'name': name, 'labels': all_labels},
            'spec': {'taints': list(taints), 'unschedulable': unschedulable},
            'status': {'allocatable': {'nvidia.com/gpu': str(gpus), 'cpu': cpu, 'memory': memory},
                       'conditions': [{'type': 'Ready', 'status': 'True' if ready else 'Unknown',
                                       'reason': 'KubeletReady' if ready else 'NodeStatusUnknown'}]}}


def template(anti=True, gpus=1):
    spec = {
        'tolerations': [{'key': 'nvidia.com/gpu', 'operator': 'Exists', 'effect': 'NoSchedule'}],
        'affinity': {'nodeAffinity': {'requiredDuringSchedulingIgnoredDuringExecution': {'nodeSelectorTerms': [
            {'matchExpressions': [{'key': 'nvidia.com/gpu.present', 'operator': 'In', 'values': ['true']}]}]}}},
        'initContainers': [{'name': 'models', 'restartPolicy': 'Always',
                            'resources': {'requests': {'cpu': '10m', 'memory': '32Mi'}}}],
        'containers': [{'name': 'ollama', 'resources': {'requests': {'cpu': '1', 'memory': '4Gi',
                                                                     'nvidia.com/gpu': str(gpus)},
                                                        'limits': {'nvidia.com/gpu': str(gpus)}}},
                       {'name': 'gate', 'resources': {'requests': {'cpu': '50m', 'memory': '64Mi'}}}],
    }
    if anti:
        spec['affinity']['podAntiAffinity'] = {'requiredDuringSchedulingIgnoredDuringExecution': [
            {'labelSelector': {'matchLabels': SELECTOR}, 'topologyKey': 'kubernetes.io/hostname'}]}
    return spec


def statefulset(replicas=2, anti=True):
    return {'kind': 'StatefulSet', 'metadata': {'name': 'ollama', 'namespace': 'ollama'},
            'spec': {'replicas': replicas, 'selector': {'matchLabels': SELECTOR},
                     'volumeClaimTemplates': [{'metadata': {'name': 'models'}}],
                     'template': {'metadata': {'labels': SELECTOR}, 'spec': template(anti)}}}


def deployment():
    spec = template(anti=False)
    spec['volumes'] = [{'name': 'models', 'persistentVolumeClaim': {'claimName': 'ollama-models'}},
                       {'name': 'home', 'emptyDir': {}}]
    return {'kind': 'Deployment', 'metadata': {'name': 'ollama', 'namespace': 'ollama'},
            'spec': {'replicas': 1, 'selector': {'matchLabels': SELECTOR},
                     'template': {'metadata': {'labels': SELECTOR}, 'spec': spec}}}


def claim(name, volume):
    return {'metadata': {'name': name, 'uid': 'uid-' + name, 'labels': SELECTOR},
            'spec': {'accessModes': ['ReadWriteOnce'], 'resources': {'requests': {'storage': '10Gi'}},
                     'storageClassName': 'local-path', 'volumeName': volume, 'volumeMode': 'Filesystem'}}


def volume(name, host=None, zone=None):
    spec = {}
    if host or zone:
        key, value = ('kubernetes.io/hostname', host) if host else ('topology.kubernetes.io/zone', zone)
        spec['nodeAffinity'] = {'required': {'nodeSelectorTerms': [
            {'matchExpressions': [{'key': key, 'operator': 'In', 'values': [value]}]}]}}
    return {'metadata': {'name': name}, 'spec': spec}


def pod(name, node_name, claim_name=None, labels=None, gpus=1, phase='Running'):
    volumes = [{'name': 'models', 'persistentVolumeClaim': {'claimName': claim_name}}] if claim_name else []
    return {'metadata': {'name': name, 'uid': 'uid-' + name, 'labels': SELECTOR if labels is None else labels},
            'spec': {'nodeName': node_name, 'volumes': volumes,
                     'containers': [{'name': 'c', 'resources': {'requests': {'nvidia.com/gpu': str(gpus)}}}]},
            'status': {'phase': phase}}


def two_replicas(nodes):
    claims = [claim('models-ollama-0', 'pv-0'), claim('models-ollama-1', 'pv-1'), claim('other', 'pv-x')]
    volumes = [volume('pv-0', host='gpu-a'), volume('pv-1', host='gpu-b'), volume('pv-x', host='gpu-b')]
    pods = [pod('ollama-0', 'gpu-a', 'models-ollama-0'), pod('ollama-1', 'gpu-b', 'models-ollama-1')]
    return dict(workload=statefulset(), claims=claims, volumes=volumes, pods=pods, nodes=nodes)


def plan(lost, objects, lost_object='lookup'):
    by_name = dict((n['metadata']['name'], n) for n in objects['nodes'])
    node_object = by_name.get(lost) if lost_object == 'lookup' else lost_object
    return ln.plan_recovery(lost, node_object, objects['workload'], objects['claims'], objects['volumes'],
                            objects['pods'], objects['nodes'])


def test_a_ready_node_is_refused_with_drain_as_the_fix():
    objects = two_replicas([node('gpu-a'), node('gpu-b'), node('gpu-c')])
    with pytest.raises(ln.Refusal) as refused:
        plan('gpu-a', objects)
    assert 'is Ready' in refused.value.message and 'drain.yml' in refused.value.fix


def test_the_claim_pinned_to_the_lost_node_is_stranded_and_a_free_gpu_node_takes_it():
    objects = two_replicas([node('gpu-a', ready=False), node('gpu-b'), node('gpu-c')])
    result = plan('gpu-a', objects)
    assert [s['claim'] for s in result['stranded']] == ['models-ollama-0']
    assert result['stranded'][0]['pods'] == ['ollama-0'] and result['stranded'][0]['claim_uid'] == 'uid-models-ollama-0'
    assert result['kept'] == [{'claim': 'models-ollama-1', 'why': 'volume pv-1 is on gpu-b'}]
    assert result['slots'] == 1
    assert result['excluded'] == {'gpu-b': 'runs a replica already (one replica per node)'}
    assert result['node_state'] == 'Ready=Unknown (NodeStatusUnknown)'


def test_no_room_is_refused_naming_each_node_and_nothing_is_planned():
    objects = two_replicas([node('gpu-a', ready=False), node('gpu-b'), node('cpu', gpus=0, taints=()),
                            node('gpu-c', unschedulable=True), node('gpu-d', ready=False)])
    with pytest.raises(ln.Refusal) as refused:
        plan('gpu-a', objects)
    message = refused.value.message
    assert 'no eligible node has room for any of the replica(s) on gpu-a (models-ollama-0)' in message
    assert 'gpu-b: runs a replica already' in message and 'gpu-c: cordoned' in message
    assert 'gpu-d: not Ready' in message and "cpu: does not match the pods' node selector or affinity" in message
    assert 'nothing was deleted' in message and 'bring gpu-a back' in refused.value.fix


def test_a_node_deleted_from_the_cluster_counts_as_lost():
    objects = two_replicas([node('gpu-b'), node('gpu-c')])
    result = plan('gpu-a', objects, lost_object=None)
    assert result['node_state'] == 'deleted from the cluster'
    assert [s['claim'] for s in result['stranded']] == ['models-ollama-0']


def test_gpus_taken_by_other_pods_and_untolerated_taints_leave_no_room():
    nodes = [node('gpu-a', ready=False), node('gpu-b'), node('gpu-c'),
             node('gpu-d', taints=(GPU_TAINT, {'key': 'dedicated', 'value': 'training', 'effect': 'NoSchedule'}))]
    objects = two_replicas(nodes)
    objects['pods'].append(pod('trainer', 'gpu-c', labels={'app': 'trainer'}))
    with pytest.raises(ln.Refusal) as refused:
        plan('gpu-a', objects)
    assert 'gpu-c: 0 of 1 GPUs free, 1 needed' in refused.value.message
    assert 'gpu-d: taint dedicated=training:NoSchedule not tolerated' in refused.value.message
    # A finished pod holds nothing.
    objects['pods'][-1]['status']['phase'] = 'Succeeded'
    assert plan('gpu-a', objects)['slots'] == 1


def test_the_pods_about_to_be_deleted_free_their_place():
    # Soft anti-affinity, two GPUs on gpu-b: the lost replica fits beside the other.
    objects = two_replicas([node('gpu-a', ready=False), node('gpu-b', gpus=2)])
    objects['workload'] = statefulset(anti=False)
    assert plan('gpu-a', objects)['slots'] == 1
    objects['pods'].append(pod('trainer', 'gpu-b', labels={'app': 'trainer'}))
    with pytest.raises(ln.Refusal):
        plan('gpu-a', objects)


def test_cpu_and_memory_count_as_the_scheduler_counts_them():
    objects = two_replicas([node('gpu-a', ready=False), node('gpu-c', memory='4Gi')])
    with pytest.raises(ln.Refusal) as refused:
        plan('gpu-a', objects)
    assert 'gpu-c: not enough memory free' in refused.value.message


def test_zonal_and_unpinned_volumes_are_kept():
    objects = two_replicas([node('gpu-a', ready=False), node('gpu-b'), node('gpu-c')])
    objects['volumes'][0] = volume('pv-0', zone='us-east-1a')
    result = plan('gpu-a', objects)
    assert result['stranded'] == []
    assert {'claim': 'models-ollama-0', 'why': 'volume pv-0 is not pinned to a node'} in result['kept']


def test_a_deployments_claim_is_found_through_its_pod_template():
    objects = {'workload': deployment(), 'claims': [claim('ollama-models', 'pv-d')],
               'volumes': [volume('pv-d', host='gpu-a')], 'pods': [pod('ollama-abc', 'gpu-a', 'ollama-models')],
               'nodes': [node('gpu-a', ready=False), node('gpu-b')]}
    result = plan('gpu-a', objects)
    assert result['kind'] == 'Deployment' and [s['claim'] for s in result['stranded']] == ['ollama-models']
    again = ln.new_claim(result['stranded'][0], 'ollama')
    assert again['metadata'] == {'name': 'ollama-models', 'namespace': 'ollama', 'labels': SELECTOR}
    assert again['spec'] == {'accessModes': ['ReadWriteOnce'], 'resources': {'requests': {'storage': '10Gi'}},
                             'storageClassName': 'local-path', 'volumeMode': 'Filesystem'}


def test_no_workload_plans_nothing():
    result = ln.plan_recovery('gpu-a', None, None, [], [], [], [])
    assert result['stranded'] == [] and result['kind'] is None


@pytest.mark.parametrize('expr, labels, expected', [
    ({'key': 'a', 'operator': 'In', 'values': ['1']}, {'a': '1'}, True),
    ({'key': 'a', 'operator': 'NotIn', 'values': ['1']}, {'a': '1'}, False),
    ({'key': 'a', 'operator': 'Exists'}, {}, False),
    ({'key': 'a', 'operator': 'DoesNotExist'}, {}, True),
    ({'key': 'a', 'operator': 'Gt', 'values': ['3']}, {'a': '4'}, True),
    ({'key': 'a', 'operator': 'Lt', 'values': ['3']}, {'a': 'x'}, False),
])
def test_node_selector_operators(expr, labels, expected):
    assert ln._matches_expression(labels, expr) is expected


def test_volume_nodes_reads_hostname_terms_and_match_fields():
    assert ln.volume_nodes(volume('v', host='n1')) == {'n1'}
    field = {'spec': {'nodeAffinity': {'required': {'nodeSelectorTerms': [
        {'matchFields': [{'key': 'metadata.name', 'operator': 'In', 'values': ['n2']}]}]}}}}
    assert ln.volume_nodes(field) == {'n2'}
    assert ln.volume_nodes(volume('v')) is None
    assert ln.volume_nodes(volume('v', zone='z')) is None


def test_an_unschedulable_condition_is_read():
    refused = {'status': {'conditions': [{'type': 'PodScheduled', 'status': 'False', 'reason': 'Unschedulable',
                                          'message': '0/3 nodes are available'}]}}
    assert ln.unschedulable(refused) == '0/3 nodes are available'
    assert ln.unschedulable({'status': {}}) is None


class FakeApi(object):
    """Records the requests; the claim is gone after its delete and the replacement pod is scheduled and Ready."""

    def __init__(self, kind):
        self.kind = kind
        self.calls = []
        self.claim_deleted = False

    def request(self, method, path, body=None, query=None):
        self.calls.append((method, path, body))
        if method == 'DELETE' and '/persistentvolumeclaims/' in path:
            self.claim_deleted = True
        return {}

    def get_or_none(self, path):
        if '/persistentvolumeclaims/' in path:
            return None if self.claim_deleted else {'metadata': {'uid': 'uid-models-ollama-0'}}
        return {'status': {'conditions': [{'type': 'Ready', 'status': 'True'}]}}

    def get(self, path, **query):
        assert query == {'labelSelector': 'app=x'}
        return {'items': [pod('ollama-0-new', 'gpu-c', 'models-ollama-0')]}


@pytest.mark.parametrize('kind', ['StatefulSet', 'Deployment'])
def test_recover_deletes_the_claim_before_the_pod_and_recreates_only_a_deployments_claim(kind):
    objects = two_replicas([node('gpu-a', ready=False), node('gpu-b'), node('gpu-c')])
    result = plan('gpu-a', objects)
    result['kind'] = kind
    api = FakeApi(kind)
    lines = ln.recover(api, 'ollama', 'app=x', result, timeout=5, wait_ready=True, sleep=lambda seconds: None)
    methods = [(call[0], call[1].rsplit('/', 2)[-2]) for call in api.calls]
    expected = [('DELETE', 'persistentvolumeclaims'), ('DELETE', 'pods')]
    if kind == 'Deployment':
        expected.append(('POST', 'ollama'))  # POST /api/v1/namespaces/ollama/persistentvolumeclaims
    assert methods == expected
    assert api.calls[1][2] == {'gracePeriodSeconds': 0}
    assert lines == ['models-ollama-0: claim deleted; replica ollama-0-new runs on gpu-c, Ready with all its models '
                     '(fetched by itself)']
