"""A REST service answers on the gateway's origin: it may set its own
cookies, never the gateway's (the portal's session, the dashboard's), which
it could otherwise replace, plant or clear. Dropped where the provider
reads the answer (services/providers/rest/headers.py) and again at the door
for any answer on the bus (services/rest_door.py)."""

from __future__ import annotations

import pytest

from services import rest_door
from services.providers.rest.headers import response_headers, sets_gateway_cookie

GATEWAYS = [
    "sluice_portal=planted; Path=/portal; HttpOnly",
    "sluice_dashboard=x; Max-Age=0",
    "sluice_portal_oidc=x",
    " Sluice_Portal =x",
    "\tsluice_portal=x",
    # Nameless: sent back as just "sluice_portal=x", which reads as that cookie.
    "=sluice_portal=x",
    "sluice_portal",
    "; Path=/",
]
THEIRS = ["session=abc; Path=/; HttpOnly", "portal=1", "__Host-sluice_portal=x; Secure; Path=/", "x_sluice_a=1"]


@pytest.mark.parametrize("value", GATEWAYS)
def test_the_gateways_cookies_are_not_a_services_to_set(value: str) -> None:
    assert sets_gateway_cookie(value)


@pytest.mark.parametrize("value", THEIRS)
def test_a_services_own_cookies_pass(value: str) -> None:
    assert not sets_gateway_cookie(value)


def test_the_provider_drops_them_from_the_answer() -> None:
    raw = [(b"Set-Cookie", v.encode()) for v in [*GATEWAYS, *THEIRS]] + [(b"Content-Type", b"text/plain")]
    got = response_headers(raw, "http://10.0.0.1:9000", "/services/x")
    assert got == [*(("set-cookie", v) for v in THEIRS), ("content-type", "text/plain")]


def test_the_door_drops_them_from_any_answer() -> None:
    got = rest_door.answer_headers([("Set-Cookie", v) for v in [*GATEWAYS, *THEIRS]])
    assert got == [(b"set-cookie", v.encode()) for v in THEIRS]
