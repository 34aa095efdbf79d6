"""What the examples' run.sh scripts share: refuse to start beside another instance, and
wait for this instance to give an object its address (stdlib only: run with any python3).

    python3 examples/launch.py ports SCRIPT ADMIN PORT...
        exits 1 naming what is in use: another instance would answer there, and the
        script would report that instance's object as its own.
    python3 examples/launch.py address ADMIN PID KIND NAMESPACE NAME
        prints the address Portico gives the object (a Gateway once Programmed; an Ingress
        once its status.loadBalancer has one), or exits 1 when PID ends or 60 s pass.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.request
from typing import Any


def busy(admin: str, ports: list[int]) -> list[str]:
    host, _, port = admin.rpartition(":")
    found = []
    for h, p, what in [(host or "127.0.0.1", int(port), f"the admin address {admin}"),
                       *(("127.0.0.1", p, f"the echo port {p}") for p in ports)]:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a listener is busy; TIME_WAIT is not
            try:
                s.bind((h, p))
            except OSError:
                found.append(what)
    return found


def ports(script: str, admin: str, echo_ports: list[int]) -> None:
    found = busy(admin, echo_ports)
    if not found:
        return
    hint = ("stop it, or give this one another admin address: PORTICO_ADMIN=127.0.0.1:9921"
            if found == [f"the admin address {admin}"] else "stop it first (the example's backends use fixed ports)")
    sys.exit(f"{script}: {' and '.join(found)} in use (another run?): {hint}")


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except ProcessLookupError:
        return False
    except OSError:
        return True  # no /proc: kill(0) said it exists


def address_of(obj: dict[str, Any]) -> str | None:
    status = obj.get("status") or {}
    if obj.get("kind") == "Ingress":
        found = (status.get("loadBalancer") or {}).get("ingress") or []
        return (found[0].get("ip") or found[0].get("hostname")) if found else None
    programmed = any(c.get("type") == "Programmed" and c.get("status") == "True"
                     for c in status.get("conditions") or [])
    return status["addresses"][0]["value"] if status.get("addresses") and programmed else None


def address(admin: str, pid: int, kind: str, namespace: str, name: str) -> None:
    url = f"http://{admin}/api/objects?kind={kind}&namespace={namespace}&name={name}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the admin API is local
    for _ in range(300):
        if not running(pid):
            sys.exit("portico run ended; see the log above")
        try:
            with opener.open(url, timeout=2) as r:
                items = json.load(r)["items"]
            found = address_of(items[0]) if items else None
            if found:
                print(found)
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"{kind} {namespace}/{name} got no address within 60 s; see the log above")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "ports":
        ports(args[0], args[1], [int(p) for p in args[2:]])
    elif command == "address":
        address(args[0], int(args[1]), *args[2:5])
    else:
        sys.exit(f"unknown command {command!r}")
