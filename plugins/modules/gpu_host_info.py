#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: gpu_host_info
short_description: GPU driver, CUDA and card facts of a bare-metal GPU host, and k3s's NVIDIA runtime
description:
  - Runs C(nvidia-smi) on the host (reached over SSH like any Ansible host) and reads k3s's containerd configuration.
  - Returns the driver and CUDA versions, each GPU with name, memory, UUID and persistence mode, and whether
    containerd registers the C(nvidia) runtime.
  - Fails with the cause and the fix when C(nvidia-smi) is missing or cannot reach the driver, and when the
    containerd configuration exists but this user cannot read it (k3s keeps C(/var/lib/rancher/k3s/agent/etc)
    readable by root only, so run it with C(become)).
version_added: 0.1.0
author:
  - llmops.ollama maintainers (@llmops-ollama)
options:
  nvidia_smi:
    description: The nvidia-smi command, a name looked up on PATH or an absolute path.
    type: str
    default: nvidia-smi
  containerd_config:
    description:
      - containerd configuration to inspect for the C(nvidia) runtime.
      - The default is where k3s renders it; set C(/etc/containerd/config.toml) for kubeadm hosts.
    type: path
    default: /var/lib/rancher/k3s/agent/etc/containerd/config.toml
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - llmops.ollama.attributes.READ_ONLY
'''

EXAMPLES = r'''
- name: Read the GPU host
  llmops.ollama.gpu_host_info:
  register: host
'''

RETURN = r'''
gpu:
  description: The host's GPU facts.
  returned: success
  type: dict
  contains:
    gpus:
      description: Each GPU with index, uuid, name, memory_total_mib, driver_version and persistence_mode.
      type: list
      elements: dict
    gpu_count:
      description: Number of GPUs.
      type: int
    driver_version:
      description: NVIDIA driver version.
      type: str
    cuda_version:
      description: Highest CUDA version the driver supports.
      type: str
    memory_min_mib:
      description: Memory of the smallest card, in MiB.
      type: int
    persistence_mode_all:
      description: Whether persistence mode is on for every GPU.
      type: bool
    containerd_config_found:
      description: Whether the containerd configuration file exists (a file that cannot be read fails the module).
      type: bool
    containerd_nvidia_runtime:
      description: Whether containerd registers the C(nvidia) runtime.
      type: bool
'''

import errno
import os
import pwd

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.ollama.plugins.module_utils.nvidia_smi import (
    QUERY_COMMAND, NvidiaSmiError, containerd_has_nvidia_runtime, failure_message, gpu_facts)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            nvidia_smi=dict(type='str', default='nvidia-smi'),
            containerd_config=dict(type='path', default='/var/lib/rancher/k3s/agent/etc/containerd/config.toml'),
        ),
        supports_check_mode=True,
    )
    smi = module.params['nvidia_smi']
    binary = smi if os.path.isabs(smi) else module.get_bin_path(smi)
    if not binary or not os.path.exists(binary):
        module.fail_json(msg='nvidia-smi was not found on %s. Fix: install the NVIDIA driver (it ships nvidia-smi) on '
                             'this GPU host, or set nvidia_smi to its path' % os.uname()[1])
    rc, query, err = module.run_command([binary] + QUERY_COMMAND[1:])
    broken = failure_message(query + err)
    if rc != 0 or broken:
        module.fail_json(msg='nvidia-smi failed on %s: %s. Fix: load the NVIDIA kernel driver (nvidia-smi must list '
                             'the GPUs) and reboot if the driver was just upgraded'
                             % (os.uname()[1], broken or (err or query).strip()), rc=rc)
    _rc, header, _err = module.run_command([binary])
    try:
        facts = gpu_facts(query, header)
    except NvidiaSmiError as exc:
        module.fail_json(msg='could not read nvidia-smi output: %s' % exc)
    config = module.params['containerd_config']
    facts['containerd_config_found'] = False
    facts['containerd_nvidia_runtime'] = False
    try:
        with open(config) as handle:
            text = handle.read()
    except (IOError, OSError) as exc:
        # A file in a directory this user cannot enter looks absent to os.path.exists: tell the two apart.
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            module.fail_json(msg='cannot read the containerd configuration %s on %s as user %s: %s. Fix: run the host '
                                 'checks with become (gpu_preflight_host_become: true; k3s keeps '
                                 '/var/lib/rancher/k3s/agent/etc readable by root only), or point containerd_config '
                                 'at a file this user can read'
                                 % (config, os.uname()[1], pwd.getpwuid(os.geteuid()).pw_name, exc.strerror))
    else:
        facts['containerd_config_found'] = True
        facts['containerd_nvidia_runtime'] = containerd_has_nvidia_runtime(text)
    module.exit_json(changed=False, gpu=facts)


if __name__ == '__main__':
    main()
