#!/usr/bin/env bash
# Starts the quickstart: two `portico echo` backends and `portico run examples/quickstart`,
# then prints how to reach the Gateway. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/../.."

ADMIN="${PORTICO_ADMIN:-127.0.0.1:9911}"

# Another instance (a second `make run`) would answer on these ports: say so and stop
# here, rather than report that instance's Gateway as ours.
python3 examples/launch.py ports "make run" "$ADMIN" 9001 9002 || exit 1

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

portico echo --port 9001 --name echo-v1 --namespace default & pids+=($!)
portico echo --port 9002 --name echo-v2 --namespace default & pids+=($!)
portico run examples/quickstart --admin-address "$ADMIN" & pids+=($!)
portico_pid=$!

# the Gateway's address is assigned at run time: read it from the admin API (of this
# instance: while it runs)
address=$(python3 examples/launch.py address "$ADMIN" "$portico_pid" Gateway default quickstart)
printf '\nGateway default/quickstart is programmed. Try:\n\n  curl http://%s:8080/\n\n' "$address"
printf 'Objects and status: curl http://%s/api/objects   (Ctrl-C to stop)\n\n' "$ADMIN"
wait -n "${pids[@]}"
