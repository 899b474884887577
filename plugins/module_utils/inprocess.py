# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a module's main() inside the controller process instead of a new Python process.

A module process costs its start, the imports and loading the kubeconfig: a few tenths of a second each
time, which was most of a no-op converge. The collection's action plugins (see
plugins/plugin_utils/controller_module.py) set a context, call the module's main(), and get its result from
the ModuleDone that exit_json and fail_json raise here. The module code is the same either way: it asks
make_module() for its module object.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.errors import UnsupportedError

try:  # ansible-core 2.19 and later: the JSON a module process is given and prints, read as each side reads it
    from ansible.module_utils.common.json import Direction, get_module_decoder, get_module_encoder
    _ARGS = (get_module_encoder('legacy', Direction.CONTROLLER_TO_MODULE),
             get_module_decoder('legacy', Direction.CONTROLLER_TO_MODULE))
    _RESULT = (get_module_encoder('legacy', Direction.MODULE_TO_CONTROLLER),
               get_module_decoder('legacy', Direction.MODULE_TO_CONTROLLER))
except ImportError:
    from ansible.module_utils.common.json import AnsibleJSONEncoder
    _ARGS = _RESULT = (AnsibleJSONEncoder, json.JSONDecoder)


def _as_sent(value, coders):
    """value after the trip through JSON that it makes to or from a module process (tuples become lists,
    the controller's template tags go)."""
    return json.loads(json.dumps(value, cls=coders[0]), cls=coders[1])


_context = None
_after_run = []


class ModuleDone(Exception):
    """exit_json or fail_json of a module running in the controller."""

    def __init__(self, result):
        super(ModuleDone, self).__init__(result.get('msg', ''))
        self.result = result


class ControllerModule(object):
    """The part of AnsibleModule that the collection's modules use, with AnsibleModule's results (see
    tests/unit/plugins/plugin_utils/test_inprocess_parity.py, which runs a module both ways)."""

    def __init__(self, argument_spec, args, check_mode, diff, supports_check_mode=False, mutually_exclusive=None,
                 required_together=None, required_one_of=None, required_if=None, required_by=None, name=None,
                 **_ignored):
        self._name = name or 'module'
        self._warnings = []
        self._deprecations = []
        self._no_log_values = set()
        self.params = dict(args)
        self.check_mode = bool(check_mode)
        self._diff = bool(diff)
        # ModuleArgumentSpecValidator would show its warnings in the controller at once; a module process returns
        # them in its result, and so does this.
        validator = ArgumentSpecValidator(argument_spec, mutually_exclusive, required_together, required_one_of,
                                          required_if, required_by)
        validated = validator.validate(self.params)
        self.params.update(validated.validated_parameters)
        self._no_log_values.update(validated._no_log_values)
        for warning in validated._warnings:  # an option given with its alias
            self.warn('Both option %s and its alias %s are set.' % (warning['option'], warning['alias']))
        for deprecation in validated._deprecations:
            self.deprecate(deprecation['msg'], version=deprecation.get('version'), date=deprecation.get('date'),
                           collection_name=deprecation.get('collection_name'))
        if validated.error_messages:
            msg = validated.errors.msg
            if isinstance(validated.errors[0], UnsupportedError):
                msg = 'Unsupported parameters for (%s) module: %s' % (self._name, msg)
            self.fail_json(msg=msg)
        if self.check_mode and not supports_check_mode:
            self.exit_json(skipped=True, msg='remote module (%s) does not support check mode' % self._name)

    @property
    def no_log_values(self):
        """As AnsibleModule's: values removed from the result (a secret the module read itself goes in here)."""
        return self._no_log_values

    def warn(self, warning):
        self._warnings.append(warning)

    def deprecate(self, msg, version=None, date=None, collection_name=None):
        # The shape ansible-core takes from any action's result (TaskExecutor turns it into its own record).
        deprecation = dict(msg=msg, version=version, date=date)
        if collection_name is not None:
            deprecation['collection_name'] = collection_name
        self._deprecations.append(deprecation)

    def _done(self, result):
        """AnsibleModule._return_formatted: invocation, warnings, deprecations, no_log values masked (bools and
        None kept), then the result as the controller reads a module process's JSON."""
        result.setdefault('invocation', {'module_args': self.params})
        if self._warnings:
            result['warnings'] = self._warnings
        if self._deprecations:
            result['deprecations'] = self._deprecations
        preserved = dict((k, v) for k, v in result.items() if v is None or isinstance(v, bool))
        result = remove_values(result, self._no_log_values)
        result.update(preserved)
        raise ModuleDone(_as_sent(result, _RESULT))

    def exit_json(self, **kwargs):
        self._done(kwargs)

    def fail_json(self, msg, **kwargs):
        kwargs.update(failed=True, msg=str(msg))
        self._done(kwargs)


def running():
    """Whether a module's main() is running inside the controller now."""
    return _context is not None


def after_run(callback):
    """Call callback when the module's main() that runs in the controller now has ended; a module process has
    no such end (its exit ends everything), so the callback is only for what a process's exit would clean up."""
    _after_run.append(callback)


class ControllerK8SModule(ControllerModule):
    """AnsibleK8SModule's additions to AnsibleModule."""

    def requires(self, dependency, minimum=None, reason=None):
        from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import requires
        try:
            requires(dependency, minimum, reason=reason)
        except Exception as exc:
            self.fail_json(msg=str(exc))

    @property
    def server_side_dry_run(self):
        # Evaluated only by kubernetes.core's get_api_client, which imports the kubernetes client anyway.
        from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import has_at_least
        return self.check_mode and has_at_least('kubernetes', '18.20.0')


def run_in_controller(main, args, check_mode, diff, name=None):
    """The result of main(), run with a ControllerModule made from args; name is the module's name as the task
    gave it (AnsibleModule's _name, in its messages)."""
    global _context
    _context = dict(args=_as_sent(dict(args), _ARGS), check_mode=check_mode, diff=diff, name=name)
    try:
        main()
    except ModuleDone as done:
        return done.result
    finally:
        _context = None
        while _after_run:
            _after_run.pop()()
    return dict(failed=True, msg='the module ended without a result')


def make_module(module_class, argument_spec, **kwargs):
    """module_class(argument_spec, ...) in a module process; a ControllerModule inside run_in_controller (with
    AnsibleK8SModule's additions for an AnsibleK8SModule)."""
    if _context is None:
        return module_class(argument_spec=argument_spec, **kwargs)
    kind = ControllerK8SModule if hasattr(module_class, 'requires') else ControllerModule
    return kind(argument_spec, _context['args'], _context['check_mode'], _context['diff'], name=_context['name'],
                **kwargs)
