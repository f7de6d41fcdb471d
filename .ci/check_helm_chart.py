#!/usr/bin/env python3
"""Lints the Helm chart with the real Helm library and installs it into the fake API server.

    check_helm_chart.py CHART_DIR FAKE_APISERVER_BINARY WEBHOOK_BINARY

1. `helm lint` (helm-sdkpy's Lint action, offline): no error or warning.
2. The fake API server (`fake-apiserver --crds`) gets small stand-in CRDs for cert-manager's Issuer and
   Certificate and prometheus-operator's ServiceMonitor and PrometheusRule, so that every kind the chart
   can render is served.
3. `helm install` (helm-sdkpy, release storage in memory: the fake speaks JSON only and Helm stores
   releases in protobuf Secrets) with the defaults, then with each component disabled in turn and
   monitoring on, by `helm upgrade`. After each, the objects the release manifest lists must exist in the
   fake, and the rendered manifest is checked:
   - the chart's ClusterRoles grant exactly what the kustomize bases grant (deploy/*/rbac.yaml, which
     .ci/check_*_manifests.py hold to least privilege), and the Secret reader is bound only by
     RoleBindings in the namespaces listed;
   - every container runs as non-root with a read-only root filesystem, no privilege escalation, all
     capabilities dropped and RuntimeDefault seccomp; every Deployment has a PodDisruptionBudget;
   - the MutatingWebhookConfiguration has the failurePolicy asked for (Ignore unless a variant chose Fail on
     purpose), excludes the release namespace, and has the kustomize base's matchConditions, which are
     evaluated against sample pods with cel-python (check_webhook_manifests.py's check);
   - a NetworkPolicy only when asked for: it selects the webhook's pods in their namespace, admits 8443 from
     the API server's ranges only and 8080 from the peers given.
   In self-signed mode the script plays the kubelet for the chart's post-install/upgrade Job: it runs the
   Job's command (`placement-webhook certs`, with the Job's environment) against the fake and marks the Job
   complete, so the whole path is exercised: afterwards the Secret holds a certificate and every webhook's
   caBundle trusts it.
4. Invalid values are refused with a message naming the value: the schema (a failurePolicy that does
   not exist, an unknown key, an address range that is not a CIDR) and the chart's own checks (deadline
   above the API server's timeout; failurePolicy Fail without allowFailurePolicyFail, or without
   excludedNamespaces widened beyond kube-system and kube-node-lease, or without either of those two; a
   NetworkPolicy without the API server's ranges).

Every problem is reported; the exit status is 1 if there is any. Needs `helm-sdkpy`, `PyYAML` and
`cel-python` (.ci/run installs them) and `kubectl`.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

# Helm keeps releases in Secrets encoded as protobuf, which the fake refuses; the memory driver keeps them
# in this process. The Go library reads the environment of the process as it started, so a variable set
# from Python is not seen: start again with it.
if os.environ.get("HELM_DRIVER") != "memory":
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "HELM_DRIVER": "memory"})
import helm_sdkpy as helm  # noqa: E402
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_webhook_manifests import (  # noqa: E402  (the path is set just above)
    covers,
    match_condition_problems,
    network_policy_problems,
)

NAMESPACE = "placement-system"
RELEASE = "placement"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STAND_IN_CRDS = [
    ("cert-manager.io", "v1", "Issuer", "issuers"),
    ("cert-manager.io", "v1", "Certificate", "certificates"),
    ("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors"),
    ("monitoring.coreos.com", "v1", "PrometheusRule", "prometheusrules"),
    # The fake does not serve NetworkPolicies among its built-in types.
    ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies"),
]

problems = []


def fail(where, message):
    problems.append(f"{where}: {message}")


def stand_in_crd(group, version, kind, plural):
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": kind + "List"},
            "versions": [{"name": version, "served": True, "storage": True,
                          "schema": {"openAPIV3Schema": {"type": "object",
                                                         "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    }


def kubectl(kubeconfig, *args, stdin=None):
    out = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, *args], input=stdin, capture_output=True,
                         text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def docs_of(manifest):
    return [d for d in yaml.safe_load_all(manifest) if d]


def rules_of(doc):
    """{(apiGroup, resource, resourceName or ''): set(verbs)}"""
    out = {}
    for rule in doc.get("rules", []):
        for g in rule.get("apiGroups", []):
            for r in rule.get("resources", []):
                for n in rule.get("resourceNames", [""]):
                    out.setdefault((g, r, n), set()).update(rule.get("verbs", []))
    return out


_rendered = {}


def kustomize(base):
    if base not in _rendered:
        _rendered[base] = docs_of(subprocess.run(["kubectl", "kustomize", os.path.join(ROOT, base)],
                                                 capture_output=True, text=True, check=True, timeout=60).stdout)
    return _rendered[base]


def kustomize_roles():
    """ClusterRoles of both kustomize bases, by name."""
    roles = {}
    for base in ["deploy/webhook", "deploy/operator"]:
        for d in kustomize(base):
            if d["kind"] == "ClusterRole":
                roles[d["metadata"]["name"]] = rules_of(d)
    return roles


def kustomize_match_conditions():
    """The matchConditions of the kustomize base's webhook."""
    mwc = next(d for d in kustomize("deploy/webhook") if d["kind"] == "MutatingWebhookConfiguration")
    return mwc["webhooks"][0].get("matchConditions")


def check_network_policy(label, by_kind, values):
    """The NetworkPolicy exists exactly when asked for, selects the webhook's pods and admits 8443 only from
    the API server's ranges (and the peers given), 8080 from metricsFrom or anywhere."""
    np_values = values.get("webhook", {}).get("networkPolicy", {})
    wanted = values.get("webhook", {}).get("enabled", True) and np_values.get("enabled", False)
    policies = by_kind.get("NetworkPolicy", [])
    if not wanted:
        if policies:
            fail(label, f"a NetworkPolicy is rendered although not enabled: {[p['metadata']['name'] for p in policies]}")
        return
    if [p["metadata"]["name"] for p in policies] != ["placement-webhook"]:
        fail(label, f"NetworkPolicies {[p['metadata']['name'] for p in policies]}, expected [placement-webhook]")
        return
    policy = policies[0]
    deployment = next((d for d in by_kind.get("Deployment", []) if d["metadata"]["name"] == "placement-webhook"), None)
    if deployment is None:
        fail(label, "a NetworkPolicy but no webhook Deployment")
        return
    for problem in network_policy_problems(policy, deployment):
        fail(label, problem)
    allowed = [f for r in policy["spec"].get("ingress", []) if covers(r, 8443) for f in r.get("from", [])]
    expected = [{"ipBlock": {"cidr": c}} for c in np_values.get("apiServerCIDRs", [])] + np_values.get("apiServerPeers", [])
    if allowed != expected:
        fail(label, f"NetworkPolicy: 8443 admitted from {allowed}, expected {expected}")
    metrics = [r for r in policy["spec"].get("ingress", []) if covers(r, 8080)]
    if [r.get("from", []) for r in metrics] != [np_values.get("metricsFrom", [])]:
        fail(label, f"NetworkPolicy: 8080 admitted by {metrics}, expected from {np_values.get('metricsFrom', [])}")


# Roles the kustomize bases do not have: the self-signed certificate job's, limited to its one object.
CERTS_CLUSTER_ROLE = {("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "placement-webhook"):
                      {"get", "patch"}}
CERTS_ROLE = {("", "secrets", ""): {"create"}, ("", "secrets", "placement-webhook-tls"): {"get", "update"}}


def pod_specs(by_kind):
    """(what, pod spec) of every Deployment, Job and CronJob."""
    for d in by_kind.get("Deployment", []) + by_kind.get("Job", []):
        yield f"{d['kind']} {d['metadata']['name']}", d["spec"]["template"]["spec"]
    for d in by_kind.get("CronJob", []):
        yield f"CronJob {d['metadata']['name']}", d["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def check_manifest(label, docs, values):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    expected_roles = kustomize_roles()
    expected_roles["placement-webhook-certs"] = CERTS_CLUSTER_ROLE
    for d in by_kind.get("Role", []):
        if d["metadata"]["name"] == "placement-webhook-certs" and rules_of(d) != CERTS_ROLE:
            fail(label, f"Role placement-webhook-certs grants {sorted(rules_of(d).items())}")
    for d in by_kind.get("ClusterRole", []):
        name = d["metadata"]["name"]
        if name not in expected_roles:
            fail(label, f"ClusterRole {name} is not in the kustomize bases")
        elif rules_of(d) != expected_roles[name]:
            got, want = rules_of(d), expected_roles[name]
            diff = []
            for key in sorted(set(got) | set(want)):
                extra, missing = got.get(key, set()) - want.get(key, set()), want.get(key, set()) - got.get(key, set())
                where = "/".join(p for p in key if p) or "core"
                if extra:
                    diff.append(f"{sorted(extra)} on {where} beyond the base")
                if missing:
                    diff.append(f"{sorted(missing)} on {where} missing")
            fail(label, f"ClusterRole {name} differs from the kustomize base: {'; '.join(diff)}")
    for d in by_kind.get("ClusterRoleBinding", []):
        if d["roleRef"]["name"] == "placement-operator-secret-reader":
            fail(label, f"ClusterRoleBinding {d['metadata']['name']} binds the Secret reader cluster-wide")
    listed = set(values.get("operator", {}).get("secretReaderNamespaces", []))
    bound = {d["metadata"]["namespace"] for d in by_kind.get("RoleBinding", [])
             if d["roleRef"]["name"] == "placement-operator-secret-reader"}
    if bound != listed:
        fail(label, f"the Secret reader is bound in {sorted(bound)}, expected {sorted(listed)}")
    pdbs = {d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for d in by_kind.get("PodDisruptionBudget", [])}
    for d in by_kind.get("Deployment", []):
        if d["metadata"]["name"] not in pdbs:
            fail(label, f"Deployment {d['metadata']['name']} has no PodDisruptionBudget")
        if d["spec"]["template"]["spec"].get("affinity", {}).get("podAntiAffinity") is None:
            fail(label, f"Deployment {d['metadata']['name']}: no pod anti-affinity")
    for name, pod in pod_specs(by_kind):
        if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
            fail(label, f"{name}: pod securityContext.runAsNonRoot must be true")
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            want = {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}
            for k, v in want.items():
                if sc.get(k) != v:
                    fail(label, f"{name} container {c['name']}: securityContext.{k} must be {v}")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                fail(label, f"{name} container {c['name']}: capabilities must drop ALL")
            if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                fail(label, f"{name} container {c['name']}: seccompProfile RuntimeDefault")
            if "requests" not in c.get("resources", {}):
                fail(label, f"{name} container {c['name']}: no resource requests")
    policy = values.get("webhook", {}).get("failurePolicy", "Ignore")
    for d in by_kind.get("MutatingWebhookConfiguration", []):
        for w in d["webhooks"]:
            if w.get("failurePolicy") != policy:
                fail(label, f"webhook {w['name']}: failurePolicy {w.get('failurePolicy')} ({policy} expected)")
            if w.get("matchConditions") != kustomize_match_conditions():
                fail(label, f"webhook {w['name']}: matchConditions differ from deploy/webhook's: "
                            f"{w.get('matchConditions')}")
            for problem in match_condition_problems(w.get("matchConditions")):
                fail(label, f"webhook {w['name']}: {problem}")
            self_signed = values.get("webhook", {}).get("certificates", {}).get("mode") == "self-signed"
            injected = "cert-manager.io/inject-ca-from" in d["metadata"].get("annotations", {})
            if injected == self_signed:
                fail(label, f"cainjector annotation {'present' if injected else 'missing'} in "
                            f"{'self-signed' if self_signed else 'cert-manager'} mode")
            excluded = [v for e in w["namespaceSelector"]["matchExpressions"]
                        if e["key"] == "kubernetes.io/metadata.name" for v in e["values"]]
            if NAMESPACE not in excluded:
                fail(label, f"webhook {w['name']} does not exclude the release namespace {NAMESPACE}")
            for namespace in values.get("webhook", {}).get("excludedNamespaces", []):
                if namespace not in excluded:
                    fail(label, f"webhook {w['name']} does not exclude {namespace} (listed in excludedNamespaces)")
    check_network_policy(label, by_kind, values)
    return by_kind


def check_exists(label, kubeconfig, docs):
    for d in docs:
        kind, meta = d["kind"], d["metadata"]
        args = ["get", f"{kind}.{d['apiVersion'].split('/')[0]}" if "/" in d["apiVersion"] else kind, meta["name"],
                "-o", "name"]
        if meta.get("namespace"):
            args += ["-n", meta["namespace"]]
        try:
            kubectl(kubeconfig, *args)
        except RuntimeError as e:
            fail(label, f"{kind} {meta.get('namespace', '')}/{meta['name']} is not in the API server: {e}")


def play_job_controller(kubeconfig, webhook_bin, stop, ran):
    """Runs the certificate Job's container command when the Job appears, then marks it complete."""
    done = set()
    while not stop.is_set():
        try:
            job = json.loads(kubectl(kubeconfig, "get", "jobs", "-n", NAMESPACE, "-o", "json"))
        except RuntimeError:
            job = {"items": []}
        for j in job["items"]:
            uid = j["metadata"]["uid"]
            if uid in done:
                continue
            done.add(uid)
            container = j["spec"]["template"]["spec"]["containers"][0]
            env = {**os.environ, "KUBECONFIG": kubeconfig}
            env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
            out = subprocess.run([webhook_bin, *container.get("args", [])], env=env, capture_output=True, text=True,
                                 timeout=60)
            ran.append((j["metadata"]["name"], out.returncode, (out.stdout + out.stderr).strip()))
            condition = "Complete" if out.returncode == 0 else "Failed"
            status = {"status": {"conditions": [{"type": condition, "status": "True"}],
                                 "succeeded" if out.returncode == 0 else "failed": 1}}
            try:
                kubectl(kubeconfig, "patch", "job", j["metadata"]["name"], "-n", NAMESPACE, "--subresource=status",
                        "--type=merge", "-p", json.dumps(status))
            except RuntimeError as e:
                ran.append((j["metadata"]["name"], -1, f"marking the Job {condition}: {e}"))
        stop.wait(0.2)


async def run(chart, fake_bin, webhook_bin):
    cfg = helm.Configuration(namespace=NAMESPACE)
    lint = await helm.Lint(cfg).run(chart)
    if lint.get("Errors") or any(m.get("Severity", 0) >= 2 for m in lint.get("Messages", [])):
        fail("helm lint", f"errors or warnings: {json.dumps(lint)}")

    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = os.path.join(tmp, "kubeconfig")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = open(os.path.join(tmp, "fake.log"), "w")
        fake = subprocess.Popen([fake_bin, "--listen", f"127.0.0.1:{port}", "--kubeconfig", kubeconfig, "--crds"],
                                stdout=log, stderr=log)
        try:
            deadline = time.time() + 30
            while not os.path.exists(kubeconfig) and time.time() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
            namespaces = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
                          for n in [NAMESPACE, "traffic", "shop"]]
            kubectl(kubeconfig, "apply", "-f", "-",
                    stdin="\n---\n".join(json.dumps(o) for o in
                                          [stand_in_crd(*c) for c in STAND_IN_CRDS] + namespaces))
            cfg = helm.Configuration(namespace=NAMESPACE, kubeconfig=kubeconfig)
            stop, ran = threading.Event(), []
            jobs = threading.Thread(target=play_job_controller, args=(kubeconfig, webhook_bin, stop, ran), daemon=True)
            jobs.start()

            variants = [
                ("defaults", {}),
                ("operator only, Secrets readable in two namespaces",
                 {"webhook": {"enabled": False}, "operator": {"secretReaderNamespaces": ["traffic", "shop"]}}),
                ("webhook only, with monitoring",
                 {"operator": {"enabled": False},
                  "monitoring": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}}),
                ("self-signed certificates", {"webhook": {"certificates": {"mode": "self-signed"}}}),
                ("a NetworkPolicy for the API server's range and a monitoring namespace",
                 {"webhook": {"networkPolicy": {
                     "enabled": True, "apiServerCIDRs": ["10.0.0.0/24", "fd00:10::/64"],
                     "metricsFrom": [{"namespaceSelector": {"matchLabels": {
                         "kubernetes.io/metadata.name": "monitoring"}}}]}}}),
                ("failurePolicy Fail, chosen on purpose with more namespaces excluded",
                 {"webhook": {"failurePolicy": "Fail", "allowFailurePolicyFail": True,
                              "excludedNamespaces": ["kube-system", "kube-node-lease", "cert-manager",
                                                     "calico-system"]}}),
            ]
            for i, (label, values) in enumerate(variants):
                action = helm.Install(cfg) if i == 0 else helm.Upgrade(cfg)
                release = await action.run(RELEASE, chart, values=values, wait=False, timeout=60)
                docs = docs_of(release["manifest"])
                by_kind = check_manifest(label, docs, values)
                check_exists(label, kubeconfig, docs)
                webhook_on = values.get("webhook", {}).get("enabled", True)
                operator_on = values.get("operator", {}).get("enabled", True)
                names = {d["metadata"]["name"] for d in by_kind.get("Deployment", [])}
                want = {n for n, on in [("placement-webhook", webhook_on), ("placement-operator", operator_on)] if on}
                if names != want:
                    fail(label, f"Deployments {sorted(names)}, expected {sorted(want)}")
                live = kubectl(kubeconfig, "get", "deployments", "-n", NAMESPACE, "-o", "name").split()
                if sorted(live) != sorted(f"deployment.apps/{n}" for n in want):
                    fail(label, f"after the upgrade the API server has {live}, expected {sorted(want)}")
                if label.startswith("webhook only"):
                    rules = by_kind.get("PrometheusRule", [])
                    groups = [g["name"] for r in rules for g in r["spec"]["groups"]]
                    with open(os.path.join(chart, "files", "alerts.yaml")) as f:
                        webhook_group = next(g for g in yaml.safe_load(f)["groups"] if g["name"] == "placement-webhook")
                    if groups != ["placement-webhook"]:
                        fail(label, f"the PrometheusRule has the groups {groups}, expected only placement-webhook")
                    elif rules[0]["spec"]["groups"][0] != webhook_group:
                        fail(label, "the PrometheusRule's webhook group differs from files/alerts.yaml")
                if label.startswith("self-signed"):
                    if "Certificate" in by_kind or "CronJob" not in by_kind:
                        fail(label, f"self-signed mode renders {sorted(by_kind)}")
                    hooks = release.get("hooks") or []
                    if not any(h.get("kind") == "Job" or "kind: Job" in h.get("manifest", "") for h in hooks):
                        fail(label, "no post-install/upgrade Job hook")
                    hook_docs = [d for h in hooks for d in docs_of(h.get("manifest", ""))]
                    check_manifest(label + " (hooks)", hook_docs, values)
                    if not ran or ran[-1][1] != 0:
                        fail(label, f"the certificate Job did not run or failed: {ran}")
                    else:
                        print(f"helm chart, {label}: the Job ran `placement-webhook certs`: {ran[-1][2]}")
                    mwc = json.loads(kubectl(kubeconfig, "get", "mutatingwebhookconfiguration", "placement-webhook",
                                             "-o", "json"))
                    if not all(w["clientConfig"].get("caBundle") for w in mwc["webhooks"]):
                        fail(label, "the caBundle is empty after the certificate Job")
                    secret = json.loads(kubectl(kubeconfig, "get", "secret", "placement-webhook-tls", "-n", NAMESPACE,
                                                "-o", "json"))
                    if set(secret.get("data", {})) != {"tls.crt", "tls.key", "ca.crt"}:
                        fail(label, f"the Secret holds {sorted(secret.get('data', {}))}")
                print(f"helm chart, {label}: {len(docs)} objects installed and checked")

            for label, values, needle in [
                ("a failurePolicy that does not exist", {"webhook": {"failurePolicy": "Maybe"}}, "failurePolicy"),
                ("an unknown key", {"webhook": {"replica": 3}}, "replica"),
                ("a decision deadline above the API server's timeout",
                 {"webhook": {"deadlineMillis": 5000, "timeoutSeconds": 3}}, "deadlineMillis"),
                ("failurePolicy Fail without allowFailurePolicyFail",
                 {"webhook": {"failurePolicy": "Fail", "excludedNamespaces": ["kube-system", "kube-node-lease",
                                                                              "cert-manager"]}},
                 "allowFailurePolicyFail"),
                ("failurePolicy Fail allowed but the excluded namespaces not widened",
                 {"webhook": {"failurePolicy": "Fail", "allowFailurePolicyFail": True}}, "excludedNamespaces"),
                ("failurePolicy Fail allowed with kube-system no longer excluded",
                 {"webhook": {"failurePolicy": "Fail", "allowFailurePolicyFail": True,
                              "excludedNamespaces": ["kube-node-lease", "cert-manager"]}}, "kube-system"),
                ("a NetworkPolicy without the API server's ranges",
                 {"webhook": {"networkPolicy": {"enabled": True}}}, "apiServerCIDRs"),
                ("an API server range that is not a CIDR",
                 {"webhook": {"networkPolicy": {"enabled": True, "apiServerCIDRs": ["10.0.0.1"]}}},
                 "apiServerCIDRs"),
            ]:
                try:
                    await helm.Upgrade(cfg).run(RELEASE, chart, values=values, wait=False, timeout=60)
                    fail("invalid values", f"{label}: accepted")
                except helm.HelmError as e:
                    if needle not in str(e):
                        fail("invalid values", f"{label}: the error does not name {needle!r}: {e}")
                    else:
                        print(f"helm chart refuses {label}: {str(e).splitlines()[0][:160]}")
            stop.set()
        finally:
            fake.terminate()
            fake.wait(timeout=10)


def main(argv):
    if len(argv) != 4:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    asyncio.run(run(os.path.abspath(argv[1]), os.path.abspath(argv[2]), os.path.abspath(argv[3])))
    if problems:
        print(f"{len(problems)} problem(s) in the Helm chart:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print("helm chart OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
