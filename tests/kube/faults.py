"""Faults on demand: what a busy or failing API server answers, for the requests a
test picks.

A `Fault` matches requests by verb, resource (plural, optionally
`plural/subresource`) and client (the name its token is known by), a given number
of times (`times`, None: until removed); it then delays the request (`delay`:
slow; a long delay: hung, as a request the server never answers in time) and/or
answers it with an error code (409, 410 on a watch, 429 with Retry-After, 500,
503) instead of serving it.
"""

from __future__ import annotations

from dataclasses import dataclass

REASONS = {409: "Conflict", 410: "Expired", 429: "TooManyRequests", 500: "InternalError",
           503: "ServiceUnavailable", 504: "Timeout"}


@dataclass
class Fault:
    verb: str | None = None  # get list watch create update patch delete; None: any
    resource: str | None = None  # plural or plural/subresource; None: any
    client: str | None = None  # the client's name (see KubeAPI.tokens); None: any
    code: int | None = None  # answer this instead of serving; None: serve (after the delay)
    delay: float = 0.0
    retry_after: int | None = None  # seconds, with 429 (and 503) as the API server's priority and fairness does
    times: int | None = 1
    hits: int = 0

    def matches(self, verb: str, resource: str, client: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return ((self.verb is None or self.verb == verb) and (self.client is None or self.client == client)
                and (self.resource is None or self.resource == resource))

    @property
    def reason(self) -> str:
        return REASONS.get(self.code or 0, "InternalError")
