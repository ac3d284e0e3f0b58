"""OIDC sign-in: PKCE, the flow the browser carries, the id token's checks
against a tiny issuer (tests/oidc_issuer.py, as an httpx transport), and
how claims name a person."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from schemas.errors import PermissionDenied
from schemas.people import User
from services.people import accounts, oidc
from services.people.settings import OidcConfig
from tests.oidc_issuer import CLIENT_ID, CLIENT_SECRET, Issuer, new_key

REDIRECT = "http://gateway.test/portal/oidc/callback"
PERSON = {"sub": "sub-1", "email": "Ann@Example.com", "email_verified": True, "tenant": "acme", "role": "developer"}


def config(issuer: Issuer, **fields: object) -> OidcConfig:
    return OidcConfig(issuer=issuer.url, client_id=CLIENT_ID, client_secret_env="X", **fields)  # type: ignore[arg-type]


@pytest.fixture
def issuer() -> Issuer:
    return Issuer(person=dict(PERSON))


@pytest.fixture
async def client(issuer: Issuer):
    async with httpx.AsyncClient(transport=issuer.transport()) as http:
        yield oidc.OidcClient(config(issuer), CLIENT_SECRET, http)


async def sign_in(issuer: Issuer, client: oidc.OidcClient, flow: oidc.Flow | None = None) -> dict:
    """The whole flow as a browser would go through it; the verified claims."""
    flow = flow or oidc.new_flow("/portal/apps")
    url = await client.authorization_url(flow, REDIRECT)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    back = urlsplit(issuer.authorize(query))
    answer = {k: v[0] for k, v in parse_qs(back.query).items()}
    assert answer["state"] == flow.state
    return await client.verify(await client.exchange(answer["code"], flow, REDIRECT), flow)


def test_pkce_challenge_is_rfc_7636s() -> None:
    # RFC 7636, appendix B.
    assert (
        oidc.challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


def test_the_flow_goes_through_a_cookie_and_back() -> None:
    flow = oidc.new_flow("/portal/docs/x?y=1&z=.2")
    assert oidc.Flow.load(flow.dump()) == flow
    assert len({flow.state, flow.verifier, flow.nonce}) == 3 and len(flow.verifier) >= 43
    for bad in ("", "a.b.c", "a.b.c.d.e", "a.b.c.%%%", "x" * 3000):
        assert oidc.Flow.load(bad) is None


async def test_the_authorization_request_asks_for_a_code_with_pkce(issuer: Issuer, client: oidc.OidcClient) -> None:
    flow = oidc.new_flow("/portal")
    url = await client.authorization_url(flow, REDIRECT)
    assert url.startswith(f"{issuer.url}/authorize?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["code_challenge"] == oidc.challenge_of(flow.verifier) and query["code_challenge_method"] == "S256"
    assert query["state"] == flow.state and query["nonce"] == flow.nonce and query["redirect_uri"] == REDIRECT
    assert query["scope"] == "openid email profile" and flow.verifier not in url


async def test_a_sign_in_gives_the_verified_claims(issuer: Issuer, client: oidc.OidcClient) -> None:
    claims = await sign_in(issuer, client)
    assert claims["sub"] == "sub-1" and claims["email"] == "Ann@Example.com"
    # The code went with the verifier and the client's secret (basic auth, checked by the issuer).
    assert (
        issuer.last_token_request["code_verifier"] and issuer.last_token_request["grant_type"] == "authorization_code"
    )


async def test_a_code_without_the_right_verifier_is_refused(issuer: Issuer, client: oidc.OidcClient) -> None:
    flow = oidc.new_flow("/portal")
    url = await client.authorization_url(flow, REDIRECT)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    code = parse_qs(urlsplit(issuer.authorize(query)).query)["code"][0]
    other = oidc.Flow(flow.state, oidc.new_flow("/").verifier, flow.nonce, flow.next)
    with pytest.raises(oidc.OidcFailed):
        await client.exchange(code, other, REDIRECT)


async def test_a_wrong_client_secret_is_refused(issuer: Issuer) -> None:
    async with httpx.AsyncClient(transport=issuer.transport()) as http:
        with pytest.raises(oidc.OidcFailed):
            await sign_in(issuer, oidc.OidcClient(config(issuer), "wrong", http))


@pytest.mark.parametrize(
    "tamper",
    [
        {"aud": "another-client"},
        {"iss": "http://evil.test"},
        {"exp": 1_000_000},
        {"nonce": "not-this-sign-ins"},
        {"aud": [CLIENT_ID, "other"], "azp": "other"},
    ],
)
async def test_an_id_token_not_meant_for_this_sign_in_is_refused(
    issuer: Issuer, client: oidc.OidcClient, tamper: dict
) -> None:
    issuer.tamper = tamper
    with pytest.raises(oidc.OidcFailed):
        await sign_in(issuer, client)


async def test_an_id_token_signed_by_another_key_is_refused(issuer: Issuer, client: oidc.OidcClient) -> None:
    flow = oidc.new_flow("/portal")
    forged = issuer.id_token(flow.nonce, PERSON, key=new_key())
    with pytest.raises(oidc.OidcFailed):
        await client.verify(forged, flow)


@pytest.mark.parametrize("alg", ["none", "HS256"])
async def test_an_unsigned_or_symmetric_token_is_refused(issuer: Issuer, client: oidc.OidcClient, alg: str) -> None:
    flow = oidc.new_flow("/portal")
    body = {"iss": issuer.url, "aud": CLIENT_ID, "sub": "s", "iat": 1, "exp": 9_999_999_999, "nonce": flow.nonce}
    if alg == "none":
        token = jwt.encode(body, None, algorithm="none")
    else:  # the public key's bytes as an HMAC secret: the classic confusion
        token = jwt.encode(body, base64.b64encode(b"k" * 32).decode(), algorithm="HS256")
    with pytest.raises(oidc.OidcFailed):
        await client.verify(token, flow)


async def test_a_new_signing_key_is_fetched_once(issuer: Issuer, client: oidc.OidcClient) -> None:
    await sign_in(issuer, client)
    assert issuer.jwks_fetches == 1
    issuer.key, issuer.kid = new_key(), "key-2"
    await sign_in(issuer, client)  # the cached set lacks key-2: asked again
    assert issuer.jwks_fetches == 2


async def test_a_discovery_document_of_another_issuer_is_refused(issuer: Issuer) -> None:
    served = Issuer(url="http://evil.test")
    async with httpx.AsyncClient(transport=served.transport()) as http:
        client = oidc.OidcClient(OidcConfig(issuer="http://issuer.test", client_id=CLIENT_ID), "", http)
        with pytest.raises(oidc.OidcFailed):
            await client.discovery()


async def test_an_issuer_that_does_not_answer_is_a_typed_failure() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(down)) as http:
        client = oidc.OidcClient(OidcConfig(issuer="http://issuer.test", client_id=CLIENT_ID), "", http)
        with pytest.raises(oidc.OidcFailed):
            await client.authorization_url(oidc.new_flow("/portal"), REDIRECT)


def test_claims_name_the_person_their_tenant_and_role(issuer: Issuer) -> None:
    who = oidc.identity_of({**PERSON, "name": "Ann Lee"}, config(issuer))
    assert (who.subject, who.email, who.name, who.tenant_id, who.role) == (
        "sub-1",
        "ann@example.com",
        "Ann Lee",
        "acme",
        "developer",
    )
    assert oidc.identity_of({**PERSON, "role": ["staff", "tenant-admin"]}, config(issuer)).role == "tenant_admin"
    assert oidc.identity_of({**PERSON, "role": "nothing-known"}, config(issuer)).role == "developer"
    # No tenant claim: the configured default, or a refusal.
    no_tenant = {k: v for k, v in PERSON.items() if k != "tenant"}
    assert oidc.identity_of(no_tenant, config(issuer, default_tenant="dflt")).tenant_id == "dflt"
    with pytest.raises(PermissionDenied):
        oidc.identity_of(no_tenant, config(issuer))


def test_an_unverified_or_missing_address_is_refused(issuer: Issuer) -> None:
    with pytest.raises(PermissionDenied):
        oidc.identity_of({**PERSON, "email_verified": False}, config(issuer))
    with pytest.raises(PermissionDenied):
        oidc.identity_of({k: v for k, v in PERSON.items() if k != "email"}, config(issuer))


def test_an_address_is_verified_only_when_the_provider_says_so(issuer: Issuer) -> None:
    assert oidc.identity_of(PERSON, config(issuer)).email_verified
    assert oidc.identity_of({**PERSON, "email_verified": "true"}, config(issuer)).email_verified
    unsaid = {k: v for k, v in PERSON.items() if k != "email_verified"}
    assert not oidc.identity_of(unsaid, config(issuer)).email_verified
    with pytest.raises(PermissionDenied):
        oidc.identity_of({**PERSON, "email_verified": "false"}, config(issuer))


def unverified(issuer: Issuer) -> oidc.Identity:
    return oidc.identity_of({k: v for k, v in PERSON.items() if k != "email_verified"}, config(issuer))


def invited(email: str = "ann@example.com") -> User:
    return accounts.new_user(email, "acme", "developer", "admin", 0)


def test_an_unverified_address_neither_links_nor_makes_an_account_by_default(issuer: Issuer) -> None:
    assert config(issuer).require_verified_email
    for before in (invited(), accounts.with_password(invited(), "$argon2id$x"), None):
        with pytest.raises(PermissionDenied) as refused:
            oidc.account_for(before, unverified(issuer), config(issuer), 1)
        assert refused.value.code == "oidc_unverified"
    # Only by the config's explicit choice.
    lax = config(issuer, require_verified_email=False)
    assert oidc.account_for(invited(), unverified(issuer), lax, 1).oidc_subject == "sub-1"
    assert oidc.account_for(None, unverified(issuer), lax, 1).oidc_subject == "sub-1"


def test_an_account_linked_to_this_identity_is_its_own(issuer: Issuer) -> None:
    # Already linked: the subject, not the address, ties the sign-in to it.
    linked = oidc.account_for(invited(), oidc.identity_of(PERSON, config(issuer)), config(issuer), 1)
    assert oidc.account_for(linked, unverified(issuer), config(issuer), 2) == linked
    with pytest.raises(PermissionDenied):
        other = oidc.identity_of({**PERSON, "sub": "sub-2"}, config(issuer))
        oidc.account_for(linked, other, config(issuer), 2)


def test_linking_an_invited_person_ends_their_pending_links(issuer: Issuer) -> None:
    before = invited()
    _, pending = accounts.new_invitation(before, 0, 10_000)
    assert accounts.invitation_usable(pending, before, 1)
    after = oidc.account_for(before, oidc.identity_of(PERSON, config(issuer)), config(issuer), 1)
    assert accounts.state_of(after) == "active" and after.oidc_subject == "sub-1"
    assert not accounts.invitation_usable(pending, after, 1)
    # A person who signs in already keeps their sessions (and links) when linked.
    active = accounts.with_password(invited(), "$argon2id$x")
    linked = oidc.account_for(active, oidc.identity_of(PERSON, config(issuer)), config(issuer), 1)
    assert linked.session_epoch == active.session_epoch


def test_a_gateway_admin_comes_from_a_claim_only_when_allowed(issuer: Issuer) -> None:
    claims = {**PERSON, "role": ["gateway_admin", "developer"]}
    assert oidc.identity_of(claims, config(issuer)).role == "developer"
    admin = oidc.identity_of(claims, config(issuer, allow_gateway_admin=True))
    assert admin.role == "gateway_admin" and admin.tenant_id == ""
    with pytest.raises(PermissionDenied):
        oidc.identity_of({**PERSON, "role": "gateway_admin"}, config(issuer, default_role="gateway_admin"))
