"""HTTPRouteFilter authSignin's Location (ingress-nginx's buildAuthSignURL), as an Envoy format string."""

from __future__ import annotations

import pytest

from portico.models import AuthSignin
from portico.translator.signin import ORIGINAL_URL, signin_location


@pytest.mark.parametrize(("url", "param", "location"), [
    ("https://login.example.com/start", "rd", f"https://login.example.com/start?rd={ORIGINAL_URL}"),
    ("https://login.example.com/start?app=shop", "rd", f"https://login.example.com/start?app=shop&rd={ORIGINAL_URL}"),
    ("https://login.example.com/start?next=/x", "next", "https://login.example.com/start?next=/x"),  # kept as it is
    ("https://login.example.com/a%20b", "return", f"https://login.example.com/a%%20b?return={ORIGINAL_URL}"),
])
def test_signin_location(url: str, param: str, location: str) -> None:
    assert signin_location(AuthSignin(url=url, redirect_param=param)) == location
