# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # How a module reaches one Ollama endpoint: a pod or a service through the API server's proxy, or a URL.
    DOCUMENTATION = r'''
options:
  namespace:
    description: Namespace of I(pod) or I(service).
    type: str
  pod:
    description: The Ollama pod, reached through the API server's pod proxy.
    type: str
  service:
    description: The Ollama service, reached through the API server's service proxy (any one replica answers).
    type: str
  url:
    description: A URL where the controller reaches Ollama directly, instead of I(pod) or I(service).
    type: str
  port:
    description: Ollama's port in the pod or service.
    type: int
    default: 11434
  url_validate_certs:
    description: Verify the TLS certificate of I(url).
    type: bool
    default: true
  url_headers:
    description: Extra HTTP headers for I(url), e.g. C(Authorization) for an Ingress with basic auth.
    type: dict
    default: {}
'''
