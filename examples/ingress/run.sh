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
# that instance's Ingress as ours (as examples/quickstart/run.sh does).
python3 - "$ADMIN" 9101 <<'PY' || exit 1
import socket, sys

host, _, port = sys.argv[1].rpartition(":")
busy = []
for h, p, what in [(host or "127.0.0.1", int(port), f"the admin address {sys.argv[1]}"),
                   ("127.0.0.1", int(sys.argv[2]), f"the echo port {sys.argv[2]}")]:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a listener is busy; TIME_WAIT is not
        try:
            s.bind((h, p))
        except OSError:
            busy.append(what)
if busy:
    sys.exit(f"examples/ingress/run.sh: {' and '.join(busy)} in use (another run?): stop it first, or set "
             "PORTICO_ADMIN to another address")
PY

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

portico echo --port 9101 --name web-1 --namespace shop & pids+=($!)
portico run examples/ingress --admin-address "$ADMIN" --port-offset "$OFFSET" & pids+=($!)
portico_pid=$!

python3 - "$ADMIN" "$OFFSET" "$portico_pid" <<'PY'
import json, os, sys, time, urllib.request

admin, offset, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
url = f"http://{admin}/api/objects?kind=Ingress&namespace=shop&name=api"
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
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
        with opener.open(url, timeout=2) as r:
            items = json.load(r)["items"]
        found = ((items[0].get("status") or {}).get("loadBalancer") or {}).get("ingress") if items else None
        if found:
            address = found[0]["ip"]
            print(f"\nIngress shop/api is served. Try:\n\n"
                  f"  curl -H 'Host: shop.example.com' http://{address}:{80 + offset}/api/items\n", flush=True)
            print(f"Status: portico status --admin-address {admin}   (Ctrl-C to stop)\n", flush=True)
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit("the Ingress got no address within 60 s; see the log above")
PY
wait -n "${pids[@]}"
