"""The proxy headers a REST service gets (``services.forwarded``), and the
socket's view of the caller kept beside uvicorn's proxy-headers rewrite
(``ingress.peer``)."""

from __future__ import annotations

from typing import Any

import pytest

from ingress.peer import PEER, behind_proxies, peer_of
from services.forwarded import FOR, HOST, PROTO, Proxies, proxy_headers, replace_proxy_headers


def test_trusted_proxies_are_addresses_networks_names_or_anyone() -> None:
    proxies = Proxies("127.0.0.1, ::1, 10.0.0.0/8, unix:/run/proxy.sock")
    assert proxies.trusts("127.0.0.1") and proxies.trusts("::1") and proxies.trusts("10.200.3.4")
    assert proxies.trusts("unix:/run/proxy.sock")
    assert not proxies.trusts("11.0.0.1") and not proxies.trusts("") and not proxies.trusts("localhost")
    assert Proxies("*").trusts("203.0.113.9") and not Proxies("").trusts("127.0.0.1")


def test_an_untrusted_peers_headers_are_replaced_by_its_connection() -> None:
    given = [(FOR, "6.6.6.6"), (PROTO, "https"), (HOST, "evil.example"), ("accept", "*/*")]
    out = replace_proxy_headers(given, "203.0.113.5", "http", "api.example", trusted=False)
    assert out == [("accept", "*/*"), (FOR, "203.0.113.5"), (PROTO, "http"), (HOST, "api.example")]


def test_a_trusted_proxys_chain_goes_on_with_its_address_appended() -> None:
    given = [(FOR, "6.6.6.6, 10.0.0.9"), (FOR, "[2001:db8::1]"), (PROTO, "HTTPS, http"), (HOST, "shop.example")]
    out = dict(proxy_headers(given, "10.1.2.3", "http", "internal:8080", trusted=True))
    assert out == {FOR: "6.6.6.6, 10.0.0.9, [2001:db8::1], 10.1.2.3", PROTO: "https", HOST: "shop.example"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        # Not what proxies write: the peer alone is known, the connection's own values stand.
        ([(FOR, "6.6.6.6, <script>")], {FOR: "10.1.2.3", PROTO: "http", HOST: "api.example"}),
        ([(FOR, ", ".join(["1.2.3.4"] * 40))], {FOR: "10.1.2.3", PROTO: "http", HOST: "api.example"}),
        ([(PROTO, "gopher")], {FOR: "10.1.2.3", PROTO: "http", HOST: "api.example"}),
        ([(HOST, "a.example/evil")], {FOR: "10.1.2.3", PROTO: "http", HOST: "api.example"}),
        ([(HOST, "a b")], {FOR: "10.1.2.3", PROTO: "http", HOST: "api.example"}),
        ([(FOR, "")], {FOR: "10.1.2.3", PROTO: "http", HOST: "api.example"}),
    ],
)
def test_what_no_proxy_writes_is_dropped(given: list[tuple[str, str]], expected: dict[str, str]) -> None:
    assert dict(proxy_headers(given, "10.1.2.3", "http", "api.example", trusted=True)) == expected


def test_the_connections_scheme_and_a_host_with_no_place_in_a_header() -> None:
    out = dict(proxy_headers([], "192.0.2.1", "https", "bad\r\nhost", trusted=False))
    assert out == {FOR: "192.0.2.1", PROTO: "https"}, "a Host no host has is left out"
    assert dict(proxy_headers([], "", "ws", "[::1]:8080", trusted=False)) == {PROTO: "http", HOST: "[::1]:8080"}


async def test_the_socket_peer_is_kept_where_uvicorns_middleware_rewrites_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "127.0.0.1")
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(dict(scope))

    wrapped = behind_proxies(app)
    headers = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-proto", b"https")]
    for client in ("127.0.0.1", "203.0.113.5"):
        scope = {"type": "http", "client": (client, 5000), "scheme": "http", "headers": headers}
        await wrapped(scope, None, None)
    trusted, untrusted = seen
    assert trusted["client"][0] == "6.6.6.6" and trusted["scheme"] == "https", "uvicorn's rewrite, as before"
    assert peer_of(trusted) == ("127.0.0.1", "http") and trusted[PEER] == ("127.0.0.1", "http")
    assert untrusted["client"][0] == "203.0.113.5" and peer_of(untrusted) == ("203.0.113.5", "http")
    assert peer_of({"client": ("192.0.2.1", 1), "scheme": "https"}) == ("192.0.2.1", "https")
