#!/usr/bin/env bash
# Serves the Ingress example as it is: starts the `portico echo` backend the EndpointSlice
# names (127.0.0.1:9101) and `portico run examples/ingress`, then prints how to reach the
# Ingress (its status.loadBalancer address). Ctrl-C stops everything.
# PORTICO_ADMIN (127.0.0.1:9912) and PORTICO_PORT_OFFSET (8000: port 80 -> 8080) can be set.
set -euo pipefail
cd "$(dirname "$0")/../.."

ADMIN="${PORTICO_ADMIN:-127.0.0.1:9912}"
OFFSET="${PORTICO_PORT_OFFSET:-8000}"

# Another instance would answer on these ports: say so and stop here, rather than report
# that instance's Ingress as ours.
python3 examples/launch.py ports examples/ingress/run.sh "$ADMIN" 9101 || exit 1

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

portico echo --port 9101 --name web-1 --namespace shop & pids+=($!)
portico run examples/ingress --admin-address "$ADMIN" --port-offset "$OFFSET" & pids+=($!)
portico_pid=$!

address=$(python3 examples/launch.py address "$ADMIN" "$portico_pid" Ingress shop api)
printf "\nIngress shop/api is served. Try:\n\n  curl -H 'Host: shop.example.com' http://%s:%s/api/items\n\n" \
  "$address" "$((80 + OFFSET))"
printf 'Status: portico status --admin-address %s   (Ctrl-C to stop)\n\n' "$ADMIN"
wait -n "${pids[@]}"
