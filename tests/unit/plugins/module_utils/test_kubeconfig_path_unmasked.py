# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kubernetes.core marks the kubeconfig option no_log (it may be an inline dict with credentials): a path must
still print, an inline kubeconfig's secrets must not (the collection's modules, run in the controller)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.llmops.ollama.plugins.module_utils import inprocess, k8s
from ansible_collections.llmops.ollama.plugins.modules import cluster_info


def failing_main(text):
    def main():
        module = k8s.new_module({}, supports_check_mode=True)
        module.fail_json(msg=text % {'kubeconfig': module.params['kubeconfig']})
    return main


def test_a_missing_kubeconfig_path_is_named_in_the_failure():
    result = inprocess.run_in_controller(cluster_info.main, {'kubeconfig': '/nonexistent/kc-1'}, True, False)
    assert result['failed']
    assert 'the kubeconfig /nonexistent/kc-1 does not exist' in result['msg'] and '********' not in result['msg']


def test_the_secrets_of_an_inline_kubeconfig_stay_masked():
    inline = {'users': [{'name': 'u', 'user': {'token': 'tok-s3cret-123'}}]}
    result = inprocess.run_in_controller(failing_main('cannot use %(kubeconfig)s'), {'kubeconfig': inline}, True,
                                         False)
    assert 'tok-s3cret-123' not in repr(result) and '********' in result['msg']


def test_other_no_log_options_stay_masked_beside_a_kubeconfig_path():
    result = inprocess.run_in_controller(failing_main('token sk-api-987 for %(kubeconfig)s'),
                                         {'kubeconfig': '/etc/kc', 'api_key': 'sk-api-987'}, True, False)
    assert result['msg'] == 'token ******** for /etc/kc'
