#!/usr/bin/env bash
# Starts the quickstart: two `portico echo` backends and `portico run examples/quickstart`,
# then prints how to reach the Gateway. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/../.."

ADMIN="${PORTICO_ADMIN:-127.0.0.1:9911}"

# Another instance (a second `make run`) would answer on these ports: say so and stop
# here, rather than report that instance's Gateway as ours.
python3 - "$ADMIN" 9001 9002 <<'PY' || exit 1
import socket, sys

admin = sys.argv[1]
host, _, port = admin.rpartition(":")
busy = []
for h, p, what in [(host or "127.0.0.1", int(port), f"the admin address {admin}"),
                   *(("127.0.0.1", int(p), f"the echo port {p}") for p in sys.argv[2:])]:
    with socket.socket() as s:
        try:
            s.bind((h, p))
        except OSError:
            busy.append(what)
if busy:
    hint = ("stop it first (the quickstart's echo backends use fixed ports)" if len(busy) > 1 else
            "stop it, or give this one another admin address: PORTICO_ADMIN=127.0.0.1:9921 make run"
            if busy[0].startswith("the admin") else "stop what listens there first")
    sys.exit(f"make run: {' and '.join(busy)} in use (another `make run`?): {hint}")
PY

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
python3 - "$ADMIN" "$portico_pid" <<'PY'
import json, os, sys, time, urllib.request

admin, pid = sys.argv[1], int(sys.argv[2])
url = f"http://{admin}/api/objects?kind=Gateway&namespace=default&name=quickstart"
for _ in range(300):
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] == "Z":
                raise ProcessLookupError
    except ProcessLookupError:
        sys.exit("portico run ended; see the log above")
    except OSError:
        pass
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
