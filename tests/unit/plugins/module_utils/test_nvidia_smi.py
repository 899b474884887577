# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.llmops.ollama.plugins.module_utils.nvidia_smi import (
    NvidiaSmiError,
    containerd_has_nvidia_runtime,
    containerd_runtimes,
    failure_message,
    gpu_facts,
    parse_cuda_version,
    parse_header,
    parse_query_gpu,
)

FIXTURES = os.path.join(os.path.dirname(__file__), '..', '..', 'fixtures', 'nvidia-smi')


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


# ---------------------------------------------------------------- query output

def test_h100x8_sample():
    facts = gpu_facts(fixture('h100x8-driver550-sample.query.csv'), fixture('h100x8-driver550-sample.txt'))
    assert facts['gpu_count'] == 8
    assert [g['index'] for g in facts['gpus']] == list(range(8))
    assert facts['driver_version'] == '550.90.07'
    assert facts['cuda_version'] == '12.4'
    assert facts['products'] == ['NVIDIA H100 80GB HBM3']
    assert facts['memory_min_mib'] == 81559
    assert facts['memory_total_mib'] == 8 * 81559
    assert facts['persistence_mode_all'] is True
    first = facts['gpus'][0]
    assert first['name'] == 'NVIDIA H100 80GB HBM3'
    assert first['uuid'].startswith('GPU-') and len(first['uuid']) == 40
    assert first['memory_total_mib'] == 81559
    assert first['persistence_mode'] is True


def test_real_h100_capture():
    facts = gpu_facts(fixture('h100-driver580-real.query.csv'), fixture('h100-driver580-real.txt'))
    assert facts['gpu_count'] == 1
    assert facts['gpus'][0] == {
        'index': 0, 'uuid': 'GPU-5e1f0c2a-7d44-4b8e-9a31-0c6f2d8e4b17', 'name': 'NVIDIA H100 80GB HBM3',
        'memory_total_mib': 81559, 'driver_version': '580.159.04', 'persistence_mode': True}
    assert facts['driver_version'] == '580.159.04'
    assert facts['cuda_version'] == '13.0'


@pytest.mark.parametrize('line, expected', [
    ('0, GPU-a, Tesla T4, 15360, 535.183.01, Disabled',
     {'index': 0, 'uuid': 'GPU-a', 'name': 'Tesla T4', 'memory_total_mib': 15360,
      'driver_version': '535.183.01', 'persistence_mode': False}),
    ('3,GPU-b,NVIDIA A100-SXM4-40GB,40960,550.54.15,Enabled',
     {'index': 3, 'uuid': 'GPU-b', 'name': 'NVIDIA A100-SXM4-40GB', 'memory_total_mib': 40960,
      'driver_version': '550.54.15', 'persistence_mode': True}),
    ('0, GPU-c, NVIDIA GH200 480GB, [N/A], [N/A], Enabled',
     {'index': 0, 'uuid': 'GPU-c', 'name': 'NVIDIA GH200 480GB', 'memory_total_mib': None,
      'driver_version': None, 'persistence_mode': True}),
    ('1, MIG-d, Odd, Name, With Commas, 24576, 550.90.07, Disabled',
     {'index': 1, 'uuid': 'MIG-d', 'name': 'Odd, Name, With Commas', 'memory_total_mib': 24576,
      'driver_version': '550.90.07', 'persistence_mode': False}),
])
def test_parse_query_line(line, expected):
    assert parse_query_gpu(line + '\n') == [expected]


def test_parse_query_sorts_and_skips_blank_lines():
    text = '\n1, GPU-b, L4, 23034, 550.90.07, Enabled\n\n0, GPU-a, L4, 23034, 550.90.07, Enabled\n'
    assert [g['uuid'] for g in parse_query_gpu(text)] == ['GPU-a', 'GPU-b']


def test_parse_query_empty():
    assert parse_query_gpu('') == []
    assert gpu_facts('')['gpu_count'] == 0 and gpu_facts('')['persistence_mode_all'] is False


@pytest.mark.parametrize('text', [
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest "
    "NVIDIA driver is installed and running.\n",
    'No devices were found\n',
    'Failed to initialize NVML: Driver/library version mismatch\n',
    'bash: nvidia-smi: command not found\n',
])
def test_known_failures_raise(text):
    assert failure_message(text)
    with pytest.raises(NvidiaSmiError):
        parse_query_gpu(text)
    with pytest.raises(NvidiaSmiError):
        parse_header(text)


@pytest.mark.parametrize('text', ['index, uuid\n', 'x, GPU-a, T4, 15360, 535.1, Enabled\n', 'garbage\n'])
def test_malformed_query_raises(text):
    with pytest.raises(NvidiaSmiError):
        parse_query_gpu(text)


# ---------------------------------------------------------------- header

@pytest.mark.parametrize('header, smi, driver, cuda', [
    ('| NVIDIA-SMI 550.90.07              Driver Version: 550.90.07      CUDA Version: 12.4     |',
     '550.90.07', '550.90.07', '12.4'),
    ('| NVIDIA-SMI 535.183.01             Driver Version: 535.183.01   CUDA Version: 12.2     |',
     '535.183.01', '535.183.01', '12.2'),
    ('| NVIDIA-SMI 470.57.02    Driver Version: 470.57.02    CUDA Version: 11.4     |',
     '470.57.02', '470.57.02', '11.4'),
    ('| NVIDIA-SMI 570.86.10   Driver Version: 570.86.10   CUDA Version: N/A |', '570.86.10', '570.86.10', None),
    ('nothing here', None, None, None),
])
def test_parse_header(header, smi, driver, cuda):
    assert parse_header('Tue Aug 13 09:41:27 2024\n' + header + '\n') == {
        'nvidia_smi_version': smi, 'driver_version': driver, 'cuda_version': cuda}


def test_parse_cuda_version():
    assert parse_cuda_version(fixture('h100x8-driver550-sample.txt')) == '12.4'


def test_driver_from_query_when_no_header():
    assert gpu_facts(fixture('h100x8-driver550-sample.query.csv'))['driver_version'] == '550.90.07'


# ---------------------------------------------------------------- containerd config

K3S_V2_WITH_NVIDIA = '''
# File generated by k3s. DO NOT EDIT. Use config.toml.tmpl instead.
version = 2

[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/rancher/k3s/agent/containerd"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "10010"
  enable_selinux = false
  sandbox_image = "rancher/mirrored-pause:3.6"

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  disable_snapshot_annotations = true

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes."nvidia"]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes."nvidia".options]
  BinaryName = "/usr/bin/nvidia-container-runtime"
  SystemdCgroup = true

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes."nvidia-experimental"]
  runtime_type = "io.containerd.runc.v2"
'''

K3S_V3_WITH_NVIDIA = '''
# File generated by k3s. DO NOT EDIT. Use config-v3.toml.tmpl instead.
version = 3
root = "/var/lib/rancher/k3s/agent/containerd"

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false

[plugins.'io.containerd.cri.v1.runtime'.containerd]
  snapshotter = "overlayfs"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'runc']
  runtime_type = "io.containerd.runc.v2"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'runc'.options]
  SystemdCgroup = true

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'nvidia']
  runtime_type = "io.containerd.runc.v2"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'nvidia'.options]
  BinaryName = "/usr/local/nvidia/toolkit/nvidia-container-runtime"
  SystemdCgroup = true
'''

K3S_V2_WITHOUT_NVIDIA = '''
version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
# [plugins."io.containerd.grpc.v1.cri".containerd.runtimes."nvidia"]
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes."nvidia-experimental"]
  runtime_type = "io.containerd.runc.v2"
'''


@pytest.mark.parametrize('text, has_nvidia, runtimes', [
    (K3S_V2_WITH_NVIDIA, True, ['runc', 'nvidia', 'nvidia-experimental']),
    (K3S_V3_WITH_NVIDIA, True, ['runc', 'nvidia']),
    (K3S_V2_WITHOUT_NVIDIA, False, ['runc', 'nvidia-experimental']),
    ('[plugins."io.containerd.cri.v1.runtime".containerd.runtimes."nvidia"]\n', True, ['nvidia']),
    ('[plugins.cri.containerd.runtimes.nvidia]\n', True, ['nvidia']),   # config version 1
    ('[plugins."io.containerd.runtime.v1.linux".runtimes.nvidia]\n', False, []),  # not the CRI plugin
    ('nvidia = true\n', False, []),
    ('', False, []),
    (None, False, []),
])
def test_containerd_runtimes(text, has_nvidia, runtimes):
    assert containerd_has_nvidia_runtime(text) is has_nvidia
    assert containerd_runtimes(text) == runtimes
