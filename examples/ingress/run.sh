#!/usr/bin/env bash
# Serves the Ingress example as it is: starts the `portico echo` backend the EndpointSlice
# names (127.0.0.1:9101) and `portico run examples/ingress`, then prints how to reach the
# Ingress (its status.loadBalancer address). Ctrl-C stops everything.
# PORTICO_ADMIN (127.0.0.1:9912) and PORTICO_PORT_OFFSET (8000: port 80 -> 8080) can be set.
set -euo pipefail
cd "$(dirname "$0")/../.."

ADMIN="${PORTICO_ADMIN:-127.0.0.1:9912}"
OFFSET="${PORTICO_PORT_OFFSET:-8000}"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

portico echo --port 9101 --name web-1 --namespace shop & pids+=($!)
portico run examples/ingress --admin-address "$ADMIN" --port-offset "$OFFSET" & pids+=($!)

python3 - "$ADMIN" "$OFFSET" <<'PY'
import json, sys, time, urllib.request

admin, offset = sys.argv[1], int(sys.argv[2])
url = f"http://{admin}/api/objects?kind=Ingress&namespace=shop&name=api"
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for _ in range(300):
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
