# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Table-driven tests of the plan: good inputs assert decisions, bad inputs assert the
error's variable (and that it says what is wrong and how to fix it)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils import plan as plan_mod
from ansible_collections.llmops.ollama.plugins.module_utils.plan import (
    VARIABLES,
    compute_plan,
    config_from_role_vars,
    decide_claim_size,
    decide_pdb,
    decide_storage_layout,
    even_spread_feasible,
    parse_model_name,
    parse_ollama_version,
    tolerates,
    untolerated_taints,
    variable,
)

GPU_TAINT = {'key': 'nvidia.com/gpu', 'value': 'present', 'effect': 'NoSchedule'}
DEDICATED_TAINT = {'key': 'dedicated', 'value': 'ml', 'effect': 'NoSchedule'}
GPU_LABELS = {'nvidia.com/gpu.present': 'true', 'nvidia.com/gpu.product': 'NVIDIA-H100-80GB-HBM3'}
H100_MIB = 81559


# ---------------------------------------------------------------- fact builders (the shape build_facts returns)

def gpu_node(name, gpus=1, free=None, zone=None, ready=True, schedulable=True, labels=None, taints=None,
             memory=H100_MIB):
    all_labels = dict(GPU_LABELS if labels is None else labels)
    if zone:
        all_labels['topology.kubernetes.io/zone'] = zone
    free = gpus if free is None else free
    return {
        'name': name, 'ready': ready, 'schedulable': schedulable, 'labels': all_labels,
        'taints': [GPU_TAINT] if taints is None else taints, 'zone': zone,
        'gpu_capacity': gpus, 'gpu_allocatable': gpus, 'gpu_requested': gpus - free, 'gpu_free': free,
        'gpu_product': all_labels.get('nvidia.com/gpu.product'), 'gpu_memory_mib': memory,
        'gpu_present_label': all_labels.get('nvidia.com/gpu.present') == 'true',
    }


def cpu_node(name, zone=None):
    node = gpu_node(name, gpus=0, zone=zone, labels={}, taints=[], memory=None)
    return node


def storage_class(name, provisioner, default=False, binding='WaitForFirstConsumer', rwx=None, expansion=True):
    return {'name': name, 'provisioner': provisioner, 'default': default, 'binding_mode': binding,
            'allow_expansion': expansion, 'reclaim_policy': 'Delete',
            'rwx': provisioner in ('efs.csi.aws.com', 'nfs.csi.k8s.io') if rwx is None else rwx}


GP3 = storage_class('gp3', 'ebs.csi.aws.com', default=True)
EFS = storage_class('efs', 'efs.csi.aws.com', binding='Immediate')
LOCAL_PATH = storage_class('local-path', 'rancher.io/local-path', default=True, expansion=False)
ALB_CLASS = {'name': 'alb', 'controller': 'ingress.k8s.aws/alb', 'default': True, 'created': ''}
TRAEFIK_CLASS = {'name': 'traefik', 'controller': 'traefik.io/ingress-controller', 'default': True, 'created': ''}
TRAEFIK_GATEWAY = {'name': 'traefik-gateway', 'namespace': 'kube-system', 'class': 'traefik',
                   'listeners': [{'name': 'web', 'protocol': 'HTTP', 'port': 8000, 'hostname': None, 'from': 'All',
                                  'selector': None}]}
HEALTHY_PLUGIN = {'found': True, 'name': 'nvidia-device-plugin-daemonset', 'namespace': 'kube-system',
                  'desired': 3, 'ready': 3, 'healthy': True, 'source': 'device-plugin'}


def eks_facts(nodes=None, classes=None, default='gp3', **overrides):
    facts = {
        'kubernetes_version': {'major': 1, 'minor': 30, 'git_version': 'v1.30.4-eks-a737599'},
        'distribution': 'eks',
        'nodes': nodes if nodes is not None else [
            gpu_node('gpu-a', zone='us-east-1a'),
            gpu_node('gpu-b', zone='us-east-1b'),
            gpu_node('gpu-c', zone='us-east-1c'),
            cpu_node('cpu-a', zone='us-east-1a'),
        ],
        'storage_classes': classes if classes is not None else [GP3, EFS],
        'default_storage_class': default,
        'csi_drivers': ['ebs.csi.aws.com', 'efs.csi.aws.com'],
        'runtime_classes': [],
        'device_plugin': dict(HEALTHY_PLUGIN),
        'gpu_operator': False,
        'existing': {'namespace_exists': False, 'workloads': [], 'claims': [], 'services': [], 'pdbs': [],
                     'ollama_replicas': 0, 'ollama_pods': []},
        'warnings': [],
        # EKS: the AWS Load Balancer Controller's class; the control plane is not among the nodes.
        'ingress_classes': [ALB_CLASS], 'default_ingress_class': 'alb', 'control_plane': [], 'controller_pods': [],
        'gateway_api': {'installed': False, 'versions': [], 'resources': []}, 'gateway_classes': [], 'gateways': [],
    }
    facts['gpu_nodes'] = [n['name'] for n in facts['nodes'] if n['gpu_allocatable'] > 0]
    facts.update(overrides)
    return facts


def k3s_facts(**overrides):
    base = dict(
        nodes=[gpu_node('k3s-gpu', taints=[]), cpu_node('k3s-cp')],
        classes=[LOCAL_PATH], default='local-path',
        kubernetes_version={'major': 1, 'minor': 30, 'git_version': 'v1.30.4+k3s1'},
        distribution='k3s', runtime_classes=['nvidia', 'nvidia-experimental'],
        # k3s: Traefik in kube-system serves the default class traefik and, with its Gateway provider, a Gateway.
        ingress_classes=[TRAEFIK_CLASS], default_ingress_class='traefik',
        controller_pods=[{'name': 'traefik', 'namespace': 'kube-system'}],
        control_plane=[{'name': 'k3s-cp', 'internal_ips': ['192.168.1.10'], 'pod_cidrs': ['10.42.0.0/24']}],
        gateway_api={'installed': True, 'versions': ['v1'], 'resources': ['gateways', 'httproutes']},
        gateway_classes=[{'name': 'traefik', 'controller': 'traefik.io/gateway-controller'}],
        gateways=[TRAEFIK_GATEWAY],
    )
    base.update(overrides)
    return eks_facts(**base)


def get(result, path):
    value = result
    for part in path.split('.'):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def error_variables(result):
    return [e['variable'] for e in result['errors']]


def assert_well_formed(result):
    for error in result['errors']:
        assert sorted(error) == ['fix', 'message', 'variable']
        assert error['variable'] and error['message'] and error['fix']
    assert result['ok'] is (not result['errors'])


MODELS_SMALL = [{'name': 'llama3.2:3b', 'size': '2.0GB'}, {'name': 'qwen2.5:7b', 'size': '4.7GB'}]


# ---------------------------------------------------------------- good inputs: decisions

GOOD = [
    ('eks-single-replica-defaults', eks_facts, {}, {
        'workload_kind': 'Deployment', 'strategy': 'Recreate', 'rolling_update': None, 'replicas': 1,
        'storage.mode': 'shared', 'storage.class': 'gp3', 'storage.access_mode': 'ReadWriteOnce',
        'storage.size': '10Gi', 'storage.binding_mode': 'WaitForFirstConsumer', 'storage.install_local_path': False,
        'storage.claim_name': 'ollama-models', 'storage.claim_template_name': None, 'storage.pull_scope': 'once',
        'storage.provisioner': 'ebs.csi.aws.com',
        'affinity.anti_affinity': 'none', 'affinity.zone_spread': False, 'pdb': None, 'runtime_class': None,
        'eligible_nodes': ['gpu-a', 'gpu-b', 'gpu-c'], 'zones': ['us-east-1a', 'us-east-1b', 'us-east-1c'],
        'affinity.node_label': {'key': 'nvidia.com/gpu.present', 'value': 'true'},
        'image.ref': 'docker.io/ollama/ollama:%s' % plan_mod.DEFAULT_OLLAMA_TAG, 'distribution': 'eks',
        'namespace': 'ollama'}),
    ('eks-three-replicas-per-replica', eks_facts, {'replicas': 3}, {
        'workload_kind': 'StatefulSet', 'strategy': 'RollingUpdate', 'pod_management_policy': 'Parallel',
        'storage.mode': 'per_replica', 'storage.access_mode': 'ReadWriteOnce', 'storage.claim_name': None,
        'storage.claim_template_name': 'models',
        'storage.claim_names': ['models-ollama-0', 'models-ollama-1', 'models-ollama-2'],
        'storage.pull_scope': 'each_replica',
        'affinity.anti_affinity': 'required', 'affinity.zone_spread': True,
        'affinity.zone_spread_when': 'DoNotSchedule', 'affinity.max_skew': 1,
        'pdb.min_available': 2, 'pdb.unhealthy_pod_eviction_policy': 'AlwaysAllow'}),
    ('eks-two-replicas-rwx-shared-with-surge', eks_facts, {'replicas': 2, 'storage_class': 'efs'}, {
        'workload_kind': 'Deployment', 'strategy': 'RollingUpdate', 'storage.mode': 'shared',
        'storage.access_mode': 'ReadWriteMany', 'storage.class': 'efs', 'storage.claim_name': 'ollama-models',
        'storage.pull_scope': 'once', 'rolling_update': {'max_surge': 1, 'max_unavailable': 0},
        'pdb.min_available': 1}),
    ('eks-three-replicas-rwx-no-spare-gpu', eks_facts, {'replicas': 3, 'storage_class': 'efs'}, {
        'workload_kind': 'Deployment', 'rolling_update': {'max_surge': 0, 'max_unavailable': 1}}),
    ('eks-one-replica-rwx-rolls', eks_facts, {'storage_class': 'efs'}, {
        'workload_kind': 'Deployment', 'strategy': 'RollingUpdate', 'storage.access_mode': 'ReadWriteMany',
        'rolling_update': {'max_surge': 1, 'max_unavailable': 0}}),
    ('shared-one-replica-rwo-recreate', eks_facts, {'storage_mode': 'shared'}, {
        'workload_kind': 'Deployment', 'strategy': 'Recreate', 'storage.access_mode': 'ReadWriteOnce'}),
    ('per-replica-one-replica', eks_facts, {'storage_mode': 'per_replica'}, {
        'workload_kind': 'StatefulSet', 'storage.claim_names': ['models-ollama-0'], 'storage.pull_scope': 'once'}),
    ('per-replica-on-rwx-class-uses-rwo', eks_facts, {'storage_mode': 'per_replica', 'replicas': 2,
                                                      'storage_class': 'efs'}, {
        'workload_kind': 'StatefulSet', 'storage.access_mode': 'ReadWriteOnce'}),
    ('rwx-override-on-longhorn', lambda: eks_facts(classes=[storage_class('longhorn', 'driver.longhorn.io',
                                                                          default=True)], default='longhorn'),
     {'replicas': 2, 'storage_class_rwx': True}, {
         'workload_kind': 'Deployment', 'storage.access_mode': 'ReadWriteMany', 'storage.mode': 'shared'}),
    ('custom-name-and-namespace', eks_facts, {'name': 'llm', 'namespace': 'ai-serving', 'replicas': 2}, {
        'name': 'llm', 'namespace': 'ai-serving', 'storage.claim_names': ['models-llm-0', 'models-llm-1'],
        'affinity.label_selector': {'app.kubernetes.io/name': 'ollama', 'app.kubernetes.io/instance': 'llm'}}),
    ('k3s-single-node', k3s_facts, {}, {
        'runtime_class': 'nvidia', 'storage.class': 'local-path', 'storage.install_local_path': False,
        'workload_kind': 'Deployment', 'strategy': 'Recreate', 'distribution': 'k3s', 'zones': [],
        'eligible_nodes': ['k3s-gpu']}),
    ('k3s-gpu-operator-no-runtime-class', lambda: k3s_facts(runtime_classes=[], gpu_operator=True), {}, {
        'runtime_class': None}),
    ('k3s-runtime-class-opt-out', lambda: k3s_facts(runtime_classes=[]), {'runtime_class': ''}, {
        'runtime_class': None}),
    ('named-runtime-class', lambda: eks_facts(runtime_classes=['nvidia']), {'runtime_class': 'nvidia'}, {
        'runtime_class': 'nvidia'}),
    ('eks-auto-runtime-class-is-none', lambda: eks_facts(runtime_classes=['nvidia']), {'runtime_class': 'auto'}, {
        'runtime_class': None}),
    ('install-local-path-without-classes', lambda: eks_facts(classes=[], default=None),
     {'install_local_path': True}, {
         'storage.class': 'local-path', 'storage.install_local_path': True,
         'storage.binding_mode': 'WaitForFirstConsumer', 'storage.provisioner': 'rancher.io/local-path'}),
    ('install-local-path-named', lambda: eks_facts(classes=[GP3]),
     {'install_local_path': True, 'storage_class': 'local-path'}, {
         'storage.class': 'local-path', 'storage.install_local_path': True}),
    ('install-local-path-ignored-with-default', eks_facts, {'install_local_path': True}, {
        'storage.class': 'gp3', 'storage.install_local_path': False}),
    ('k3s-local-path-without-default-annotation',
     lambda: k3s_facts(classes=[dict(LOCAL_PATH, default=False)], default=None), {}, {
         'storage.class': 'local-path', 'storage.install_local_path': False}),
    ('claim-size-small-models-minimum', eks_facts, {'models': MODELS_SMALL}, {
        'storage.size': '10Gi', 'models.0.name': 'llama3.2:3b', 'models.1.size_bytes': 4700000000}),
    ('claim-size-from-models', eks_facts, {'models': [{'name': 'llama3.3:70b', 'size': '42GB'},
                                                      {'name': 'qwen2.5:7b', 'size': '4.7GB'}]}, {
        'storage.size': '57Gi'}),  # 46.7 GB * 1.3 = 60.71 GB = 56.5 GiB
    ('claim-size-headroom-zero', eks_facts, {'claim_headroom_percent': 0,
                                             'models': [{'name': 'llama3.3:70b', 'size': '42GB'},
                                                        {'name': 'qwen2.5:7b', 'size': '4.7GB'}]}, {
        'storage.size': '44Gi'}),  # 46.7 GB = 43.5 GiB
    ('claim-size-binary-units', eks_facts, {'models': [{'name': 'big:1', 'size': '20 GiB'}]}, {
        'storage.size': '26Gi'}),
    ('claim-size-explicit', eks_facts, {'claim_size': '100Gi', 'models': MODELS_SMALL}, {
        'storage.size': '100Gi', 'storage.size_bytes': 100 * 2 ** 30}),
    ('soft-anti-affinity-more-replicas-than-nodes',
     lambda: eks_facts(nodes=[gpu_node('g1', gpus=4, zone='a'), gpu_node('g2', gpus=4, zone='b')]),
     {'replicas': 4, 'anti_affinity': 'soft'}, {
         'affinity.anti_affinity': 'preferred', 'affinity.zone_spread': True,
         'affinity.zone_spread_when': 'ScheduleAnyway', 'ok': True}),
    ('zone-spread-auto-single-zone', lambda: eks_facts(nodes=[gpu_node('g1', zone='a'), gpu_node('g2', zone='a')]),
     {'replicas': 2}, {'affinity.zone_spread': False, 'zones': ['a']}),
    ('zone-spread-forced-off', eks_facts, {'replicas': 3, 'zone_spread': False}, {'affinity.zone_spread': False}),
    ('zone-spread-string-true', eks_facts, {'replicas': 2, 'zone_spread': 'true'}, {'affinity.zone_spread': True}),
    ('zone-spread-uneven-but-feasible',
     lambda: eks_facts(nodes=[gpu_node('a1', zone='a'), gpu_node('a2', zone='a'), gpu_node('b1', zone='b')]),
     {'replicas': 3}, {'affinity.zone_spread_when': 'DoNotSchedule'}),
    ('zone-spread-infeasible-falls-back',
     lambda: eks_facts(nodes=[gpu_node('a1', zone='a'), gpu_node('a2', zone='a'), gpu_node('a3', zone='a'),
                              gpu_node('b1', zone='b')]),
     {'replicas': 4}, {'affinity.zone_spread': True, 'affinity.zone_spread_when': 'ScheduleAnyway'}),
    ('zone-spread-unzoned-node-falls-back',
     lambda: eks_facts(nodes=[gpu_node('a1', zone='a'), gpu_node('b1', zone='b'), gpu_node('x')]),
     {'replicas': 2}, {'affinity.zone_spread': True, 'affinity.zone_spread_when': 'ScheduleAnyway'}),
    ('pdb-explicit', eks_facts, {'replicas': 3, 'pdb_min_available': 1}, {'pdb.min_available': 1}),
    ('pdb-explicit-string', eks_facts, {'replicas': 3, 'pdb_min_available': '2'}, {'pdb.min_available': 2}),
    ('pdb-percent', eks_facts, {'replicas': 3, 'pdb_min_available': '50%'}, {'pdb.min_available': '50%'}),
    ('pdb-zero-means-none', eks_facts, {'replicas': 3, 'pdb_min_available': 0}, {'pdb': None}),
    ('label-nodes-on-request',
     lambda: eks_facts(nodes=[gpu_node('g1', labels={}), gpu_node('g2')]),
     {'gpu_label_nodes': True}, {'eligible_nodes': ['g1', 'g2'], 'label_nodes': ['g1']}),
    ('label-as-string', eks_facts, {'gpu_node_label': 'nvidia.com/gpu.present=true'}, {
        'affinity.node_label': {'key': 'nvidia.com/gpu.present', 'value': 'true'}}),
    ('label-yaml-boolean-value', eks_facts, {'gpu_node_label': {'key': 'nvidia.com/gpu.present', 'value': True}}, {
        'affinity.node_label': {'key': 'nvidia.com/gpu.present', 'value': 'true'}, 'ok': True}),
    ('no-label-affinity', lambda: eks_facts(nodes=[gpu_node('g1', labels={})]), {'gpu_node_label': {}}, {
        'affinity.node_label': None, 'eligible_nodes': ['g1']}),
    ('node-selector-narrows',
     lambda: eks_facts(nodes=[gpu_node('h1', labels=dict(GPU_LABELS)),
                              gpu_node('t1', labels=dict(GPU_LABELS, **{'nvidia.com/gpu.product': 'Tesla-T4'}))]),
     {'node_selector': {'nvidia.com/gpu.product': 'NVIDIA-H100-80GB-HBM3'}}, {
         'eligible_nodes': ['h1'], 'node_selector': {'nvidia.com/gpu.product': 'NVIDIA-H100-80GB-HBM3'},
         'excluded_nodes': {'t1': 'does not match ollama_node_selector'}}),
    ('excluded-nodes-explained',
     lambda: eks_facts(nodes=[gpu_node('ok'), gpu_node('down', ready=False), gpu_node('cordoned', schedulable=False),
                              gpu_node('nolabel', labels={}),
                              gpu_node('tainted', taints=[{'key': 'dedicated', 'value': 'ml', 'effect': 'NoSchedule'}])]),
     {}, {'eligible_nodes': ['ok'], 'excluded_nodes': {
         'down': 'not ready', 'cordoned': 'cordoned (unschedulable)', 'nolabel': 'no label nvidia.com/gpu.present=true',
         'tainted': 'taints not tolerated: dedicated=ml:NoSchedule'}}),
    ('prefer-no-schedule-taint-does-not-block',
     lambda: eks_facts(nodes=[gpu_node('g', taints=[{'key': 'x', 'value': '', 'effect': 'PreferNoSchedule'}])]),
     {}, {'eligible_nodes': ['g']}),
    ('custom-toleration',
     lambda: eks_facts(nodes=[gpu_node('g', taints=[GPU_TAINT, DEDICATED_TAINT])]),
     {'tolerations': [{'key': 'nvidia.com/gpu', 'operator': 'Exists'},
                      {'key': 'dedicated', 'operator': 'Equal', 'value': 'ml', 'effect': 'NoSchedule'}]},
     {'eligible_nodes': ['g'], 'tolerations.1.value': 'ml'}),
    ('multi-gpu-pods', lambda: eks_facts(nodes=[gpu_node('g8', gpus=8), gpu_node('g1', gpus=1)]),
     {'gpus_per_pod': 4, 'replicas': 1}, {'eligible_nodes': ['g8'], 'gpus_per_pod': 4}),
    ('soft-anti-affinity-packs-on-one-node', lambda: eks_facts(nodes=[gpu_node('g8', gpus=8)]),
     {'gpus_per_pod': 2, 'replicas': 4, 'anti_affinity': 'soft'}, {'ok': True, 'affinity.anti_affinity': 'preferred'}),
    ('existing-replicas-hold-the-gpus',
     lambda: eks_facts(nodes=[gpu_node('g1', free=0), gpu_node('g2', free=0)]),
     {'replicas': 2, 'existing_replicas': 2}, {'ok': True}),
    ('existing-replicas-from-facts',
     lambda: eks_facts(nodes=[gpu_node('g1', free=0), gpu_node('g2', free=1)],
                       existing={'ollama_replicas': 1, 'workloads': [], 'claims': []}),
     {'replicas': 2}, {'ok': True}),
    ('image-tag-v-prefix', eks_facts, {'image_tag': 'v0.32.15'}, {'image.version': '0.32.15', 'ok': True}),
    ('image-tag-floor', eks_facts, {'image_tag': '0.17.1'}, {'ok': True, 'image.known_cves': []}),
    ('image-tag-rocm', eks_facts, {'image_tag': '0.32.15-rocm'}, {'ok': True, 'image.ref':
                                                                  'docker.io/ollama/ollama:0.32.15-rocm'}),
    ('image-tag-with-digest', eks_facts, {'image_tag': '0.32.15@sha256:' + 'ab' * 32}, {
        'image.ref': 'docker.io/ollama/ollama:0.32.15@sha256:' + 'ab' * 32, 'image.digest': 'sha256:' + 'ab' * 32}),
    ('image-digest-variable', eks_facts, {'image_digest': 'sha256:' + 'ef' * 32}, {
        'image.ref': 'docker.io/ollama/ollama:%s@sha256:%s' % (plan_mod.DEFAULT_OLLAMA_TAG, 'ef' * 32),
        'image.digest': 'sha256:' + 'ef' * 32, 'image.tag': plan_mod.DEFAULT_OLLAMA_TAG, 'ok': True}),
    ('image-digest-both-equal', eks_facts, {'image_tag': '0.32.15@sha256:' + 'ab' * 32,
                                            'image_digest': 'sha256:' + 'ab' * 32}, {'ok': True}),
    ('image-digest-only', eks_facts, {'image_tag': 'sha256:' + 'cd' * 32}, {
        'image.ref': 'docker.io/ollama/ollama@sha256:' + 'cd' * 32, 'ok': True}),
    ('image-mirror', eks_facts, {'image': 'registry.local:5000/mirror/ollama'}, {
        'image.ref': 'registry.local:5000/mirror/ollama:%s' % plan_mod.DEFAULT_OLLAMA_TAG}),
    ('image-old-allowed-out-loud', eks_facts, {'image_tag': '0.11.4', 'image_allow_known_vulnerable': True}, {
        'ok': True, 'image.known_cves': ['CVE-2026-7482']}),
    ('model-names-normalized', eks_facts, {'models': [
        'llama3', 'library/qwen2.5:7b', 'myorg/mymodel:v1',
        'hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M', 'registry.local:5000/ns/tiny:q8_0',
        'registry.ollama.ai/library/gemma2:2b']}, {
        'models.0.name': 'llama3:latest', 'models.0.full': 'registry.ollama.ai/library/llama3:latest',
        'models.1.name': 'qwen2.5:7b', 'models.2.name': 'myorg/mymodel:v1',
        'models.3.name': 'hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M',
        'models.4.full': 'registry.local:5000/ns/tiny:q8_0', 'models.5.name': 'gemma2:2b', 'ok': True}),
    ('model-duplicates-collapse', eks_facts, {'models': ['llama3', 'llama3:latest', {'name': 'LLAMA3'}]}, {
        'models.0.name': 'llama3:latest', 'ok': True}),
    ('model-digest-kept', eks_facts, {'models': [{'name': 'llama3.2:3b', 'digest': 'sha256:' + '0' * 64}]}, {
        'models.0.digest': 'sha256:' + '0' * 64}),
    ('model-fits-gpu', eks_facts, {'models': [{'name': 'llama3.3:70b', 'size': '42GB'}]}, {'ok': True}),
    ('model-fits-two-gpus', lambda: eks_facts(nodes=[gpu_node('g', gpus=2)]),
     {'gpus_per_pod': 2, 'models': [{'name': 'llama3.1:405b-q2', 'size': '149GB'}]}, {'ok': True}),
    ('model-too-big-offload-allowed', eks_facts,
     {'allow_cpu_offload': True, 'models': [{'name': 'llama3.1:405b', 'size': '243GB'}]}, {'ok': True}),
    ('model-check-disabled', eks_facts,
     {'gpu_memory_check': False, 'models': [{'name': 'llama3.1:405b', 'size': '243GB'}]}, {'ok': True}),
    ('gpu-memory-unknown', lambda: eks_facts(nodes=[gpu_node('g', memory=None)]),
     {'models': [{'name': 'llama3.1:405b', 'size': '243GB'}]}, {'ok': True}),
    ('ingress-default-class', k3s_facts, {'ingress': {'enabled': True, 'host': 'ollama.example.com',
                                                      'tls_secret': 'ollama-tls'}}, {
        'ingress.enabled': True, 'ingress.class_name': 'traefik', 'ingress.class_source': 'default',
        'ingress.controller_namespaces': ['kube-system'], 'ingress.paths': list(plan_mod.exposure.CLIENT_PATHS),
        'ingress.blocked_paths': list(plan_mod.ADMIN_ENDPOINTS), 'ok': True}),
    ('ingress-open-admin', k3s_facts, {'ingress': {'enabled': True, 'host': '*.example.com',
                                                   'open_admin_endpoints': True}}, {
        'ingress.blocked_paths': [], 'ingress.paths': list(plan_mod.exposure.CLIENT_PATHS + plan_mod.ADMIN_ENDPOINTS),
        'ok': True}),
    ('ingress-disabled', eks_facts, {'ingress': {'enabled': False}}, {'ingress.enabled': False, 'ok': True}),
    ('no-device-plugin-but-gpus-advertised', lambda: eks_facts(device_plugin={'found': False}), {}, {'ok': True}),
    ('unhealthy-plugin-not-required',
     lambda: eks_facts(device_plugin=dict(HEALTHY_PLUGIN, ready=1, healthy=False)),
     {'require_device_plugin': False}, {'ok': True}),
    ('none-values-mean-defaults', eks_facts, {'replicas': None, 'storage_class': None, 'ingress': None}, {
        'replicas': 1, 'storage.class': 'gp3', 'ok': True}),
    ('numeric-strings-from-extra-vars', eks_facts, {'replicas': '3', 'gpus_per_pod': '1'}, {
        'replicas': 3, 'workload_kind': 'StatefulSet', 'ok': True}),
]


@pytest.mark.parametrize('facts_factory, config, expected', [c[1:] for c in GOOD], ids=[c[0] for c in GOOD])
def test_good_plans(facts_factory, config, expected):
    result = compute_plan(facts_factory(), config)
    assert_well_formed(result)
    if expected.get('ok', True):
        assert result['errors'] == [], result['errors']
    for path, value in expected.items():
        assert get(result, path) == value, path


# ---------------------------------------------------------------- good inputs: warnings

WARNINGS = [
    ('single-replica-no-pdb', eks_facts, {}, 'no PodDisruptionBudget'),
    ('soft-anti-affinity', eks_facts, {'replicas': 2, 'anti_affinity': 'soft'}, 'soft'),
    ('rocm-on-nvidia', eks_facts, {'image_tag': '0.32.15-rocm'}, 'ROCm'),
    ('digest-only-image', eks_facts, {'image_tag': 'sha256:' + 'cd' * 32}, 'CVE table'),
    ('old-image-allowed', eks_facts, {'image_tag': '0.1.30', 'image_allow_known_vulnerable': True},
     'OLLAMA_IMAGE_ALLOW_KNOWN_VULNERABLE IS TRUE: CVE-2024-37032'),
    ('unsized-model', eks_facts, {'models': ['llama3']}, 'no size given for llama3:latest'),
    ('duplicate-model', eks_facts, {'models': ['llama3', 'llama3:latest']}, 'listed twice'),
    ('tight-gpu-fit', eks_facts, {'models': [{'name': 'big:1', 'size': '80GB'}]}, 'more than 90%'),
    ('offload-allowed', eks_facts, {'allow_cpu_offload': True, 'models': [{'name': 'llama3.1:405b', 'size': '243GB'}]},
     'allowed by ollama_allow_cpu_offload'),
    ('gpu-memory-unknown', lambda: eks_facts(nodes=[gpu_node('g', memory=None)]),
     {'models': [{'name': 'm:1', 'size': '1GB'}]}, 'GPU memory unknown on g'),
    ('claim-little-headroom', eks_facts, {'claim_size': '45Gi', 'models': [{'name': 'm:1', 'size': '45GB'}]},
     'headroom'),
    ('zone-spread-uneven', lambda: eks_facts(nodes=[gpu_node('a1', zone='a'), gpu_node('a2', zone='a'),
                                                    gpu_node('a3', zone='a'), gpu_node('b1', zone='b')]),
     {'replicas': 4}, 'cannot spread evenly'),
    ('pdb-zero', eks_facts, {'replicas': 2, 'pdb_min_available': 0}, 'no PodDisruptionBudget is created'),
    ('node-local-storage', k3s_facts, {}, 'pinned to the node'),
    ('immediate-binding-multi-zone',
     lambda: eks_facts(classes=[storage_class('gp2', 'kubernetes.io/aws-ebs', default=True, binding='Immediate')],
                       default='gp2'), {}, 'binds Immediately'),
    ('ingress-open-admin', k3s_facts, {'ingress': {'enabled': True, 'host': 'o.example.com', 'tls_secret': 't',
                                                   'open_admin_endpoints': True}}, '/api/delete'),
    ('device-plugin-missing-host-level', lambda: eks_facts(device_plugin={'found': False}), {}, 'host-level plugin'),
    ('unknown-setting', eks_facts, {'replica': 3}, 'unknown setting ollama_replica is ignored (did you mean ollama_replicas?)'),
    ('facts-warnings-carried', lambda: eks_facts(warnings=['several StorageClasses are marked default']), {},
     'several StorageClasses'),
    ('no-default-uses-local-path', lambda: k3s_facts(classes=[dict(LOCAL_PATH, default=False)], default=None), {},
     'no default StorageClass; using local-path'),
]


@pytest.mark.parametrize('facts_factory, config, fragment', [w[1:] for w in WARNINGS], ids=[w[0] for w in WARNINGS])
def test_warnings(facts_factory, config, fragment):
    result = compute_plan(facts_factory(), config)
    assert result['ok'], result['errors']
    assert any(fragment in w for w in result['warnings']), result['warnings']


def test_existing_workload_of_another_kind_is_named():
    facts = eks_facts(existing={'ollama_replicas': 1, 'workloads': [{'kind': 'Deployment', 'name': 'ollama'}]})
    result = compute_plan(facts, {'replicas': 2})
    assert result['ok'], result['errors']
    assert 'Deployment ollama exists and will be replaced by a StatefulSet' in '\n'.join(result['warnings'])


def existing_claim(**claim):
    return eks_facts(existing={'claims': [dict({'name': 'models-ollama-0', 'storage_class': 'gp3',
                                                'access_modes': ['ReadWriteOnce']}, **claim)]})


def test_a_claim_on_another_class_is_refused_since_it_cannot_move():
    error = only_error(compute_plan(existing_claim(storage_class='gp2'), {'replicas': 2}), 'ollama_storage_class')
    assert 'cannot change class' in error['message'] and 'ollama_storage_class: gp2' in error['fix']


def test_a_smaller_claim_grows_when_its_class_allows_expansion():
    result = compute_plan(existing_claim(size_bytes=5 * 2 ** 30), {'replicas': 2})
    assert result['ok'], result['errors']
    assert 'claim models-ollama-0 grows from 5Gi to 10Gi' in result['warnings']


def test_a_smaller_claim_on_a_class_without_expansion_is_refused():
    facts = existing_claim(size_bytes=5 * 2 ** 30)
    for sc in facts['storage_classes']:
        sc['allow_expansion'] = False
    error = only_error(compute_plan(facts, {'replicas': 2}), 'ollama_claim_size')
    assert 'does not allow expansion' in error['message']


def test_a_bigger_claim_is_never_shrunk():
    result = compute_plan(existing_claim(size_bytes=50 * 2 ** 30), {'replicas': 2})
    assert result['ok'] and result['storage']['size'] == '50Gi'


def existing_statefulset(**template):
    claim_template = dict({'name': 'models', 'access_modes': ['ReadWriteOnce'], 'storage_class': 'gp3',
                           'size': '10Gi'}, **template)
    return eks_facts(existing={'workloads': [{'kind': 'StatefulSet', 'name': 'ollama', 'namespace': 'ollama',
                                              'claim_template': claim_template}]})


@pytest.mark.parametrize('template', [{}, {'size': '10737418240'}])
def test_the_same_claim_template_passes(template):
    result = compute_plan(existing_statefulset(**template), {'replicas': 2})
    assert result['ok'], result['errors']


def test_another_claim_template_class_is_refused_since_kubernetes_forbids_it():
    error = only_error(compute_plan(existing_statefulset(storage_class='gp2'), {'replicas': 2}),
                       'ollama_storage_class')
    assert 'storage_class "gp2"' in error['message'] and 'storage_class "gp3"' in error['message']
    assert 'delete statefulset ollama --cascade=orphan' in error['fix']


def test_another_claim_template_size_is_refused_naming_the_claim_size():
    error = only_error(compute_plan(existing_statefulset(size='20Gi'), {'replicas': 2}), 'ollama_claim_size')
    assert 'size "20Gi"' in error['message'] and 'size "10Gi"' in error['message']


def test_another_claim_template_access_mode_is_refused_naming_the_storage_mode():
    error = only_error(compute_plan(existing_statefulset(access_modes=['ReadWriteMany']), {'replicas': 2}),
                       'ollama_storage_mode')
    assert 'access_modes ["ReadWriteMany"]' in error['message'] and error['fix'].startswith('set ollama_storage_mode ')


def test_a_claim_template_of_another_workload_is_not_compared():
    facts = existing_statefulset(storage_class='gp2')
    facts['existing']['workloads'][0]['name'] = 'other'
    assert compute_plan(facts, {'replicas': 2})['ok']


# ---------------------------------------------------------------- bad inputs: the error names the variable

def _no_gpu_facts():
    return eks_facts(nodes=[cpu_node('cpu-1'), cpu_node('cpu-2')])


BAD = [
    # namespace, name, counts
    ('namespace-uppercase', eks_facts, {'namespace': 'Ollama_NS'}, 'ollama_namespace', 'DNS-1123'),
    ('namespace-too-long', eks_facts, {'namespace': 'a' * 64}, 'ollama_namespace', 'DNS-1123'),
    ('namespace-empty', eks_facts, {'namespace': ''}, 'ollama_namespace', 'DNS-1123'),
    ('name-invalid', eks_facts, {'name': 'Ollama!'}, 'ollama_name', 'DNS-1123'),
    ('replicas-zero', eks_facts, {'replicas': 0}, 'ollama_replicas', '>= 1'),
    ('replicas-negative', eks_facts, {'replicas': -2}, 'ollama_replicas', '>= 1'),
    ('replicas-word', eks_facts, {'replicas': 'two'}, 'ollama_replicas', '>= 1'),
    ('replicas-bool', eks_facts, {'replicas': True}, 'ollama_replicas', '>= 1'),
    ('gpus-per-pod-zero', eks_facts, {'gpus_per_pod': 0}, 'ollama_gpus_per_pod', '>= 1'),
    ('headroom-negative', eks_facts, {'claim_headroom_percent': -5}, 'ollama_claim_headroom_percent', '>= 0'),
    # image
    ('image-tag-latest', eks_facts, {'image_tag': 'latest'}, 'ollama_image_tag', 'not a pinned version'),
    ('image-tag-LATEST', eks_facts, {'image_tag': 'LATEST'}, 'ollama_image_tag', 'not a pinned version'),
    ('image-tag-empty', eks_facts, {'image_tag': ''}, 'ollama_image_tag', 'empty'),
    ('image-tag-cve', eks_facts, {'image_tag': '0.1.46'}, 'ollama_image_tag', 'CVE'),
    ('image-tag-probllama', eks_facts, {'image_tag': 'v0.1.32'}, 'ollama_image_tag', 'CVE'),
    ('image-tag-floating-rocm', eks_facts, {'image_tag': 'rocm'}, 'ollama_image_tag', 'not a release version'),
    ('image-tag-two-part', eks_facts, {'image_tag': '0.11'}, 'ollama_image_tag', 'not a release version'),
    ('image-tag-bad-digest', eks_facts, {'image_tag': '0.11.4@sha256:abc'}, 'ollama_image_tag', 'digest'),
    ('image-with-tag', eks_facts, {'image': 'ollama/ollama:0.11.4'}, 'ollama_image', 'carries a tag'),
    ('image-empty', eks_facts, {'image': ''}, 'ollama_image', 'repository'),
    # storage
    ('storage-mode-unknown', eks_facts, {'storage_mode': 'replicated'}, 'ollama_storage_mode', 'must be one of'),
    ('shared-rwo-multi-attach', eks_facts, {'storage_mode': 'shared', 'replicas': 3}, 'ollama_storage_mode',
     'Multi-Attach'),
    ('storage-class-missing', eks_facts, {'storage_class': 'fast-nvme'}, 'ollama_storage_class',
     'existing: efs, gp3'),
    ('storage-class-none-no-default', lambda: eks_facts(classes=[GP3], default=None), {}, 'ollama_storage_class',
     'no default'),
    ('storage-class-nothing-at-all', lambda: eks_facts(classes=[], default=None), {}, 'ollama_storage_class',
     'existing: none'),
    ('storage-class-not-a-string', eks_facts, {'storage_class': ['gp3']}, 'ollama_storage_class', 'name'),
    ('install-local-path-not-bool', eks_facts, {'install_local_path': 'maybe'}, 'ollama_storage_install_local_path',
     'true or false'),
    ('storage-rwx-not-bool', eks_facts, {'storage_class_rwx': 'sometimes'}, 'ollama_storage_class_rwx',
     'true or false'),
    ('claim-too-small', eks_facts, {'claim_size': '5Gi', 'models': [{'name': 'llama3.3:70b', 'size': '42GB'},
                                                                    {'name': 'qwen2.5:7b', 'size': '4.7GB'}]},
     'ollama_claim_size', 'llama3.3:70b 42 GB + qwen2.5:7b 4.7 GB = 46.7 GB'),
    ('claim-not-quantity', eks_facts, {'claim_size': '50GB'}, 'ollama_claim_size', 'not a Kubernetes quantity'),
    # models
    ('model-space', eks_facts, {'models': ['llama 3']}, 'ollama_models', "'llama 3'"),
    ('model-too-many-parts', eks_facts, {'models': ['a/b/c/d']}, 'ollama_models', 'too many'),
    ('model-colon-in-model', eks_facts, {'models': ['model:tag:x']}, 'ollama_models', "'model:tag:x'"),
    ('model-leading-dash', eks_facts, {'models': ['-bad']}, 'ollama_models', "'-bad'"),
    ('model-dot-in-namespace', eks_facts, {'models': ['my.org/model']}, 'ollama_models', 'namespace'),
    ('model-empty-tag', eks_facts, {'models': ['llama3:']}, 'ollama_models', 'tag'),
    ('model-empty-part', eks_facts, {'models': ['/llama3']}, 'ollama_models', 'namespace'),
    ('model-no-name', eks_facts, {'models': [{'size': '1GB'}]}, 'ollama_models', 'no name'),
    ('model-bad-size', eks_facts, {'models': [{'name': 'llama3', 'size': 'huge'}]}, 'ollama_models', "'llama3'"),
    ('model-bad-digest', eks_facts, {'models': [{'name': 'llama3', 'digest': 'md5:abc'}]}, 'ollama_models', 'digest'),
    ('models-not-a-list', eks_facts, {'models': 'llama3'}, 'ollama_models', 'list'),
    ('model-too-big-for-gpu', eks_facts, {'models': [{'name': 'llama3.1:405b', 'size': '243GB'}]}, 'ollama_models',
     'llama3.1:405b (243 GB) is larger than the GPU memory'),
    # scheduling
    ('anti-affinity-unknown', eks_facts, {'anti_affinity': 'maybe'}, 'ollama_anti_affinity', 'hard or soft'),
    ('hard-more-replicas-than-nodes', eks_facts, {'replicas': 4}, 'ollama_replicas', '3 eligible GPU nodes'),
    ('no-gpu-nodes', _no_gpu_facts, {'require_device_plugin': False}, 'nodes', 'no node advertises nvidia.com/gpu'),
    ('gpu-nodes-not-ready', lambda: eks_facts(nodes=[gpu_node('g1', ready=False), gpu_node('g2', schedulable=False)]),
     {}, 'nodes', 'g1 (not ready), g2 (cordoned'),
    ('gpu-nodes-unlabelled', lambda: eks_facts(nodes=[gpu_node('g1', labels={}), gpu_node('g2', labels={})]),
     {}, 'ollama_gpu_node_label', 'g1, g2 do not carry the label nvidia.com/gpu.present=true'),
    ('gpu-taint-not-tolerated',
     lambda: eks_facts(nodes=[gpu_node('g1', taints=[{'key': 'dedicated', 'value': 'ml', 'effect': 'NoSchedule'}])]),
     {}, 'ollama_tolerations', 'dedicated=ml:NoSchedule'),
    ('gpu-taint-no-execute-not-tolerated',
     lambda: eks_facts(nodes=[gpu_node('g1', taints=[{'key': 'nvidia.com/gpu', 'value': '', 'effect': 'NoExecute'}])]),
     {}, 'ollama_tolerations', 'nvidia.com/gpu:NoExecute'),
    ('tolerations-emptied', eks_facts, {'tolerations': []}, 'ollama_tolerations', 'nvidia.com/gpu=present:NoSchedule'),
    ('gpus-per-pod-above-nodes', eks_facts, {'gpus_per_pod': 2}, 'ollama_gpus_per_pod', 'has 1 allocatable'),
    ('all-gpus-taken', lambda: eks_facts(nodes=[gpu_node('g1', free=0), gpu_node('g2', free=0)]),
     {'replicas': 2}, 'ollama_replicas', 'all GPUs taken'),
    ('all-gpus-taken-soft', lambda: eks_facts(nodes=[gpu_node('g1', gpus=2, free=1)]),
     {'replicas': 2, 'anti_affinity': 'soft'}, 'ollama_replicas', 'all GPUs taken'),
    ('node-selector-matches-nothing', eks_facts, {'node_selector': {'nvidia.com/gpu.product': 'NVIDIA-B200'}},
     'ollama_node_selector', 'nvidia.com/gpu.product=NVIDIA-B200'),
    ('node-selector-not-a-dict', eks_facts, {'node_selector': ['gpu=true']}, 'ollama_node_selector', 'map'),
    ('node-selector-bool-value', eks_facts, {'node_selector': {'gpu': True}}, 'ollama_node_selector', 'map'),
    ('toleration-bad-operator', eks_facts, {'tolerations': [{'key': 'a', 'operator': 'Maybe'}]},
     'ollama_tolerations', 'operator'),
    ('toleration-exists-with-value', eks_facts,
     {'tolerations': [{'key': 'a', 'operator': 'Exists', 'value': 'b'}]}, 'ollama_tolerations', 'takes no value'),
    ('toleration-bad-effect', eks_facts, {'tolerations': [{'key': 'a', 'operator': 'Exists', 'effect': 'Never'}]},
     'ollama_tolerations', 'effect'),
    ('tolerations-not-a-list', eks_facts, {'tolerations': 'nvidia.com/gpu'}, 'ollama_tolerations', 'list'),
    ('gpu-node-label-invalid', eks_facts, {'gpu_node_label': {'value': 'true'}}, 'ollama_gpu_node_label', 'key'),
    ('zone-spread-unknown', eks_facts, {'zone_spread': 'sometimes'}, 'ollama_zone_spread', 'auto, true or false'),
    # asked for explicitly, never dropped silently
    ('zone-spread-true-single-zone', lambda: eks_facts(nodes=[gpu_node('g1', zone='a'), gpu_node('g2', zone='a')]),
     {'replicas': 2, 'zone_spread': True}, 'ollama_zone_spread', 'span one zone (a)'),
    ('zone-spread-true-no-zones', lambda: eks_facts(nodes=[gpu_node('g1'), gpu_node('g2')]),
     {'replicas': 2, 'zone_spread': 'true'}, 'ollama_zone_spread', 'carry no topology.kubernetes.io/zone label'),
    ('claim-size-below-existing-claim',
     lambda: eks_facts(existing={'claims': [{'name': 'ollama-models', 'storage_class': 'gp3',
                                             'access_modes': ['ReadWriteOnce'], 'size_bytes': 50 * 2 ** 30}]}),
     {'claim_size': '20Gi'}, 'ollama_claim_size', 'holds 50Gi, more than ollama_claim_size 20Gi'),
    ('storage-class-entry-differs-from-existing', eks_facts,
     {'storage_classes': [{'name': 'gp3', 'provisioner': 'ebs.csi.aws.com', 'binding_mode': 'Immediate'}]},
     'ollama_storage_classes', "binding_mode 'Immediate' (the class has 'WaitForFirstConsumer')"),
    # PDB
    ('pdb-equals-replicas', eks_facts, {'replicas': 3, 'pdb_min_available': 3}, 'ollama_pdb_min_available',
     'never proceed'),
    ('pdb-above-replicas', eks_facts, {'replicas': 2, 'pdb_min_available': 5}, 'ollama_pdb_min_available',
     'never proceed'),
    ('pdb-single-replica', eks_facts, {'pdb_min_available': 1}, 'ollama_pdb_min_available', 'never proceed'),
    ('pdb-hundred-percent', eks_facts, {'replicas': 3, 'pdb_min_available': '100%'}, 'ollama_pdb_min_available',
     'never proceed'),
    ('pdb-percent-rounds-up', eks_facts, {'replicas': 3, 'pdb_min_available': '90%'}, 'ollama_pdb_min_available',
     'never proceed'),
    ('pdb-over-hundred-percent', eks_facts, {'replicas': 3, 'pdb_min_available': '150%'},
     'ollama_pdb_min_available', 'above 100%'),
    ('pdb-negative', eks_facts, {'replicas': 3, 'pdb_min_available': -1}, 'ollama_pdb_min_available', '>= 0'),
    # runtime class, device plugin, version
    ('k3s-without-nvidia-runtime', lambda: k3s_facts(runtime_classes=[]), {}, 'ollama_runtime_class',
     'no "nvidia" RuntimeClass'),
    ('runtime-class-missing', eks_facts, {'runtime_class': 'kata-nvidia'}, 'ollama_runtime_class',
     "'kata-nvidia' does not exist"),
    ('device-plugin-missing', lambda: eks_facts(nodes=[cpu_node('c')], device_plugin={'found': False}), {},
     'ollama_require_device_plugin', 'no NVIDIA device plugin'),
    ('device-plugin-unhealthy', lambda: eks_facts(device_plugin=dict(HEALTHY_PLUGIN, ready=1, healthy=False)), {},
     'ollama_require_device_plugin', '1 of 3 ready'),
    ('require-plugin-not-bool', eks_facts, {'require_device_plugin': 'perhaps'}, 'ollama_require_device_plugin',
     'true or false'),
    ('kubernetes-too-old',
     lambda: eks_facts(kubernetes_version={'major': 1, 'minor': 27, 'git_version': 'v1.27.16-eks-a18cd3a'}), {},
     'kubernetes_version', 'Kubernetes 1.27'),
    # ingress
    ('ingress-no-host', k3s_facts, {'ingress': {'enabled': True}}, 'ollama_ingress_host', 'empty'),
    ('ingress-bad-host', k3s_facts, {'ingress': {'enabled': True, 'host': 'https://o.example.com'}},
     'ollama_ingress_host', 'not a DNS name'),
    ('ingress-enabled-not-bool', eks_facts, {'ingress': {'enabled': 'sure'}}, 'ollama_ingress_enabled',
     'true or false'),
    ('ingress-not-a-mapping', eks_facts, {'ingress': 'on'}, 'ollama_ingress', 'mapping'),
]


@pytest.mark.parametrize('facts_factory, config, variable_name, fragment', [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_inputs(facts_factory, config, variable_name, fragment):
    result = compute_plan(facts_factory(), config)
    assert_well_formed(result)
    assert result['ok'] is False
    matching = [e for e in result['errors'] if e['variable'] == variable_name]
    assert matching, result['errors']
    assert any(fragment in e['message'] for e in matching), matching


# the fix text tells the user what to do, in the terms of the variables

FIXES = [
    ('hard-more-replicas-than-nodes', eks_facts, {'replicas': 4}, 'ollama_replicas',
     ['lower ollama_replicas to 3', 'add GPU nodes', 'ollama_anti_affinity: soft']),
    ('shared-rwo-multi-attach', eks_facts, {'storage_mode': 'shared', 'replicas': 3}, 'ollama_storage_mode',
     ['ollama_storage_mode: per_replica', 'ReadWriteMany', 'efs']),
    ('no-class-no-default', lambda: eks_facts(classes=[GP3], default=None), {}, 'ollama_storage_class',
     ['ollama_storage_install_local_path: true', 'ollama_storage_class']),
    ('unlabelled', lambda: eks_facts(nodes=[gpu_node('g1', labels={})]), {}, 'ollama_gpu_node_label',
     ['ollama_gpu_label_nodes: true', 'feature discovery']),
    ('taint', lambda: eks_facts(nodes=[gpu_node('g1', taints=[{'key': 'dedicated', 'value': 'ml',
                                                              'effect': 'NoSchedule'}])]), {},
     'ollama_tolerations', ['dedicated=ml:NoSchedule']),
    ('k3s-runtime', lambda: k3s_facts(runtime_classes=[]), {}, 'ollama_runtime_class',
     ['NVIDIA container toolkit', 'ollama_runtime_class: ""']),
    ('plugin', lambda: eks_facts(device_plugin=dict(HEALTHY_PLUGIN, ready=0, healthy=False)), {},
     'ollama_require_device_plugin', ['NVIDIA device plugin', 'GPU operator']),
    ('claim', eks_facts, {'claim_size': '5Gi', 'models': [{'name': 'm:1', 'size': '42GB'}]}, 'ollama_claim_size',
     ['at least 51Gi']),
    ('model-too-big', eks_facts, {'models': [{'name': 'm:1', 'size': '243GB'}]}, 'ollama_models',
     ['ollama_allow_cpu_offload: true', 'ollama_gpus_per_pod']),
    ('gpus-taken', lambda: eks_facts(nodes=[gpu_node('g1', free=0)]), {}, 'ollama_replicas',
     ['free GPUs', 'add GPU nodes']),
    ('image', eks_facts, {'image_tag': 'latest'}, 'ollama_image_tag', [plan_mod.DEFAULT_OLLAMA_TAG]),
    ('image-cve', eks_facts, {'image_tag': '0.11.4'}, 'ollama_image_tag',
     ['at least 0.17.1', 'ollama_image_allow_known_vulnerable: true']),
]


@pytest.mark.parametrize('facts_factory, config, variable_name, fragments', [f[1:] for f in FIXES],
                         ids=[f[0] for f in FIXES])
def test_fix_text(facts_factory, config, variable_name, fragments):
    result = compute_plan(facts_factory(), config)
    fixes = ' '.join(e['fix'] for e in result['errors'] if e['variable'] == variable_name)
    for fragment in fragments:
        assert fragment in fixes, (fragment, fixes)


# ---------------------------------------------------------------- every error at once

def test_collects_every_error():
    facts = k3s_facts(runtime_classes=[], kubernetes_version={'major': 1, 'minor': 26, 'git_version': 'v1.26.1+k3s1'},
                      device_plugin=dict(HEALTHY_PLUGIN, ready=0, healthy=False))
    config = {
        'namespace': 'Bad_NS',
        'replicas': 3,
        'image_tag': 'latest',
        'storage_mode': 'shared',
        'claim_size': '1Gi',
        'gpus_per_pod': 0,
        'node_selector': ['gpu'],
        'tolerations': [{'key': 'nvidia.com/gpu', 'operator': 'Exists'}, {'operator': 'Sometimes'}],
        'models': [{'name': 'llama 3'}, {'name': 'big:1', 'size': '100GB'}],
        'anti_affinity': 'maybe',
        'pdb_min_available': 3,
        'ingress': {'enabled': True, 'auth_type': 'none'},
        'workload_allowed_namespaces': ['Not_A_Namespace'],
    }
    result = compute_plan(facts, config)
    assert_well_formed(result)
    variables = set(error_variables(result))
    assert variables >= {
        'kubernetes_version', 'ollama_namespace', 'ollama_image_tag', 'ollama_storage_mode', 'ollama_gpus_per_pod',
        'ollama_node_selector', 'ollama_tolerations',
        'ollama_claim_size', 'ollama_models', 'ollama_anti_affinity', 'ollama_pdb_min_available',
        'ollama_ingress_host', 'ollama_ingress_auth_type', 'ollama_runtime_class', 'ollama_require_device_plugin',
        'ollama_workload_allowed_namespaces',
    }, variables
    # both model problems are reported, not just the first
    model_errors = [e['message'] for e in result['errors'] if e['variable'] == 'ollama_models']
    assert any('llama 3' in m for m in model_errors) and any('big:1' in m for m in model_errors)
    assert len(result['errors']) >= 16


def test_errors_do_not_stop_decisions():
    result = compute_plan(eks_facts(), {'replicas': 3, 'image_tag': 'latest'})
    assert not result['ok']
    assert result['workload_kind'] == 'StatefulSet' and result['pdb'] == {
        'min_available': 2, 'unhealthy_pod_eviction_policy': 'AlwaysAllow'}


def test_plan_shape():
    result = compute_plan(eks_facts(), {'replicas': 2})
    assert sorted(result) == sorted([
        'ok', 'errors', 'warnings', 'name', 'namespace', 'distribution', 'image', 'workload_kind', 'strategy',
        'gpu_quota', 'objects', 'stale',
        'rolling_update', 'pod_management_policy', 'replicas', 'gpus_per_pod', 'storage', 'affinity', 'tolerations',
        'node_selector', 'runtime_class', 'pdb', 'eligible_nodes', 'excluded_nodes', 'label_nodes', 'zones',
        'models', 'ingress', 'gate', 'namespace_info', 'httproute', 'network_policy', 'self_heal', 'env_settings',
        'model_cache'])
    assert sorted(result['env_settings']) == ['others', 'seconds', 'values']
    assert sorted(result['storage']) == sorted([
        'mode', 'class', 'provisioner', 'access_mode', 'size', 'size_bytes', 'binding_mode', 'allow_expansion',
        'install_local_path', 'create_classes', 'claim_name', 'claim_template_name', 'claim_names', 'pull_scope'])
    assert sorted(result['affinity']) == sorted([
        'node_label', 'anti_affinity', 'anti_affinity_topology_key', 'label_selector', 'zone_spread',
        'zone_spread_when', 'zone_topology_key', 'max_skew', 'node_affinity_policy', 'node_taints_policy'])


def test_compute_plan_does_not_mutate_inputs():
    facts = eks_facts()
    config = {'replicas': 2, 'models': [{'name': 'llama3', 'size': '4GB'}], 'ingress': {'enabled': False}}
    facts_copy, config_copy = copy.deepcopy(facts), copy.deepcopy(config)
    compute_plan(facts, config)
    assert facts == facts_copy and config == config_copy


def test_defaults_are_not_shared_between_calls():
    first = compute_plan(eks_facts(), {})
    first['tolerations'].append({'key': 'x', 'operator': 'Exists'})
    first['ingress']['blocked_paths'].append('/x')
    second = compute_plan(eks_facts(), {})
    assert len(second['tolerations']) == 1 and '/x' not in second['ingress']['blocked_paths']


def test_no_gpu_nodes_reported_once_when_plugin_missing():
    result = compute_plan(eks_facts(nodes=[cpu_node('c')], device_plugin={'found': False}), {})
    assert error_variables(result).count('ollama_require_device_plugin') == 1
    assert 'nodes' not in error_variables(result)


def test_invalid_values_do_not_cascade():
    result = compute_plan(eks_facts(), {'replicas': 4, 'anti_affinity': 'maybe'})
    assert error_variables(result) == ['ollama_anti_affinity']
    result = compute_plan(eks_facts(), {'replicas': 3, 'storage_mode': 'shared', 'storage_class': 'nope'})
    assert error_variables(result) == ['ollama_storage_class']


def test_pdb_fix_for_single_replica():
    result = compute_plan(eks_facts(), {'pdb_min_available': 1})
    assert 'ollama_pdb_min_available: ""' in result['errors'][0]['fix']


def test_hard_anti_affinity_error_not_doubled_by_capacity():
    result = compute_plan(eks_facts(), {'replicas': 5})
    assert error_variables(result).count('ollama_replicas') == 1


# ---------------------------------------------------------------- helpers

@pytest.mark.parametrize('name, expected', [
    ('llama3', ('registry.ollama.ai', 'library', 'llama3', 'latest')),
    ('llama3.2:3b', ('registry.ollama.ai', 'library', 'llama3.2', '3b')),
    ('qwen2.5:7b-instruct-q4_K_M', ('registry.ollama.ai', 'library', 'qwen2.5', '7b-instruct-q4_K_M')),
    ('myorg/model', ('registry.ollama.ai', 'myorg', 'model', 'latest')),
    ('hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M',
     ('hf.co', 'bartowski', 'Llama-3.2-1B-Instruct-GGUF', 'Q4_K_M')),
    ('localhost:5000/ns/tiny:q8_0', ('localhost:5000', 'ns', 'tiny', 'q8_0')),
    ('https://registry.local/ns/m:t', ('registry.local', 'ns', 'm', 't')),
    ('_under/score', ('registry.ollama.ai', '_under', 'score', 'latest')),
])
def test_parse_model_name_valid(name, expected):
    parts, reason = parse_model_name(name)
    assert reason is None
    assert (parts['host'], parts['namespace'], parts['model'], parts['tag']) == expected


@pytest.mark.parametrize('name', [
    '', '   ', 'llama 3', 'a/b/c/d', 'model:tag:x', '-bad', 'my.org/model', 'llama3:', '/llama3', 'ns//m',
    'ftp://host/ns/m', 'm' * 81, 'model:' + 't' * 81, 'm@sha256:short', 'mödel', None, 42,
])
def test_parse_model_name_invalid(name):
    parts, reason = parse_model_name(name)
    assert parts is None and reason


def test_parse_model_name_digest():
    parts, reason = parse_model_name('llama3:8b@sha256:' + 'f' * 64)
    assert reason is None and parts['tag'] == '8b' and parts['digest'] == 'sha256:' + 'f' * 64


@pytest.mark.parametrize('tag, expected', [
    ('0.11.4', ((0, 11, 4), None)),
    ('v0.11.4', ((0, 11, 4), None)),
    ('0.11.4-rocm', ((0, 11, 4), 'rocm')),
    ('0.1.47', ((0, 1, 47), None)),
    ('0.12.0-rc1', ((0, 12, 0), 'rc1')),
    ('latest', None),
    ('0.11', None),
    ('', None),
])
def test_parse_ollama_version(tag, expected):
    assert parse_ollama_version(tag) == expected


@pytest.mark.parametrize('toleration, taint, expected', [
    ({'key': 'nvidia.com/gpu', 'operator': 'Exists', 'effect': 'NoSchedule'}, GPU_TAINT, True),
    ({'key': 'nvidia.com/gpu', 'operator': 'Exists'}, GPU_TAINT, True),
    ({'key': 'nvidia.com/gpu', 'operator': 'Exists', 'effect': 'NoExecute'}, GPU_TAINT, False),
    ({'key': 'nvidia.com/gpu', 'operator': 'Equal', 'value': 'present'}, GPU_TAINT, True),
    ({'key': 'nvidia.com/gpu', 'value': 'present'}, GPU_TAINT, True),              # Equal is the default
    ({'key': 'nvidia.com/gpu', 'operator': 'Equal', 'value': 'other'}, GPU_TAINT, False),
    ({'key': 'nvidia.com/gpu', 'operator': 'Equal'}, GPU_TAINT, False),
    ({'operator': 'Exists'}, GPU_TAINT, True),                                     # tolerate everything
    ({'key': 'other', 'operator': 'Exists'}, GPU_TAINT, False),
])
def test_tolerates(toleration, taint, expected):
    assert tolerates(toleration, taint) is expected


def test_untolerated_taints_ignores_prefer_no_schedule():
    node = gpu_node('g', taints=[GPU_TAINT, {'key': 'soft', 'value': '', 'effect': 'PreferNoSchedule'},
                                 {'key': 'hard', 'value': '', 'effect': 'NoExecute'}])
    assert untolerated_taints(node, [{'key': 'nvidia.com/gpu', 'operator': 'Exists'}]) == [
        {'key': 'hard', 'value': '', 'effect': 'NoExecute'}]


@pytest.mark.parametrize('replicas, capacity, expected', [
    (3, {'a': 1, 'b': 1, 'c': 1}, True),
    (3, {'a': 2, 'b': 1}, True),
    (4, {'a': 3, 'b': 1}, False),
    (4, {'a': 2, 'b': 2}, True),
    (5, {'a': 3, 'b': 2}, True),
    (5, {'a': 4, 'b': 1}, False),
    (2, {'a': 5, 'b': 0}, False),
    (1, {}, False),
])
def test_even_spread_feasible(replicas, capacity, expected):
    assert even_spread_feasible(replicas, capacity) is expected


@pytest.mark.parametrize('mode, replicas, rwx, expected, error', [
    ('auto', 1, False, ('shared', 'Deployment', 'Recreate', 'ReadWriteOnce'), False),
    ('auto', 1, True, ('shared', 'Deployment', 'RollingUpdate', 'ReadWriteMany'), False),
    ('auto', 3, False, ('per_replica', 'StatefulSet', 'RollingUpdate', 'ReadWriteOnce'), False),
    ('auto', 3, True, ('shared', 'Deployment', 'RollingUpdate', 'ReadWriteMany'), False),
    ('per_replica', 1, False, ('per_replica', 'StatefulSet', 'RollingUpdate', 'ReadWriteOnce'), False),
    ('per_replica', 3, True, ('per_replica', 'StatefulSet', 'RollingUpdate', 'ReadWriteOnce'), False),
    ('shared', 1, False, ('shared', 'Deployment', 'Recreate', 'ReadWriteOnce'), False),
    ('shared', 3, True, ('shared', 'Deployment', 'RollingUpdate', 'ReadWriteMany'), False),
    ('shared', 3, False, ('shared', 'Deployment', 'Recreate', 'ReadWriteOnce'), True),
    ('bogus', 1, False, ('shared', 'Deployment', 'Recreate', 'ReadWriteOnce'), True),
])
def test_decide_storage_layout(mode, replicas, rwx, expected, error):
    report = plan_mod.Report()
    assert decide_storage_layout(mode, replicas, rwx, 'x', [], report) == expected
    assert bool(report.errors) is error


@pytest.mark.parametrize('claim_size, headroom, sizes, expected', [
    ('', 30, [], '10Gi'),
    ('', 30, [4700000000], '10Gi'),
    ('', 30, [10 * 2 ** 30], '13Gi'),
    ('', 30, [10 * 2 ** 30 + 1], '14Gi'),
    ('', 0, [20 * 2 ** 30], '20Gi'),
    ('', 100, [20 * 2 ** 30], '40Gi'),
    (None, 30, [40 * 10 ** 9], '49Gi'),
    ('auto', 30, [40 * 10 ** 9], '49Gi'),
    ('200Gi', 30, [40 * 10 ** 9], '200Gi'),
    ('1Ti', 30, [40 * 10 ** 9], '1Ti'),
])
def test_decide_claim_size(claim_size, headroom, sizes, expected):
    report = plan_mod.Report()
    models = [{'name': 'm%d' % i, 'size_bytes': s, 'size': str(s)} for i, s in enumerate(sizes)]
    size = decide_claim_size(claim_size, headroom, models, report)[0]
    assert size == expected and not report.errors


@pytest.mark.parametrize('value, replicas, expected, error', [
    ('', 1, None, False),
    ('', 2, 1, False),
    ('', 5, 4, False),
    ('auto', 3, 2, False),
    (2, 5, 2, False),
    ('40%', 5, '40%', False),
    ('0%', 5, None, False),
    (5, 5, None, True),
    ('100%', 2, None, True),
    ('x', 2, None, True),
])
def test_decide_pdb(value, replicas, expected, error):
    report = plan_mod.Report()
    result = decide_pdb(value, replicas, report)
    assert (result['min_available'] if result else None) == expected
    assert bool(report.errors) is error


def test_variable_names():
    assert variable('replicas') == 'ollama_replicas'
    assert variable('install_local_path') == 'ollama_storage_install_local_path'
    assert variable('ingress.auth_secret') == 'ollama_ingress_auth_secret'
    assert variable('kubernetes_version') == 'kubernetes_version'
    assert all(v.startswith('ollama_') for k, v in VARIABLES.items() if k not in ('kubernetes_version', 'nodes'))


def test_config_from_role_vars():
    config = config_from_role_vars({
        'ollama_replicas': 3,
        'ollama_storage_install_local_path': True,
        'ollama_ingress_enabled': True,
        'ollama_ingress_host': 'o.example.com',
        'ollama_models': ['llama3'],
        'unrelated': 1,
    })
    assert config == {'replicas': 3, 'install_local_path': True, 'models': ['llama3'],
                      'ingress': {'enabled': True, 'host': 'o.example.com'}}


def test_config_from_role_vars_ingress_dict_and_flat():
    config = config_from_role_vars({'ollama_ingress': {'enabled': True, 'host': 'a'}, 'ollama_ingress_host': 'b'})
    assert config['ingress'] == {'enabled': True, 'host': 'b'}


# ---------------------------------------------------------------- classes storage_provisioner creates

def only_error(plan, variable_name):
    assert_well_formed(plan)
    assert error_variables(plan) == [variable_name], plan['errors']
    return plan['errors'][0]


def test_a_class_to_create_can_be_chosen_before_it_exists():
    two_gpu_nodes = [gpu_node('gpu-a', taints=[]), gpu_node('gpu-b', taints=[]), cpu_node('cp')]
    facts = dict(k3s_facts(nodes=two_gpu_nodes), storage_classes=[], default_storage_class=None,
                 csi_drivers=['efs.csi.aws.com'])
    plan = compute_plan(facts, {'replicas': 2, 'storage_class': 'efs-sc', 'storage_classes': [
        {'name': 'efs-sc', 'provisioner': 'efs.csi.aws.com', 'binding_mode': 'Immediate',
         'parameters': {'fileSystemId': 'fs-1'}}]})
    assert plan['ok'], plan['errors']
    assert plan['storage']['mode'] == 'shared' and plan['storage']['access_mode'] == 'ReadWriteMany'
    assert [c['name'] for c in plan['storage']['create_classes']] == ['efs-sc']


def test_a_csi_class_without_its_driver_is_refused_with_the_add_on_to_install():
    facts = dict(k3s_facts(), storage_classes=[], default_storage_class=None, csi_drivers=['ebs.csi.aws.com'])
    plan = compute_plan(facts, {'storage_class': 'efs-sc', 'storage_classes': [
        {'name': 'efs-sc', 'provisioner': 'efs.csi.aws.com'}]})
    error = only_error(plan, 'ollama_storage_class')
    assert 'no CSI driver' in error['message'] and 'aws-efs-csi-driver' in error['fix']


def test_an_existing_class_is_not_planned_again():
    plan = compute_plan(k3s_facts(), {'storage_classes': [{'name': 'local-path', 'provisioner': 'rancher.io/local-path'}]})
    assert plan['ok'] and plan['storage']['create_classes'] == []


def test_a_class_entry_without_provisioner_names_the_variable():
    plan = compute_plan(k3s_facts(), {'storage_classes': [{'name': 'fast'}]})
    assert only_error(plan, 'ollama_storage_classes')['fix']
