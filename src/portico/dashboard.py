"""`portico dashboard`: the controller's topology page (/topology on its admin API) in a
browser, as `istioctl dashboard` and `egctl x dashboard` do.

Kubernetes: lightkube has no port-forward, so `kubectl port-forward` to the controller's
Deployment (kubectl's own kubeconfig handling, SPDY/WebSocket and pod choice); the admin
token, read from the Secret `portico-admin-token` when the user may, goes in the URL's
fragment, which the page reads and browsers never send. Standalone: the admin API is
already local: its URL."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import urllib.parse

from portico.install import NAME

ADMIN_PORT = 9912  # the controller's --health-address port in the rendered Deployment
FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")


def page_url(address: str, token: str | None) -> str:
    return f"http://{address}/topology" + (f"#{urllib.parse.urlencode({'token': token})}" if token else "")


def kubectl_command(kubectl: str, namespace: str, local_port: int, kubeconfig: str | None = None,
                    context: str | None = None) -> list[str]:
    cmd = [kubectl]
    if kubeconfig:
        cmd += ["--kubeconfig", kubeconfig]
    if context:
        cmd += ["--context", context]
    return [*cmd, "-n", namespace, "port-forward", f"deployment/{NAME}", f"{local_port}:{ADMIN_PORT}",
            "--address", "127.0.0.1"]


def find_kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        raise FileNotFoundError("kubectl is not on PATH (lightkube cannot port-forward): install it, or run "
                                f"`kubectl -n portico-system port-forward deployment/{NAME} {ADMIN_PORT}` "
                                "yourself and open http://127.0.0.1:9912/topology")
    return found


class PortForward:
    """`kubectl port-forward` running; `address` once it forwards (it prints the port)."""

    def __init__(self, cmd: list[str], timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     stdin=subprocess.DEVNULL)
        self.address = ""
        self._ready = threading.Event()
        self._stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._errors, daemon=True).start()
        if not self._ready.wait(timeout) or not self.address:
            self.stop()
            raise RuntimeError("kubectl port-forward did not start: " + ("".join(self._stderr).strip()
                                                                         or "no answer"))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not self.address and (m := FORWARDING.search(line)):
                self.address = f"127.0.0.1:{m.group(1)}"
                self._ready.set()
        self._ready.set()  # ended: the constructor stops waiting

    def _errors(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def wait(self) -> int:
        return self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
