#!/usr/bin/env bash
# Run the upstream Gateway API conformance suite against Portico in a kind cluster.
#
# Needs Docker, kind, kubectl, Go and Python 3.11+; cannot run where Docker cannot
# (not on the team's development machines): see hack/README.md.
#
#   hack/kind-conformance.sh            # cluster, install, suite, report, cluster deleted
#   KEEP_CLUSTER=1 hack/kind-conformance.sh
#
# Writes conformance-report.yaml (the suite's ConformanceReport) in the current directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${CLUSTER:-portico-conformance}"
REPORT="${REPORT:-$PWD/conformance-report.yaml}"
WORK="${WORK:-$(mktemp -d)}"
PORTICO="${PORTICO:-portico}"                     # the CLI (pip install -e . first)
PYTHON="${PYTHON:-python3}"                       # the Python it is installed in
VERSION="$("$PORTICO" --version | awk '{print $2}')"
IMAGE="ghcr.io/portico-dev/portico:${VERSION}"    # the image deploy/controller.yaml names
# the Gateway API commit the bundled CRDs come from (src/portico/crds/README.md)
GATEWAY_API_COMMIT="$(sed -n 's/.*upstream commit `\([0-9a-f]\{40\}\)`.*/\1/p' "$ROOT/src/portico/crds/README.md")"

cleanup() {
  [[ -n "${CLOUD_PROVIDER_PID:-}" ]] && kill "$CLOUD_PROVIDER_PID" 2>/dev/null || true
  [[ -z "${KEEP_CLUSTER:-}" ]] && kind delete cluster --name "$CLUSTER" || true
}
trap cleanup EXIT

echo "== kind cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --wait 120s
# LoadBalancer addresses for the Gateways' Services (kind has no load balancer)
go install sigs.k8s.io/cloud-provider-kind@latest
"$(go env GOPATH)/bin/cloud-provider-kind" >"$WORK/cloud-provider-kind.log" 2>&1 &
CLOUD_PROVIDER_PID=$!

echo "== controller image $IMAGE"
docker build -t "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

echo "== precheck"
"$PORTICO" install check

echo "== install from deploy/"
kubectl apply --server-side -k "$ROOT/deploy"
kubectl -n portico-system rollout status deployment/portico-controller --timeout=180s
kubectl apply --server-side -f "$ROOT/hack/gatewayclass.yaml"
kubectl wait --for=condition=Accepted gatewayclass/portico --timeout=60s

echo "== Gateway API conformance at $GATEWAY_API_COMMIT"
git clone --quiet https://github.com/kubernetes-sigs/gateway-api "$WORK/gateway-api"
git -C "$WORK/gateway-api" checkout --quiet "$GATEWAY_API_COMMIT"
FEATURES="$("$PYTHON" -c 'from portico.translator.features import SUPPORTED_FEATURES; print(",".join(SUPPORTED_FEATURES))')"
(cd "$WORK/gateway-api" && go test ./conformance -run TestConformance -timeout 90m -args \
  --gateway-class=portico --supported-features="$FEATURES" \
  --organization=portico-dev --project=portico --url=https://github.com/portico-dev/portico \
  --version="v$VERSION" --contact=https://github.com/portico-dev/portico/issues --mode=default \
  --report-output="$REPORT") || STATUS=$?

echo "== report: $REPORT"
cat "$REPORT" 2>/dev/null || echo "(no report written)"
kubectl -n portico-system logs deployment/portico-controller --tail=200 >"$WORK/controller.log" 2>&1 || true
echo "controller log: $WORK/controller.log"
exit "${STATUS:-0}"
