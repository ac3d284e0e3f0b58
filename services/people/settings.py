"""``[portal]`` in the config file: links, session and invitation lifetimes,
the login limiter, and optional OIDC sign-in and SMTP mail."""

from __future__ import annotations

import ipaddress

import msgspec

from schemas.people import PersonRole

# The buckets' TTLs (``services.bus.portal_buckets``, which imports NATS;
# a test checks they agree): a session or invitation cannot outlive its bucket.
SESSION_TTL_S = 12 * 3600.0
INVITATION_TTL_S = 7 * 24 * 3600.0
# The login limiter counts in the shared rate counters, which JetStream
# forgets after 15 minutes (``quota_ledger.RATES_MAX_AGE_S``, checked by a
# test): a longer window would lose its oldest failures.
MAX_LOGIN_WINDOW_S = 15 * 60


class OidcConfig(msgspec.Struct, forbid_unknown_fields=True):
    """An identity provider people may sign in with (authorization code with PKCE)."""

    # Its discovery document is <issuer>/.well-known/openid-configuration.
    issuer: str
    client_id: str
    # The environment variable holding the client secret; "" for a public client.
    client_secret_env: str = ""
    # The id token's claims naming the person's tenant and role.
    tenant_claim: str = "tenant"
    role_claim: str = "role"
    # When the token has no role claim (or no tenant claim).
    default_role: PersonRole = "developer"
    default_tenant: str = ""
    # A role claim may make a gateway admin only when this says so.
    allow_gateway_admin: bool = False
    # An account is made, or an existing one (an invited person's, say) linked,
    # by the token's e-mail address only when its email_verified claim is
    # true: an address the provider let anyone claim would take over its
    # account here. false (an explicit choice, for a provider that never sends
    # the claim) accepts a token without it; one saying false is refused either way.
    require_verified_email: bool = True
    scopes: list[str] = msgspec.field(default_factory=lambda: ["openid", "email", "profile"])
    # The sign-in button's words: "Sign in with <label>".
    label: str = "single sign-on"
    timeout_s: float = 10.0


class SmtpConfig(msgspec.Struct, forbid_unknown_fields=True, rename={"sender": "from"}):
    """Where invitation links are mailed from, when configured."""

    host: str
    sender: str
    port: int = 587
    user_env: str = ""
    password_env: str = ""
    # STARTTLS after connecting (port 587); off only for a relay on loopback
    # (the config check refuses credentials in the clear to any other host).
    starttls: bool = True
    timeout_s: float = 10.0


class PortalConfig(msgspec.Struct, forbid_unknown_fields=True):
    # The gateway's address as people reach it, for links in invitations
    # (and OIDC's redirect); "" takes it from the request.
    base_url: str = ""
    session_hours: float = SESSION_TTL_S / 3600
    invitation_days: float = INVITATION_TTL_S / 86400
    # Failed sign-ins allowed in the window: at one account from one client
    # address (a stranger's guesses lock only the stranger out), from one
    # client address at any accounts, and at one account from anywhere (only
    # a distributed attack gets there; it locks the account for everyone).
    login_failures: int = 5
    login_failures_per_address: int = 20
    login_failures_per_account: int = 100
    login_window_s: int = MAX_LOGIN_WINDOW_S
    oidc: OidcConfig | None = None
    smtp: SmtpConfig | None = None


def on_loopback(host: str) -> bool:
    """Whether a host is this machine: a loopback address, or "localhost"
    (no other name is resolved to find out)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _smtp_problem(smtp: SmtpConfig) -> str:
    if not smtp.host or "@" not in smtp.sender or not 0 < smtp.port < 65536:
        return "smtp needs a host, a from address and a port"
    if (smtp.user_env or smtp.password_env) and not smtp.starttls and not on_loopback(smtp.host):
        return (
            f"smtp.starttls must be true to send smtp.user_env/password_env's credentials to {smtp.host!r}, "
            "which is not loopback: they would cross the network in the clear"
        )
    return ""


def problem(config: PortalConfig) -> str:
    """What is wrong with ``[portal]``, or ""."""
    if config.base_url and not config.base_url.startswith(("http://", "https://")):
        return "base_url must start with http:// or https://"
    if not 0 < config.session_hours <= SESSION_TTL_S / 3600:
        return f"session_hours must be more than 0 and at most {SESSION_TTL_S / 3600:g} (the sessions bucket's TTL)"
    if not 0 < config.invitation_days <= INVITATION_TTL_S / 86400:
        return f"invitation_days must be more than 0 and at most {INVITATION_TTL_S / 86400:g}"
    for name in ("login_failures", "login_failures_per_address", "login_failures_per_account"):
        if getattr(config, name) < 1:
            return f"{name} must be 1 or more"
    if not 60 <= config.login_window_s <= MAX_LOGIN_WINDOW_S:
        return f"login_window_s must be from 60 to {MAX_LOGIN_WINDOW_S}"
    oidc = config.oidc
    if oidc is not None:
        if not oidc.issuer.startswith(("https://", "http://")):
            return "oidc.issuer must be an http(s) URL"
        if not oidc.client_id:
            return "oidc.client_id is required"
        if "openid" not in oidc.scopes:
            return "oidc.scopes must include openid"
        if oidc.default_role == "gateway_admin" and not oidc.allow_gateway_admin:
            return "oidc.default_role gateway_admin needs oidc.allow_gateway_admin"
    return _smtp_problem(config.smtp) if config.smtp is not None else ""
