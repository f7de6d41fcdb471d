#!/usr/bin/env bash
# Real-cluster end-to-end tests on kind, for a machine with a Docker engine (this project's CI has none).
#
#   deploy/kind/e2e.sh             create the cluster (deploy/kind/cluster.yaml) unless it exists, build
#                                  both images, load them into kind, install the chart, run the tests
#   deploy/kind/e2e.sh --no-build  the same with the images already loaded
#   deploy/kind/e2e.sh --delete    delete the cluster
#
# Environment: CLUSTER (default placement-e2e), TAG (image tag, default e2e), CERTS (the chart's
# webhook.certificates.mode, default self-signed: no cert-manager needed).
#
# The tests are the bodies in placement-webhook/tests/cluster_e2e.rs that also run against the fake API
# server in CI; here they run as `real::*` with PLACEMENT_E2E_KUBECONFIG set. Each test works in its own
# namespace, deleted when it passes and kept for a look when it fails. The cluster is kept: run the
# script again to re-run, or with --delete to remove it.
set -euo pipefail

CLUSTER=${CLUSTER:-placement-e2e}
TAG=${TAG:-e2e}
CERTS=${CERTS:-self-signed}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KUBECONFIG_FILE="$ROOT/target/e2e/kubeconfig"
build=1

case "${1:-}" in
  "") ;;
  --no-build) build=0 ;;
  --delete) exec kind delete cluster --name "$CLUSTER" ;;
  *) echo "usage: $0 [--no-build | --delete]" >&2; exit 2 ;;
esac

for tool in docker kind kubectl helm cargo; do
  command -v "$tool" >/dev/null || { echo "e2e.sh: $tool is not installed" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "e2e.sh: no Docker engine answers (docker info failed)" >&2; exit 1; }

step() { printf '\n== %s\n' "$*"; }

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  step "cluster $CLUSTER exists"
else
  step "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --config "$ROOT/deploy/kind/cluster.yaml" --wait 180s
fi
mkdir -p "$(dirname "$KUBECONFIG_FILE")"
kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG_FILE"
export KUBECONFIG="$KUBECONFIG_FILE"

if [ "$build" = 1 ]; then
  for component in webhook operator; do
    step "building placement/placement-$component:$TAG"
    docker build -f "$ROOT/deploy/docker/$component.Dockerfile" -t "placement/placement-$component:$TAG" "$ROOT"
  done
  step "loading the images into $CLUSTER"
  kind load docker-image --name "$CLUSTER" "placement/placement-webhook:$TAG" "placement/placement-operator:$TAG"
fi

step "installing the chart (certificates: $CERTS)"
kubectl create namespace placement-system --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace placement-system --overwrite \
  pod-security.kubernetes.io/enforce=restricted placement.dev/ignore=true
helm upgrade --install placement "$ROOT/deploy/helm/placement" -n placement-system \
  --set imageRegistry=placement \
  --set webhook.image.tag="$TAG" --set operator.image.tag="$TAG" \
  --set webhook.certificates.mode="$CERTS" \
  --timeout 5m # no --wait: in self-signed mode it would deadlock (docs/helm.md); rollout status below
kubectl -n placement-system rollout status deployment/placement-webhook --timeout 180s
kubectl -n placement-system rollout status deployment/placement-operator --timeout 180s

step "running the real-cluster e2e tests"
cd "$ROOT"
PLACEMENT_E2E_KUBECONFIG="$KUBECONFIG_FILE" \
  cargo test -p placement-webhook --test cluster_e2e -- --ignored --test-threads 2 real::
