#!/usr/bin/env python3
"""Checks the rendered webhook manifests (`kubectl kustomize deploy/webhook`) for the settings that keep
the cluster safe and the pod locked down. Standard library, except for the webhook's matchConditions: they
are CEL, evaluated here with cel-python (`import celpy`; `python3 -m pip install cel-python`, which brings
PyYAML along) against sample pods, so that a condition that would send the wrong pods, or fail on a legal
pod, fails CI. Without cel-python that check fails and says how to install it.

    check_webhook_manifests.py RENDERED.yaml                  # the cert-manager base
    check_webhook_manifests.py --self-signed RENDERED.yaml    # `deploy/webhook/self-signed/bootstrap.sh render`
    check_webhook_manifests.py --network-policy COMPONENT     # deploy/webhook/network-policy

The third form renders, with `kubectl kustomize`, an overlay made in a temporary folder: the base (the
component's parent folder), the component and a patch that sets an address range, as docs/webhook.md shows.
The result must pass the base's checks, and the NetworkPolicy must select the webhook's pods and admit 8443
from that range only. The component as shipped must still hold the placeholder range, which the API server
refuses.

There is no YAML parser in the standard library, so this reads kustomize's output, which is normalized
(keys sorted, two-space indentation, list items at their parent key's indentation), with a few small
helpers: documents are split on `---` lines, and a key's block is the lines indented under it. Every
problem found is reported, naming the object and the setting; the exit status is 1 if there is any.
"""

import os
import re
import sys

NAMESPACE = "placement-system"
NAME = "placement-webhook"
SELECTOR_LABEL = ("app.kubernetes.io/name", "placement-webhook")
COMMON_LABELS = [SELECTOR_LABEL, ("app.kubernetes.io/part-of", "placement")]
FLAG_ENV = [
    "PLACEMENT_LISTEN",
    "PLACEMENT_PROBE_LISTEN",
    "PLACEMENT_TLS_CERT",
    "PLACEMENT_TLS_KEY",
    "PLACEMENT_DEADLINE_MS",
    "PLACEMENT_RESERVATION_TTL_SECONDS",
    "PLACEMENT_LOG_JSON",
]
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}


class Doc:
    def __init__(self, text):
        self.text = text
        self.kind = first(r"^kind: (\S+)$", text) or "?"
        meta = block(text, "metadata")
        self.name = first(r"^  name: (\S+)$", meta) or "?"
        self.namespace = first(r"^  namespace: (\S+)$", meta)
        self.labels = dict(pairs(block(meta, "labels")))
        self.annotations = dict(pairs(block(meta, "annotations")))

    def __str__(self):
        return f"{self.kind} {self.name}"


def first(pattern, text):
    m = re.search(pattern, text, re.M)
    return m.group(1) if m else None


def unquote(value):
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def block(text, key, occurrence=0):
    """The lines under `key:` (its nested mapping or list), for its `occurrence`-th appearance."""
    lines = text.splitlines()
    pattern = re.compile(r"^( *)(- )?" + re.escape(key) + r":\s*$")
    seen = 0
    for i, line in enumerate(lines):
        m = pattern.match(line)
        if not m:
            continue
        if seen < occurrence:
            seen += 1
            continue
        own = len(m.group(1)) + (2 if m.group(2) else 0)
        out = []
        for sub in lines[i + 1 :]:
            if sub.strip():
                ind = indent_of(sub)
                if ind < own or (ind == own and not sub.lstrip().startswith("- ")):
                    break
            out.append(sub)
        return "\n".join(out)
    return ""


def blocks(text, key):
    """Every block of `key` in `text`."""
    out, i = [], 0
    while True:
        found = re.findall(r"^ *(?:- )?" + re.escape(key) + r":\s*$", text, re.M)
        if i >= len(found):
            return out
        out.append(block(text, key, i))
        i += 1


def scalars(text, key):
    """The values of every `key: value` line in `text`."""
    return [unquote(v) for v in re.findall(r"^ *(?:- )?" + re.escape(key) + r": (.+)$", text, re.M)]


def scalar(text, key):
    values = scalars(text, key)
    return values[0] if values else None


def items(text):
    """A block's list items (`- a` lines), as strings."""
    return [unquote(v) for v in re.findall(r"^ *- ([^:\n]+|\"[^\"]*\"|'[^']*')$", text, re.M)]


def pairs(text):
    """The `key: value` pairs of a flat mapping block."""
    lines = [l for l in text.splitlines() if l.strip()]
    if not lines:
        return []
    base = min(indent_of(l) for l in lines)
    out = []
    for l in lines:
        if indent_of(l) == base and ":" in l:
            k, _, v = l.strip().partition(":")
            out.append((unquote(k), unquote(v)))
    return out


def list_items(text):
    """The items of a block holding a list of mappings, each dedented so that its keys start at column 0."""
    lines = [l for l in text.splitlines() if l.strip()]
    if not lines or not lines[0].lstrip().startswith("- "):
        return []
    base = indent_of(lines[0])
    out = []
    for l in lines:
        if indent_of(l) == base and l.lstrip().startswith("- "):
            out.append([])
            l = " " * (base + 2) + l.lstrip()[2:]
        out[-1].append(l[base + 2 :] if len(l) >= base + 2 else l.strip())
    return ["\n".join(item) for item in out]


def top(item, key):
    """A column-0 scalar of a list item from `list_items`."""
    value = first(r"^" + re.escape(key) + r": (.+)$", item)
    return None if value is None else unquote(value)


def match_expressions(selector):
    """[(key, operator, [values])] of a label selector block."""
    return [(top(e, "key"), top(e, "operator"), items(block(e, "values")))
            for e in list_items(block(selector, "matchExpressions"))]


class Checker:
    def __init__(self):
        self.problems = []

    def fail(self, where, message):
        self.problems.append(f"{where}: {message}")

    def equal(self, where, what, found, expected):
        if found != expected:
            self.fail(where, f"{what} must be {expected!r} (found {found!r})")

    def has(self, where, what, haystack, needle):
        if needle not in haystack:
            self.fail(where, f"{what} must include {needle!r} (found {haystack!r})")


def check(docs, self_signed, network_policy=False):
    c = Checker()
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.kind, []).append(d)

    wanted = ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment",
              "PodDisruptionBudget", "MutatingWebhookConfiguration"]
    if not self_signed:
        wanted += ["Issuer", "Certificate"]
    for kind in wanted:
        if kind not in by_kind:
            c.fail("manifests", f"no {kind} rendered")
    if "Secret" in by_kind:
        c.fail("manifests", "a Secret is rendered: the TLS Secret comes from cert-manager or bootstrap.sh")
    if "NetworkPolicy" in by_kind and not network_policy:
        c.fail("manifests", "a NetworkPolicy is rendered: it is an optional component (deploy/webhook/network-policy), "
                            "not part of the base")

    for d in docs:
        for k, v in COMMON_LABELS:
            c.equal(d, f"label {k}", d.labels.get(k), v)
        if d.kind in CLUSTER_SCOPED:
            continue
        c.equal(d, "metadata.namespace", d.namespace, NAMESPACE)
        if self_signed and "cert-manager.io/" in d.text.split("\n", 1)[0]:
            c.fail(d, "cert-manager object in the self-signed manifests")

    for d in by_kind.get("Namespace", []):
        c.equal(d, "name", d.name, NAMESPACE)

    for d in by_kind.get("MutatingWebhookConfiguration", []):
        check_webhook_configuration(c, d, self_signed)
    for d in by_kind.get("Deployment", []):
        check_deployment(c, d)
    for d in by_kind.get("Service", []):
        check_service(c, d)
    for d in by_kind.get("PodDisruptionBudget", []):
        c.equal(d, "spec.minAvailable", scalar(d.text, "minAvailable"), "1")
        c.has(d, "selector", pairs(block(block(d.text, "selector"), "matchLabels")), SELECTOR_LABEL)
    for d in by_kind.get("ClusterRole", []):
        check_cluster_role(c, d)
    for d in by_kind.get("ClusterRoleBinding", []):
        subjects = block(d.text, "subjects")
        c.equal(d, "subject kind", scalar(subjects, "kind"), "ServiceAccount")
        c.equal(d, "subject name", scalar(subjects, "name"), NAME)
        c.equal(d, "subject namespace", scalar(subjects, "namespace"), NAMESPACE)
        c.equal(d, "roleRef name", scalar(block(d.text, "roleRef"), "name"), NAME)
    for d in by_kind.get("Certificate", []):
        if d.name == NAME:
            check_certificate(c, d)
    if not self_signed and not any(d.name == NAME for d in by_kind.get("Certificate", [])):
        c.fail("manifests", f"no Certificate {NAME} (the cainjector annotation names it)")
    return c.problems


def check_webhook_configuration(c, d, self_signed):
    names = scalars(d.text, "name")
    hooks = [n for n in names if n.endswith(".placement.dev")]
    c.equal(d, "webhooks", hooks, ["pods.placement.dev"])
    for key, value in [
        ("failurePolicy", "Ignore"),
        ("timeoutSeconds", "3"),
        ("sideEffects", "NoneOnDryRun"),
        ("reinvocationPolicy", "IfNeeded"),
        ("matchPolicy", "Equivalent"),
    ]:
        c.equal(d, key, scalar(d.text, key), value)
    c.equal(d, "admissionReviewVersions", items(block(d.text, "admissionReviewVersions")), ["v1"])
    rules = block(d.text, "rules")
    c.equal(d, "rules operations", items(block(rules, "operations")), ["CREATE"])
    c.equal(d, "rules resources", items(block(rules, "resources")), ["pods"])
    c.equal(d, "rules apiGroups", items(block(rules, "apiGroups")), [""])
    service = block(block(d.text, "clientConfig"), "service")
    c.equal(d, "clientConfig.service.name", scalar(service, "name"), NAME)
    c.equal(d, "clientConfig.service.namespace", scalar(service, "namespace"), NAMESPACE)
    c.equal(d, "clientConfig.service.path", scalar(service, "path"), "/mutate")
    c.equal(d, "clientConfig.service.port", scalar(service, "port"), "443")

    ns = match_expressions(block(d.text, "namespaceSelector"))
    excluded = [v for k, op, vs in ns if k == "kubernetes.io/metadata.name" and op == "NotIn" for v in vs]
    for namespace in ["kube-system", "kube-node-lease", NAMESPACE]:
        if namespace not in excluded:
            c.fail(d, f"namespaceSelector must exclude {namespace} "
                      f"(kubernetes.io/metadata.name NotIn; found {excluded!r})")
    if ("placement.dev/ignore", "NotIn", ["true"]) not in ns:
        c.fail(d, f"namespaceSelector must have placement.dev/ignore NotIn [\"true\"] (found {ns!r})")
    obj = match_expressions(block(d.text, "objectSelector"))
    if ("placement.dev/ignore", "NotIn", ["true"]) not in obj:
        c.fail(d, f"objectSelector must have placement.dev/ignore NotIn [\"true\"] (found {obj!r})")

    for problem in match_condition_problems(match_conditions_of(d.text)):
        c.fail(d, problem)

    inject = d.annotations.get("cert-manager.io/inject-ca-from")
    if self_signed:
        c.equal(d, "annotation cert-manager.io/inject-ca-from", inject, None)
    else:
        c.equal(d, "annotation cert-manager.io/inject-ca-from", inject, f"{NAMESPACE}/{NAME}")


# The webhook's matchConditions (CEL): only pods the webhook can place reach it. Names, in order.
MATCH_CONDITIONS = ["owned-by-replicaset-or-statefulset", "not-bound-to-a-node", "not-placed-yet"]


def _owner(api_version, kind, controller=True):
    ref = {"apiVersion": api_version, "kind": kind, "name": "owner", "uid": "00000000-0000-0000-0000-000000000001"}
    if controller is not None:
        ref["controller"] = controller
    return ref


def _pod(owners=None, annotations=None, node_name=None, labels=None):
    """A pod as the API server hands it to CEL on CREATE: absent optional fields are absent, not null."""
    meta = {"generateName": "web-", "namespace": "shop"}
    if owners is not None:
        meta["ownerReferences"] = owners
    if annotations is not None:
        meta["annotations"] = annotations
    if labels is not None:
        meta["labels"] = labels
    spec = {"containers": [{"name": "app", "image": "registry.example/app:1"}]}
    if node_name is not None:
        spec["nodeName"] = node_name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


RS = _owner("apps/v1", "ReplicaSet")
STS = _owner("apps/v1", "StatefulSet")
# (what, pod, whether the API server must send it to the webhook)
SAMPLE_PODS = [
    ("a ReplicaSet's pod", _pod([RS], labels={"app": "web", "pod-template-hash": "5d8f7"}), True),
    ("a StatefulSet's pod", _pod([STS], annotations={"note": "x"}), True),
    ("a ReplicaSet's pod with an empty nodeName", _pod([RS], node_name=""), True),
    ("a StatefulSet's pod with a non-controller owner before it",
     _pod([_owner("example.com/v1", "Thing", controller=None), STS]), True),
    ("a Job's pod", _pod([_owner("batch/v1", "Job")]), False),
    ("a DaemonSet's pod", _pod([_owner("apps/v1", "DaemonSet")]), False),
    ("a bare pod (no ownerReferences, no annotations)", _pod(), False),
    ("a bare pod with an empty ownerReferences list", _pod([], annotations={}), False),
    ("a pod whose ReplicaSet owner is not its controller (no `controller` field)",
     _pod([_owner("apps/v1", "ReplicaSet", controller=None)]), False),
    ("a pod whose ReplicaSet owner has controller: false", _pod([_owner("apps/v1", "ReplicaSet", controller=False)]),
     False),
    ("a pod owned by a ReplicaSet of another API group", _pod([_owner("example.com/v1", "ReplicaSet")]), False),
    ("a ReplicaSet's pod already bound to a node", _pod([RS], node_name="node-a"), False),
    ("a ReplicaSet's pod carrying the reservation annotation (a reinvocation)",
     _pod([RS], annotations={"placement.dev/reservation": "0b5e3c1e-7a3c-4f0a-9a55-0c1d2e3f4a5b"}), False),
]


def match_conditions_of(text):
    """The matchConditions of a rendered MutatingWebhookConfiguration's first webhook, parsed with PyYAML
    (kustomize folds long expressions over several lines, which the helpers above do not read)."""
    try:
        import yaml
    except ImportError:
        return None
    doc = yaml.safe_load(text) or {}
    hooks = doc.get("webhooks") or [{}]
    return hooks[0].get("matchConditions") or []


def match_condition_problems(conditions):
    """Every problem with a webhook's matchConditions: names and order, then each sample pod evaluated with
    cel-python as the API server evaluates them (all true: sent; any false: not sent; an error: failurePolicy,
    which must never happen on a legal pod)."""
    install = "python3 -m pip install cel-python"
    if conditions is None:
        return [f"matchConditions not read: PyYAML is not installed ({install} brings it)"]
    names = [m.get("name") for m in conditions]
    if names != MATCH_CONDITIONS:
        return [f"matchConditions must be {MATCH_CONDITIONS!r} (found {names!r})"]
    try:
        import celpy
    except ImportError:
        return [f"matchConditions not evaluated: cel-python is not installed ({install})"]
    problems = []
    env = celpy.Environment()
    programs = []
    for m in conditions:
        try:
            programs.append((m["name"], env.program(env.compile(m["expression"]))))
        except Exception as e:  # noqa: BLE001 (celpy's parse errors have no common base class)
            problems.append(f"matchCondition {m['name']}: does not compile: {e}")
    if problems:
        return problems
    request = {"operation": "CREATE", "namespace": "shop", "kind": {"group": "", "version": "v1", "kind": "Pod"},
               "resource": {"group": "", "version": "v1", "resource": "pods"}, "dryRun": False}
    for what, pod, sent in SAMPLE_PODS:
        activation = celpy.json_to_cel({"object": pod, "oldObject": None, "request": request})
        results = {}
        for name, program in programs:
            try:
                value = program.evaluate(activation)
            except Exception as e:  # noqa: BLE001
                value = e
            if not isinstance(value, celpy.celtypes.BoolType):
                problems.append(f"matchCondition {name} does not evaluate to a bool on {what}: {value!r}")
            results[name] = value
        if len(results) == len(programs) and all(isinstance(v, celpy.celtypes.BoolType) for v in results.values()):
            got = all(bool(v) for v in results.values())
            if got != sent:
                false = [n for n, v in results.items() if not v]
                problems.append(f"{what}: {'sent' if got else 'not sent'} to the webhook, expected "
                                f"{'sent' if sent else 'not sent'} (false: {false})")
    return problems


def covers(rule, port):
    """Whether a NetworkPolicy ingress rule admits `port` (a rule without ports admits every port)."""
    ports = rule.get("ports")
    return not ports or any(p.get("port") in (port, {8443: "https", 8080: "probes"}.get(port)) for p in ports)


def network_policy_problems(policy, deployment):
    """A NetworkPolicy that must select `deployment`'s pods, in its namespace, for ingress, with every rule
    that admits 8443 limited to listed peers."""
    out = []
    if policy["metadata"].get("namespace") != deployment["metadata"].get("namespace"):
        out.append(f"NetworkPolicy namespace {policy['metadata'].get('namespace')}, the webhook's pods are in "
                   f"{deployment['metadata'].get('namespace')}")
    spec = policy["spec"]
    selector = spec.get("podSelector", {})
    pod_labels = deployment["spec"]["template"]["metadata"].get("labels", {})
    if set(selector) - {"matchLabels"} or not selector.get("matchLabels") or \
            any(pod_labels.get(k) != v for k, v in selector["matchLabels"].items()):
        out.append(f"NetworkPolicy podSelector {selector} does not select the webhook's pods (labels {pod_labels})")
    if spec.get("policyTypes") != ["Ingress"]:
        out.append(f"NetworkPolicy policyTypes {spec.get('policyTypes')}, expected [Ingress] (egress is not limited)")
    https = [r for r in spec.get("ingress", []) if covers(r, 8443)]
    if not https:
        out.append("NetworkPolicy admits 8443 from nowhere: the API server could not call the webhook")
    for r in https:
        if not r.get("from"):
            out.append(f"NetworkPolicy admits 8443 from anywhere: {r}")
    if not any(covers(r, 8080) for r in spec.get("ingress", [])):
        out.append("NetworkPolicy does not admit 8080 (metrics)")
    return out


# Roles the kustomize bases do not have: the self-signed certificate job's, limited to its one object.
CERTS_CLUSTER_ROLE = {("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "placement-webhook"):
                      {"get", "patch"}}
CERTS_ROLE = {("", "secrets", ""): {"create"}, ("", "secrets", "placement-webhook-tls"): {"get", "update"}}


def check_deployment(c, d):
    t = d.text
    c.equal(d, "spec.replicas", scalar(t, "replicas"), "2")
    c.has(d, "selector", pairs(block(block(t, "selector"), "matchLabels")), SELECTOR_LABEL)
    c.equal(d, "serviceAccountName", scalar(t, "serviceAccountName"), NAME)
    c.equal(d, "automountServiceAccountToken", scalar(t, "automountServiceAccountToken"), "true")
    c.equal(d, "terminationGracePeriodSeconds", scalar(t, "terminationGracePeriodSeconds"), "30")
    if scalar(t, "priorityClassName") is not None:
        c.fail(d, "priorityClassName must not be set (the webhook fails open; see deployment.yaml)")
    all_containers = list_items(block(t, "containers"))
    c.equal(d, "containers", [top(x, "name") for x in all_containers], ["webhook"])
    containers = all_containers[0] if all_containers else ""
    c.equal(d, "args", items(block(containers, "args")), ["serve"])
    c.has(d, "containerPorts", scalars(containers, "containerPort"), "8443")
    c.has(d, "containerPorts", scalars(containers, "containerPort"), "8080")
    env = scalars(block(containers, "env"), "name")
    for var in FLAG_ENV:
        c.has(d, "env", env, var)

    sc = block(containers, "securityContext")
    for key, value in [
        ("runAsNonRoot", "true"),
        ("runAsUser", "65532"),
        ("readOnlyRootFilesystem", "true"),
        ("allowPrivilegeEscalation", "false"),
    ]:
        c.equal(d, f"container securityContext.{key}", scalar(sc, key), value)
    c.equal(d, "container securityContext.capabilities.drop",
            items(block(block(sc, "capabilities"), "drop")), ["ALL"])
    seccomp = [scalar(b, "type") for b in blocks(t, "seccompProfile")]
    if "RuntimeDefault" not in seccomp:
        c.fail(d, f"seccompProfile type RuntimeDefault missing (found {seccomp!r})")

    for probe, path in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")]:
        b = block(containers, probe)
        if not b:
            c.fail(d, f"{probe} missing")
            continue
        c.equal(d, f"{probe} path", scalar(b, "path"), path)
        c.equal(d, f"{probe} port", scalar(b, "port"), "probes")

    resources = block(containers, "resources")
    requests, limits = block(resources, "requests"), block(resources, "limits")
    c.equal(d, "resources.requests.cpu", scalar(requests, "cpu"), "100m")
    c.equal(d, "resources.requests.memory", scalar(requests, "memory"), "256Mi")
    c.equal(d, "resources.limits.memory", scalar(limits, "memory"), "512Mi")
    if scalar(limits, "cpu") is not None:
        c.fail(d, "resources.limits.cpu must not be set (CPU throttling delays admissions)")

    mounts = block(containers, "volumeMounts")
    c.equal(d, "TLS volumeMount mountPath", scalar(mounts, "mountPath"), "/etc/placement/tls")
    c.equal(d, "TLS volumeMount readOnly", scalar(mounts, "readOnly"), "true")
    c.equal(d, "TLS volume secretName", scalar(block(t, "volumes"), "secretName"), "placement-webhook-tls")
    if not block(block(t, "podAntiAffinity"), "preferredDuringSchedulingIgnoredDuringExecution"):
        c.fail(d, "preferred pod anti-affinity missing")
    spread = block(t, "topologySpreadConstraints")
    c.equal(d, "topologySpreadConstraints topologyKey", scalar(spread, "topologyKey"), "topology.kubernetes.io/zone")


def check_service(c, d):
    found = {top(p, "name"): (top(p, "port"), top(p, "targetPort")) for p in list_items(block(d.text, "ports"))}
    c.equal(d, "port https", found.get("https"), ("443", "https"))
    c.equal(d, "port metrics", found.get("metrics"), ("8080", "probes"))
    c.has(d, "selector", pairs(block(d.text, "selector")), SELECTOR_LABEL)


def check_cluster_role(c, d):
    rules = block(d.text, "rules")
    if re.search(r"\bsecrets\b", rules):
        c.fail(d, "must not grant any access to secrets")
    if "*" in rules:
        c.fail(d, "must not use wildcards")
    read = set()
    for chunk in list_items(rules):
        resources = items(block(chunk, "resources"))
        verbs = items(block(chunk, "verbs"))
        for verb in verbs:
            if verb not in ("get", "list", "watch", "update", "patch"):
                c.fail(d, f"verb {verb!r} on {resources!r}: only get, list, watch (and update, patch on status)")
            if verb in ("update", "patch") and not all(r.endswith("/status") for r in resources):
                c.fail(d, f"verb {verb!r} on {resources!r}: writes are allowed on /status only")
        if {"get", "list", "watch"} <= set(verbs):
            read.update(resources)
    for resource in ["nodes", "pods", "replicasets", "deployments", "statefulsets", "poddisruptionbudgets",
                     "poddistributions", "zonebalancers", "rebalancepolicies"]:
        if resource not in read:
            c.fail(d, f"get/list/watch on {resource} missing (the webhook watches it)")


def check_certificate(c, d):
    c.equal(d, "secretName", scalar(d.text, "secretName"), "placement-webhook-tls")
    names = items(block(d.text, "dnsNames"))
    for dns in [f"{NAME}.{NAMESPACE}.svc", f"{NAME}.{NAMESPACE}.svc.cluster.local"]:
        c.has(d, "dnsNames", names, dns)
    c.equal(d, "duration", scalar(d.text, "duration"), "2160h")
    c.equal(d, "renewBefore", scalar(d.text, "renewBefore"), "360h")


PLACEHOLDER_CIDR = "API-SERVER-CIDR"
SAMPLE_CIDR = "10.0.0.0/24"


def check_network_policy_component(component):
    """Renders base + component + a range, as a user's overlay would; returns (problems, docs)."""
    import subprocess
    import tempfile

    import yaml

    component = os.path.abspath(component)
    base = os.path.dirname(component)
    problems = []
    with open(os.path.join(component, "networkpolicy.yaml"), encoding="utf-8") as f:
        shipped = yaml.safe_load(f)
    cidrs = [p.get("ipBlock", {}).get("cidr") for r in shipped["spec"]["ingress"] for p in r.get("from", [])]
    if cidrs != [PLACEHOLDER_CIDR]:
        problems.append(f"{component}/networkpolicy.yaml: the shipped range must be the placeholder "
                        f"{PLACEHOLDER_CIDR!r}, which the API server refuses, not {cidrs!r}")
    with tempfile.TemporaryDirectory() as overlay:
        with open(os.path.join(overlay, "kustomization.yaml"), "w", encoding="utf-8") as f:
            f.write(f"""apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [{os.path.relpath(base, overlay)}]
components: [{os.path.relpath(component, overlay)}]
patches:
  - target: {{kind: NetworkPolicy, name: {NAME}}}
    patch: |-
      - op: replace
        path: /spec/ingress/0/from/0/ipBlock/cidr
        value: {SAMPLE_CIDR}
""")
        out = subprocess.run(["kubectl", "kustomize", overlay], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return problems + [f"kubectl kustomize of base + component failed: {out.stderr.strip()}"], []
    docs = [Doc(t.strip("\n") + "\n") for t in re.split(r"^---$", out.stdout, flags=re.M) if t.strip()]
    problems += check(docs, self_signed=False, network_policy=True)
    parsed = [d for d in yaml.safe_load_all(out.stdout) if d]
    policies = [d for d in parsed if d["kind"] == "NetworkPolicy"]
    deployment = next((d for d in parsed if d["kind"] == "Deployment"), None)
    if len(policies) != 1 or deployment is None:
        return problems + [f"base + component: {len(policies)} NetworkPolicies and "
                           f"{'a' if deployment else 'no'} Deployment rendered"], docs
    policy = policies[0]
    problems += [f"NetworkPolicy {policy['metadata']['name']}: {p}" for p in network_policy_problems(policy, deployment)]
    https = [p for r in policy["spec"]["ingress"] if covers(r, 8443) for p in r.get("from", [])]
    if https != [{"ipBlock": {"cidr": SAMPLE_CIDR}}]:
        problems.append(f"NetworkPolicy: 8443 admitted from {https}, expected only the patched range {SAMPLE_CIDR}")
    return problems, docs


def main(argv):
    args = argv[1:]
    self_signed = "--self-signed" in args
    network_policy = "--network-policy" in args
    paths = [a for a in args if a not in ("--self-signed", "--network-policy")]
    if len(paths) != 1 or (self_signed and network_policy):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    if network_policy:
        problems, docs = check_network_policy_component(paths[0])
        if problems:
            print(f"{paths[0]}: {len(problems)} problem(s) in the base with the NetworkPolicy component:",
                  file=sys.stderr)
            for p in problems:
                print(f"  - {p}", file=sys.stderr)
            return 1
        print(f"{paths[0]}: base + NetworkPolicy component OK ({len(docs)} objects; 8443 from {SAMPLE_CIDR} only)")
        return 0
    with open(paths[0], encoding="utf-8") as f:
        text = f.read()
    docs = [Doc(t.strip("\n") + "\n") for t in re.split(r"^---$", text, flags=re.M) if t.strip()]
    problems = check(docs, self_signed) if docs else ["manifests: nothing rendered"]
    label = "self-signed webhook manifests" if self_signed else "webhook manifests"
    if problems:
        print(f"{paths[0]}: {len(problems)} problem(s) in the {label}:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    kinds = ", ".join(sorted({d.kind for d in docs}))
    print(f"{paths[0]}: {label} OK ({len(docs)} objects: {kinds})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
