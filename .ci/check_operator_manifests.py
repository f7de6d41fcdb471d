#!/usr/bin/env python3
"""Checks the rendered operator manifests (`kubectl kustomize deploy/operator`): two replicas under
leader election, a locked-down pod, probes on the probe port, and least-privilege RBAC (every write the
operator may do is listed here; anything else fails). Standard library only.

    check_operator_manifests.py RENDERED.yaml

Reads kustomize's normalized output with the helpers of check_webhook_manifests.py (same folder). Every
problem found is reported, naming the object and the setting; the exit status is 1 if there is any.
When a controller needs a new permission, add its rule to deploy/operator/rbac.yaml and to ALLOWED here.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_webhook_manifests import (  # noqa: E402  (the path is set just above)
    Checker, Doc, block, blocks, items, list_items, pairs, scalar, scalars, top,
)

NAMESPACE = "placement-system"
NAME = "placement-operator"
LEASE_ROLE = "placement-operator-leader-election"
SECRET_READER = "placement-operator-secret-reader"
SELECTOR_LABEL = ("app.kubernetes.io/name", NAME)
COMMON_LABELS = [SELECTOR_LABEL, ("app.kubernetes.io/part-of", "placement")]
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
FLAG_ENV = [
    "POD_NAME",
    "PLACEMENT_LEASE_NAMESPACE",
    "PLACEMENT_LEASE_NAME",
    "PLACEMENT_LEASE_DURATION_SECONDS",
    "PLACEMENT_LEASE_RENEW_SECONDS",
    "PLACEMENT_LEASE_RETRY_MILLIS",
    "PLACEMENT_PROBE_LISTEN",
    "PLACEMENT_SHUTDOWN_TIMEOUT_SECONDS",
    "PLACEMENT_LOG_FORMAT",
    "RUST_LOG",
]
READ = {"get", "list", "watch"}
PLACEMENT = ["zonebalancers", "poddistributions", "rebalancepolicies", "workloadslos", "nodeclasses",
             "trafficweights"]

# (apiGroup, resource) -> the verbs the ClusterRole may grant. Anything not here is an error.
ALLOWED = {
    ("", "nodes"): READ,
    ("", "pods"): READ | {"patch"},
    ("", "pods/eviction"): {"create"},
    ("apps", "replicasets"): READ,
    ("apps", "deployments"): READ | {"patch"},
    ("apps", "statefulsets"): READ | {"patch"},
    ("policy", "poddisruptionbudgets"): READ,
    # The rebalancer: is a candidate pod's claim on a node-local volume? Listed at a pass (docs/rebalancer.md).
    ("", "persistentvolumeclaims"): {"list"},
    ("", "persistentvolumes"): {"list"},
    ("metrics.k8s.io", "nodes"): {"get", "list"},
    ("metrics.k8s.io", "pods"): {"get", "list"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("gateway.networking.k8s.io", "httproutes"): {"get", "patch"},
}
ALLOWED.update({("placement.dev", r): READ for r in PLACEMENT})
ALLOWED.update({("placement.dev", r + "/status"): {"get", "update", "patch"} for r in PLACEMENT})

# What must be granted for the runtime and the controllers to work: every verb they may use, they use.
REQUIRED = dict(ALLOWED)


def grants(doc):
    """{(apiGroup, resource): set(verbs)} and [(resources, resourceNames, verbs)] of a role's rules."""
    out, rules = {}, []
    for rule in list_items(block(doc.text, "rules")):
        groups = items(block(rule, "apiGroups"))
        resources = items(block(rule, "resources"))
        verbs = set(items(block(rule, "verbs")))
        names = items(block(rule, "resourceNames"))
        rules.append((groups, resources, names, verbs))
        for g in groups:
            for r in resources:
                out.setdefault((g, r), set()).update(verbs)
    return out, rules


def check(docs):
    c = Checker()
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.kind, []).append(d)
    for kind in ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                 "Service", "Deployment", "PodDisruptionBudget"]:
        if kind not in by_kind:
            c.fail("manifests", f"no {kind} rendered")
    for kind in ["Secret", "ConfigMap", "MutatingWebhookConfiguration", "CustomResourceDefinition"]:
        if kind in by_kind:
            c.fail("manifests", f"a {kind} is rendered: not part of the operator base")

    for d in docs:
        for k, v in COMMON_LABELS:
            c.equal(d, f"label {k}", d.labels.get(k), v)
        if d.kind not in CLUSTER_SCOPED:
            c.equal(d, "metadata.namespace", d.namespace, NAMESPACE)
    for d in by_kind.get("Namespace", []):
        c.equal(d, "name", d.name, NAMESPACE)
        c.equal(d, "label placement.dev/ignore", d.labels.get("placement.dev/ignore"), "true")
        c.equal(d, "label pod-security.kubernetes.io/enforce",
                d.labels.get("pod-security.kubernetes.io/enforce"), "restricted")

    for d in by_kind.get("Deployment", []):
        check_deployment(c, d)
    for d in by_kind.get("PodDisruptionBudget", []):
        c.equal(d, "spec.minAvailable", scalar(d.text, "minAvailable"), "1")
        c.has(d, "selector", pairs(block(block(d.text, "selector"), "matchLabels")), SELECTOR_LABEL)
    for d in by_kind.get("Service", []):
        found = {top(p, "name"): (top(p, "port"), top(p, "targetPort")) for p in list_items(block(d.text, "ports"))}
        c.equal(d, "ports", found, {"metrics": ("8080", "probes")})
        c.has(d, "selector", pairs(block(d.text, "selector")), SELECTOR_LABEL)
    roles = {d.name for d in by_kind.get("ClusterRole", [])}
    if SECRET_READER not in roles:
        c.fail("manifests", f"no ClusterRole {SECRET_READER} (TrafficWeight Secrets, bound per namespace)")
    for d in by_kind.get("ClusterRole", []):
        if d.name == SECRET_READER:
            check_secret_reader(c, d)
        else:
            check_cluster_role(c, d)
    for d in by_kind.get("Role", []):
        check_lease_role(c, d)
    for d in by_kind.get("ClusterRoleBinding", []) + by_kind.get("RoleBinding", []):
        subjects = block(d.text, "subjects")
        c.equal(d, "subject kind", scalar(subjects, "kind"), "ServiceAccount")
        c.equal(d, "subject name", scalar(subjects, "name"), NAME)
        c.equal(d, "subject namespace", scalar(subjects, "namespace"), NAMESPACE)
        # The Secret reader is never bound by the base: a cluster-wide binding would read every Secret.
        expected = NAME if d.kind == "ClusterRoleBinding" else LEASE_ROLE
        c.equal(d, "roleRef name", scalar(block(d.text, "roleRef"), "name"), expected)
    return c.problems


def env_of(container):
    """{name: value or 'fieldRef:<path>'} of a container's env."""
    out = {}
    for e in list_items(block(container, "env")):
        name = top(e, "name")
        value = top(e, "value")
        if value is None:
            path = scalar(block(e, "valueFrom"), "fieldPath")
            value = f"fieldRef:{path}" if path else None
        out[name] = value
    return out


def check_deployment(c, d):
    t = d.text
    c.equal(d, "spec.replicas", scalar(t, "replicas"), "2")
    c.has(d, "selector", pairs(block(block(t, "selector"), "matchLabels")), SELECTOR_LABEL)
    c.equal(d, "serviceAccountName", scalar(t, "serviceAccountName"), NAME)
    c.equal(d, "maxUnavailable", scalar(t, "maxUnavailable"), "0")
    containers = list_items(block(t, "containers"))
    c.equal(d, "containers", [top(x, "name") for x in containers], ["operator"])
    container = containers[0] if containers else ""
    c.equal(d, "args", items(block(container, "args")), ["run"])
    ports = {top(p, "name"): top(p, "containerPort") for p in list_items(block(container, "ports"))}
    c.equal(d, "containerPorts", ports, {"probes": "8080"})

    env = env_of(container)
    for var in FLAG_ENV:
        c.has(d, "env", list(env), var)
    c.equal(d, "env POD_NAME", env.get("POD_NAME"), "fieldRef:metadata.name")
    c.equal(d, "env PLACEMENT_LEASE_NAMESPACE", env.get("PLACEMENT_LEASE_NAMESPACE"), "fieldRef:metadata.namespace")
    c.equal(d, "env PLACEMENT_PROBE_LISTEN", env.get("PLACEMENT_PROBE_LISTEN"), "0.0.0.0:8080")
    c.equal(d, "env PLACEMENT_LOG_FORMAT", env.get("PLACEMENT_LOG_FORMAT"), "json")
    try:
        duration = int(env.get("PLACEMENT_LEASE_DURATION_SECONDS") or "0")
        renew = int(env.get("PLACEMENT_LEASE_RENEW_SECONDS") or "0")
        shutdown = int(env.get("PLACEMENT_SHUTDOWN_TIMEOUT_SECONDS") or "0")
        grace = int(scalar(t, "terminationGracePeriodSeconds") or "30")
        if not 1 <= renew < duration:
            c.fail(d, f"lease renew ({renew} s) must be at least 1 s and below the duration ({duration} s)")
        if 3 * shutdown >= grace:
            c.fail(d, f"three shutdown steps of {shutdown} s do not fit the {grace} s termination grace period")
    except ValueError as e:
        c.fail(d, f"lease timing is not numeric: {e}")

    sc = block(container, "securityContext")
    for key, value in [("runAsNonRoot", "true"), ("readOnlyRootFilesystem", "true"),
                       ("allowPrivilegeEscalation", "false")]:
        c.equal(d, f"container securityContext.{key}", scalar(sc, key), value)
    c.equal(d, "container securityContext.capabilities.drop",
            items(block(block(sc, "capabilities"), "drop")), ["ALL"])
    if scalar(block(t, "securityContext"), "runAsNonRoot") != "true":
        c.fail(d, "pod securityContext.runAsNonRoot must be true")
    if "RuntimeDefault" not in [scalar(b, "type") for b in blocks(t, "seccompProfile")]:
        c.fail(d, "seccompProfile type RuntimeDefault missing")

    for probe, path in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")]:
        b = block(container, probe)
        if not b:
            c.fail(d, f"{probe} missing")
            continue
        c.equal(d, f"{probe} path", scalar(b, "path"), path)
        c.equal(d, f"{probe} port", scalar(b, "port"), "probes")

    resources = block(container, "resources")
    for what in ["cpu", "memory"]:
        if scalar(block(resources, "requests"), what) is None:
            c.fail(d, f"resources.requests.{what} missing")
    if scalar(block(resources, "limits"), "memory") is None:
        c.fail(d, "resources.limits.memory missing")
    if scalar(block(resources, "limits"), "cpu") is not None:
        c.fail(d, "resources.limits.cpu must not be set (throttling delays Lease renewals)")
    if not block(block(t, "podAntiAffinity"), "preferredDuringSchedulingIgnoredDuringExecution"):
        c.fail(d, "preferred pod anti-affinity missing")
    c.equal(d, "topologySpreadConstraints topologyKey",
            scalar(block(t, "topologySpreadConstraints"), "topologyKey"), "topology.kubernetes.io/zone")


def check_cluster_role(c, d):
    if "*" in block(d.text, "rules"):
        c.fail(d, "must not use wildcards")
    granted, _ = grants(d)
    for (group, resource), verbs in sorted(granted.items()):
        allowed = ALLOWED.get((group, resource))
        if allowed is None:
            c.fail(d, f"grants {sorted(verbs)} on {group or 'core'}/{resource}, which the operator does not use")
        elif verbs - allowed:
            c.fail(d, f"grants {sorted(verbs - allowed)} on {group or 'core'}/{resource} beyond {sorted(allowed)}")
    for (group, resource), verbs in sorted(REQUIRED.items()):
        missing = verbs - granted.get((group, resource), set())
        if missing:
            c.fail(d, f"{sorted(missing)} on {group or 'core'}/{resource} missing")


def check_secret_reader(c, d):
    """Only `get` on Secrets: no list or watch (which would expose every Secret of a namespace)."""
    granted, _ = grants(d)
    c.equal(d, "rules", {k: sorted(v) for k, v in granted.items()}, {("", "secrets"): ["get"]})


def check_lease_role(c, d):
    c.equal(d, "name", d.name, LEASE_ROLE)
    granted, rules = grants(d)
    c.equal(d, "resources", sorted(granted), [("coordination.k8s.io", "leases")])
    for groups, resources, names, verbs in rules:
        if verbs - {"create"} and names != [NAME]:
            c.fail(d, f"{sorted(verbs)} on leases must be limited to resourceNames [{NAME!r}] (found {names!r})")
    c.equal(d, "verbs on leases", sorted(granted.get(("coordination.k8s.io", "leases"), set())),
            ["create", "get", "patch"])


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        text = f.read()
    docs = [Doc(t.strip("\n") + "\n") for t in re.split(r"^---$", text, flags=re.M) if t.strip()]
    problems = check(docs) if docs else ["manifests: nothing rendered"]
    if problems:
        print(f"{argv[1]}: {len(problems)} problem(s) in the operator manifests:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    kinds = ", ".join(sorted({d.kind for d in docs}))
    print(f"{argv[1]}: operator manifests OK ({len(docs)} objects: {kinds})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
