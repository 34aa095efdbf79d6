"""HTTPRouteFilter authSignin's Location (ingress-nginx's buildAuthSignURL), as an Envoy format string."""

from __future__ import annotations

import pytest

from portico.models import AuthSignin
from portico.translator.signin import ESCAPED_REQUEST_URI, ORIGINAL_URL, SCHEME_HOST, signin_location


@pytest.mark.parametrize(("url", "param", "location"), [
    ("https://login.example.com/start", "rd", f"https://login.example.com/start?rd={ORIGINAL_URL}"),
    ("https://login.example.com/start?app=shop", "rd", f"https://login.example.com/start?app=shop&rd={ORIGINAL_URL}"),
    ("https://login.example.com/start?next=/x", "next", "https://login.example.com/start?next=/x"),  # kept as it is
    ("https://login.example.com/a%20b", "return", f"https://login.example.com/a%%20b?return={ORIGINAL_URL}"),
])
def test_signin_location(url: str, param: str, location: str) -> None:
    assert signin_location(AuthSignin(url=url, redirect_param=param)) == location


@pytest.mark.parametrize(("value", "location"), [
    ("URL", f"https://l.example.com/s?rd={SCHEME_HOST}{ESCAPED_REQUEST_URI}"),  # ingress-nginx's own
    ("UnescapedURL", f"https://l.example.com/s?rd={SCHEME_HOST}%REQ(:path)%"),  # $scheme://$host$request_uri
    ("EscapedRequestURI", f"https://l.example.com/s?rd={ESCAPED_REQUEST_URI}"),  # $escaped_request_uri
    ("RequestURI", "https://l.example.com/s?rd=%REQ(:path)%"),  # $request_uri
    ("Other", None),  # not programmed: the rule is not accepted
])
def test_signin_redirect_values(value: str, location: str | None) -> None:
    assert signin_location(AuthSignin(url="https://l.example.com/s", redirect_value=value)) == location
