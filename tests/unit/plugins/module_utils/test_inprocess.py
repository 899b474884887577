# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A module's main() run inside the controller: the same argument checks, results, failures, warnings and
no_log masking as in a module process. The integration tests run every role through this path."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.llmops.ollama.plugins.module_utils import inprocess

SPEC = dict(name=dict(type='str', required=True), count=dict(type='int', default=1),
            token=dict(type='str', no_log=True), pod=dict(type='str'), url=dict(type='str'))


def module_main(**kwargs):
    def main():
        module = inprocess.make_module(AssertionError, SPEC, supports_check_mode=True,
                                       mutually_exclusive=[('pod', 'url')], **kwargs)
        if module.params['name'] == 'fail':
            module.fail_json(msg='it failed with %s' % module.params['token'], detail=1)
        module.warn('careful')
        module.exit_json(params=module.params, check_mode=module.check_mode, diff=module._diff)
    return main


def test_arguments_are_validated_and_converted_like_a_module_process():
    result = inprocess.run_in_controller(module_main(), {'name': 'a', 'count': '3'}, check_mode=True, diff=True)
    assert result['params']['count'] == 3 and result['params']['pod'] is None
    assert result['check_mode'] is True and result['diff'] is True and 'changed' not in result
    assert result['warnings'] == ['careful']


def test_bad_arguments_fail_with_the_validator_message():
    missing = inprocess.run_in_controller(module_main(), {}, check_mode=False, diff=False)
    assert missing['failed'] and 'missing required arguments: name' in missing['msg']
    both = inprocess.run_in_controller(module_main(), {'name': 'a', 'pod': 'p', 'url': 'u'}, False, False)
    assert both['failed'] and 'mutually exclusive' in both['msg']
    unknown = inprocess.run_in_controller(module_main(), {'name': 'a', 'colour': 'red'}, False, False)
    assert unknown['failed'] and 'colour' in unknown['msg']


def test_no_log_values_are_masked_in_the_result():
    result = inprocess.run_in_controller(module_main(), {'name': 'fail', 'token': 's3cret-value'}, False, False)
    assert result['failed'] and result['detail'] == 1
    assert 's3cret-value' not in repr(result) and '********' in result['msg']


def test_a_module_without_check_mode_is_skipped_in_check_mode():
    def main():
        module = inprocess.make_module(AssertionError, SPEC)
        module.exit_json(changed=True)
    assert inprocess.run_in_controller(main, {'name': 'a'}, check_mode=True, diff=False)['skipped']


def test_outside_the_controller_the_module_class_is_built():
    built = inprocess.make_module(lambda argument_spec, **kwargs: ('built', sorted(argument_spec), kwargs), SPEC,
                                  supports_check_mode=True)
    assert built == ('built', sorted(SPEC), {'supports_check_mode': True})


def test_a_main_that_returns_without_exiting_is_a_failure():
    assert inprocess.run_in_controller(lambda: None, {}, False, False)['failed']
