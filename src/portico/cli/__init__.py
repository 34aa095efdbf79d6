"""The `portico` command: `portico run` (standalone gateway) and `portico echo` (test backend)."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from portico import CONTROLLER_NAME
from portico.cli.shutdown import shutdown_app
from portico.cli.validate import validate_command
from portico.infra.addresses import DEFAULT_POOL

if TYPE_CHECKING:
    from portico.exposure import Exposure

app = typer.Typer(add_completion=True, no_args_is_help=True,
                  help="Gateway API on Envoy: standalone (run) or Kubernetes (controller).",
                  context_settings={"help_option_names": ["-h", "--help"]})

DEFAULT_ADMIN = "127.0.0.1:9911"  # Envoy's own admin is a Unix socket, never a TCP port


def _version(value: bool) -> None:
    if value:
        from portico import __version__

        typer.echo(f"portico {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Gateway API on Envoy, standalone."""


# options the commands that read a running instance (or manifests) share
ManifestFiles = Annotated[list[Path] | None, typer.Option(
    "-f", "--file", exists=True, show_default=False,
    help="Translate these manifests here instead of asking a running instance.")]
AdminAddress = Annotated[str, typer.Option("--admin-address", help="admin API of a running portico")]
AdminToken = Annotated[str | None, typer.Option(envvar="PORTICO_ADMIN_TOKEN", show_default=False,
                                                help="Bearer token of the admin API, if it has one.")]
AdminTokenFile = Annotated[Path | None, typer.Option(
    envvar="PORTICO_ADMIN_TOKEN_FILE", show_default=False, dir_okay=False,
    help="A file whose first line is the admin API's bearer token (unlike --admin-token, not "
         "readable by every local user in the process list).")]


def admin_token_of(token: str | None, token_file: Path | None) -> str | None:
    """The admin token from --admin-token-file, PORTICO_ADMIN_TOKEN or --admin-token, with a
    warning for the flag: any local user reads a command line (ps, /proc/PID/cmdline)."""
    from portico.admin import read_token_file

    if token_file is not None:
        if token is not None:
            raise typer.BadParameter("give the token once: a file or a value", param_hint="--admin-token-file")
        try:
            return read_token_file(str(token_file))
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--admin-token-file") from None
    if token is not None and any(a == "--admin-token" or a.startswith("--admin-token=") for a in sys.argv[1:]):
        logging.getLogger("portico").warning(
            "--admin-token is readable by every local user (ps, /proc/PID/cmdline): use --admin-token-file or "
            "the PORTICO_ADMIN_TOKEN environment variable")
    return token


def parse_host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise typer.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def setup_logging(level: str, fmt: str = "text") -> None:
    from portico.logs import setup

    try:
        setup(level, fmt)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--log-format") from None


def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)` and set `stop` on SIGINT/SIGTERM, so that it can shut down cleanly."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


@app.command()
def run(
    paths: Annotated[list[Path], typer.Argument(help="Manifest files or directories (watched).", exists=True)],
    admin_address: Annotated[str, typer.Option(help="HOST:PORT of the admin API.")] = DEFAULT_ADMIN,
    port_offset: Annotated[int, typer.Option(help="Added to every listener port (non-root users).")] = 0,
    address_pool: Annotated[str, typer.Option(help="Loopback CIDR Gateway addresses come from.")] = DEFAULT_POOL,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    controller_name: Annotated[str, typer.Option(help="GatewayClasses with this controllerName are served.")]
    = CONTROLLER_NAME,
    envoy_per_gateway: Annotated[bool, typer.Option(help="One Envoy process (and xDS group) per Gateway.")] = False,
    envoy_replicas: Annotated[int, typer.Option(min=1, max=8, help="Envoys per group sharing its listeners: "
                                                "one crashing loses only its in-flight requests.")] = 1,
    admin_token: Annotated[str | None, typer.Option(envvar="PORTICO_ADMIN_TOKEN", show_default=False,
                                                    help="Bearer token the admin API's /api/ endpoints require.")]
    = None,
    admin_token_file: AdminTokenFile = None,
    state_dir: Annotated[str | None, typer.Option(help="xDS socket, Envoy work dirs, addresses (default: "
                                                       "portico-<uid>/<admin address> in the runtime dir).")] = None,
    log_format: Annotated[str, typer.Option(help="text or json (one JSON object a line).")] = "text",
) -> None:
    """Serve the Gateway API manifests under PATH... with Envoy, applying changes live."""
    setup_logging(log_level, log_format)
    admin_host, admin_port = parse_host_port(admin_address)
    from portico.provider.bulk import BulkPool

    # The bulk workers first: their forkserver imports the parsers and compiles the CRD
    # schemas while this process imports the rest (0.6-0.8 s); a cold start's manifests
    # wait for them (issue 30 item 5).
    bulk = BulkPool()
    bulk.start()
    try:
        token = admin_token_of(admin_token, admin_token_file)
        from portico.standalone import Options, serve

        options = Options(
            paths=[str(p) for p in paths], admin_host=admin_host, admin_port=admin_port,
            port_offset=port_offset, address_pool=address_pool,
            envoy_log_level="info" if log_level.lower() == "debug" else "warning",
            controller_name=controller_name, envoy_per_gateway=envoy_per_gateway, state_dir=state_dir,
            envoy_replicas=envoy_replicas, admin_token=token,
        )
        run_until_signalled(lambda stop: serve(options, stop, bulk))
    except (OSError, ValueError, RuntimeError, TimeoutError) as e:  # e.g. admin port taken, no Envoy
        logging.getLogger("portico").error("%s", e)
        if isinstance(e, OSError) and e.errno == errno.EADDRINUSE:  # the admin API is its only TCP port
            logging.getLogger("portico").error(
                "the admin address %s is in use (another portico run?): stop that one, or give this one "
                "another with --admin-address HOST:PORT", admin_address)
        raise typer.Exit(1) from None
    finally:
        bulk.close()  # (serve closes it too: before the state directory goes)


@app.command()
def controller(
    kubeconfig: Annotated[str | None, typer.Option(help="Kubeconfig file (default: in-cluster, then $KUBECONFIG "
                                                        "or ~/.kube/config).", show_default=False)] = None,
    context: Annotated[str | None, typer.Option(help="Kubeconfig context.", show_default=False)] = None,
    namespace: Annotated[str, typer.Option(envvar="POD_NAMESPACE", help="Namespace the controller runs in "
                                                                         "(its Lease).")] = "portico-system",
    controller_name: Annotated[str, typer.Option(help="GatewayClasses with this controllerName are served.")]
    = CONTROLLER_NAME,
    leader_elect: Annotated[bool, typer.Option(help="Elect a leader among replicas (only it writes status).")]
    = True,
    lease_name: Annotated[str, typer.Option(help="Name of the coordination.k8s.io Lease.")] = "portico-controller",
    lease_duration: Annotated[float, typer.Option(help="Seconds a lease lasts without renewal.")] = 15.0,
    renew_deadline: Annotated[float, typer.Option(help="Seconds a leader keeps trying to renew.")] = 10.0,
    retry_period: Annotated[float, typer.Option(help="Seconds between lease attempts.")] = 2.0,
    health_address: Annotated[str, typer.Option(help="HOST:PORT of /healthz, /readyz and the admin API.")]
    = "127.0.0.1:9912",
    data_plane: Annotated[str, typer.Option(help="Where Envoy runs: 'kubernetes' (a Deployment per Gateway, "
                                                 "fed over mutual-TLS xDS) or 'local' (processes on this "
                                                 "machine).")] = "kubernetes",
    xds_address: Annotated[str, typer.Option(help="HOST:PORT the mutual-TLS xDS server listens on.")]
    = "0.0.0.0:18000",
    xds_service: Annotated[str, typer.Option(help="The name Envoy pods reach xDS at (and check in its "
                                                  "certificate).")] = "portico-xds.portico-system.svc",
    envoy_image: Annotated[str, typer.Option(help="Envoy image of the Deployments (default: the official "
                                                  "image of the bundled Envoy's version).",
                                             show_default=False)] = "",
    shutdown_manager_image: Annotated[str, typer.Option(help="Image of the Envoy pods' shutdown-manager container "
                                                             "(default: this version's controller image).",
                                                        show_default=False)] = "",
    allow_link_local_backends: Annotated[bool, typer.Option(
        help="Let every Backend and XBackend name link-local and cloud metadata addresses (169.254.0.0/16, "
             "fe80::/10, fd00:ec2::254, 100.100.100.200, metadata.google.internal): refused by default, they "
             "hold the node's cloud credentials; PorticoProxy spec.localBackends allows them per namespace.")]
    = False,
    port_offset: Annotated[int, typer.Option(help="Added to every listener port (data plane 'local').")] = 0,
    address_pool: Annotated[str, typer.Option(help="Loopback CIDR Gateway addresses come from.")] = DEFAULT_POOL,
    state_dir: Annotated[str | None, typer.Option(help="xDS socket and Envoy work dirs.", show_default=False)]
    = None,
    admin_token: Annotated[str | None, typer.Option(envvar="PORTICO_ADMIN_TOKEN", show_default=False,
                                                    help="Bearer token the admin API's /api/ endpoints require.")]
    = None,
    admin_token_file: AdminTokenFile = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: Annotated[str, typer.Option(help="text or json (one JSON object a line).")] = "text",
) -> None:
    """Kubernetes mode: watch the cluster, serve its Gateways, write status (as leader)."""
    from lightkube.core.exceptions import ConfigError

    from portico.controller import ControllerOptions, serve_controller

    setup_logging(log_level, log_format)
    health_host, health_port = parse_host_port(health_address)
    xds_host, xds_port = parse_host_port(xds_address)
    options = ControllerOptions(
        kubeconfig=kubeconfig, context=context, namespace=namespace, controller_name=controller_name,
        leader_elect=leader_elect, lease_name=lease_name, lease_duration=lease_duration,
        renew_deadline=renew_deadline, retry_period=retry_period, health_host=health_host,
        health_port=health_port, data_plane=data_plane, state_dir=state_dir, port_offset=port_offset,
        address_pool=address_pool, envoy_log_level="info" if log_level.lower() == "debug" else "warning",
        xds_listen_host=xds_host, xds_listen_port=xds_port, xds_service=xds_service,
        xds_service_port=xds_port, envoy_image=envoy_image, shutdown_image=shutdown_manager_image,
        allow_link_local_backends=allow_link_local_backends,
        admin_token=admin_token_of(admin_token, admin_token_file),
    )
    try:
        run_until_signalled(lambda stop: serve_controller(options, stop))
    except (OSError, ValueError, RuntimeError, TimeoutError, ConfigError) as e:  # e.g. no kubeconfig, port taken
        logging.getLogger("portico").error("%s", e)
        raise typer.Exit(1) from None


@app.command("config-dump")
def config_dump(
    gateway: Annotated[str | None, typer.Option(help="Only this Gateway (namespace/name).", show_default=False)]
    = None,
    xds: Annotated[bool, typer.Option("--xds/--ir", help="The Envoy resources per xDS group, or the IR "
                                                        "per Gateway.")] = False,
    envoy: Annotated[str | None, typer.Option(help="Instead: the config_dump of the Envoy of this xDS group "
                                                   "(running instance only; 'portico' is the one Envoy).",
                                              show_default=False)] = None,
    file: ManifestFiles = None,
    infra: Annotated[str | None, typer.Option(help="Instead, with -f: the objects each Gateway's data plane "
                                                   "would be in this infrastructure ('kubernetes'), as YAML.",
                                              show_default=False)] = None,
    admin_address: AdminAddress = DEFAULT_ADMIN,
    admin_token: AdminToken = None,
    admin_token_file: AdminTokenFile = None,
) -> None:
    """Print what Envoy is (or would be) sent: the IR per Gateway or the xDS resources, keys redacted."""
    import json

    fmt = "envoy" if envoy else "xds" if xds else "ir"
    if file and envoy:
        raise typer.BadParameter("--envoy asks a running instance: not with -f", param_hint="--envoy")
    if infra is not None:
        if infra != "kubernetes" or not file:
            raise typer.BadParameter("--infra kubernetes, with -f FILE", param_hint="--infra")
        from portico.infradump import offline_kubernetes_objects
        from portico.install import dump_all

        planes = offline_kubernetes_objects([str(p) for p in file], gateway)
        if gateway and not planes:
            typer.echo(f"portico config-dump: no Gateway {gateway} (of ours in these files)", err=True)
            raise typer.Exit(1)
        for name, objects in planes.items():
            sys.stdout.write(f"# Gateway {name}\n" + dump_all(objects) + ("---\n" if len(planes) > 1 else ""))
        return
    if file:
        from portico.standalone import offline

        data = offline([str(p) for p in file]).diagnostics.config_dump(gateway, fmt)
    else:
        from portico.cli.status import get_json

        try:
            data = get_json(admin_address, "/api/config_dump", {"gateway": gateway, "format": fmt, "group": envoy},
                            admin_token_of(admin_token, admin_token_file))
        except OSError as e:
            typer.echo(f"portico config-dump: {e}", err=True)
            raise typer.Exit(1) from None
    if gateway and not any(data.values()):  # ({} or {"gateways": {}}: a Gateway there is would be named)
        typer.echo(f"portico config-dump: no Gateway {gateway} (of ours"
                   f"{' in these files' if file else ''}; `portico status` lists them)", err=True)
        raise typer.Exit(1)
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


@app.command("proxy-status")
def proxy_status_command(
    output: Annotated[str, typer.Option("-o", "--output", help="table or json")] = "table",
    admin_address: AdminAddress = DEFAULT_ADMIN,
    admin_token: AdminToken = None,
    admin_token_file: AdminTokenFile = None,
) -> None:
    """Every Envoy connected to a running portico: its Gateway, node, address, the xDS version it applied
    against the newest, and the last configuration it rejected. Exit 1 when one is not in sync."""
    import json

    from portico.cli.status import get_json
    from portico.proxystatus import table

    if output not in ("table", "json"):
        raise typer.BadParameter("output must be table or json", param_hint="--output")
    try:
        items = get_json(admin_address, "/api/proxies", {}, admin_token_of(admin_token, admin_token_file))["items"]
    except OSError as e:
        typer.echo(f"portico proxy-status: {e}", err=True)
        raise typer.Exit(1) from None
    if output == "json":
        sys.stdout.write(json.dumps({"items": items}, indent=2) + "\n")
    elif not items:
        typer.echo("no Envoy is connected")
    else:
        sys.stdout.write("\n".join(table(items)) + "\n")
    if any(p["state"] != "SYNCED" for p in items):
        raise typer.Exit(1)


@app.command()
def analyze(
    file: ManifestFiles = None,
    output: Annotated[str, typer.Option("-o", "--output", help="text or json")] = "text",
    admin_address: AdminAddress = DEFAULT_ADMIN,
    admin_token: AdminToken = None,
    admin_token_file: AdminTokenFile = None,
    controller_name: Annotated[str, typer.Option(help="Whose status entries to read.")] = CONTROLLER_NAME,
) -> None:
    """Lint manifests (-f, translated here) or what a running portico holds (a controller: the cluster):
    every problem a status reports, and shadowed routes, Services without endpoints, unused
    ReferenceGrants and policies targeting nothing. Exit 1 when there is an error."""
    import dataclasses
    import json

    from portico.analyze import analyze as lint
    from portico.analyze import lines

    if output not in ("text", "json"):
        raise typer.BadParameter("output must be text or json", param_hint="--output")
    objects, exposures = _analyzed(file, admin_address, admin_token, admin_token_file, controller_name)
    findings = lint(objects, controller_name, exposures)
    if output == "json":
        sys.stdout.write(json.dumps({"findings": [dataclasses.asdict(f) for f in findings]}, indent=2) + "\n")
    else:
        sys.stdout.write("\n".join(lines(findings) or ["no problems found"]) + "\n")
    if any(f.level == "error" for f in findings):
        raise typer.Exit(1)


@app.command()
def dashboard(
    kubernetes: Annotated[bool, typer.Option("--kubernetes/--standalone", help="Port-forward to the controller "
                                             "in a cluster (kubectl port-forward), or open a local portico's "
                                             "admin API.")] = False,
    namespace: Annotated[str, typer.Option("-n", "--namespace", help="The controller's namespace.")]
    = "portico-system",
    port: Annotated[int, typer.Option(help="Local port of the forward (0: any free one).")] = 0,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    browser: Annotated[bool, typer.Option("--browser/--no-browser", help="Open the page in a browser.")] = True,
    admin_address: AdminAddress = DEFAULT_ADMIN,
    admin_token: AdminToken = None,
    admin_token_file: AdminTokenFile = None,
) -> None:
    """Open the topology page: of the controller in a cluster (--kubernetes: kubectl port-forward until
    Ctrl-C), or of a local `portico run` (its admin API's URL)."""
    import webbrowser

    from portico.dashboard import PortForward, find_kubectl, kubectl_command, page_url

    token = admin_token_of(admin_token, admin_token_file)
    if not kubernetes:
        url = page_url(admin_address, token)
        typer.echo(url)
        if browser:
            webbrowser.open(url)
        return
    if token is None:
        from portico.admintoken import read
        from portico.controller import ControllerOptions, client_for

        async def read_token() -> bool:
            nonlocal token
            client = client_for(ControllerOptions(kubeconfig=kubeconfig, context=context))
            try:
                token = await read(client, namespace)
            finally:
                await client.close()
            return True

        _kube(read_token)
    try:
        forward = PortForward(kubectl_command(find_kubectl(), namespace, port, kubeconfig, context))
    except (OSError, RuntimeError) as e:
        typer.echo(f"portico dashboard: {e}", err=True)
        raise typer.Exit(1) from None
    url = page_url(forward.address, token)
    typer.echo(f"{url}\n(forwarding to deployment/portico-controller in {namespace}; Ctrl-C stops)")
    if token is None:
        typer.echo("no admin token readable (Secret portico-admin-token): the page asks the API without one",
                   err=True)
    if browser:
        webbrowser.open(url)
    try:
        code = forward.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        forward.stop()
    if code:
        raise typer.Exit(1)


@app.command()
def describe(
    target: Annotated[str, typer.Argument(help="KIND/NAME, e.g. httproute/web or gateway/gw.")],
    namespace: Annotated[str | None, typer.Option("-n", "--namespace", help="The object's namespace.",
                                                  show_default=False)] = None,
    file: ManifestFiles = None,
    admin_address: AdminAddress = DEFAULT_ADMIN,
    admin_token: AdminToken = None,
    admin_token_file: AdminTokenFile = None,
    controller_name: Annotated[str, typer.Option(help="Whose status entries to read.")] = CONTROLLER_NAME,
) -> None:
    """An object's conditions in words, what is attached to it, and what to do about each problem."""
    from portico.describe import describe as describe_object
    from portico.describe import find, not_found

    kind, sep, name = target.partition("/")
    if not sep or not name:
        raise typer.BadParameter("expected KIND/NAME", param_hint="TARGET")
    objects = _objects(file, admin_address, admin_token, admin_token_file, "describe")
    obj = find(objects, kind, name, namespace)
    if obj is None:
        typer.echo(f"portico describe: {not_found(objects, kind, name, namespace)}", err=True)
        raise typer.Exit(1)
    sys.stdout.write("\n".join(describe_object(obj, objects, controller_name)) + "\n")


@app.command()
def explain(
    host: Annotated[str, typer.Option(help="The Host header.")],
    port: Annotated[int | None, typer.Option(help="The listener port the request arrives on.",
                                             show_default=False)] = None,
    listener: Annotated[str | None, typer.Option(help="Or the listener's name (its port is used).",
                                                 show_default=False)] = None,
    path: Annotated[str, typer.Option(help="Path and query, e.g. /v2/items?debug=1.")] = "/",
    query: Annotated[list[str] | None, typer.Option("--query", help="name=value, added to the path's query "
                                                                    "(repeatable).", show_default=False)] = None,
    method: Annotated[str, typer.Option("-X", "--method")] = "GET",
    header: Annotated[list[str] | None, typer.Option("-H", "--header", help="name:value (repeatable).",
                                                     show_default=False)] = None,
    sni: Annotated[str | None, typer.Option(help="TLS server name (HTTPS listeners).", show_default=False)]
    = None,
    gateway: Annotated[str | None, typer.Option(help="namespace/name (default: the first Gateway on the port).",
                                                show_default=False)] = None,
    file: ManifestFiles = None,
    admin_address: AdminAddress = DEFAULT_ADMIN,
    admin_token: AdminToken = None,
    admin_token_file: AdminTokenFile = None,
) -> None:
    """Which listener, virtual host and route a request would take, and why (or the nearest routes)."""
    import urllib.parse

    if (port is None) == (listener is None):
        raise typer.BadParameter("give --port or --listener", param_hint="--port")
    if query:
        path += ("&" if "?" in path else "?") + urllib.parse.urlencode([q.partition("=")[::2] for q in query])
    headers = []
    for h in header or []:
        name, sep, value = h.partition(":")
        if not sep:
            raise typer.BadParameter(f"expected name:value, got {h!r}", param_hint="--header")
        headers.append((name.strip(), value.strip()))
    if file:
        from portico.standalone import offline

        result = offline([str(p) for p in file]).diagnostics.explain(port or 0, host, path, method, tuple(headers),
                                                                     sni, gateway, listener)
    else:
        from portico.cli.status import get_json

        params = urllib.parse.urlencode([("port", str(port or 0)), ("host", host), ("path", path),
                                         ("method", method), *(("header", f"{n}:{v}") for n, v in headers),
                                         *((k, v) for k, v in (("sni", sni), ("gateway", gateway),
                                                                ("listener", listener)) if v)])
        try:
            result = get_json(admin_address, f"/api/explain?{params}", {}, admin_token_of(admin_token,
                                                                                          admin_token_file))
        except OSError as e:
            typer.echo(f"portico explain: {e}", err=True)
            raise typer.Exit(1) from None
    if "error" in result:
        typer.echo(f"portico explain: {result['error']}", err=True)
        raise typer.Exit(1)
    sys.stdout.write("\n".join([f"gateway: {result['gateway']}", *result["lines"]]) + "\n")


@app.command()
def convert(
    paths: Annotated[list[Path], typer.Argument(help="Manifest files or directories holding Ingress objects.",
                                                exists=True)],
    output: Annotated[str, typer.Option("-o", "--output", help="yaml or json")] = "yaml",
    gateway_class: Annotated[str, typer.Option(help="The GatewayClass the Gateways use.")] = "portico",
    provider: Annotated[str, typer.Option(help="Whose annotations and defaults to read (ingress-nginx).")
                        ] = "ingress-nginx",
    report: Annotated[bool, typer.Option("--report", help="Print a migration report (Markdown) instead: per "
                                                          "Ingress each annotation converted, converted with a "
                                                          "difference, or not converted, and a summary.")] = False,
) -> None:
    """Ingress in, Gateway API out (GatewayClass, Gateways, HTTPRoutes, Portico policies); what is not
    converted, or differs, is listed with its reason."""
    import json

    import yaml

    from portico.ingress import comment
    from portico.ingress import convert as convert_ingress
    from portico.provider.manifests import load_file, manifest_files

    inputs = [doc.raw for f in manifest_files([str(p) for p in paths]) for doc in load_file(f).documents]
    try:
        result = convert_ingress(inputs, gateway_class, provider=provider)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--provider") from None
    if report:
        from portico.ingress.report import render

        sys.stdout.write(render(result, provider))
        return
    if output == "json":
        reports = [{"ingress": r.ingress, "notes": r.notes, "annotations": [
            {"annotation": a, "outcome": o, "detail": d} for a, o, d in r.annotations]} for r in result.reports]
        sys.stdout.write(json.dumps({"objects": result.objects, "notConverted": result.not_converted,
                                     "report": reports}, indent=2) + "\n")
        return
    if output != "yaml":
        raise typer.BadParameter("output must be yaml or json", param_hint="--output")
    notes = "".join(comment(n) for n in result.not_converted)
    sys.stdout.write(notes + yaml.safe_dump_all(result.objects, sort_keys=False))


install_app = typer.Typer(no_args_is_help=True, help="Install Portico in a Kubernetes cluster.")
app.add_typer(install_app, name="install")


@install_app.command("render")
def install_render(
    namespace: Annotated[str, typer.Option(help="Namespace of the controller.")] = "portico-system",
    image: Annotated[str, typer.Option(help="Controller image.", show_default=False)] = "",
    replicas: Annotated[int, typer.Option(min=1, help="Controller replicas (one leads).")] = 2,
    output_dir: Annotated[Path | None, typer.Option(help="Write a kustomize directory (deploy/) instead.",
                                                    show_default=False)] = None,
) -> None:
    """Print the CRDs, RBAC, controller and persona roles as YAML (for kubectl apply --server-side -f -)."""
    from portico.install import render_files, render_yaml

    if output_dir is None:
        sys.stdout.write(render_yaml(namespace=namespace, image=image, replicas=replicas))
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, text in render_files(namespace=namespace, image=image, replicas=replicas).items():
        (output_dir / name).write_text(text)


KubeconfigOption = Annotated[str | None, typer.Option(help="Kubeconfig file (default: in-cluster, then "
                                                           "$KUBECONFIG or ~/.kube/config).", show_default=False)]
ContextOption = Annotated[str | None, typer.Option(help="Kubeconfig context.", show_default=False)]


@install_app.command("check")
def install_check(
    namespace: Annotated[str, typer.Option(help="Namespace of the controller.")] = "portico-system",
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Before installing: the API answers, the Gateway API CRDs are a supported bundle, no other install is
    in the way, and you may create everything the render holds. Exit 1 when something fails."""
    from portico.controller import ControllerOptions, client_for
    from portico.lifecycle import check

    async def main() -> bool:
        client = client_for(ControllerOptions(kubeconfig=kubeconfig, context=context))
        try:
            report = await check(client, namespace)
        finally:
            await client.close()
        for f in report.findings:
            typer.echo(f"{'ok' if f.ok else 'FAIL':4}  {f.check:8} {f.message}")
        return report.ok

    if not _kube(main):
        raise typer.Exit(1)


@install_app.command("uninstall")
def install_uninstall(
    namespace: Annotated[str, typer.Option(help="Namespace of the controller.")] = "portico-system",
    crds: Annotated[bool, typer.Option("--crds", help="Delete the CRDs too: every Gateway, route and policy "
                                                      "in the cluster goes with them.")] = False,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Delete the controller, what it generated for every Gateway, the GatewayClass finalizer it keeps, and
    everything `install render` holds (the CRDs only with --crds)."""
    from portico.controller import ControllerOptions, client_for
    from portico.lifecycle import uninstall

    async def main() -> bool:
        client = client_for(ControllerOptions(kubeconfig=kubeconfig, context=context))
        try:
            await uninstall(client, namespace, crds=crds, say=typer.echo)
        finally:
            await client.close()
        if not crds:
            typer.echo("kept the CRDs (and so the Gateway API objects): --crds deletes them")
        return True

    _kube(main)


@install_app.command("adopt")
def install_adopt(
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """After an upgrade: delete the per-Gateway objects an older release named otherwise, once the
    controller has made their replacements. Exit 1 while some still wait for theirs."""
    from portico.controller import ControllerOptions, client_for
    from portico.lifecycle import adopt

    async def main() -> bool:
        client = client_for(ControllerOptions(kubeconfig=kubeconfig, context=context))
        try:
            deleted, waiting = await adopt(client, say=typer.echo)
        finally:
            await client.close()
        if not deleted and not waiting:
            typer.echo("nothing named by an older release")
        return not waiting

    if not _kube(main):
        raise typer.Exit(1)


def _kube(main: Callable[[], Coroutine[Any, Any, bool]]) -> bool:
    """Run a command against a cluster: its errors as one line and exit 1."""
    import httpx2
    from lightkube.core.exceptions import ConfigError

    try:
        return asyncio.run(main())
    except (httpx2.HTTPError, OSError, ConfigError) as e:
        typer.echo(f"portico: {e}", err=True)
        raise typer.Exit(1) from None


@app.command()
def echo(
    port: Annotated[int, typer.Option(help="Port to listen on.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    name: Annotated[str, typer.Option(help="Reported as the pod name.")] = "echo",
    namespace: Annotated[str, typer.Option(help="Reported as the namespace.")] = "",
    service: Annotated[str, typer.Option(help="Reported as the service.")] = "",
    grpc_port: Annotated[int | None, typer.Option(help="Also serve the gRPC echo service (with server "
                                                       "reflection) on this port.")] = None,
    tls_port: Annotated[int | None, typer.Option(help="Also serve the echo over TLS on this port, with a "
                                                      "self-signed certificate for --tls-name.")] = None,
    tls_name: Annotated[list[str] | None, typer.Option(help="A name of the TLS certificate (repeatable; "
                                                            "default *.example.local and localhost).",
                                                       show_default=False)] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """A backend answering every request with a JSON echo of it (HTTP/1.1, h2c, WebSocket; gRPC; TLS)."""
    import dataclasses

    from portico.echo import EchoServer, Identity, self_signed_tls, serve_until
    from portico.echo.grpc import GRPCEchoServer

    setup_logging(log_level)
    identity = Identity(pod=name, namespace=namespace, service=service, port=port)

    async def serve_all(stop: asyncio.Event) -> None:
        servers = [serve_until(EchoServer(identity, host, port), f"echo {identity.pod} on {host}", stop)]
        if tls_port is not None:
            tls = self_signed_tls(tls_name or ["*.example.local", "localhost"])
            tls_identity = dataclasses.replace(identity, port=tls_port)  # (httpPort: the port asked)
            servers.append(serve_until(EchoServer(tls_identity, host, tls_port, tls=tls),
                                       f"TLS echo {identity.pod} on {host}", stop))
        if grpc_port is not None:
            servers.append(serve_until(GRPCEchoServer(identity, host, grpc_port),
                                       f"gRPC echo {identity.pod} on {host}", stop))
        await asyncio.gather(*servers)

    try:
        run_until_signalled(serve_all)
    except OSError as e:
        logging.getLogger("portico").error("echo: %s", e)
        raise typer.Exit(1) from None


app.command("validate")(validate_command)

app.add_typer(shutdown_app, name="shutdown-manager")



@app.command()
def status(
    admin_address: Annotated[str, typer.Option("--admin-address", help="admin API of a running `portico run`")]
    = DEFAULT_ADMIN,
    output: Annotated[str, typer.Option("-o", "--output", help="table, yaml or json")] = "table",
    admin_token: AdminToken = None,
    admin_token_file: AdminTokenFile = None,
    kind: Annotated[str | None, typer.Option("--kind", help="only objects of this kind, e.g. HTTPRoute")] = None,
    name: Annotated[str | None, typer.Option("--name", help="only objects of this name")] = None,
) -> None:
    """Show GatewayClasses, Gateways, listeners and routes with their conditions, and the
    documents that were not applied (with file and line)."""
    from rich.console import Console

    from portico.cli.status import fetch, render

    if output not in ("table", "yaml", "json"):
        raise typer.BadParameter("output must be table, yaml or json", param_hint="--output")
    try:
        objects, errors = fetch(admin_address, kind, name, token=admin_token_of(admin_token, admin_token_file))
    except OSError as e:
        typer.echo(f"portico status: {e}", err=True)
        raise typer.Exit(1) from None
    render(objects, output, Console(), errors)


def _analyzed(file: list[Path] | None, admin_address: str, admin_token: str | None, admin_token_file: Path | None,
              controller_name: str) -> tuple[list[dict[str, Any]], list[Exposure]]:
    """What `portico analyze` reads: the objects, and what their translation exposes on public
    Gateways (read from its IR: offline, from the manifests' translation; else the running
    instance's last one, from its admin API)."""
    from portico.exposure import Exposure

    if file:
        from portico.standalone import offline

        done = offline([str(p) for p in file], controller_name)
        objects = done.objects()
        return objects, done.diagnostics.exposures(objects, controller_name)
    from portico.cli.status import get_json

    objects = _objects(file, admin_address, admin_token, admin_token_file, "analyze")
    try:
        items = get_json(admin_address, "/api/exposure", {}, admin_token_of(admin_token, admin_token_file))
    except OSError as e:
        typer.echo(f"portico analyze: {e}", err=True)
        raise typer.Exit(1) from None
    return objects, [Exposure.from_dict(item) for item in items.get("items", [])]


def _objects(file: list[Path] | None, admin_address: str, admin_token: str | None, admin_token_file: Path | None,
             command: str) -> list[dict[str, Any]]:
    """The objects a command reads: translated offline from manifests (`-f`), else a running
    instance's, from its admin API."""
    if file:
        from portico.standalone import offline

        return offline([str(p) for p in file]).objects()
    from portico.cli.status import get_json

    try:
        items: list[dict[str, Any]] = get_json(admin_address, "/api/objects", {},
                                               admin_token_of(admin_token, admin_token_file)).get("items", [])
    except OSError as e:
        typer.echo(f"portico {command}: {e}", err=True)
        raise typer.Exit(1) from None
    return items
