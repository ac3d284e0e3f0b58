"""A tiny OpenID Connect issuer for tests: discovery, JWKS, an authorization
endpoint that signs in whoever the test says, and a token endpoint that
checks the client secret and the PKCE verifier before it answers with an
RS256 id token. Served on loopback (``serve``) or as an httpx transport
(``transport``)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

CLIENT_ID = "sluice-portal"
CLIENT_SECRET = "test-client-secret-0123456789"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class Issuer:
    url: str = "http://issuer.test"
    kid: str = "key-1"
    key: rsa.RSAPrivateKey = field(default_factory=new_key)
    # The claims of the next person the authorization endpoint signs in.
    person: dict[str, Any] = field(default_factory=dict)
    # code -> (the PKCE challenge, the redirect URI, the nonce, the claims)
    codes: dict[str, tuple[str, str, str, dict[str, Any]]] = field(default_factory=dict)
    # What the token endpoint last received, for assertions.
    last_token_request: dict[str, str] = field(default_factory=dict)
    # Overrides of the next id token's claims (a wrong audience, an old expiry, ...).
    tamper: dict[str, Any] = field(default_factory=dict)
    jwks_fetches: int = 0

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }

    def jwks(self) -> dict[str, Any]:
        self.jwks_fetches += 1
        numbers = self.key.public_key().public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": _b64(n), "e": _b64(e)}]}

    def id_token(self, nonce: str, claims: dict[str, Any], key: rsa.RSAPrivateKey | None = None) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": CLIENT_ID, "iat": now, "exp": now + 300, "nonce": nonce, **claims}
        body.update(self.tamper)
        return jwt.encode(body, key or self.key, algorithm="RS256", headers={"kid": self.kid})

    def authorize(self, query: dict[str, str]) -> str:
        """Where the browser is sent back to: the redirect URI with a code and the state."""
        assert query["client_id"] == CLIENT_ID and query["response_type"] == "code"
        assert query["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = (query["code_challenge"], query["redirect_uri"], query["nonce"], dict(self.person))
        return f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"

    def token(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        self.last_token_request = dict(form)
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if authorization != expected:
            return 401, {"error": "invalid_client"}
        found = self.codes.pop(form.get("code", ""), None)
        if found is None or form.get("grant_type") != "authorization_code":
            return 400, {"error": "invalid_grant"}
        challenge, redirect_uri, nonce, claims = found
        verifier = form.get("code_verifier", "")
        if _b64(hashlib.sha256(verifier.encode()).digest()) != challenge or form.get("redirect_uri") != redirect_uri:
            return 400, {"error": "invalid_grant"}
        return 200, {"access_token": "at", "token_type": "Bearer", "id_token": self.id_token(nonce, claims)}

    def answer(self, method: str, path: str, query: dict[str, str], form: dict[str, str], auth: str) -> tuple[int, Any]:
        """(status, JSON body), or (302, location) for the authorization endpoint."""
        if method == "GET" and path == "/.well-known/openid-configuration":
            return 200, self.discovery()
        if method == "GET" and path == "/jwks":
            return 200, self.jwks()
        if method == "GET" and path == "/authorize":
            return 302, self.authorize(query)
        if method == "POST" and path == "/token":
            return self.token(form, auth)
        return 404, {"error": "not_found"}

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            query = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()} if request.content else {}
            status, body = self.answer(
                request.method, request.url.path, query, form, request.headers.get("authorization", "")
            )
            if status == 302:
                return httpx.Response(302, headers={"location": body})
            return httpx.Response(status, json=body)

        return httpx.MockTransport(handle)


def serve(issuer: Issuer) -> ThreadingHTTPServer:
    """The issuer on 127.0.0.1 (a free port; ``issuer.url`` is set to it); stop with ``shutdown()``."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, method: str) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            form = {k: v[0] for k, v in parse_qs(raw).items()}
            status, body = issuer.answer(method, url.path, query, form, self.headers.get("authorization", ""))
            if status == 302:
                self.send_response(302)
                self.send_header("location", body)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._reply("GET")

        def do_POST(self) -> None:
            self._reply("POST")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, name="oidc-issuer", daemon=True).start()
    return server
