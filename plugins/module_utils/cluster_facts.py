# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Cluster facts: one pass over the lists the API returned, into one plain dict.

No Kubernetes client here. Every argument is what the API returns, as plain
dicts (``node["status"]["allocatable"]["nvidia.com/gpu"]``), or lists of them;
:func:`build_facts` reads each list once and returns the facts that
:func:`ansible_collections.llmops.ollama.plugins.module_utils.plan.compute_plan`
decides from.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.llmops.ollama.plugins.module_utils.quantity import (
    QuantityError,
    quantity_to_bytes,
    quantity_to_int,
)

GPU_RESOURCE = 'nvidia.com/gpu'
LABEL_GPU_PRESENT = 'nvidia.com/gpu.present'
LABEL_GPU_PRODUCT = 'nvidia.com/gpu.product'
LABEL_GPU_MEMORY = 'nvidia.com/gpu.memory'
LABEL_GPU_COUNT = 'nvidia.com/gpu.count'
LABEL_ZONE = 'topology.kubernetes.io/zone'
LABEL_ZONE_LEGACY = 'failure-domain.beta.kubernetes.io/zone'
LABEL_INSTANCE_TYPE = 'node.kubernetes.io/instance-type'
LABEL_EKS_NODEGROUP = 'eks.amazonaws.com/nodegroup'
LABEL_K3S_HOSTNAME = 'k3s.io/hostname'
ANNOTATION_DEFAULT_CLASS = 'storageclass.kubernetes.io/is-default-class'
ANNOTATION_DEFAULT_CLASS_BETA = 'storageclass.beta.kubernetes.io/is-default-class'
ANNOTATION_DEFAULT_INGRESS_CLASS = 'ingressclass.kubernetes.io/is-default-class'
CONTROL_PLANE_LABELS = ('node-role.kubernetes.io/control-plane', 'node-role.kubernetes.io/master')
LABEL_MANAGED_BY = 'app.kubernetes.io/managed-by'
GATEWAY_GROUP = 'gateway.networking.k8s.io'

# Ingress and Gateway controllers whose pods the facts look for (by app.kubernetes.io/name, or app), with the
# controller names their IngressClasses and GatewayClasses carry: their traffic to the gate comes from there.
CONTROLLER_PODS = {
    'traefik': ('traefik.io/ingress-controller', 'traefik.io/gateway-controller'),
    'ingress-nginx': ('k8s.io/ingress-nginx',),
    'nginx-ingress': ('nginx.org/ingress-controller',),
    'envoy': ('gateway.envoyproxy.io/gatewayclass-controller',),
}

# Provisioners whose volumes can be mounted read-write by pods on several
# nodes at once (ReadWriteMany). Longhorn can serve RWX through its share
# manager, but its classes are block (RWO) unless the user says otherwise,
# so it is left out; so are rancher.io/local-path and ebs.csi.aws.com (RWO).
RWX_PROVISIONERS = frozenset([
    'efs.csi.aws.com',
    'nfs.csi.k8s.io',
    'cluster.local/nfs-subdir-external-provisioner',
    'k8s-sigs.io/nfs-subdir-external-provisioner',
    'file.csi.azure.com',
    'kubernetes.io/azure-file',
    'filestore.csi.storage.gke.io',
    'cephfs.csi.ceph.com',
    'fsx.csi.aws.com',
    'nfs.csi.netapp.io',
    'csi.trident.netapp.io',
])

# GPU memory per card (MiB, as nvidia-smi reports it) of EC2 GPU instance families, for
# nodes without GPU feature discovery (the EKS GPU AMIs set no nvidia.com/gpu.* labels).
INSTANCE_GPU_MEMORY_MIB = {
    'g4dn': 15360,   # NVIDIA T4
    'g5': 23028,     # NVIDIA A10G
    'g6': 23034,     # NVIDIA L4
    'gr6': 23034,    # NVIDIA L4
    'g6e': 46068,    # NVIDIA L40S
    'p4d': 40960,    # NVIDIA A100 40GB
    'p4de': 81920,   # NVIDIA A100 80GB
    'p5': 81559,     # NVIDIA H100 80GB HBM3
    'p5e': 143771,   # NVIDIA H200
    'p5en': 143771,  # NVIDIA H200
}

TERMINATED_PHASES = ('Succeeded', 'Failed')
DEVICE_PLUGIN_MARK = 'nvidia-device-plugin'
GPU_OPERATOR_NAMESPACE = 'gpu-operator'
_VERSION_RE = re.compile(r'^v?(\d+)\.(\d+)')


def _meta(obj):
    return (obj or {}).get('metadata') or {}


def _labels(obj):
    return dict(_meta(obj).get('labels') or {})


def _annotations(obj):
    return _meta(obj).get('annotations') or {}


def _digits(text):
    match = re.match(r'\s*(\d+)', str(text or ''))
    return int(match.group(1)) if match else None


def kubernetes_version(version_info):
    """``{major, minor, git_version}`` from ``/version`` (``{"major": "1", "minor": "30+",
    "gitVersion": "v1.30.4-eks-a737599"}``) or from kubernetes.core's cluster info
    (``{"server": {"kubernetes": {...}}}``)."""
    info = version_info or {}
    if isinstance(info.get('server'), dict):
        info = info['server'].get('kubernetes') or info['server']
    git_version = info.get('gitVersion') or info.get('git_version') or ''
    major = _digits(info.get('major'))
    minor = _digits(info.get('minor'))
    match = _VERSION_RE.match(git_version)
    if match:
        if major is None:
            major = int(match.group(1))
        if minor is None:
            minor = int(match.group(2))
    return {'major': major, 'minor': minor, 'git_version': git_version}


def _condition_true(obj, kind):
    for cond in (obj.get('status') or {}).get('conditions') or []:
        if cond.get('type') == kind:
            return cond.get('status') == 'True'
    return False


def _resource_request(container, resource):
    """A container's request of a resource; the limit counts when no request is set
    (Kubernetes defaults the request of an extended resource to its limit)."""
    res = container.get('resources') or {}
    requests = res.get('requests') or {}
    limits = res.get('limits') or {}
    value = requests.get(resource)
    if value is None:
        value = limits.get(resource)
    return quantity_to_int(value, default=0) if value is not None else 0


def pod_resource_request(pod, resource=GPU_RESOURCE):
    """The effective request of a pod, as the scheduler counts it: the larger of
    (app containers + sidecars) and the largest init container (+ the sidecars
    started before it)."""
    spec = pod.get('spec') or {}
    sidecars = 0
    init_peak = 0
    for init in spec.get('initContainers') or []:
        amount = _resource_request(init, resource)
        if init.get('restartPolicy') == 'Always':
            sidecars += amount
        else:
            init_peak = max(init_peak, amount + sidecars)
    app = sum(_resource_request(c, resource) for c in spec.get('containers') or [])
    return max(app + sidecars, init_peak)


def _taints(node):
    return [
        {'key': t.get('key', ''), 'value': t.get('value', '') or '', 'effect': t.get('effect', '')}
        for t in (node.get('spec') or {}).get('taints') or []
    ]


def allocatable_gpus(node):
    return quantity_to_int(((node.get('status') or {}).get('allocatable') or {}).get(GPU_RESOURCE), default=0)


def _memory_mib(labels):
    value = labels.get(LABEL_GPU_MEMORY)
    if value in (None, ''):
        return None
    try:
        return quantity_to_int(value)
    except QuantityError:
        return None


def gpu_memory(labels):
    """``(MiB, source)``: the nvidia.com/gpu.memory label, else the EC2 instance family's
    card, else ``(None, None)``."""
    mib = _memory_mib(labels)
    if mib:
        return mib, 'label'
    family = (labels.get(LABEL_INSTANCE_TYPE) or '').split('.', 1)[0]
    if family in INSTANCE_GPU_MEMORY_MIB:
        return INSTANCE_GPU_MEMORY_MIB[family], 'instance-type'
    return None, None


def node_facts(node, gpu_requested=0):
    labels = _labels(node)
    memory_mib, memory_source = gpu_memory(labels)
    status = node.get('status') or {}
    capacity = quantity_to_int((status.get('capacity') or {}).get(GPU_RESOURCE), default=0)
    allocatable = allocatable_gpus(node)
    mem = (status.get('allocatable') or {}).get('memory')
    try:
        memory_bytes = quantity_to_bytes(mem) if mem is not None else None
    except QuantityError:
        memory_bytes = None
    return {
        'name': _meta(node).get('name'),
        'ready': _condition_true(node, 'Ready'),
        'schedulable': not bool((node.get('spec') or {}).get('unschedulable')),
        'labels': labels,
        'taints': _taints(node),
        'zone': labels.get(LABEL_ZONE) or labels.get(LABEL_ZONE_LEGACY),
        'instance_type': labels.get(LABEL_INSTANCE_TYPE),
        'memory_allocatable_bytes': memory_bytes,
        'gpu_capacity': capacity,
        'gpu_allocatable': allocatable,
        'gpu_requested': gpu_requested,
        'gpu_free': max(0, allocatable - gpu_requested),
        'gpu_product': labels.get(LABEL_GPU_PRODUCT),
        'gpu_memory_mib': memory_mib,
        'gpu_memory_source': memory_source,
        'gpu_present_label': labels.get(LABEL_GPU_PRESENT) == 'true',
    }


def control_plane_facts(node):
    """``{name, internal_ips, pod_cidrs}`` of a node labelled as control plane, else None. The API server's
    pod proxy reaches pods from these addresses (and, on overlay networks, from the node's own pod-network
    addresses, the first ones of its pod CIDR)."""
    labels = _labels(node)
    if not any(key in labels for key in CONTROL_PLANE_LABELS):
        return None
    status = node.get('status') or {}
    spec = node.get('spec') or {}
    cidrs = list(spec.get('podCIDRs') or ([spec['podCIDR']] if spec.get('podCIDR') else []))
    return {
        'name': _meta(node).get('name'),
        'internal_ips': sorted(set(a.get('address') for a in status.get('addresses') or []
                                   if a.get('type') == 'InternalIP' and a.get('address'))),
        'pod_cidrs': cidrs,
    }


def detect_distribution(git_version, node_label_sets):
    """``k3s``, ``eks`` or ``other``. The server version decides first
    (``v1.30.4+k3s1``, ``v1.30.4-eks-a737599``), then node labels."""
    if '+k3s' in (git_version or ''):
        return 'k3s'
    if '-eks-' in (git_version or ''):
        return 'eks'
    for labels in node_label_sets:
        if labels.get(LABEL_INSTANCE_TYPE) == 'k3s' or LABEL_K3S_HOSTNAME in labels:
            return 'k3s'
        if LABEL_EKS_NODEGROUP in labels or 'eks.amazonaws.com/compute-type' in labels:
            return 'eks'
    return 'other'


def storage_class_facts(sc):
    annotations = _annotations(sc)
    provisioner = sc.get('provisioner', '')
    return {
        'name': _meta(sc).get('name'),
        'provisioner': provisioner,
        'default': (annotations.get(ANNOTATION_DEFAULT_CLASS) == 'true'
                    or annotations.get(ANNOTATION_DEFAULT_CLASS_BETA) == 'true'),
        'binding_mode': sc.get('volumeBindingMode') or 'Immediate',
        'allow_expansion': bool(sc.get('allowVolumeExpansion')),
        'reclaim_policy': sc.get('reclaimPolicy') or 'Delete',
        'rwx': provisioner in RWX_PROVISIONERS,
        'parameters': dict(sc.get('parameters') or {}),
        'created': _meta(sc).get('creationTimestamp') or '',
    }


def ingress_class_facts(ic):
    return {
        'name': _meta(ic).get('name'),
        'controller': (ic.get('spec') or {}).get('controller') or '',
        'default': _annotations(ic).get(ANNOTATION_DEFAULT_INGRESS_CLASS) == 'true',
        'created': _meta(ic).get('creationTimestamp') or '',
    }


def gateway_facts(gateway):
    """A Gateway's class and listeners, with the namespaces each listener admits routes from."""
    spec = gateway.get('spec') or {}
    listeners = []
    for listener in spec.get('listeners') or []:
        namespaces = ((listener.get('allowedRoutes') or {}).get('namespaces') or {})
        listeners.append({
            'name': listener.get('name'),
            'protocol': listener.get('protocol'),
            'port': listener.get('port'),
            'hostname': listener.get('hostname'),
            'from': namespaces.get('from') or 'Same',
            'selector': namespaces.get('selector'),
        })
    return {'name': _meta(gateway).get('name'), 'namespace': _meta(gateway).get('namespace'),
            'class': spec.get('gatewayClassName'), 'listeners': listeners}


def _controller_pod(pod):
    """The CONTROLLER_PODS name a pod runs, or None."""
    labels = _labels(pod)
    name = labels.get('app.kubernetes.io/name') or labels.get('app')
    return name if name in CONTROLLER_PODS else None


def _is_gpu_operator_daemonset(ds):
    meta = _meta(ds)
    labels = _labels(ds)
    if labels.get('app.kubernetes.io/managed-by') == 'gpu-operator':
        return True
    if meta.get('namespace') == GPU_OPERATOR_NAMESPACE:
        return True
    return any(ref.get('kind') == 'ClusterPolicy' for ref in meta.get('ownerReferences') or [])


def daemonset_facts(ds):
    status = ds.get('status') or {}
    desired = int(status.get('desiredNumberScheduled') or 0)
    ready = int(status.get('numberReady') or 0)
    return {
        'found': True,
        'name': _meta(ds).get('name'),
        'namespace': _meta(ds).get('namespace'),
        'desired': desired,
        'ready': ready,
        'healthy': desired > 0 and ready == desired,
        'source': 'gpu-operator' if _is_gpu_operator_daemonset(ds) else 'device-plugin',
    }


NO_DEVICE_PLUGIN = {
    'found': False, 'name': None, 'namespace': None, 'desired': 0, 'ready': 0,
    'healthy': False, 'source': None,
}


def _better_plugin(current, candidate):
    """Several device plugin DaemonSets: prefer a healthy one, then the GPU operator's."""
    if current is None:
        return candidate

    def rank(plugin):
        return (plugin['healthy'], plugin['source'] == 'gpu-operator', plugin['ready'])
    return candidate if rank(candidate) > rank(current) else current


def _images(pod_spec):
    spec = pod_spec or {}
    return [c.get('image') or '' for c in (spec.get('containers') or []) + (spec.get('initContainers') or [])]


def is_ollama_image(image):
    """``ollama/ollama:0.11.4``, ``docker.io/ollama/ollama@sha256:...`` and mirrors of them."""
    repository = (image or '').split('@', 1)[0]
    last = repository.rsplit('/', 1)[-1]
    return last == 'ollama' or last.startswith('ollama:')


def _is_ollama_object(obj, pod_spec):
    labels = _labels(obj)
    if labels.get('app.kubernetes.io/name') == 'ollama':
        return True
    return any(is_ollama_image(i) for i in _images(pod_spec))


def _claim_facts(pvc):
    spec = pvc.get('spec') or {}
    status = pvc.get('status') or {}
    size = ((status.get('capacity') or {}).get('storage')
            or ((spec.get('resources') or {}).get('requests') or {}).get('storage'))
    try:
        size_bytes = quantity_to_bytes(size) if size is not None else None
    except QuantityError:
        size_bytes = None
    return {
        'name': _meta(pvc).get('name'),
        'namespace': _meta(pvc).get('namespace'),
        'storage_class': spec.get('storageClassName'),
        'access_modes': list(spec.get('accessModes') or []),
        'size_bytes': size_bytes,
        'phase': status.get('phase'),
        'selected_node': _annotations(pvc).get('volume.kubernetes.io/selected-node'),
    }


def _claim_template(statefulset_spec):
    """The first volumeClaimTemplate of a StatefulSet as the plan compares it (Kubernetes forbids changing it)."""
    templates = statefulset_spec.get('volumeClaimTemplates') or []
    if not templates:
        return None
    template = templates[0] or {}
    spec = template.get('spec') or {}
    return {
        'name': _meta(template).get('name') or '',
        'access_modes': list(spec.get('accessModes') or []),
        'storage_class': spec.get('storageClassName') or '',
        'size': ((spec.get('resources') or {}).get('requests') or {}).get('storage') or '',
    }


def existing_objects(namespace_objects):
    """What already exists in the target namespace: the namespace itself, Ollama
    workloads (by ``app.kubernetes.io/name=ollama`` or an ollama image), claims,
    services, PodDisruptionBudgets. ``namespace_objects`` is a list of objects with
    ``kind`` (or a dict of kind -> list)."""
    if isinstance(namespace_objects, dict):
        flat = []
        for kind, items in namespace_objects.items():
            for item in items or []:
                if 'kind' not in item:
                    item = dict(item, kind=kind)
                flat.append(item)
        namespace_objects = flat
    result = {
        'namespace_exists': False,
        'namespace_labels': {},
        'workloads': [],
        'claims': [],
        'services': [],
        'pdbs': [],
        'ollama_replicas': 0,
    }
    for obj in namespace_objects or []:
        kind = obj.get('kind')
        name = _meta(obj).get('name')
        if kind == 'Namespace':
            result['namespace_exists'] = True
            result['namespace_labels'] = _labels(obj)
        elif kind in ('Deployment', 'StatefulSet'):
            template_spec = ((obj.get('spec') or {}).get('template') or {}).get('spec')
            if not _is_ollama_object(obj, template_spec):
                continue
            spec = obj.get('spec') or {}
            status = obj.get('status') or {}
            result['workloads'].append({
                'kind': kind,
                'name': name,
                'namespace': _meta(obj).get('namespace'),
                'replicas': int(spec.get('replicas', 1) or 0),
                'current_replicas': int(status.get('replicas') or 0),
                'ready_replicas': int(status.get('readyReplicas') or 0),
                'images': _images(template_spec),
                'labels': _labels(obj),
                'claim_template': _claim_template(spec) if kind == 'StatefulSet' else None,
            })
            result['ollama_replicas'] += int(status.get('replicas') or 0)
        elif kind == 'PersistentVolumeClaim':
            result['claims'].append(_claim_facts(obj))
        elif kind == 'Service':
            result['services'].append({'name': name, 'type': (obj.get('spec') or {}).get('type', 'ClusterIP')})
        elif kind == 'PodDisruptionBudget':
            result['pdbs'].append({'name': name, 'min_available': (obj.get('spec') or {}).get('minAvailable')})
    return result


# Labels the plan reads; others are dropped from the node facts (thousands of nodes), see build_facts.
KEPT_LABEL_PREFIXES = ('nvidia.com/', 'feature.node.kubernetes.io/pci-10de', 'topology.kubernetes.io/',
                       'failure-domain.beta.kubernetes.io/', 'kubernetes.io/hostname', 'node.kubernetes.io/instance-type',
                       'eks.amazonaws.com/nodegroup', 'node-role.kubernetes.io/')


def is_gpu_node(facts):
    labels = facts.get('labels') or {}
    return bool(facts['gpu_capacity'] or facts['gpu_allocatable'] or facts['gpu_present_label']
                or labels.get('feature.node.kubernetes.io/pci-10de.present') == 'true')


def slim_node(facts, label_keys):
    keep = tuple(label_keys or ())
    labels = dict((k, v) for k, v in (facts.get('labels') or {}).items()
                  if k.startswith(KEPT_LABEL_PREFIXES) or k in keep)
    return dict(facts, labels=labels)


def exposure_facts(ingress_classes=None, gateway_api=None, gateway_classes=None, gateways=None):
    """IngressClasses (and the default one), whether the Gateway API is served, GatewayClasses and Gateways.
    A list that could not be read (no RBAC for it) is None: the plan refuses what needs it, and only that."""
    warnings = []
    classes = None if ingress_classes is None else [ingress_class_facts(ic) for ic in ingress_classes]
    default = None
    defaults = [c for c in classes or [] if c['default']]
    if len(defaults) == 1:
        default = defaults[0]['name']
    elif defaults:
        warnings.append('several IngressClasses are marked default (%s); the API server then refuses an Ingress '
                        'without a class' % ', '.join(sorted(c['name'] for c in defaults)))
    api = dict({'installed': False, 'versions': [], 'resources': []}, **(gateway_api or {}))
    return {
        'ingress_classes': classes,
        'default_ingress_class': default,
        'gateway_api': api,
        'gateway_classes': None if gateway_classes is None else [
            {'name': _meta(c).get('name'), 'controller': (c.get('spec') or {}).get('controllerName') or ''}
            for c in gateway_classes],
        'gateways': None if gateways is None else [gateway_facts(g) for g in gateways],
    }, warnings


def build_facts(version_info, nodes, pods, storage_classes, csi_drivers, runtime_classes,
                daemonsets, namespace_objects=None, label_keys=None, ingress_classes=None, gateway_api=None,
                gateway_classes=None, gateways=None):
    """Facts the plan decides from. Each list is read once.

    With ``label_keys`` (a list, possibly empty) the facts stay small on big clusters: ``nodes`` holds only
    the nodes with GPUs (capacity, allocatable or hardware labels), each with the labels the plan reads plus
    ``label_keys``; every node still counts in ``node_count`` and ``zones``; the control-plane nodes are kept
    apart in ``control_plane`` with their addresses."""
    warnings = []
    version = kubernetes_version(version_info)

    # pods: GPU requests per node, the Ollama pods wherever they run, where the known ingress controllers run.
    requested = {}
    ollama_pods = []
    controllers = set()
    for pod in pods or []:
        status = pod.get('status') or {}
        if status.get('phase') in TERMINATED_PHASES:
            continue
        controller = _controller_pod(pod)
        if controller:
            controllers.add((controller, _meta(pod).get('namespace')))
        spec = pod.get('spec') or {}
        node_name = spec.get('nodeName')
        gpus = pod_resource_request(pod)
        if node_name and gpus:
            requested[node_name] = requested.get(node_name, 0) + gpus
        if _is_ollama_object(pod, spec):
            ollama_pods.append({
                'name': _meta(pod).get('name'),
                'namespace': _meta(pod).get('namespace'),
                'node': node_name,
                'phase': status.get('phase'),
                'ready': _condition_true(pod, 'Ready'),
                'gpu_request': gpus,
                'pod_ip': status.get('podIP'),
            })

    node_list = []
    gpu_nodes = []
    zones = set()
    node_count = 0
    distribution_labels = []
    control_plane = []
    for node in nodes or []:
        facts = node_facts(node, requested.get(_meta(node).get('name'), 0))
        node_count += 1
        server = control_plane_facts(node)
        if server:
            control_plane.append(server)
        if facts['zone']:
            zones.add(facts['zone'])
        if len(distribution_labels) < 50:
            distribution_labels.append(facts['labels'])
        if label_keys is not None:
            if not is_gpu_node(facts):
                continue
            facts = slim_node(facts, label_keys)
        node_list.append(facts)
        if facts['gpu_allocatable'] > 0:
            gpu_nodes.append(facts['name'])

    classes = []
    defaults = []
    for sc in storage_classes or []:
        facts = storage_class_facts(sc)
        classes.append(facts)
        if facts['default']:
            defaults.append(facts)
    default_class = None
    if defaults:
        # Kubernetes (1.26+) picks the newest default when several are marked.
        default_class = sorted(defaults, key=lambda c: (c['created'], c['name']))[-1]['name']
        if len(defaults) > 1:
            warnings.append('several StorageClasses are marked default (%s); Kubernetes uses the newest, %s'
                            % (', '.join(sorted(c['name'] for c in defaults)), default_class))

    plugin = None
    plugins = []
    gpu_operator = False
    feature_discovery = {'gpu_feature_discovery': False, 'node_feature_discovery': False}
    for ds in daemonsets or []:
        name = _meta(ds).get('name') or ''
        if _is_gpu_operator_daemonset(ds) and ('nvidia' in name or 'gpu' in name):
            gpu_operator = True
        if 'gpu-feature-discovery' in name:
            feature_discovery['gpu_feature_discovery'] = True
        if 'node-feature-discovery' in name or name.startswith('nfd-worker'):
            feature_discovery['node_feature_discovery'] = True
        if DEVICE_PLUGIN_MARK in name:
            candidate = daemonset_facts(ds)
            plugins.append(candidate)
            plugin = _better_plugin(plugin, candidate)
    if len(plugins) > 1:
        warnings.append('several NVIDIA device plugin DaemonSets run (%s); two plugins on one node fight over '
                        'the kubelet socket' % ', '.join('%s/%s' % (p['namespace'], p['name']) for p in plugins))

    exposure, exposure_warnings = exposure_facts(ingress_classes, gateway_api, gateway_classes, gateways)
    warnings.extend(exposure_warnings)
    return dict(exposure, **{
        'kubernetes_version': version,
        'distribution': detect_distribution(version['git_version'], distribution_labels),
        'control_plane': control_plane,
        'controller_pods': [{'name': name, 'namespace': ns} for name, ns in sorted(controllers)],
        'nodes': node_list,
        'node_count': node_count,
        'zones': sorted(zones),
        'gpu_nodes': gpu_nodes,
        'storage_classes': classes,
        'default_storage_class': default_class,
        'csi_drivers': sorted(_meta(d).get('name') for d in csi_drivers or []),
        'runtime_classes': sorted(_meta(r).get('name') for r in runtime_classes or []),
        'device_plugin': dict(plugin) if plugin else dict(NO_DEVICE_PLUGIN),
        'gpu_operator': gpu_operator,
        'feature_discovery': feature_discovery,
        'existing': dict(existing_objects(namespace_objects), ollama_pods=ollama_pods),
        'warnings': warnings,
    })


NAMESPACED_KINDS = (
    ('Deployment', '/apis/apps/v1/namespaces/%s/deployments'),
    ('StatefulSet', '/apis/apps/v1/namespaces/%s/statefulsets'),
    ('PersistentVolumeClaim', '/api/v1/namespaces/%s/persistentvolumeclaims'),
    ('Service', '/api/v1/namespaces/%s/services'),
    ('PodDisruptionBudget', '/apis/policy/v1/namespaces/%s/poddisruptionbudgets'),
)


def _readable(read):
    """What ``read()`` returns, or None when this user may not read it (403) or the API is not served (404)."""
    try:
        return read()
    except Exception as exc:  # module_utils.k8s.ClusterError, which carries the HTTP status
        if getattr(exc, 'status', None) in (403, 404):
            return None
        raise


def read_gateway_api(api):
    """``(gateway_api, gateway_classes, gateways)``: whether the Gateway API CRDs are served (discovery, open to
    every user), and the GatewayClasses and Gateways when they are (None where this user may not list them)."""
    group = api.get_or_none('/apis/%s' % GATEWAY_GROUP)
    versions = [v.get('version') for v in (group or {}).get('versions') or []]
    if 'v1' not in versions:
        return {'installed': False, 'versions': versions, 'resources': []}, [], []
    listing = api.get_or_none('/apis/%s/v1' % GATEWAY_GROUP) or {}
    resources = sorted(r.get('name') for r in listing.get('resources') or [] if '/' not in (r.get('name') or ''))
    info = {'installed': 'httproutes' in resources and 'gateways' in resources, 'versions': versions,
            'resources': resources}
    if not info['installed']:
        return info, [], []
    classes = _readable(lambda: api.list_all('/apis/%s/v1/gatewayclasses' % GATEWAY_GROUP))
    gateways = _readable(lambda: api.list_all('/apis/%s/v1/gateways' % GATEWAY_GROUP))
    return info, classes, gateways


def read_cluster(api, namespace, label_keys=None):
    """Every list build_facts needs, read through ``api`` (module_utils.k8s.Api) in one pass."""
    namespace_objects = {}
    found = api.get_or_none('/api/v1/namespaces/%s' % namespace)
    if found is not None:
        namespace_objects['Namespace'] = [{'metadata': {'name': namespace,
                                                        'labels': _labels(found)}}]
        for kind, path in NAMESPACED_KINDS:
            namespace_objects[kind] = api.list_all(path % namespace)
    gateway_api, gateway_classes, gateways = read_gateway_api(api)
    return build_facts(
        version_info=api.version(),
        # Streamed page by page: build_facts keeps only each node's and pod's facts.
        nodes=api.iter_all('/api/v1/nodes'),
        pods=api.iter_all('/api/v1/pods', fieldSelector='status.phase!=Succeeded,status.phase!=Failed'),
        storage_classes=api.list_all('/apis/storage.k8s.io/v1/storageclasses'),
        csi_drivers=api.list_all('/apis/storage.k8s.io/v1/csidrivers'),
        runtime_classes=api.list_all('/apis/node.k8s.io/v1/runtimeclasses'),
        daemonsets=api.list_all('/apis/apps/v1/daemonsets'),
        namespace_objects=namespace_objects,
        label_keys=label_keys,
        ingress_classes=_readable(lambda: api.list_all('/apis/networking.k8s.io/v1/ingressclasses')),
        gateway_api=gateway_api,
        gateway_classes=gateway_classes,
        gateways=gateways,
    )
