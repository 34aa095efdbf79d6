#!/usr/bin/env bash
# Starts the quickstart: two `portico echo` backends and `portico run examples/quickstart`,
# then prints how to reach the Gateway. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/../.."

ADMIN="${PORTICO_ADMIN:-127.0.0.1:9911}"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

portico echo --port 9001 --name echo-v1 --namespace default & pids+=($!)
portico echo --port 9002 --name echo-v2 --namespace default & pids+=($!)
portico run examples/quickstart --admin-address "$ADMIN" & pids+=($!)

# the Gateway's address is assigned at run time: read it from the admin API
python3 - "$ADMIN" <<'PY'
import json, sys, time, urllib.request

admin = sys.argv[1]
url = f"http://{admin}/api/objects?kind=Gateway&namespace=default&name=quickstart"
for _ in range(300):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            items = json.load(r)["items"]
        status = items[0].get("status") or {} if items else {}
        programmed = any(c.get("type") == "Programmed" and c.get("status") == "True"
                         for c in status.get("conditions") or [])
        if status.get("addresses") and programmed:
            address = status["addresses"][0]["value"]
            print(f"\nGateway default/quickstart is programmed. Try:\n\n  curl http://{address}:8080/\n")
            print(f"Objects and status: curl http://{admin}/api/objects   (Ctrl-C to stop)\n")
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit("the gateway did not become ready within 60 s; see the log above")
PY
wait -n "${pids[@]}"
