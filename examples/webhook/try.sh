#!/usr/bin/env bash
# Runs the webhook against the fake API server on localhost, registers it as a cluster would (a
# MutatingWebhookConfiguration with a service clientConfig and a caBundle), creates a few pods of
# the Deployment shop/web (strategy: 1 on-demand base, then 1:3 on-demand:spot) and prints where each
# was placed and why. Needs cargo, kubectl and openssl; everything listens on 127.0.0.1 and stops at
# the end. Ports: FAKE_PORT (16443), WEBHOOK_PORT (18443), PROBE_PORT (18080). PODS: how many (8).
set -euo pipefail
cd "$(dirname "$0")/../.."
FAKE_PORT=${FAKE_PORT:-16443}
WEBHOOK_PORT=${WEBHOOK_PORT:-18443}
PROBE_PORT=${PROBE_PORT:-18080}
PODS=${PODS:-8}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cargo build -q -p placement-testkit --bin fake-apiserver
cargo build -q -p placement-webhook --bin placement-webhook
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

# The serving certificate, for the name the API server dials: <service>.<namespace>.svc.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj "/CN=placement-webhook.placement-system.svc" \
  -addext "subjectAltName=DNS:placement-webhook.placement-system.svc" \
  -addext "basicConstraints=critical,CA:FALSE" \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null

"$target_dir/debug/fake-apiserver" --listen "127.0.0.1:$FAKE_PORT" --kubeconfig "$work/kubeconfig" --crds \
  --seed examples/clusters/small.yaml \
  --service "placement-system/placement-webhook=127.0.0.1:$WEBHOOK_PORT" >"$work/fake.log" 2>&1 &
pids+=($!)
export KUBECONFIG="$work/kubeconfig"
for _ in $(seq 50); do [ -s "$KUBECONFIG" ] && break; sleep 0.1; done

"$target_dir/debug/placement-webhook" serve --listen "127.0.0.1:$WEBHOOK_PORT" --probe-listen "127.0.0.1:$PROBE_PORT" \
  --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" >"$work/webhook.log" 2>&1 &
pids+=($!)
ready=""
for _ in $(seq 100); do
  if python3 - "$PROBE_PORT" <<'PY' 2>/dev/null; then ready=yes; break; fi
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=1)
PY
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "the webhook did not become ready; its log:" >&2
  cat "$work/webhook.log" >&2
  exit 1
fi

sed "s|CA_BUNDLE|$(base64 -w0 "$work/tls.crt")|" examples/webhook/webhook-configuration.yaml | kubectl apply -f - >/dev/null
placed=0
for _ in $(seq "$PODS"); do
  line=$(kubectl create -f examples/webhook/new-pod.yaml \
    -o jsonpath='{.metadata.name}{"\t"}{.spec.nodeSelector.capacity}{"\t"}{.metadata.annotations.placement\.dev/decision}{"\n"}')
  echo "$line"
  case "$line" in *strategy*) placed=$((placed + 1)) ;; esac
done
if [ "$placed" -ne "$PODS" ]; then
  echo "only $placed of $PODS pods were placed; the API server's log:" >&2
  cat "$work/fake.log" >&2
  exit 1
fi
