#!/usr/bin/env bash
# The real-cluster e2e tests (placement-webhook/tests/cluster_e2e.rs, real::*) against a stand-in cluster,
# for machines without Docker: every part runs as its own process, as in a cluster, and the tests reach
# it only through a kubeconfig, exactly as they reach a kind cluster.
#
#   * the API server: the `fake-apiserver` binary with its workload controllers (Deployments, ReplicaSets,
#     scheduling), the placement CRDs, the workers of deploy/kind/cluster.yaml, and the kustomize base's
#     MutatingWebhookConfiguration (deploy/webhook), its Service mapped to the webhook's local port;
#   * the certificate: `placement-webhook certs`, as the chart's self-signed Job runs it, writes the
#     Secret and the caBundle; the webhook serves the certificate read back from the Secret;
#   * `placement-webhook serve` and `placement-operator run`, with the flags the chart passes.
#
# What this cannot stand in for: a real scheduler, kubelet, controller manager and API server (see
# placement_testkit::workloads); deploy/kind/e2e.sh runs the same tests on kind where Docker runs.
# Decisions get 8 s within timeoutSeconds 10 (chart values webhook.deadlineMillis / timeoutSeconds), as
# in the fake variants: this checks where pods go, not how fast a shared CI machine decides.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
logs() {
  for f in "$work"/*.log; do echo "--- $f (last 40 lines)" >&2; tail -n 40 "$f" >&2; done
}

cargo build -q -p placement-testkit --bin fake-apiserver
cargo build -q -p placement-webhook --bin placement-webhook
cargo build -q -p placement-operator --bin placement-operator
bin=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
api_port=$(free_port); webhook_port=$(free_port); webhook_probe=$(free_port); operator_probe=$(free_port)

# The cluster: the placement-system namespace, the kind workers, the webhook's registration.
python3 - "$work/seed.yaml" <<'PY'
import sys, yaml
kind = yaml.safe_load(open("deploy/kind/cluster.yaml"))
docs = [{"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": "placement-system", "labels": {"placement.dev/ignore": "true"}}}]
for i, node in enumerate(n for n in kind["nodes"] if n["role"] == "worker"):
    name = f"standin-worker-{i}"
    docs.append({"apiVersion": "v1", "kind": "Node",
                 "metadata": {"name": name, "labels": {**node["labels"], "kubernetes.io/hostname": name}},
                 "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                            "conditions": [{"type": "Ready", "status": "True"}]}})
mwc = yaml.safe_load(open("deploy/webhook/mutatingwebhookconfiguration.yaml"))
mwc["metadata"].pop("annotations", None)  # no cert-manager here: `placement-webhook certs` sets the caBundle
for w in mwc["webhooks"]:
    w["timeoutSeconds"] = 10
docs.append(mwc)
yaml.safe_dump_all(docs, open(sys.argv[1], "w"))
PY

"$bin/fake-apiserver" --listen "127.0.0.1:$api_port" --kubeconfig "$work/kubeconfig" --crds --workload-controllers \
  --seed "$work/seed.yaml" --service "placement-system/placement-webhook=127.0.0.1:$webhook_port" >"$work/apiserver.log" 2>&1 &
pids+=($!)
export KUBECONFIG="$work/kubeconfig"
for _ in $(seq 100); do [ -s "$KUBECONFIG" ] && break; sleep 0.1; done
[ -s "$KUBECONFIG" ] || { echo "the fake API server did not start" >&2; logs; exit 1; }

"$bin/placement-webhook" certs --namespace placement-system --secret placement-webhook-tls \
  --webhook-config placement-webhook --service placement-webhook >"$work/certs.log" 2>&1 || { logs; exit 1; }
for key in tls.crt tls.key; do
  kubectl -n placement-system get secret placement-webhook-tls -o "jsonpath={.data.${key//./\\.}}" | base64 -d >"$work/$key"
done

"$bin/placement-webhook" serve --listen "127.0.0.1:$webhook_port" --probe-listen "127.0.0.1:$webhook_probe" \
  --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" --deadline-ms 8000 >"$work/webhook.log" 2>&1 &
pids+=($!)
POD_NAME=placement-operator-standin-0 "$bin/placement-operator" run --kubeconfig "$KUBECONFIG" \
  --probe-listen "127.0.0.1:$operator_probe" --lease-namespace placement-system >"$work/operator.log" 2>&1 &
pids+=($!)

ready() { python3 -c "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:$1/readyz', timeout=1)" 2>/dev/null; }
for _ in $(seq 300); do ready "$webhook_probe" && ready "$operator_probe" && break; sleep 0.1; done
if ! { ready "$webhook_probe" && ready "$operator_probe"; }; then
  echo "the webhook or the operator did not become ready" >&2
  logs
  exit 1
fi
echo "stand-in cluster ready: API server 127.0.0.1:$api_port, webhook :$webhook_port, operator probes :$operator_probe"

if ! PLACEMENT_E2E_KUBECONFIG="$KUBECONFIG" PLACEMENT_E2E_PATIENCE_SECONDS=60 cargo test -q -p placement-webhook --test cluster_e2e -- \
    --ignored --test-threads 2 real::; then
  logs
  exit 1
fi
