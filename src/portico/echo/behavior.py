"""What `portico echo` answers, beyond the echo itself: the conventions of the
upstream Gateway API echo backend (echo-basic), which tests of timeouts,
retries and response headers rely on.

- `?delay=<duration>` (Go duration, e.g. "1s", "250ms"): answer after it.
- `/status/<code>`: answer with that status and no body.
- `/retry/...?uuid=U&succeedAfter=N[&responseCode=C][&delayRetry=D]`: the first
  N requests carrying uuid U fail (with status C, or by resetting the
  connection when C is absent), the next ones are echoed.
- request header `X-Echo-Set-Header: Name:value,Other:value`: set on the answer.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

MAX_DELAY_S = 60.0
MAX_RETRY_KEYS = 10_000
_GO_DURATION = re.compile(r"([0-9]+(?:\.[0-9]*)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    reset: bool = False  # close the connection with a reset instead of answering


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration string ("1.5s", "1m30s"); ValueError when invalid."""
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def set_headers(headers: dict[str, list[str]]) -> tuple[tuple[str, str], ...]:
    """X-Echo-Set-Header "Name:value,Name2:value2" -> answer headers (a repeated
    name gets its values joined with a comma)."""
    out: dict[str, str] = {}
    for spec in headers.get("X-Echo-Set-Header", []):
        for item in spec.split(","):
            name, _, value = item.strip().partition(":")
            if name:
                out[name] = f"{out[name]},{value.strip()}" if name in out else value.strip()
    return tuple(out.items())


@dataclass
class Behavior:
    """Per-server state of the echo conventions (retry counters by uuid)."""

    retry_attempts: OrderedDict[str, int] = field(default_factory=OrderedDict)

    async def answer(self, reply: dict[str, Any]) -> Answer:
        """The answer to a request whose echo is `reply` (echo.echo_reply)."""
        target = str(reply["path"])
        path, _, query_text = target.partition("?")
        query = parse_qs(query_text, keep_blank_values=True)
        status = re.fullmatch(r"/status/([0-9]{3})", path)
        if status:
            return Answer(int(status.group(1)))
        if path.startswith("/retry/"):
            failure = await self.retry_failure(query)
            if failure is not None:
                return failure
        problem = await sleep_for(query, "delay")
        if problem is not None:
            return problem
        headers = set_headers(reply["headers"]) + (("Content-Type", "application/json"),)
        return Answer(200, headers, json.dumps(reply, indent=1).encode())

    async def retry_failure(self, query: dict[str, list[str]]) -> Answer | None:
        uuid = first(query, "uuid")
        succeed_after = first(query, "succeedAfter")
        if not uuid or not succeed_after.isdigit():
            return Answer(400, body=b"uuid and succeedAfter are required\n")
        attempts = self.retry_attempts.pop(uuid, 0)
        self.retry_attempts[uuid] = attempts + 1
        while len(self.retry_attempts) > MAX_RETRY_KEYS:
            self.retry_attempts.popitem(last=False)
        if attempts >= int(succeed_after):
            return None
        problem = await sleep_for(query, "delayRetry")
        if problem is not None:
            return problem
        code = first(query, "responseCode")
        return Answer(int(code)) if code.isdigit() else Answer(0, reset=True)


def first(query: dict[str, list[str]], name: str) -> str:
    return (query.get(name) or [""])[0]


async def sleep_for(query: dict[str, list[str]], name: str) -> Answer | None:
    text = first(query, name)
    if not text:
        return None
    try:
        await asyncio.sleep(min(parse_go_duration(text), MAX_DELAY_S))
    except ValueError as e:
        return Answer(500, body=f"{e}\n".encode())
    return None
