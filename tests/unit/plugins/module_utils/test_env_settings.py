# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Ollama settings, checked as Ollama's envconfig reads them. The duration and boolean cases were checked
against Go's time.ParseDuration, strconv.ParseInt and strconv.ParseBool (go1.26)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest
import yaml

from ansible_collections.llmops.ollama.plugins.module_utils import env_settings
from ansible_collections.llmops.ollama.plugins.module_utils.env_settings import (
    FOREVER,
    SettingError,
    check_env,
    parse_go_duration,
    parse_ollama_duration,
)
from ansible_collections.llmops.ollama.plugins.module_utils.plan import compute_plan

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


class Report(object):
    def __init__(self):
        self.errors, self.warnings = [], []

    def error(self, variable, message, fix):
        self.errors.append({'variable': variable, 'message': message, 'fix': fix})

    def warn(self, message):
        self.warnings.append(message)


def check(overrides, defaults=None, version=None):
    report = Report()
    result = check_env(env_settings.DEFAULTS if defaults is None else defaults, overrides, report,
                       ollama_version=version)
    return result, report


@pytest.mark.parametrize('text, nanoseconds', [
    ('24h', 86400 * 10 ** 9), ('10m', 600 * 10 ** 9), ('1h30m', 5400 * 10 ** 9), ('1.5h', 5400 * 10 ** 9),
    ('-1m', -60 * 10 ** 9), ('0', 0), ('-0', 0), ('0s', 0), ('+5s', 5 * 10 ** 9), ('300ms', 300 * 10 ** 6),
    (u'1\u00b5s', 1000), (u'1\u03bcs', 1000), ('2us', 2000), ('3ns', 3), ('.5s', 5 * 10 ** 8), ('5.s', 5 * 10 ** 9),
    ('9223372036s', 9223372036 * 10 ** 9),
])
def test_go_durations(text, nanoseconds):
    assert parse_go_duration(text) == nanoseconds


@pytest.mark.parametrize('text', ['forever', '', '5', '-1', '1d', '1h 30m', '1e3s', '9999999999h', '-', '.',
                                  '1.2.3s', '--1', '00', '1_000'])
def test_not_go_durations(text):
    with pytest.raises(SettingError):
        parse_go_duration(text)


@pytest.mark.parametrize('text, seconds', [
    ('24h', 86400.0), ('3600', 3600.0), ('+60', 60.0), ('-1', -1.0), ('00', 0.0), ('1.5m', 90.0), ('-5m', -300.0),
])
def test_ollama_durations_take_seconds_where_go_takes_none(text, seconds):
    assert parse_ollama_duration(text) == seconds


@pytest.mark.parametrize('text', ['forever', 'infinite', '1d', '1 h', '1_000', '99999999999999999999'])
def test_ollama_durations_refused(text):
    with pytest.raises(SettingError):
        parse_ollama_duration(text)


def test_the_defaults_are_sound_and_give_the_durations_in_seconds():
    result, report = check({})
    assert report.errors == [] and report.warnings == []
    assert result['values'] == env_settings.DEFAULTS
    assert result['seconds'] == {'OLLAMA_KEEP_ALIVE': 86400.0, 'OLLAMA_LOAD_TIMEOUT': 600.0}


def test_the_defaults_are_the_roles_defaults():
    with open(os.path.join(REPO, 'roles', 'ollama_workload', 'defaults', 'main.yml')) as handle:
        role = yaml.safe_load(handle)
    assert role['ollama_workload_env_defaults'] == env_settings.DEFAULTS


@pytest.mark.parametrize('name, value, seconds', [
    ('OLLAMA_KEEP_ALIVE', '-1', FOREVER), ('OLLAMA_KEEP_ALIVE', '-1m', FOREVER), ('OLLAMA_KEEP_ALIVE', 0, 0.0),
    ('OLLAMA_KEEP_ALIVE', '"1h"', 3600.0), ('OLLAMA_KEEP_ALIVE', ' 90 ', 90.0),
    ('OLLAMA_LOAD_TIMEOUT', '0', FOREVER), ('OLLAMA_LOAD_TIMEOUT', '-1', FOREVER), ('OLLAMA_LOAD_TIMEOUT', 900, 900.0),
])
def test_durations_and_forever(name, value, seconds):
    result, report = check({name: value})
    assert report.errors == []
    assert result['seconds'][name] == seconds


@pytest.mark.parametrize('overrides, fragment, fix', [
    ({'OLLAMA_KEEP_ALIVE': 'forever'}, "OLLAMA_KEEP_ALIVE 'forever' is not a duration", '"-1" for forever'),
    ({'OLLAMA_LOAD_TIMEOUT': '10 minutes'}, 'OLLAMA_LOAD_TIMEOUT', 'whole number of seconds'),
    ({'OLLAMA_NUM_PARALLEL': 0}, "OLLAMA_NUM_PARALLEL 0 is not a whole number of at least 1", '""'),
    ({'OLLAMA_NUM_PARALLEL': '-2'}, 'OLLAMA_NUM_PARALLEL', 'at least 1'),
    ({'OLLAMA_MAX_LOADED_MODELS': '0'}, '0 leaves the choice to Ollama', 'at least 1'),
    ({'OLLAMA_MAX_QUEUE': '1k'}, 'OLLAMA_MAX_QUEUE', 'at least 1'),
    ({'OLLAMA_CONTEXT_LENGTH': '0'}, 'OLLAMA_CONTEXT_LENGTH', '"4096"'),
    ({'OLLAMA_CONTEXT_LENGTH': '8k'}, 'OLLAMA_CONTEXT_LENGTH', '"4096"'),
    ({'OLLAMA_GPU_OVERHEAD': '1GiB'}, 'whole number of bytes', 'bytes'),
    ({'OLLAMA_FLASH_ATTENTION': 'yes'}, 'any other value as true', '"1" or "0"'),
    ({'OLLAMA_NOPRUNE': 'on'}, 'OLLAMA_NOPRUNE', '"1" or "0"'),
    ({'OLLAMA_DEBUG': 'verbose'}, 'boolean or a log level', '"2" (trace)'),
    ({'OLLAMA_KV_CACHE_TYPE': 'q5_1'}, 'not a K/V cache type', 'q8_0'),
    ({'OLLAMA_KV_CACHE_TYPE': 'q8_0', 'OLLAMA_FLASH_ATTENTION': '0'}, 'only with flash attention on',
     'OLLAMA_FLASH_ATTENTION: "1"'),
    ({'OLLAMA_HOST': '0.0.0.0:8080'}, 'which the role sets itself', 'remove OLLAMA_HOST'),
    ({'HOME': '/root'}, 'which the role sets itself', 'remove HOME'),
    ({'OLLAMA-DEBUG': '1'}, 'not an environment variable name', 'OLLAMA_NUM_PARALLEL'),
    ({'OLLAMA_KEEP_ALIVE': ['1h']}, 'must be a string or a number', 'quote it'),
])
def test_bad_settings_name_the_variable_what_is_wrong_and_the_fix(overrides, fragment, fix):
    _result, report = check(overrides)
    assert len(report.errors) == 1, report.errors
    error = report.errors[0]
    assert error['variable'] == 'ollama_workload_env'
    assert fragment in error['message']
    assert fix in error['fix']


@pytest.mark.parametrize('value', ['1', 't', 'T', 'TRUE', 'true', 'True', True, '0', 'f', 'F', 'FALSE', 'false',
                                   'False', False, 1, 0])
def test_booleans_as_go_reads_them(value):
    assert check({'OLLAMA_SCHED_SPREAD': value})[1].errors == []


@pytest.mark.parametrize('kv', ['f16', 'q8_0', 'q4_0', 'Q8_0', ''])
def test_kv_cache_types(kv):
    assert check({'OLLAMA_KV_CACHE_TYPE': kv})[1].errors == []


def test_quantized_kv_cache_without_flash_attention_is_fine_from_0_30():
    overrides = {'OLLAMA_KV_CACHE_TYPE': 'q4_0', 'OLLAMA_FLASH_ATTENTION': ''}
    assert check(overrides, version=(0, 30, 0))[1].errors == []
    assert len(check(overrides, version=(0, 29, 9))[1].errors) == 1
    # An unknown version gets the stricter rule.
    assert len(check(overrides)[1].errors) == 1


def test_an_empty_value_is_ollamas_own_default():
    result, report = check({'OLLAMA_MAX_LOADED_MODELS': '', 'OLLAMA_KEEP_ALIVE': ''})
    assert report.errors == []
    assert result['values']['OLLAMA_MAX_LOADED_MODELS'] == ''
    assert 'OLLAMA_KEEP_ALIVE' not in result['seconds']


@pytest.mark.parametrize('name, guess', [
    ('OLLAMA_KEEPALIVE', 'OLLAMA_KEEP_ALIVE'), ('OLLAMA_NUM_PARALEL', 'OLLAMA_NUM_PARALLEL'),
    ('ollama_keep_alive', 'OLLAMA_KEEP_ALIVE'), ('OLLAMA_MAX_LOADED', 'OLLAMA_MAX_LOADED_MODELS'),
])
def test_unknown_ollama_names_warn_with_the_closest_known_one(name, guess):
    result, report = check({name: '1'})
    assert report.errors == []
    assert report.warnings == ['ollama_workload_env sets %s, which Ollama does not read (did you mean %s?)'
                               % (name, guess)]
    assert result['others'] == [name]


def test_other_variables_pass_as_they_are():
    result, report = check({'CUDA_VISIBLE_DEVICES': '0,1', 'HTTPS_PROXY': 'http://proxy:3128', 'GODEBUG': 'x=1'})
    assert report.errors == [] and report.warnings == []
    # Named only: a proxy URL may carry credentials.
    assert result['others'] == ['CUDA_VISIBLE_DEVICES', 'GODEBUG', 'HTTPS_PROXY']
    assert 'HTTPS_PROXY' not in result['values']


def test_a_bad_default_names_the_defaults_variable():
    _result, report = check({}, defaults=dict(env_settings.DEFAULTS, OLLAMA_NUM_PARALLEL='none'))
    assert [e['variable'] for e in report.errors] == ['ollama_workload_env_defaults']


def test_overrides_win_over_defaults():
    result, report = check({'OLLAMA_NUM_PARALLEL': 4})
    assert report.errors == []
    assert result['values']['OLLAMA_NUM_PARALLEL'] == '4'


def test_not_a_mapping():
    _result, report = check('OLLAMA_KEEP_ALIVE=1h')
    assert report.errors[0]['variable'] == 'ollama_workload_env'
    assert 'must be a mapping' in report.errors[0]['message']


def test_the_plan_checks_the_settings_with_the_image_version():
    facts = {'kubernetes_version': {'major': 1, 'minor': 34}, 'nodes': [{
        'name': 'g', 'ready': True, 'schedulable': True, 'gpu_allocatable': 1, 'gpu_free': 1,
        'labels': {'nvidia.com/gpu.present': 'true'}, 'taints': []}],
        'device_plugin': {'found': True, 'healthy': True},
        'storage_classes': [{'name': 'gp3', 'provisioner': 'ebs.csi.aws.com', 'default': True,
                             'binding_mode': 'WaitForFirstConsumer'}], 'default_storage_class': 'gp3',
        'csi_drivers': ['ebs.csi.aws.com']}
    plan = compute_plan(facts, {'workload_env': {'OLLAMA_KEEP_ALIVE': 'forever'}})
    assert [e['variable'] for e in plan['errors']] == ['ollama_workload_env']
    good = compute_plan(facts, {'workload_env': {'OLLAMA_KEEP_ALIVE': '-1'}})
    assert good['ok'], good['errors']
    assert good['env_settings']['seconds'] == {'OLLAMA_KEEP_ALIVE': FOREVER, 'OLLAMA_LOAD_TIMEOUT': 600.0}
    assert good['env_settings']['values']['OLLAMA_NUM_PARALLEL'] == '2'
