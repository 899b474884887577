"""Exposure and ownership through site.yml on the simulated cluster: the NetworkPolicies' shape, a shared namespace
left as it was, the Ingress on the cluster's default class, the HTTPRoute on a Gateway, digest pinning, and every
bad input stopping before the first write.

These run on any simulator (and any cluster given by KUBECONFIG): they read the objects the collection writes.
Where the cluster has no IngressClass or no Gateway API (the simulator before Traefik), the tests add a default
IngressClass and minimal Gateway API CRDs themselves, and remove what they added. That traffic really passes
(through Traefik, under an enforcing policy engine, through the gate) is tests/integration/collection/
test_security_enforced.py's.
"""

import json
import uuid

import pytest

NAME = "ollama"
SELECTOR = f"app.kubernetes.io/name=ollama,app.kubernetes.io/instance={NAME}"
CLIENT_PATHS = ["/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/show", "/api/tags", "/api/ps",
                "/api/version", "/v1"]
ADMIN_PATHS = ["/api/pull", "/api/push", "/api/create", "/api/delete", "/api/copy", "/api/blobs"]
DEFAULT_TAG = "0.32.15"
GATEWAY_GROUP = "gateway.networking.k8s.io"
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")


@pytest.fixture(autouse=True)
def free_gpus(cluster, namespace):
    yield
    cluster.kubectl("delete", "deployments,statefulsets", "--all", "-n", namespace, "--cascade=foreground",
                    "--timeout=120s", check=False, timeout=180)


def converge(playbook, namespace, check=False, diff=False, **variables):
    extra = {"ollama_namespace": namespace, "ollama_models": []}
    extra.update(variables)
    return playbook("site.yml", extra, check=check, diff=diff)


def selects(selector, labels):
    """A LabelSelector's matchLabels against a pod's labels (the collection writes matchLabels only)."""
    assert set(selector) <= {"matchLabels"}, selector
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def control_plane_cidrs(cluster):
    cidrs = []
    for node in cluster.get("nodes")["items"]:
        if any(key in node["metadata"].get("labels", {}) for key in CONTROL_PLANE_LABELS):
            cidrs += [f"{a['address']}/32" for a in node["status"].get("addresses", []) if a["type"] == "InternalIP"]
    return sorted(set(cidrs))


def other_workload(cluster, namespace):
    """Another team's Deployment in the same namespace (KWOK runs its pod)."""
    cluster.apply({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "webui", "namespace": namespace, "labels": {"app": "webui"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "webui"}},
                 "template": {"metadata": {"labels": {"app": "webui"}},
                              "spec": {"containers": [{"name": "webui", "image": "ghcr.io/open-webui/open-webui:main"}]}}},
    })
    return cluster.wait_for(lambda: [p for p in cluster.get("pods", "-n", namespace, "-l", "app=webui")["items"]
                                     if p["status"].get("phase") == "Running"], timeout=60, what="the webui pod")


# ---------------------------------------------------------------- fixtures for clusters without these APIs

@pytest.fixture
def default_ingress_class(cluster):
    """The cluster's default IngressClass; k3s's traefik, added where the cluster has none."""
    classes = cluster.get("ingressclasses")["items"]
    default = [c for c in classes
               if c["metadata"].get("annotations", {}).get("ingressclass.kubernetes.io/is-default-class") == "true"]
    if default:
        yield default[0]["metadata"]["name"]
        return
    cluster.apply({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                   "metadata": {"name": "traefik",
                                "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
                   "spec": {"controller": "traefik.io/ingress-controller"}})
    try:
        yield "traefik"
    finally:
        cluster.kubectl("delete", "ingressclass", "traefik", check=False)


def _crd(kind, plural, scope):
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            # The Gateway API's own CRDs carry this approval; a *.k8s.io group needs it.
            "metadata": {"name": f"{plural}.{GATEWAY_GROUP}",
                         "annotations": {"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/2466"}},
            "spec": {"group": GATEWAY_GROUP, "scope": scope,
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": kind + "List"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}


@pytest.fixture
def gateway_api(cluster):
    """The Gateway API with a GatewayClass traefik and k3s's Gateway kube-system/traefik-gateway (whose listener
    admits routes from kube-system only, as the Traefik chart's default). Minimal CRDs are added where the cluster
    serves none."""
    added = []
    if cluster.kubectl("get", f"crd/httproutes.{GATEWAY_GROUP}", check=False).returncode != 0:
        for kind, plural, scope in (("GatewayClass", "gatewayclasses", "Cluster"), ("Gateway", "gateways", "Namespaced"),
                                    ("HTTPRoute", "httproutes", "Namespaced")):
            cluster.apply(_crd(kind, plural, scope))
            added.append(f"crd/{plural}.{GATEWAY_GROUP}")
        cluster.kubectl("wait", "--for=condition=Established", *added, "--timeout=60s")
        cluster.apply({"apiVersion": f"{GATEWAY_GROUP}/v1", "kind": "GatewayClass", "metadata": {"name": "traefik"},
                       "spec": {"controllerName": "traefik.io/gateway-controller"}})
        cluster.apply({"apiVersion": f"{GATEWAY_GROUP}/v1", "kind": "Gateway",
                       "metadata": {"name": "traefik-gateway", "namespace": "kube-system"},
                       "spec": {"gatewayClassName": "traefik",
                                "listeners": [{"name": "web", "port": 8000, "protocol": "HTTP"}]}})
    try:
        yield
    finally:
        if added:
            cluster.kubectl("delete", *added, "--wait=true", check=False, timeout=120)


# ---------------------------------------------------------------- policies and ownership

@pytest.mark.profile("k3s")
def test_a_shared_namespace_keeps_its_labels_and_no_policy_selects_another_workload(playbook, cluster, namespace):
    cluster.kubectl("label", "namespace", namespace, "team=ml", "pod-security.kubernetes.io/enforce=baseline")
    before = cluster.get("namespace", namespace)["metadata"]
    (webui,) = other_workload(cluster, namespace)

    run = converge(playbook, namespace)
    assert run.rc == 0, run
    assert "was not created by llmops.ollama" in json.dumps(run.report), run
    after = cluster.get("namespace", namespace)["metadata"]
    assert after["labels"] == before["labels"]
    assert after["resourceVersion"] == before["resourceVersion"]
    assert not [m for m in after.get("managedFields", []) if m.get("manager", "").startswith("llmops-ollama")]

    (pod,) = [p for p in cluster.get("pods", "-n", namespace, "-l", SELECTOR)["items"]
              if not p["metadata"].get("deletionTimestamp")]
    policies = {p["metadata"]["name"]: p["spec"] for p in cluster.get("networkpolicies", "-n", namespace)["items"]}
    assert sorted(policies) == [f"{NAME}-egress", f"{NAME}-ingress"]
    for spec in policies.values():
        assert spec["podSelector"] != {} and selects(spec["podSelector"], pod["metadata"]["labels"])
        assert not selects(spec["podSelector"], webui["metadata"]["labels"])
    # The other team's pod keeps running, untouched.
    again = cluster.get("pod", webui["metadata"]["name"], "-n", namespace)
    assert again["metadata"]["uid"] == webui["metadata"]["uid"] and again["status"]["phase"] == "Running"

    settled = converge(playbook, namespace)
    assert settled.rc == 0 and settled.changed == 0, settled


@pytest.mark.profile("k3s")
def test_default_policies_admit_the_api_server_to_the_gate_port_and_egress_only_to_dns_and_registries(
        playbook, cluster, namespace):
    registry = next(iter(cluster.models), "10.245.255.250:5000/").split("/", 1)[0]
    models = [{"name": cluster.model("tiny-a"), "size": 330043}]
    # The pull and the verification go through the API server's pod proxy: the policies must let them.
    run = converge(playbook, namespace, ollama_models=models, ollama_namespace_manage_labels=True)
    assert run.rc == 0, run
    ingress = cluster.get("networkpolicy", f"{NAME}-ingress", "-n", namespace)["spec"]
    assert ingress["policyTypes"] == ["Ingress"]
    api_server = control_plane_cidrs(cluster)
    assert api_server, "the profile has a control-plane node"
    assert ingress["ingress"] == [{"from": [{"ipBlock": {"cidr": cidr}} for cidr in api_server],
                                   "ports": [{"port": "http", "protocol": "TCP"}]}]
    egress = cluster.get("networkpolicy", f"{NAME}-egress", "-n", namespace)["spec"]
    assert egress["policyTypes"] == ["Egress"]
    port = int(registry.rsplit(":", 1)[1])
    assert egress["egress"] == [
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
         "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
        {"ports": [{"port": port, "protocol": "TCP"}]}]
    # Turning them off removes both.
    off = converge(playbook, namespace, ollama_models=models, ollama_namespace_manage_labels=True,
                   ollama_workload_network_policy=False)
    assert off.rc == 0, off
    assert cluster.get("networkpolicies", "-n", namespace)["items"] == []


@pytest.mark.profile("k3s")
def test_clients_listed_by_the_user_reach_the_gate_port(playbook, cluster, namespace):
    run = converge(playbook, namespace, ollama_namespace_manage_labels=True,
                   ollama_workload_allowed_namespaces=["open-webui"],
                   ollama_workload_allowed_pods=[{"labels": {"app": "batch"}},
                                                 {"namespace": "apps", "labels": {"app": "rag"}}],
                   ollama_workload_allowed_cidrs=["192.168.7.0/24"])
    assert run.rc == 0, run
    (clients, _api_server) = cluster.get("networkpolicy", f"{NAME}-ingress", "-n", namespace)["spec"]["ingress"]
    assert clients["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert clients["from"] == [
        {"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In",
                                                     "values": ["open-webui"]}]}},
        {"podSelector": {"matchLabels": {"app": "batch"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}},
         "podSelector": {"matchLabels": {"app": "rag"}}},
        {"ipBlock": {"cidr": "192.168.7.0/24"}}]


# ---------------------------------------------------------------- Ingress, HTTPRoute, image

@pytest.mark.profile("k3s")
def test_the_ingress_takes_the_default_class_and_routes_only_the_client_paths(playbook, cluster, namespace,
                                                                              default_ingress_class):
    run = converge(playbook, namespace, ollama_namespace_manage_labels=True, ollama_ingress_enabled=True,
                   ollama_ingress_host="ollama.example.com", ollama_ingress_tls_secret="ollama-tls")
    assert run.rc == 0, run
    ingress = cluster.get("ingress", NAME, "-n", namespace)
    assert ingress["spec"]["ingressClassName"] == default_ingress_class
    # No controller-specific annotation: the gate authenticates on every controller.
    assert not ingress["metadata"].get("annotations")
    assert ingress["spec"]["tls"] == [{"hosts": ["ollama.example.com"], "secretName": "ollama-tls"}]
    (rule,) = ingress["spec"]["rules"]
    assert [p["path"] for p in rule["http"]["paths"]] == CLIENT_PATHS
    assert {p["pathType"] for p in rule["http"]["paths"]} == {"Prefix"}
    assert all(p["backend"]["service"] == {"name": NAME, "port": {"name": "http"}} for p in rule["http"]["paths"])
    # k3s: Traefik runs in kube-system, so the policy lets kube-system in.
    (clients, _api) = cluster.get("networkpolicy", f"{NAME}-ingress", "-n", namespace)["spec"]["ingress"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}} in clients["from"]

    opened = converge(playbook, namespace, ollama_namespace_manage_labels=True, ollama_ingress_enabled=True,
                      ollama_ingress_host="ollama.example.com", ollama_ingress_open_admin_endpoints=True)
    assert opened.rc == 0, opened
    paths = [p["path"] for p in cluster.get("ingress", NAME, "-n", namespace)["spec"]["rules"][0]["http"]["paths"]]
    assert paths == CLIENT_PATHS + ADMIN_PATHS

    closed = converge(playbook, namespace, ollama_namespace_manage_labels=True)
    assert closed.rc == 0, closed
    assert cluster.get("ingresses", "-n", namespace)["items"] == []


@pytest.mark.profile("k3s")
def test_the_httproute_attaches_to_a_gateway_with_the_client_paths(playbook, cluster, namespace, gateway_api):
    # A Gateway of the namespace's own (its listener admits routes from the same namespace, the default).
    cluster.apply({"apiVersion": f"{GATEWAY_GROUP}/v1", "kind": "Gateway",
                   "metadata": {"name": "team-gateway", "namespace": namespace},
                   "spec": {"gatewayClassName": "traefik",
                            "listeners": [{"name": "web", "port": 8000, "protocol": "HTTP"}]}})
    route = {"ollama_httproute_enabled": True,
             "ollama_httproute_parent_refs": [{"name": "team-gateway", "namespace": namespace, "sectionName": "web"}],
             "ollama_httproute_hostnames": ["ollama.example.com"]}
    run = converge(playbook, namespace, ollama_namespace_manage_labels=True, **route)
    assert run.rc == 0, run
    spec = cluster.get(f"httproutes.{GATEWAY_GROUP}", NAME, "-n", namespace)["spec"]
    assert spec["parentRefs"] == [{"group": GATEWAY_GROUP, "kind": "Gateway", "name": "team-gateway",
                                   "namespace": namespace, "sectionName": "web"}]
    assert spec["hostnames"] == ["ollama.example.com"]
    (rule,) = spec["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": p}} for p in CLIENT_PATHS]
    # The API server fills in the defaults (group "", kind Service, weight 1).
    assert [{k: ref[k] for k in ("name", "port")} for ref in rule["backendRefs"]] == [{"name": NAME, "port": 11434}]
    assert all(ref.get("kind", "Service") == "Service" for ref in rule["backendRefs"])
    (clients, _api) = cluster.get("networkpolicy", f"{NAME}-ingress", "-n", namespace)["spec"]["ingress"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}} in clients["from"]

    again = converge(playbook, namespace, ollama_namespace_manage_labels=True, **route)
    assert again.rc == 0 and again.changed == 0, again
    dry = converge(playbook, namespace, check=True, diff=True, ollama_namespace_manage_labels=True)
    assert dry.rc == 0 and dry.changed >= 1, dry
    assert cluster.get(f"httproutes.{GATEWAY_GROUP}", "-n", namespace)["items"], "check mode removed the route"
    off = converge(playbook, namespace, ollama_namespace_manage_labels=True)
    assert off.rc == 0, off
    assert cluster.get(f"httproutes.{GATEWAY_GROUP}", "-n", namespace)["items"] == []


@pytest.mark.profile("k3s")
def test_a_digest_pins_the_image(playbook, cluster, namespace):
    digest = "sha256:" + "5e" * 32
    run = converge(playbook, namespace, ollama_namespace_manage_labels=True, ollama_image_digest=digest)
    assert run.rc == 0, run
    image = cluster.get("deployment", NAME, "-n", namespace)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"docker.io/ollama/ollama:{DEFAULT_TAG}@{digest}"


# ---------------------------------------------------------------- bad input stops before any write

BAD_INPUT = [
    ("allowed-namespace-invalid", {"ollama_workload_allowed_namespaces": ["Open_WebUI"]},
     "ollama_workload_allowed_namespaces", "not a namespace name"),
    ("pod-selector-invalid", {"ollama_workload_allowed_pods": [{"labels": {"app": "web ui"}}]},
     "ollama_workload_allowed_pods", "value"),
    ("pod-selector-key-invalid", {"ollama_workload_allowed_pods": [{"namespace": "apps", "labels": {"-app": "x"}}]},
     "ollama_workload_allowed_pods", "key"),
    ("tag-below-the-cve-table", {"ollama_image_tag": "0.11.4"}, "ollama_image_tag", "CVE-2026-7482"),
    ("digest-invalid", {"ollama_image_digest": "sha256:1234"}, "ollama_image_digest", "sha256:<64"),
    ("retired-ingress-auth", {"ollama_ingress_auth_secret": "ollama-basic-auth"}, "ollama_ingress_auth_secret",
     "retired"),
    ("egress-rule-invalid", {"ollama_workload_extra_egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0"}}]}]},
     "ollama_workload_extra_egress", "cidr"),
]
GATEWAY_BAD_INPUT = [
    ("httproute-without-parents", {"ollama_httproute_enabled": True, "ollama_httproute_parent_refs": []},
     "ollama_httproute_parent_refs", "is empty"),
    ("httproute-gateway-missing", {"ollama_httproute_enabled": True,
                                   "ollama_httproute_parent_refs": [{"name": "public", "namespace": "gateways"}]},
     "ollama_httproute_parent_refs", "Gateway gateways/public does not exist"),
    ("httproute-gateway-admits-only-its-namespace",
     {"ollama_httproute_enabled": True,
      "ollama_httproute_parent_refs": [{"name": "traefik-gateway", "namespace": "kube-system"}]},
     "ollama_httproute_parent_refs", "admits no route from namespace"),
]


def assert_stopped_before_any_write(cluster, run, namespace, variable, fragment):
    assert run.rc != 0, run
    failure = str(run.failure)
    assert variable in failure and fragment in failure and "Fix:" in failure, run
    assert "nothing was changed in the cluster" in failure, run
    assert cluster.kubectl("get", "namespace", namespace, check=False).returncode != 0, "the namespace was created"


@pytest.mark.profile("k3s")
@pytest.mark.parametrize("variables,variable,fragment", [b[1:] for b in BAD_INPUT], ids=[b[0] for b in BAD_INPUT])
def test_bad_input_stops_before_any_write(playbook, cluster, variables, variable, fragment):
    fresh = f"t-bad-{uuid.uuid4().hex[:6]}"
    run = converge(playbook, fresh, **variables)
    assert_stopped_before_any_write(cluster, run, fresh, variable, fragment)


@pytest.mark.profile("k3s")
def test_an_ingress_class_that_does_not_exist_stops_before_any_write(playbook, cluster, default_ingress_class):
    fresh = f"t-bad-{uuid.uuid4().hex[:6]}"
    run = converge(playbook, fresh, ollama_ingress_enabled=True, ollama_ingress_host="o.example.com",
                   ollama_ingress_class_name="nginx")
    assert_stopped_before_any_write(cluster, run, fresh, "ollama_ingress_class_name",
                                    "IngressClass 'nginx' does not exist")
    assert default_ingress_class in run.failure


@pytest.mark.profile("k3s")
@pytest.mark.parametrize("variables,variable,fragment", [b[1:] for b in GATEWAY_BAD_INPUT],
                         ids=[b[0] for b in GATEWAY_BAD_INPUT])
def test_bad_httproute_input_stops_before_any_write(playbook, cluster, gateway_api, variables, variable, fragment):
    fresh = f"t-bad-{uuid.uuid4().hex[:6]}"
    run = converge(playbook, fresh, **variables)
    assert_stopped_before_any_write(cluster, run, fresh, variable, fragment)


@pytest.mark.profile("eks")
def test_an_httproute_on_a_cluster_without_the_gateway_api_stops_before_any_write(playbook, cluster):
    if cluster.kubectl("get", f"crd/httproutes.{GATEWAY_GROUP}", check=False).returncode == 0:
        pytest.skip("this cluster serves the Gateway API")
    fresh = f"t-bad-{uuid.uuid4().hex[:6]}"
    run = converge(playbook, fresh, ollama_gpu_label_nodes=True, ollama_httproute_enabled=True,
                   ollama_httproute_parent_refs=[{"name": "public", "namespace": "gateways"}])
    assert_stopped_before_any_write(cluster, run, fresh, "ollama_httproute_enabled", "CRDs are not installed")


@pytest.mark.profile("k3s")
def test_a_system_namespace_is_refused_and_left_alone(playbook, cluster):
    before = cluster.get("namespace", "kube-system")["metadata"]
    run = converge(playbook, "kube-system")
    assert run.rc != 0, run
    assert "ollama_namespace" in run.failure and "Kubernetes owns" in run.failure and "Fix:" in run.failure, run
    after = cluster.get("namespace", "kube-system")["metadata"]
    assert after["labels"] == before["labels"] and after["resourceVersion"] == before["resourceVersion"]
    assert cluster.kubectl("get", "deployment,statefulset,networkpolicy,service", NAME, "-n", "kube-system",
                           check=False).returncode != 0
