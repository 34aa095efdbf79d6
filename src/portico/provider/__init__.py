"""Providers turn a source of manifests into object events for the store.

The event types live on neutral ground (`portico.contracts`): the store reads them
without importing a provider.
"""

from portico.contracts import Document, DocumentError, ProviderEvent, Source

__all__ = ["Document", "DocumentError", "ProviderEvent", "Source"]
