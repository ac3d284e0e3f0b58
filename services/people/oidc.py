"""OIDC sign-in: the authorization-code flow with PKCE against an issuer's
discovery document, and the id token checked against the issuer's keys.

The browser carries the flow's secrets between the two legs (``Flow``, in a
short-lived HttpOnly cookie): the state that ties the callback to the start,
the PKCE verifier and the nonce. Nothing is kept on the server, so the
callback may land on any ingress replica. The code is exchanged with the
client secret (a confidential client) and the verifier; the id token's
signature is checked with the issuer's JWKS (RS256 or ES256), and its issuer,
audience, expiry and nonce.

Claims then name the person: their e-mail address (which keys their account),
tenant and role (``identity_of``), and which account is theirs
(``account_for``): an address the provider has not verified neither makes
nor links one, unless the config says otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import msgspec

from schemas.errors import GatewayError, PermissionDenied
from schemas.people import PersonRole, User
from services.people import accounts
from services.people.accounts import ROLE_NAMES, normal_email
from services.people.settings import OidcConfig
from services.people.tokens import same

ALGORITHMS = ("RS256", "ES256")
# How long the discovery document and the keys are trusted before being asked again.
CACHE_S = 3600.0
# A token signed with a key not in the cached set fetches the keys again, at most this often.
REFRESH_KEYS_S = 60.0
# An issuer's documents and answers are small; a larger one is refused.
MAX_DOCUMENT_BYTES = 512 * 1024
LEEWAY_S = 60
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]{16,128}")
# The most privileged role first: a list of roles in a claim gives the first found.
_RANK: tuple[PersonRole, ...] = ("gateway_admin", "tenant_admin", "developer")


class OidcFailed(GatewayError):
    """The identity provider's answer could not be used (400: the person
    may start again); details go to the log, not the page."""

    status = 400
    code = "oidc_failed"


class Discovery(msgspec.Struct):
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    token_endpoint_auth_methods_supported: list[str] = msgspec.field(default_factory=lambda: ["client_secret_basic"])


class TokenAnswer(msgspec.Struct):
    id_token: str = ""
    token_type: str = ""


@dataclass(frozen=True, slots=True)
class Flow:
    """What the browser keeps between the start and the callback."""

    state: str
    verifier: str
    nonce: str
    next: str

    def dump(self) -> str:
        return ".".join((self.state, self.verifier, self.nonce, _b64(self.next.encode())))

    @classmethod
    def load(cls, text: str) -> Flow | None:
        parts = text.split(".")
        if len(parts) != 4 or len(text) > 2048 or not all(_URL_SAFE.fullmatch(p) for p in parts[:3]):
            return None
        try:
            raw = parts[3] + "=" * (-len(parts[3]) % 4)
            nxt = base64.b64decode(raw, altchars=b"-_", validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return cls(parts[0], parts[1], parts[2], nxt)


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str
    email: str
    name: str
    tenant_id: str
    role: PersonRole
    # The provider said the address is the person's (email_verified: true).
    email_verified: bool = False


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def new_flow(next_path: str) -> Flow:
    return Flow(secrets.token_urlsafe(24), secrets.token_urlsafe(48), secrets.token_urlsafe(24), next_path)


def challenge_of(verifier: str) -> str:
    """PKCE's S256 code challenge."""
    return _b64(hashlib.sha256(verifier.encode()).digest())


def role_from(value: Any, config: OidcConfig) -> PersonRole:
    """The role a claim names (a string, or a list such as groups: the most
    privileged one recognised); the default when it names none."""
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    found = {ROLE_NAMES[n.strip().lower()] for n in names if isinstance(n, str) and n.strip().lower() in ROLE_NAMES}
    role = next((r for r in _RANK if r in found), config.default_role)
    if role == "gateway_admin" and not config.allow_gateway_admin:
        found.discard("gateway_admin")
        role = next((r for r in _RANK if r in found), config.default_role)
        if role == "gateway_admin":
            raise PermissionDenied("This identity provider may not make gateway admins.", code="oidc_role_refused")
    return role


def _claimed(value: Any) -> bool | None:
    """A boolean claim: true, false, or not said (some providers send "true")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def identity_of(claims: dict[str, Any], config: OidcConfig) -> Identity:
    """The person an id token names: their account is their e-mail address's
    (refused when the provider says it is not verified), their tenant and
    role the configured claims' (or the defaults)."""
    email = claims.get("email")
    if not isinstance(email, str) or not email:
        raise PermissionDenied("The identity provider gave no e-mail address.", code="oidc_no_email")
    verified = _claimed(claims.get("email_verified"))
    if verified is False:
        raise PermissionDenied("The identity provider has not verified this e-mail address.", code="oidc_unverified")
    role = role_from(claims.get(config.role_claim), config)
    tenant = claims.get(config.tenant_claim)
    tenant_id = tenant if isinstance(tenant, str) and tenant else config.default_tenant
    if role == "gateway_admin":
        tenant_id = ""
    elif not tenant_id:
        raise PermissionDenied("The identity provider named no tenant for this person.", code="oidc_no_tenant")
    name = claims.get("name")
    return Identity(
        subject=str(claims["sub"]),
        email=normal_email(email),
        name=name[:200] if isinstance(name, str) else "",
        tenant_id=tenant_id,
        role=role,
        email_verified=bool(verified),
    )


def account_for(before: User | None, identity: Identity, config: OidcConfig, now_ms: int) -> User:
    """The account an identity signs in to, as it is to be kept: made on
    the person's first sign-in, or the one their address keys, linked to
    the identity (``accounts.with_oidc``). Making or linking one by the
    address needs the provider to have verified it (``require_verified_email``);
    an account linked to this identity already is matched by it. An account
    disabled, linked to another identity or of another tenant is not theirs."""
    linked = before is not None and bool(before.oidc_subject) and before.oidc_subject == identity.subject
    if not linked and config.require_verified_email and not identity.email_verified:
        raise PermissionDenied(
            "The identity provider has not said this e-mail address is verified; verify it there and try again.",
            code="oidc_unverified",
        )
    if before is None:
        user = accounts.new_user(identity.email, identity.tenant_id, identity.role, "oidc", now_ms, identity.name)
        return msgspec.structs.replace(user, oidc_subject=identity.subject)
    if before.disabled:
        raise PermissionDenied("This account is disabled.", code="user_disabled")
    if before.oidc_subject and before.oidc_subject != identity.subject:
        raise PermissionDenied("This account is linked to another identity.", code="oidc_subject_mismatch")
    if before.tenant_id != identity.tenant_id:
        raise PermissionDenied("This account belongs to another tenant; ask an admin.", code="oidc_tenant_mismatch")
    return accounts.with_oidc(before, identity.subject, identity.role)


class OidcClient:
    """Talks to one issuer; ``http`` is injected (tests pass a MockTransport
    or serve an issuer on loopback)."""

    def __init__(self, config: OidcConfig, client_secret: str, http: httpx.AsyncClient) -> None:
        self.config = config
        self.secret = client_secret
        self.http = http
        self._discovery: tuple[float, Discovery] | None = None
        self._keys: tuple[float, dict[str, Any]] | None = None
        self._keys_refreshed = 0.0

    async def _get_json(self, url: str) -> bytes:
        try:
            resp = await self.http.get(url, timeout=self.config.timeout_s, headers={"accept": "application/json"})
        except httpx.HTTPError as exc:
            raise OidcFailed(f"The identity provider did not answer ({exc.__class__.__name__}).") from None
        if resp.status_code != 200 or len(resp.content) > MAX_DOCUMENT_BYTES:
            raise OidcFailed(f"The identity provider answered {resp.status_code} for {url}.")
        return resp.content

    async def discovery(self) -> Discovery:
        now = time.monotonic()
        if self._discovery is not None and now - self._discovery[0] < CACHE_S:
            return self._discovery[1]
        url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            found = msgspec.json.decode(await self._get_json(url), type=Discovery)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise OidcFailed("The identity provider's discovery document is not one.") from None
        # A document naming another issuer is not this issuer's (OpenID Connect Discovery, 4.3).
        if found.issuer.rstrip("/") != self.config.issuer.rstrip("/"):
            raise OidcFailed("The discovery document names another issuer.")
        self._discovery = (now, found)
        return found

    async def authorization_url(self, flow: Flow, redirect_uri: str) -> str:
        d = await self.discovery()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.config.client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(self.config.scopes),
                "state": flow.state,
                "nonce": flow.nonce,
                "code_challenge": challenge_of(flow.verifier),
                "code_challenge_method": "S256",
            }
        )
        return d.authorization_endpoint + ("&" if "?" in d.authorization_endpoint else "?") + query

    async def exchange(self, code: str, flow: Flow, redirect_uri: str) -> str:
        """The id token the code is worth."""
        d = await self.discovery()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": flow.verifier,
            "client_id": self.config.client_id,
        }
        auth: tuple[str, str] | None = None
        if self.secret:
            if "client_secret_basic" in d.token_endpoint_auth_methods_supported:
                auth = (self.config.client_id, self.secret)
            else:
                form["client_secret"] = self.secret
        try:
            resp = await self.http.post(d.token_endpoint, data=form, auth=auth, timeout=self.config.timeout_s)
        except httpx.HTTPError as exc:
            raise OidcFailed(f"The identity provider did not answer ({exc.__class__.__name__}).") from None
        if resp.status_code != 200 or len(resp.content) > MAX_DOCUMENT_BYTES:
            raise OidcFailed(f"The identity provider refused the code ({resp.status_code}).")
        try:
            answer = msgspec.json.decode(resp.content, type=TokenAnswer)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise OidcFailed("The identity provider's token answer is not JSON.") from None
        if not answer.id_token:
            raise OidcFailed("The identity provider sent no id token.")
        return answer.id_token

    async def _key_set(self, force: bool) -> dict[str, Any]:
        now = time.monotonic()
        if self._keys is not None and now - self._keys[0] < CACHE_S and not force:
            return self._keys[1]
        if force:
            # A token naming a key we lack fetches the set again, but no
            # stream of forged tokens makes us ask the issuer for every one.
            if now - self._keys_refreshed < REFRESH_KEYS_S and self._keys is not None:
                return self._keys[1]
            self._keys_refreshed = now
        d = await self.discovery()
        try:
            keys = msgspec.json.decode(await self._get_json(d.jwks_uri))
        except msgspec.DecodeError:
            raise OidcFailed("The identity provider's key set is not JSON.") from None
        if not isinstance(keys, dict) or not isinstance(keys.get("keys"), list):
            raise OidcFailed("The identity provider's key set has no keys.")
        self._keys = (now, keys)
        return keys

    async def _signing_key(self, kid: str | None, alg: str) -> Any:
        for force in (False, True):
            published = (await self._key_set(force))["keys"]
            keys = [k for k in published if isinstance(k, dict) and k.get("use", "sig") == "sig"]
            match = [k for k in keys if k.get("kid") == kid] if kid else keys
            if len(match) == 1:
                try:
                    return jwt.PyJWK(match[0], algorithm=alg).key
                except jwt.PyJWKError:
                    raise OidcFailed("The identity provider's key cannot be used.") from None
        raise OidcFailed("The id token is signed with a key the identity provider does not publish.")

    async def verify(self, id_token: str, flow: Flow) -> dict[str, Any]:
        """The id token's claims, once its signature, issuer, audience,
        times and nonce are checked."""
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise OidcFailed("The id token is not a JWT.") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise OidcFailed(f"The id token's algorithm {alg!r} is not accepted.")
        key = await self._signing_key(header.get("kid"), alg)
        d = await self.discovery()
        try:
            claims = jwt.decode(
                id_token,
                key=key,
                algorithms=[alg],
                audience=self.config.client_id,
                issuer=d.issuer,
                leeway=LEEWAY_S,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.PyJWTError as exc:
            raise OidcFailed(f"The id token was refused: {exc}.") from None
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.config.client_id:
            raise OidcFailed("The id token was issued to another client.")
        if not same(flow.nonce, str(claims.get("nonce", ""))):
            raise OidcFailed("The id token's nonce is not this sign-in's.")
        return claims
