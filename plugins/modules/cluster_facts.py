#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: cluster_facts
short_description: Everything the plan needs to know about a cluster, read in one pass
description:
  - Reads, with paginated list calls and no per-node calls, the Kubernetes version, the distribution
    (k3s, EKS or other), nodes with their GPU capacity, allocatable and already requested GPUs, GPU product
    and memory where feature-discovery labels exist, taints, zones and readiness; StorageClasses (default,
    provisioner, binding mode, expansion, ReadWriteMany support); CSI drivers; RuntimeClasses; whether the
    NVIDIA device plugin or GPU operator runs and is healthy; the Ollama objects already in the namespace and its
    labels; IngressClasses, the Gateway API, GatewayClasses and Gateways; the control-plane nodes' addresses;
    where known ingress controllers run.
  - Read-only; it changes nothing in the cluster.
version_added: 0.1.0
author:
  - llmops.ollama maintainers (@llmops-ollama)
options:
  namespace:
    description: Namespace whose existing Ollama objects (workloads, claims, services, budgets) are read.
    type: str
    default: ollama
  request_timeout:
    description: Seconds each API request may take before the module fails with a clear error.
    type: int
    default: 30
  label_keys:
    description:
      - Node labels to keep beside the GPU, zone, instance-type and role labels the plan reads (for example the keys
        of C(ollama_node_selector) and C(ollama_gpu_node_label)).
      - With it set, C(nodes) lists only the nodes with GPUs, so the facts stay small on clusters of thousands of
        nodes; C(node_count) and C(zones) still count every node. Left out, every node comes with all its labels.
    type: list
    elements: str
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
  - ansible.builtin.action_common_attributes
  - llmops.ollama.attributes.READ_ONLY
'''

EXAMPLES = r'''
- name: Read the cluster
  llmops.ollama.cluster_facts:
    namespace: ollama
    kubeconfig: ~/.kube/config
  register: cluster

- name: Show the GPU nodes
  ansible.builtin.debug:
    var: cluster.cluster.gpu_nodes
'''

RETURN = r'''
cluster:
  description: The cluster facts.
  returned: success
  type: dict
  contains:
    kubernetes_version:
      description: Major, minor and the server's git version.
      type: dict
      sample: {major: 1, minor: 34, git_version: v1.34.4+k3s1}
    distribution:
      description: C(k3s), C(eks) or C(other).
      type: str
    nodes:
      description: One entry per node with readiness, labels, taints, zone and GPU counts.
      type: list
      elements: dict
    node_count:
      description: Number of nodes in the cluster.
      type: int
    zones:
      description: Zones of all nodes.
      type: list
      elements: str
    gpu_nodes:
      description: Names of the nodes with allocatable C(nvidia.com/gpu).
      type: list
      elements: str
    storage_classes:
      description: StorageClasses with provisioner, default flag, binding mode, expansion and RWX support.
      type: list
      elements: dict
    default_storage_class:
      description: The class Kubernetes uses for a claim that names none.
      type: str
    csi_drivers:
      description: Names of the registered CSI drivers.
      type: list
      elements: str
    runtime_classes:
      description: Names of the RuntimeClasses.
      type: list
      elements: str
    device_plugin:
      description: The NVIDIA device plugin DaemonSet found, with desired and ready counts and health.
      type: dict
    gpu_operator:
      description: Whether the NVIDIA GPU operator manages the GPU stack.
      type: bool
    existing:
      description: Ollama workloads, claims, services, budgets and pods already in the namespace, and its labels.
      type: dict
    control_plane:
      description: The control-plane nodes with their InternalIP addresses and pod CIDRs (where the API server's pod
        proxy comes from on k3s and kubeadm).
      type: list
      elements: dict
    controller_pods:
      description: Where the pods of known ingress and Gateway controllers run (C(name), C(namespace)).
      type: list
      elements: dict
    ingress_classes:
      description: IngressClasses with their controller and default flag; null when this user may not list them.
      type: list
      elements: dict
    default_ingress_class:
      description: The IngressClass an Ingress without a class gets, or null (none, or several marked default).
      type: str
    gateway_api:
      description: Whether the cluster serves the Gateway API (C(installed)), its versions and v1 resources.
      type: dict
    gateway_classes:
      description: GatewayClasses with their controller; null when this user may not list them.
      type: list
      elements: dict
    gateways:
      description: Gateways with their class and listeners (and the namespaces each admits routes from).
      type: list
      elements: dict
    warnings:
      description: Things worth knowing that do not stop the run.
      type: list
      elements: str
'''

from ansible_collections.llmops.ollama.plugins.module_utils.cluster_facts import read_cluster
from ansible_collections.llmops.ollama.plugins.module_utils.k8s import Api, ClusterError, new_module


def main():
    module = new_module(
        argument_spec=dict(
            namespace=dict(type='str', default='ollama'),
            request_timeout=dict(type='int', default=30),
            label_keys=dict(type='list', elements='str', no_log=False),
        ),
        supports_check_mode=True,
    )
    try:
        api = Api(module, request_timeout=module.params['request_timeout'])
        facts = read_cluster(api, module.params['namespace'], module.params['label_keys'])
    except ClusterError as exc:
        module.fail_json(msg=str(exc), cause=exc.message, fix=exc.fix)
    for warning in facts.get('warnings') or []:
        module.warn(warning)
    module.exit_json(changed=False, cluster=facts)


if __name__ == '__main__':
    main()
