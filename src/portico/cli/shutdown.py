"""`portico shutdown-manager`: the second container of a Gateway's Envoy pod
(Kubernetes mode), which drains Envoy before the kubelet stops it
(`portico.infra.drain`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from portico.infra.drain import SHUTDOWN_PORT, drain, serve

shutdown_app = typer.Typer(no_args_is_help=True, help="Drain a Gateway's Envoy pod before it stops "
                                                      "(the pod's shutdown-manager container).")


@shutdown_app.command("serve")
def serve_command(
    admin_dir: Annotated[str, typer.Option(help="The directory of Envoy's admin socket (shared emptyDir).")],
    port: Annotated[int, typer.Option(help="Port of /shutdown/ready (Envoy's preStop hook).")] = SHUTDOWN_PORT,
) -> None:
    """Serve /shutdown/ready: it answers once `drain` is done (Envoy's preStop waits on it)."""
    from portico.cli import run_until_signalled, setup_logging

    setup_logging("info", "text")
    run_until_signalled(lambda stop: serve(admin_dir, port, stop=stop))


@shutdown_app.command("drain")
def drain_command(
    admin_socket: Annotated[str, typer.Option(help="Envoy's admin socket.")],
    drain_seconds: Annotated[float, typer.Option(min=0, help="The longest drain.")] = 60,
    min_drain_seconds: Annotated[float, typer.Option(min=0, help="The shortest drain.")] = 5,
) -> None:
    """Fail Envoy's readiness, drain its listeners gracefully, wait for its connections to end
    (the shutdown manager's preStop hook)."""
    from portico.cli import setup_logging

    setup_logging("info", "text")
    try:
        asyncio.run(drain(admin_socket, drain_seconds, min_drain_seconds))
    except RuntimeError as e:
        logging.getLogger("portico").error("%s", e)
        raise typer.Exit(1) from None
