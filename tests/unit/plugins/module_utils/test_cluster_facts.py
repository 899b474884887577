# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils.cluster_facts import (
    build_facts,
    detect_distribution,
    existing_objects,
    is_ollama_image,
    kubernetes_version,
    pod_resource_request,
    storage_class_facts,
)

K3S_VERSION = {'major': '1', 'minor': '30', 'gitVersion': 'v1.30.4+k3s1'}
EKS_VERSION = {'major': '1', 'minor': '30+', 'gitVersion': 'v1.30.4-eks-a737599'}
PLAIN_VERSION = {'major': '1', 'minor': '31', 'gitVersion': 'v1.31.2'}


def node(name, gpus=0, ready=True, unschedulable=False, labels=None, taints=None, zone=None, capacity=None):
    all_labels = {'kubernetes.io/hostname': name}
    if zone:
        all_labels['topology.kubernetes.io/zone'] = zone
    all_labels.update(labels or {})
    status = {
        'capacity': {'cpu': '16', 'memory': '64Gi'},
        'allocatable': {'cpu': '15800m', 'memory': '62Gi'},
        'conditions': [
            {'type': 'MemoryPressure', 'status': 'False'},
            {'type': 'Ready', 'status': 'True' if ready else 'Unknown'},
        ],
    }
    if gpus or capacity:
        status['capacity']['nvidia.com/gpu'] = str(capacity if capacity is not None else gpus)
        status['allocatable']['nvidia.com/gpu'] = str(gpus)
    spec = {}
    if unschedulable:
        spec['unschedulable'] = True
    if taints:
        spec['taints'] = taints
    return {'kind': 'Node', 'metadata': {'name': name, 'labels': all_labels}, 'spec': spec, 'status': status}


def pod(name, node_name, gpus=None, limits_only=False, phase='Running', image='vllm/vllm-openai:v0.6.0',
        namespace='default', init=None, labels=None):
    resources = {}
    if gpus is not None:
        resources = {'limits': {'nvidia.com/gpu': str(gpus)}}
        if not limits_only:
            resources['requests'] = {'nvidia.com/gpu': str(gpus)}
    spec = {'containers': [{'name': 'main', 'image': image, 'resources': resources}]}
    if node_name:
        spec['nodeName'] = node_name
    if init:
        spec['initContainers'] = init
    return {'metadata': {'name': name, 'namespace': namespace, 'labels': labels or {}}, 'spec': spec,
            'status': {'phase': phase, 'conditions': [{'type': 'Ready', 'status': 'True'}], 'podIP': '10.42.0.5'}}


def sc(name, provisioner, default=False, binding='WaitForFirstConsumer', expansion=None, created='2024-01-01T00:00:00Z',
       beta=False):
    annotations = {}
    if default:
        key = 'storageclass.beta.kubernetes.io/is-default-class' if beta else 'storageclass.kubernetes.io/is-default-class'
        annotations[key] = 'true'
    obj = {'metadata': {'name': name, 'annotations': annotations, 'creationTimestamp': created},
           'provisioner': provisioner, 'reclaimPolicy': 'Delete', 'volumeBindingMode': binding}
    if expansion is not None:
        obj['allowVolumeExpansion'] = expansion
    return obj


def ds(name, namespace, desired, ready, labels=None, owner=None):
    meta = {'name': name, 'namespace': namespace, 'labels': labels or {}}
    if owner:
        meta['ownerReferences'] = [{'kind': owner, 'name': 'cluster-policy'}]
    return {'metadata': meta, 'status': {'desiredNumberScheduled': desired, 'numberReady': ready}}


def named(name):
    return {'metadata': {'name': name}}


GPU_LABELS = {'nvidia.com/gpu.present': 'true', 'nvidia.com/gpu.product': 'NVIDIA-H100-80GB-HBM3',
              'nvidia.com/gpu.memory': '81559', 'nvidia.com/gpu.count': '8'}


def facts_for(**kwargs):
    args = dict(version_info=PLAIN_VERSION, nodes=[], pods=[], storage_classes=[], csi_drivers=[],
                runtime_classes=[], daemonsets=[], namespace_objects=[])
    args.update(kwargs)
    return build_facts(**args)


# ---------------------------------------------------------------- version

@pytest.mark.parametrize('info, expected', [
    (K3S_VERSION, {'major': 1, 'minor': 30, 'git_version': 'v1.30.4+k3s1'}),
    (EKS_VERSION, {'major': 1, 'minor': 30, 'git_version': 'v1.30.4-eks-a737599'}),
    ({'gitVersion': 'v1.27.9'}, {'major': 1, 'minor': 27, 'git_version': 'v1.27.9'}),
    ({'server': {'kubernetes': {'major': '1', 'minor': '29', 'gitVersion': 'v1.29.1'}}},
     {'major': 1, 'minor': 29, 'git_version': 'v1.29.1'}),
    ({}, {'major': None, 'minor': None, 'git_version': ''}),
    (None, {'major': None, 'minor': None, 'git_version': ''}),
])
def test_kubernetes_version(info, expected):
    assert kubernetes_version(info) == expected


# ---------------------------------------------------------------- distribution

@pytest.mark.parametrize('git_version, labels, expected', [
    ('v1.30.4+k3s1', [], 'k3s'),
    ('v1.30.4-eks-a737599', [], 'eks'),
    ('v1.30.4', [{'node.kubernetes.io/instance-type': 'k3s'}], 'k3s'),
    ('v1.30.4', [{'node-role.kubernetes.io/control-plane': 'true', 'k3s.io/hostname': 'cp1'}], 'k3s'),
    ('v1.30.4', [{'eks.amazonaws.com/nodegroup': 'gpu'}], 'eks'),
    ('v1.30.4', [{'kubernetes.io/hostname': 'a'}], 'other'),
    ('v1.30.4+rke2r1', [], 'other'),
    ('', [], 'other'),
])
def test_detect_distribution(git_version, labels, expected):
    assert detect_distribution(git_version, labels) == expected


def test_distribution_from_nodes_in_build_facts():
    facts = facts_for(nodes=[node('ip-10-0-1-1', labels={'eks.amazonaws.com/nodegroup': 'gpu'})])
    assert facts['distribution'] == 'eks'


# ---------------------------------------------------------------- nodes and GPU accounting

def test_node_fields():
    taint = {'key': 'nvidia.com/gpu', 'value': 'present', 'effect': 'NoSchedule'}
    facts = facts_for(nodes=[node('gpu-1', gpus=8, labels=GPU_LABELS, taints=[taint], zone='us-east-1a')])
    n = facts['nodes'][0]
    assert n['name'] == 'gpu-1'
    assert n['ready'] is True and n['schedulable'] is True
    assert n['taints'] == [taint]
    assert n['zone'] == 'us-east-1a'
    assert n['gpu_capacity'] == 8 and n['gpu_allocatable'] == 8
    assert n['gpu_requested'] == 0 and n['gpu_free'] == 8
    assert n['gpu_product'] == 'NVIDIA-H100-80GB-HBM3'
    assert n['gpu_memory_mib'] == 81559
    assert n['gpu_present_label'] is True
    assert n['labels']['nvidia.com/gpu.count'] == '8'
    assert facts['gpu_nodes'] == ['gpu-1']


def test_cpu_node_is_not_a_gpu_node():
    facts = facts_for(nodes=[node('cpu-1'), node('gpu-1', gpus=1)])
    cpu = facts['nodes'][0]
    assert cpu['gpu_allocatable'] == 0 and cpu['gpu_memory_mib'] is None and cpu['gpu_present_label'] is False
    assert facts['gpu_nodes'] == ['gpu-1']


def test_unready_and_cordoned_nodes():
    facts = facts_for(nodes=[node('a', gpus=1, ready=False), node('b', gpus=1, unschedulable=True)])
    assert [(n['ready'], n['schedulable']) for n in facts['nodes']] == [(False, True), (True, False)]
    assert facts['gpu_nodes'] == ['a', 'b']


def test_gpu_requests_counted_per_node():
    pods = [
        pod('train-1', 'gpu-1', gpus=2),
        pod('train-2', 'gpu-1', gpus=1, limits_only=True),   # limit counts when request absent
        pod('done', 'gpu-1', gpus=4, phase='Succeeded'),     # terminated: released
        pod('failed', 'gpu-1', gpus=4, phase='Failed'),
        pod('pending', None, gpus=4, phase='Pending'),       # not bound: no node
        pod('cpu', 'gpu-1'),
        pod('other-node', 'gpu-2', gpus=1),
    ]
    facts = facts_for(nodes=[node('gpu-1', gpus=4), node('gpu-2', gpus=1)], pods=pods)
    by_name = dict((n['name'], n) for n in facts['nodes'])
    assert by_name['gpu-1']['gpu_requested'] == 3 and by_name['gpu-1']['gpu_free'] == 1
    assert by_name['gpu-2']['gpu_requested'] == 1 and by_name['gpu-2']['gpu_free'] == 0


def test_overcommitted_node_free_is_zero():
    facts = facts_for(nodes=[node('gpu-1', gpus=1)], pods=[pod('a', 'gpu-1', gpus=1), pod('b', 'gpu-1', gpus=1)])
    assert facts['nodes'][0]['gpu_free'] == 0


@pytest.mark.parametrize('containers, init, expected', [
    ([1, 1], [], 2),
    ([1], [3], 3),                                   # init container peak
    ([2], [1], 2),
    ([1], [{'gpus': 1, 'sidecar': True}], 2),        # sidecar adds to the app containers
    ([0], [{'gpus': 1, 'sidecar': True}, 2], 3),     # init after a sidecar: 2 + 1
    ([], [], 0),
])
def test_pod_resource_request(containers, init, expected):
    def container(spec):
        if isinstance(spec, dict):
            c = {'name': 'c', 'resources': {'requests': {'nvidia.com/gpu': str(spec['gpus'])}}}
            if spec.get('sidecar'):
                c['restartPolicy'] = 'Always'
            return c
        return {'name': 'c', 'resources': {'requests': {'nvidia.com/gpu': str(spec)}} if spec else {}}
    p = {'spec': {'containers': [container(c) for c in containers], 'initContainers': [container(c) for c in init]}}
    assert pod_resource_request(p) == expected


def test_node_without_gpu_memory_label():
    labels = dict(GPU_LABELS)
    del labels['nvidia.com/gpu.memory']
    facts = facts_for(nodes=[node('g', gpus=1, labels=labels)])
    assert facts['nodes'][0]['gpu_memory_mib'] is None


@pytest.mark.parametrize('labels, expected', [
    ({'nvidia.com/gpu.memory': '81559'}, (81559, 'label')),
    ({'nvidia.com/gpu.memory': '81559', 'node.kubernetes.io/instance-type': 'g5.2xlarge'}, (81559, 'label')),
    ({'node.kubernetes.io/instance-type': 'g5.2xlarge'}, (23028, 'instance-type')),
    ({'node.kubernetes.io/instance-type': 'p5.48xlarge'}, (81559, 'instance-type')),
    ({'node.kubernetes.io/instance-type': 'p4de.24xlarge'}, (81920, 'instance-type')),
    ({'node.kubernetes.io/instance-type': 'm6i.xlarge'}, (None, None)),
    ({'node.kubernetes.io/instance-type': 'k3s'}, (None, None)),
    ({'nvidia.com/gpu.memory': 'lots'}, (None, None)),
    ({}, (None, None)),
])
def test_gpu_memory_sources(labels, expected):
    n = facts_for(nodes=[node('g', gpus=1, labels=labels)])['nodes'][0]
    assert (n['gpu_memory_mib'], n['gpu_memory_source']) == expected


def test_legacy_zone_label():
    facts = facts_for(nodes=[node('g', gpus=1, labels={'failure-domain.beta.kubernetes.io/zone': 'z1'})])
    assert facts['nodes'][0]['zone'] == 'z1'


# ---------------------------------------------------------------- storage classes

@pytest.mark.parametrize('provisioner, rwx', [
    ('efs.csi.aws.com', True),
    ('nfs.csi.k8s.io', True),
    ('cluster.local/nfs-subdir-external-provisioner', True),
    ('k8s-sigs.io/nfs-subdir-external-provisioner', True),
    ('file.csi.azure.com', True),
    ('filestore.csi.storage.gke.io', True),
    ('cephfs.csi.ceph.com', True),
    ('driver.longhorn.io', False),
    ('rancher.io/local-path', False),
    ('ebs.csi.aws.com', False),
    ('rbd.csi.ceph.com', False),
])
def test_storage_class_rwx(provisioner, rwx):
    assert storage_class_facts(sc('x', provisioner))['rwx'] is rwx


def test_storage_class_fields_and_defaults():
    facts = facts_for(storage_classes=[
        sc('local-path', 'rancher.io/local-path', default=True),
        {'metadata': {'name': 'gp2'}, 'provisioner': 'kubernetes.io/aws-ebs'},
        sc('efs', 'efs.csi.aws.com', binding='Immediate', expansion=True),
    ])
    by_name = dict((c['name'], c) for c in facts['storage_classes'])
    assert by_name['local-path']['default'] is True
    assert by_name['local-path']['binding_mode'] == 'WaitForFirstConsumer'
    assert by_name['gp2'] == dict(by_name['gp2'], default=False, binding_mode='Immediate', allow_expansion=False,
                                  reclaim_policy='Delete', rwx=False)
    assert by_name['efs']['allow_expansion'] is True and by_name['efs']['rwx'] is True
    assert facts['default_storage_class'] == 'local-path'
    assert facts['warnings'] == []


def test_no_default_storage_class():
    assert facts_for(storage_classes=[sc('gp3', 'ebs.csi.aws.com')])['default_storage_class'] is None


def test_beta_default_annotation():
    assert facts_for(storage_classes=[sc('gp2', 'kubernetes.io/aws-ebs', default=True, beta=True)])[
        'default_storage_class'] == 'gp2'


def test_two_defaults_newest_wins_with_warning():
    facts = facts_for(storage_classes=[
        sc('old', 'ebs.csi.aws.com', default=True, created='2023-01-01T00:00:00Z'),
        sc('new', 'ebs.csi.aws.com', default=True, created='2024-06-01T00:00:00Z'),
    ])
    assert facts['default_storage_class'] == 'new'
    assert any('several StorageClasses' in w for w in facts['warnings'])


# ---------------------------------------------------------------- drivers, runtime classes, device plugin

def test_csi_drivers_and_runtime_classes_are_names():
    facts = facts_for(csi_drivers=[named('efs.csi.aws.com'), named('ebs.csi.aws.com')],
                      runtime_classes=[named('nvidia'), named('nvidia-experimental')])
    assert facts['csi_drivers'] == ['ebs.csi.aws.com', 'efs.csi.aws.com']
    assert facts['runtime_classes'] == ['nvidia', 'nvidia-experimental']


@pytest.mark.parametrize('daemonsets, expected, operator', [
    ([], {'found': False, 'healthy': False, 'source': None}, False),
    ([ds('nvidia-device-plugin-daemonset', 'kube-system', 2, 2)],
     {'found': True, 'healthy': True, 'source': 'device-plugin', 'desired': 2, 'ready': 2,
      'namespace': 'kube-system', 'name': 'nvidia-device-plugin-daemonset'}, False),
    ([ds('nvdp-nvidia-device-plugin', 'nvidia-device-plugin', 3, 1)],
     {'found': True, 'healthy': False, 'ready': 1, 'desired': 3, 'source': 'device-plugin'}, False),
    ([ds('nvidia-device-plugin-daemonset', 'kube-system', 0, 0)],
     {'found': True, 'healthy': False}, False),
    ([ds('nvidia-device-plugin-daemonset', 'gpu-operator', 2, 2)],
     {'found': True, 'healthy': True, 'source': 'gpu-operator'}, True),
    ([ds('nvidia-device-plugin-daemonset', 'nvidia-system', 2, 2,
         labels={'app.kubernetes.io/managed-by': 'gpu-operator'})],
     {'source': 'gpu-operator'}, True),
    ([ds('nvidia-device-plugin-daemonset', 'ops', 2, 2, owner='ClusterPolicy')],
     {'source': 'gpu-operator'}, True),
    ([ds('kube-proxy', 'kube-system', 3, 3)], {'found': False}, False),
    # a healthy plugin wins over a broken one
    ([ds('nvidia-device-plugin-old', 'kube-system', 2, 0), ds('nvidia-device-plugin-daemonset', 'kube-system', 2, 2)],
     {'name': 'nvidia-device-plugin-daemonset', 'healthy': True}, False),
])
def test_device_plugin(daemonsets, expected, operator):
    facts = facts_for(daemonsets=daemonsets)
    for key, value in expected.items():
        assert facts['device_plugin'][key] == value, key
    assert facts['gpu_operator'] is operator


def test_two_device_plugins_warn():
    facts = facts_for(daemonsets=[ds('nvidia-device-plugin-a', 'kube-system', 1, 1),
                                  ds('nvidia-device-plugin-b', 'kube-system', 1, 1)])
    assert any('several NVIDIA device plugin' in w for w in facts['warnings'])


def test_gpu_operator_from_other_daemonsets_and_feature_discovery():
    facts = facts_for(daemonsets=[
        ds('gpu-feature-discovery', 'gpu-operator', 1, 1),
        ds('nvidia-container-toolkit-daemonset', 'gpu-operator', 1, 1),
        ds('gpu-operator-node-feature-discovery-worker', 'gpu-operator', 1, 1),
    ])
    assert facts['gpu_operator'] is True
    assert facts['device_plugin']['found'] is False
    assert facts['feature_discovery'] == {'gpu_feature_discovery': True, 'node_feature_discovery': True}


# ---------------------------------------------------------------- existing Ollama objects

@pytest.mark.parametrize('image, expected', [
    ('ollama/ollama:0.11.4', True),
    ('docker.io/ollama/ollama@sha256:' + 'a' * 64, True),
    ('registry.local:5000/mirror/ollama:0.11.4', True),
    ('ollama', True),
    ('ghcr.io/open-webui/open-webui:main', False),
    ('example/ollama-exporter:1', False),
    ('', False),
])
def test_is_ollama_image(image, expected):
    assert is_ollama_image(image) is expected


def _deployment(name, image='ollama/ollama:0.11.4', replicas=2, current=2, ready=1, labels=None, kind='Deployment'):
    return {'kind': kind, 'metadata': {'name': name, 'namespace': 'ollama', 'labels': labels or {}},
            'spec': {'replicas': replicas, 'template': {'spec': {'containers': [{'name': 'o', 'image': image}]}}},
            'status': {'replicas': current, 'readyReplicas': ready}}


def test_existing_objects():
    objects = [
        {'kind': 'Namespace', 'metadata': {'name': 'ollama'}},
        _deployment('ollama'),
        _deployment('webui', image='ghcr.io/open-webui/open-webui:main'),
        _deployment('models', image='busybox', labels={'app.kubernetes.io/name': 'ollama'}, kind='StatefulSet',
                    replicas=1, current=1, ready=1),
        {'kind': 'PersistentVolumeClaim', 'metadata': {'name': 'ollama-models', 'namespace': 'ollama',
                                                       'annotations': {'volume.kubernetes.io/selected-node': 'gpu-1'}},
         'spec': {'storageClassName': 'local-path', 'accessModes': ['ReadWriteOnce'],
                  'resources': {'requests': {'storage': '20Gi'}}},
         'status': {'phase': 'Bound', 'capacity': {'storage': '20Gi'}}},
        {'kind': 'Service', 'metadata': {'name': 'ollama'}, 'spec': {'type': 'ClusterIP'}},
        {'kind': 'PodDisruptionBudget', 'metadata': {'name': 'ollama'}, 'spec': {'minAvailable': 1}},
    ]
    existing = existing_objects(objects)
    assert existing['namespace_exists'] is True
    assert [(w['kind'], w['name']) for w in existing['workloads']] == [('Deployment', 'ollama'), ('StatefulSet', 'models')]
    assert existing['ollama_replicas'] == 3
    assert existing['claims'] == [{'name': 'ollama-models', 'namespace': 'ollama', 'storage_class': 'local-path',
                                   'access_modes': ['ReadWriteOnce'], 'size_bytes': 20 * 2 ** 30, 'phase': 'Bound',
                                   'selected_node': 'gpu-1'}]
    assert existing['services'] == [{'name': 'ollama', 'type': 'ClusterIP'}]
    assert existing['pdbs'] == [{'name': 'ollama', 'min_available': 1}]


def test_existing_statefulset_claim_template():
    statefulset = _deployment('ollama', kind='StatefulSet')
    statefulset['spec']['volumeClaimTemplates'] = [{
        'metadata': {'name': 'models'},
        'spec': {'accessModes': ['ReadWriteOnce'], 'resources': {'requests': {'storage': '20Gi'}}}}]
    workloads = existing_objects([statefulset, _deployment('plain')])['workloads']
    assert workloads[0]['claim_template'] == {'name': 'models', 'access_modes': ['ReadWriteOnce'],
                                              'storage_class': '', 'size': '20Gi'}
    assert workloads[1]['claim_template'] is None


def test_existing_objects_by_kind_dict():
    existing = existing_objects({'Deployment': [_deployment('ollama')], 'Namespace': [{'metadata': {'name': 'x'}}]})
    assert existing['namespace_exists'] is True and existing['ollama_replicas'] == 2


def test_existing_empty():
    assert existing_objects(None)['workloads'] == [] and existing_objects([])['namespace_exists'] is False


def test_ollama_pods_found_in_pod_pass():
    facts = facts_for(nodes=[node('gpu-1', gpus=2)], pods=[
        pod('ollama-0', 'gpu-1', gpus=1, image='ollama/ollama:0.11.4', namespace='ollama'),
        pod('other', 'gpu-1', gpus=1),
    ])
    assert [p['name'] for p in facts['existing']['ollama_pods']] == ['ollama-0']
    assert facts['existing']['ollama_pods'][0]['gpu_request'] == 1
    assert facts['nodes'][0]['gpu_free'] == 0


# ---------------------------------------------------------------- whole facts

def test_k3s_cluster_facts_shape():
    facts = build_facts(
        K3S_VERSION,
        [node('k3s-gpu-1', gpus=1, labels=dict(GPU_LABELS, **{'node.kubernetes.io/instance-type': 'k3s'})),
         node('k3s-cpu-1', labels={'node.kubernetes.io/instance-type': 'k3s'})],
        [],
        [sc('local-path', 'rancher.io/local-path', default=True)],
        [],
        [named('nvidia')],
        [ds('nvidia-device-plugin-daemonset', 'kube-system', 1, 1)],
        [],
    )
    assert sorted(facts) == sorted([
        'kubernetes_version', 'distribution', 'nodes', 'node_count', 'zones', 'gpu_nodes', 'storage_classes', 'default_storage_class',
        'csi_drivers', 'runtime_classes', 'device_plugin', 'gpu_operator', 'feature_discovery', 'existing',
        'warnings', 'control_plane', 'controller_pods', 'ingress_classes', 'default_ingress_class', 'gateway_api',
        'gateway_classes', 'gateways'])
    assert facts['distribution'] == 'k3s'
    assert facts['gpu_nodes'] == ['k3s-gpu-1']
    assert facts['default_storage_class'] == 'local-path'
    assert facts['runtime_classes'] == ['nvidia']
    assert facts['device_plugin']['healthy'] is True
    assert sorted(facts['nodes'][0]) == sorted([
        'name', 'ready', 'schedulable', 'labels', 'taints', 'zone', 'instance_type', 'memory_allocatable_bytes',
        'gpu_capacity', 'gpu_allocatable', 'gpu_requested', 'gpu_free', 'gpu_product', 'gpu_memory_mib',
        'gpu_memory_source', 'gpu_present_label'])


def test_malformed_gpu_quantity_is_zero():
    n = node('g', gpus=1)
    n['status']['allocatable']['nvidia.com/gpu'] = 'lots'
    facts = facts_for(nodes=[n])
    assert facts['nodes'][0]['gpu_allocatable'] == 0 and facts['gpu_nodes'] == []


# ---------------------------------------------------------------- facts feed the plan

def test_raw_k3s_objects_to_plan():
    from ansible_collections.llmops.ollama.plugins.module_utils.plan import compute_plan
    gpu_taint = [{'key': 'nvidia.com/gpu', 'value': 'present', 'effect': 'NoSchedule'}]
    facts = build_facts(
        K3S_VERSION,
        [node('k3s-gpu-%d' % i, gpus=1, taints=gpu_taint,
              labels=dict(GPU_LABELS, **{'node.kubernetes.io/instance-type': 'k3s', 'k3s.io/hostname': 'h%d' % i}))
         for i in range(2)] + [node('k3s-server', labels={'node.kubernetes.io/instance-type': 'k3s'})],
        [pod('ollama-0', 'k3s-gpu-0', gpus=1, image='ollama/ollama:0.11.4', namespace='ollama')],
        [sc('local-path', 'rancher.io/local-path', default=True)],
        [], [named('nvidia')],
        [ds('nvidia-device-plugin-daemonset', 'kube-system', 2, 2)],
        [{'kind': 'Namespace', 'metadata': {'name': 'ollama'}},
         _deployment('ollama', replicas=1, current=1, ready=1)],
    )
    result = compute_plan(facts, {'replicas': 2, 'models': [{'name': 'llama3.2:3b', 'size': '2.0GB'}]})
    assert result['errors'] == []
    assert result['runtime_class'] == 'nvidia'
    assert result['workload_kind'] == 'StatefulSet'
    assert result['storage']['class'] == 'local-path'
    assert result['eligible_nodes'] == ['k3s-gpu-0', 'k3s-gpu-1']
    # a Deployment exists and the plan wants a StatefulSet: it says so
    assert any('will be replaced by a StatefulSet' in w for w in result['warnings'])


def test_raw_eks_objects_without_feature_discovery_need_labels():
    from ansible_collections.llmops.ollama.plugins.module_utils.plan import compute_plan
    labels = {'node.kubernetes.io/instance-type': 'g5.2xlarge', 'eks.amazonaws.com/nodegroup': 'gpu-ng'}
    facts = build_facts(
        EKS_VERSION,
        [node('ip-10-0-1-%d' % i, gpus=1, zone='us-east-1%s' % z, labels=labels,
              taints=[{'key': 'nvidia.com/gpu', 'value': 'true', 'effect': 'NoSchedule'}])
         for i, z in enumerate('ab')],
        [], [sc('gp3', 'ebs.csi.aws.com', default=True)], [named('ebs.csi.aws.com')], [],
        [ds('nvidia-device-plugin-daemonset', 'kube-system', 2, 2)], [],
    )
    result = compute_plan(facts, {'replicas': 2})
    assert [e['variable'] for e in result['errors']] == ['ollama_gpu_node_label']
    result = compute_plan(facts, {'replicas': 2, 'gpu_label_nodes': True,
                                  'models': [{'name': 'llama3.3:70b', 'size': '42GB'}]})
    assert result['label_nodes'] == ['ip-10-0-1-0', 'ip-10-0-1-1']
    assert result['affinity']['zone_spread_when'] == 'DoNotSchedule'
    # 42 GB does not fit a 23028 MiB A10G (known from the instance type)
    assert [e['variable'] for e in result['errors']] == ['ollama_models']


def test_label_keys_keep_only_gpu_nodes_with_the_labels_the_plan_reads():
    labels = {'nvidia.com/gpu.present': 'true', 'team': 'ml', 'pool': 'a', 'topology.kubernetes.io/zone': 'z1'}
    gpu = {'metadata': {'name': 'g', 'labels': labels},
           'status': {'allocatable': {'nvidia.com/gpu': '1'}, 'capacity': {'nvidia.com/gpu': '1'}}}
    cpu = {'metadata': {'name': 'c', 'labels': {'topology.kubernetes.io/zone': 'z2'}}, 'status': {}}
    facts = build_facts({'gitVersion': 'v1.34.0'}, [gpu, cpu], [], [], [], [], [], label_keys=['pool'])
    assert [n['name'] for n in facts['nodes']] == ['g']
    assert facts['nodes'][0]['labels'] == {'nvidia.com/gpu.present': 'true', 'pool': 'a',
                                           'topology.kubernetes.io/zone': 'z1'}
    assert facts['node_count'] == 2 and facts['zones'] == ['z1', 'z2']
    full = build_facts({'gitVersion': 'v1.34.0'}, [gpu, cpu], [], [], [], [], [])
    assert [n['name'] for n in full['nodes']] == ['g', 'c'] and full['nodes'][0]['labels']['team'] == 'ml'
