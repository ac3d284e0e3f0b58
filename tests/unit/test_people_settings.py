"""``[portal]`` in the config file: its defaults, what is refused, and that
its lifetimes agree with the buckets'."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from services import config as config_mod
from services.bus import portal_buckets
from services.people import settings
from services.people.settings import OidcConfig, PortalConfig, SmtpConfig


def test_the_lifetimes_agree_with_the_buckets() -> None:
    assert settings.SESSION_TTL_S == portal_buckets.SESSION_TTL_S
    assert settings.INVITATION_TTL_S == portal_buckets.INVITATION_TTL_S
    assert settings.problem(PortalConfig()) == ""


def test_a_config_file_with_oidc_and_smtp(tmp_path: Path) -> None:
    path = tmp_path / "sluice.toml"
    path.write_text(
        '[portal]\nbase_url = "https://gw.example.com"\n'
        '[portal.oidc]\nissuer = "https://id.example.com"\nclient_id = "sluice"\nclient_secret_env = "OIDC_SECRET"\n'
        'tenant_claim = "org"\nrole_claim = "groups"\ndefault_role = "developer"\n'
        '[portal.smtp]\nhost = "smtp.example.com"\nport = 587\nfrom = "portal@example.com"\n'
    )
    portal = config_mod.load(path).portal
    assert portal.base_url == "https://gw.example.com"
    assert portal.oidc is not None and portal.oidc.tenant_claim == "org" and portal.oidc.role_claim == "groups"
    assert portal.smtp is not None and portal.smtp.sender == "portal@example.com"


def test_no_portal_table_is_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "sluice.toml"
    path.write_text("")
    portal = config_mod.load(path).portal
    assert portal.oidc is None and portal.smtp is None and portal.login_failures == 5


@pytest.mark.parametrize(
    "portal",
    [
        PortalConfig(base_url="gw.example.com"),
        PortalConfig(session_hours=13),
        PortalConfig(invitation_days=8),
        PortalConfig(login_failures=0),
        PortalConfig(login_failures_per_account=0),
        PortalConfig(login_window_s=3600),
        PortalConfig(oidc=OidcConfig(issuer="id.example.com", client_id="x")),
        PortalConfig(oidc=OidcConfig(issuer="https://id.example.com", client_id="")),
        PortalConfig(oidc=OidcConfig(issuer="https://id.example.com", client_id="x", scopes=["email"])),
        PortalConfig(oidc=OidcConfig(issuer="https://id.example.com", client_id="x", default_role="gateway_admin")),
        PortalConfig(smtp=SmtpConfig(host="smtp.example.com", sender="nobody")),
    ],
)
def test_what_cannot_work_is_refused(portal: PortalConfig) -> None:
    assert settings.problem(portal)


@pytest.mark.parametrize("credential", [{"user_env": "SMTP_USER"}, {"password_env": "SMTP_PASSWORD"}])
@pytest.mark.parametrize("host", ["smtp.example.com", "10.0.0.5", "localhost.example.com", "127.0.0.1.nip.io"])
def test_credentials_never_go_in_the_clear_past_loopback(credential: dict[str, str], host: str) -> None:
    smtp = SmtpConfig(host=host, sender="portal@example.com", starttls=False, **credential)  # type: ignore[arg-type]
    assert "smtp.starttls" in settings.problem(PortalConfig(smtp=smtp))
    # Over STARTTLS, or with no credentials to send, it may be.
    assert settings.problem(PortalConfig(smtp=msgspec.structs.replace(smtp, starttls=True))) == ""
    plain = SmtpConfig(host=host, sender="portal@example.com", starttls=False)
    assert settings.problem(PortalConfig(smtp=plain)) == ""


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "localhost", "LocalHost"])
def test_a_relay_on_loopback_may_take_credentials_in_the_clear(host: str) -> None:
    smtp = SmtpConfig(host=host, sender="p@example.com", starttls=False, user_env="U", password_env="P")
    assert settings.problem(PortalConfig(smtp=smtp)) == ""


def test_a_config_file_sending_credentials_in_the_clear_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sluice.toml"
    path.write_text(
        '[portal.smtp]\nhost = "smtp.example.com"\nfrom = "portal@example.com"\n'
        'user_env = "SMTP_USER"\npassword_env = "SMTP_PASSWORD"\nstarttls = false\n'
    )
    with pytest.raises(config_mod.ConfigError, match=r"\[portal\] smtp\.starttls"):
        config_mod.load(path)


def test_a_refused_portal_table_stops_the_config(tmp_path: Path) -> None:
    path = tmp_path / "sluice.toml"
    path.write_text("[portal]\nlogin_window_s = 5\n")
    with pytest.raises(config_mod.ConfigError, match=r"\[portal\] login_window_s"):
        config_mod.load(path)


def test_an_unknown_portal_field_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"sesion_hours": 1}, PortalConfig)
