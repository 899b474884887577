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
    description:
      - The port in the pod or service. Unset, a pod is reached on the gate's port C(8080) (in the collection's
        pods Ollama listens on 127.0.0.1 behind the gate) and a service on C(11434).
      - Give C(11434) for a plain Ollama pod without the gate.
    type: int
  url_validate_certs:
    description: Verify the TLS certificate of I(url).
    type: bool
    default: true
  url_headers:
    description: Extra HTTP headers for I(url).
    type: dict
    default: {}
  admin_key:
    description:
      - The gate's admin key, sent in the header C(X-Llmops-Admin-Key) (kube-apiserver's proxy consumes
        C(Authorization) itself). It opens every route of the gate, the admin routes (pull, push, create, delete,
        copy, blobs) included. The collection's roles read it from the Secret C(<ollama_name>-gate-admin).
      - Falls back to the environment variable C(LLMOPS_OLLAMA_ADMIN_KEY).
    type: str
  admin_key_secret:
    description:
      - The name of a Secret in I(namespace) whose data key C(key) holds the gate's admin key (the roles pass
        C(<ollama_name>-gate-admin)). Read by the module itself when I(admin_key) is empty, for the endpoints
        reached through the API server (not I(url)); the key is never returned. A missing Secret or key means
        no admin key, as in check mode before the first converge.
    type: str
  api_key:
    description:
      - A client key of the gate, sent with I(url) as C(Authorization) C(Bearer <key>), as the OpenAI and Ollama
        clients send it. It opens the inference routes (and the admin routes listed in
        C(ollama_gate_open_admin_endpoints)).
      - Falls back to the environment variable C(LLMOPS_OLLAMA_API_KEY).
    type: str
'''
