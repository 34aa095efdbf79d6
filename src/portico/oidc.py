"""OpenID provider discovery for SecurityPolicy oidc: the control loop fetches
`<issuer>/.well-known/openid-configuration` (OpenID Connect Discovery 1.0, section 4)
for the issuers a translation asks for (`Translation.issuers`: only those the policy may
reach, `translator.policies.security`), off the control loop, with a timeout, and hands
what it found to the next snapshot (`Snapshot.discovered`), which it wakes.

A document is kept for `ttl_s` and then fetched again (the old one serves meanwhile, and
after a failed refresh); a failure is reported to the policy (Accepted=False, with why)
and retried after `retry_s`. Redirects are not followed and the body is bounded: the
issuer is a policy author's URL, read by the controller.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping

import aiohttp

from portico.translator.snapshot import Discovered

log = logging.getLogger(__name__)

WELL_KNOWN = "/.well-known/openid-configuration"
MAX_BYTES = 1 << 20
Fetch = Callable[[str], Awaitable[Discovered]]


class Discovery:
    def __init__(self, changed: Callable[[], None] | None = None, *, timeout_s: float = 10.0,
                 ttl_s: float = 3600.0, retry_s: float = 30.0, fetch: Fetch | None = None) -> None:
        self.changed = changed or (lambda: None)
        self.timeout_s, self.ttl_s, self.retry_s = timeout_s, ttl_s, retry_s
        self.fetch = fetch or self._fetch
        # issuer -> what was found; replaced (never changed in place) when anything changes,
        # so a snapshot holding it keeps what it was given
        self.documents: Mapping[str, Discovered] = {}
        self._due: dict[str, float] = {}  # issuer -> when to fetch it again
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def want(self, issuers: Iterable[str]) -> None:
        """Fetch the issuers not known yet, or due again; forget the others. Outside a
        running event loop (a synchronous sync) nothing is fetched."""
        wanted = set(issuers)
        if set(self.documents) - wanted:
            self.documents = {i: d for i, d in self.documents.items() if i in wanted}
        for issuer in set(self._due) - wanted:
            del self._due[issuer]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        now = time.monotonic()
        for issuer in sorted(wanted):
            if issuer in self._tasks or self._due.get(issuer, 0.0) > now:
                continue
            self._tasks[issuer] = loop.create_task(self._refresh(issuer))

    async def _refresh(self, issuer: str) -> None:
        try:
            found = await self.fetch(issuer)
        except Exception as e:  # a fetch of our own never raises; a substitute might
            found = Discovered(error=f"{type(e).__name__}: {e}")
        finally:
            self._tasks.pop(issuer, None)
        old = self.documents.get(issuer)
        if found.error:
            log.warning("OpenID discovery of %s failed: %s", issuer, found.error)
            self._due[issuer] = time.monotonic() + self.retry_s
            if old is not None and not old.error:
                return  # the last good document keeps serving
            self._wake_later(self.retry_s)
        else:
            self._due[issuer] = time.monotonic() + self.ttl_s
            self._wake_later(self.ttl_s)
        if old != found:
            self.documents = {**self.documents, issuer: found}
            self.changed()

    def _wake_later(self, delay: float) -> None:
        """Wake the control loop when a fetch is due again (it asks `want` then)."""
        asyncio.get_running_loop().call_later(delay, self.changed)

    async def _fetch(self, issuer: str) -> Discovered:
        url = issuer.rstrip("/") + WELL_KNOWN
        try:
            timeout = aiohttp.ClientTimeout(total=self.timeout_s)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
                    url, allow_redirects=False, headers={"Accept": "application/json"}) as resp:
                if resp.status != 200:
                    return Discovered(error=f"GET {url}: HTTP {resp.status}")
                body = await resp.content.read(MAX_BYTES + 1)
        except TimeoutError:
            return Discovered(error=f"GET {url}: no answer within {self.timeout_s:g} s")
        except aiohttp.ClientError as e:
            return Discovered(error=f"GET {url}: {type(e).__name__}: {e}")
        if len(body) > MAX_BYTES:
            return Discovered(error=f"GET {url}: the document is larger than {MAX_BYTES} bytes")
        return parse(issuer, body)


def parse(issuer: str, body: bytes) -> Discovered:
    """The endpoints of a discovery document, or why it cannot be used."""
    try:
        doc = json.loads(body)
    except ValueError:
        return Discovered(error="the discovery document is not JSON")
    if not isinstance(doc, dict):
        return Discovered(error="the discovery document is not a JSON object")
    # OpenID Connect Discovery 1.0 section 4.3: the issuer MUST be identical to the one asked
    if doc.get("issuer") != issuer:
        return Discovered(error=f"the discovery document names issuer {str(doc.get('issuer'))[:200]!r}, "
                                f"not {issuer!r}")
    out: dict[str, str] = {}
    for field in ("authorization_endpoint", "token_endpoint", "end_session_endpoint"):
        value = doc.get(field)
        if value is None and field == "end_session_endpoint":
            continue
        parts = urllib.parse.urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            return Discovered(error=f"the discovery document's {field} is not an http(s) URL")
        out[field] = str(value)
    return Discovered(**out)
