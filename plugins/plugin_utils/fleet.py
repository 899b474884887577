# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fleet: one inventory host per cluster (the group ollama_clusters), each converged with its own settings.

Two hosts that reach the same cluster and name the same workload would converge the same objects with their
own settings, each run undoing the other's: the plan refuses that before any change (docs/fleet.md).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

# The settings that say which cluster a host reaches (playbooks/vars/cluster_auth.yml) and which workload.
CLUSTER_KEYS = ('ollama_kubeconfig', 'ollama_context', 'ollama_k8s_host')


def deployment_key(variables):
    """(kubeconfig, context, API host, namespace, name) of one host's variables; unset credentials are ''
    (they fall back to K8S_AUTH_* or ~/.kube/config, the same for every host)."""
    kubeconfig = variables.get('ollama_kubeconfig') or ''
    if kubeconfig:
        kubeconfig = os.path.realpath(os.path.expanduser(str(kubeconfig)))
    return (kubeconfig, str(variables.get('ollama_context') or ''), str(variables.get('ollama_k8s_host') or ''),
            str(variables.get('ollama_namespace') or 'ollama'), str(variables.get('ollama_name') or 'ollama'))


def shared_deployments(host, hosts_variables):
    """Plan errors (variable, message, fix) when another host of hosts_variables ({host: variables}, this host
    among them) reaches the same cluster and workload as host."""
    mine = deployment_key(hosts_variables[host])
    others = sorted(h for h, v in hosts_variables.items() if h != host and deployment_key(v) == mine)
    if not others:
        return []
    kubeconfig, context, api_host, namespace, name = mine
    reaches = ', '.join([
        'ollama_kubeconfig %s' % (kubeconfig or 'unset (K8S_AUTH_KUBECONFIG or ~/.kube/config)'),
        'ollama_context %s' % (context or 'unset (the current context)')] + (
        ['ollama_k8s_host %s' % api_host] if api_host else []))
    return [{
        'variable': 'ollama_kubeconfig',
        'message': '%s and %s of this run reach the same cluster (%s) and the same workload %s/%s: each would '
                   'converge it with its own settings, undoing the other\'s.'
                   % (host, ', '.join(others), reaches, namespace, name),
        'fix': 'give each cluster host its own ollama_kubeconfig or ollama_context (host_vars/%s.yml), or a '
               'different ollama_namespace or ollama_name for a second Ollama in the same cluster' % host,
    }]
