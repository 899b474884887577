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

from ansible.module_utils.common.arg_spec import ModuleArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values

_context = None
_after_run = []


class ModuleDone(Exception):
    """exit_json or fail_json of a module running in the controller."""

    def __init__(self, result):
        super(ModuleDone, self).__init__(result.get('msg', ''))
        self.result = result


class ControllerModule(object):
    """The part of AnsibleModule (and AnsibleK8SModule) that the collection's modules use."""

    def __init__(self, argument_spec, args, check_mode, diff, supports_check_mode=False, mutually_exclusive=None,
                 required_together=None, required_one_of=None, required_if=None, required_by=None, **_ignored):
        validator = ModuleArgumentSpecValidator(argument_spec, mutually_exclusive, required_together,
                                                required_one_of, required_if, required_by)
        validated = validator.validate(dict(args))
        self._no_log_values = validated._no_log_values
        self._warnings = []
        self.params = validated.validated_parameters
        self.check_mode = bool(check_mode)
        self._diff = bool(diff)
        # kubernetes.core's get_api_client reads this: a server-side dry run is the module's own choice.
        self.server_side_dry_run = False
        if validated.error_messages:
            self.fail_json(msg='; '.join(validated.error_messages))
        if self.check_mode and not supports_check_mode:
            self.exit_json(skipped=True, msg='this module does not support check mode')

    def requires(self, *_args, **_kwargs):
        """The controller imported the module's libraries already, or the action ran the module as a process."""

    def warn(self, warning):
        self._warnings.append(warning)

    def _done(self, result):
        result = remove_values(result, self._no_log_values)
        if self._warnings:
            result['warnings'] = list(result.get('warnings') or []) + self._warnings
        raise ModuleDone(result)

    def exit_json(self, **kwargs):
        kwargs.setdefault('changed', False)
        self._done(kwargs)

    def fail_json(self, msg, **kwargs):
        kwargs.update(failed=True, msg=msg)
        self._done(kwargs)


def running():
    """Whether a module's main() is running inside the controller now."""
    return _context is not None


def after_run(callback):
    """Call callback when the module's main() that runs in the controller now has ended; a module process has
    no such end (its exit ends everything), so the callback is only for what a process's exit would clean up."""
    _after_run.append(callback)


def run_in_controller(main, args, check_mode, diff):
    """The result of main(), run with a ControllerModule made from args."""
    global _context
    _context = dict(args=args, check_mode=check_mode, diff=diff)
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
    """module_class(argument_spec, ...) in a module process; a ControllerModule inside run_in_controller."""
    if _context is None:
        return module_class(argument_spec=argument_spec, **kwargs)
    return ControllerModule(argument_spec, _context['args'], _context['check_mode'], _context['diff'], **kwargs)
