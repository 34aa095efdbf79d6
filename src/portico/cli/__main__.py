"""`python -m portico.cli`: the `portico` command without its console script."""

from portico.cli import app

app()
