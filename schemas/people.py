"""People, not only keys: the developer portal's accounts, invitations,
sign-in sessions and apps, as control-plane records in NATS KV.

Secrets never sit in a record as given: a password is an argon2 hash, an
invitation or session token is kept as its SHA-256 (``token_digest``), so a
read of the buckets signs nobody in. Machines keep using API keys; a
developer's keys belong to an app (``ApiKey.app_id``) the developer made in
the portal.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import msgspec

# A developer sees and calls what the tenant may; a tenant admin also
# approves the tenant's subscriptions and sees its users; a gateway admin
# (no tenant) sees everything and runs the admin views.
PersonRole = Literal["developer", "tenant_admin", "gateway_admin"]
# How a person signed in.
SignIn = Literal["password", "oidc"]


def token_digest(token: str) -> str:
    """The key a token (invitation, session) is kept under: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


class User(msgspec.Struct, omit_defaults=True):
    """A person; KV ``sluice_users`` by id. ``email`` is unique (lower-case)."""

    id: str
    email: str
    role: PersonRole = "developer"
    # Empty for a gateway admin.
    tenant_id: str = ""
    name: str = ""
    # argon2id, PHC string; empty until the invitation is accepted (or for
    # a person who signs in by OIDC only).
    password_hash: str = ""
    # The identity provider's subject, once signed in that way.
    oidc_subject: str = ""
    disabled: bool = False
    invited_by: str = ""
    created_at_ms: int = 0
    # Bumped when the password changes or the user is disabled: sessions made
    # before carry an older number and end.
    session_epoch: int = 0


class Invitation(msgspec.Struct, omit_defaults=True):
    """A one-time link to set a password; KV ``sluice_invitations`` by the
    token's digest. Used once, then deleted; expires."""

    user_id: str
    expires_at_ms: int
    created_at_ms: int = 0
    # The person's ``session_epoch`` when it was made: a password set since
    # (by this link, another one or the person) or a disable ends it, as it
    # ends their sessions; a second reset link sent must not work after the first.
    session_epoch: int = 0


class PortalSession(msgspec.Struct, omit_defaults=True):
    """A signed-in browser; KV ``sluice_portal_sessions`` (entries age out)
    by the cookie token's digest. The CSRF token is per session."""

    user_id: str
    csrf: str
    created_at_ms: int
    expires_at_ms: int
    session_epoch: int = 0
    via: SignIn = "password"


class App(msgspec.Struct, omit_defaults=True):
    """A developer's app, which owns the developer's API keys; KV
    ``sluice_apps`` by id."""

    id: str
    tenant_id: str
    user_id: str
    name: str
    description: str = ""
    created_at_ms: int = 0


kv_encode = msgspec.msgpack.encode
decode_user = msgspec.msgpack.Decoder(User).decode
decode_invitation = msgspec.msgpack.Decoder(Invitation).decode
decode_portal_session = msgspec.msgpack.Decoder(PortalSession).decode
decode_app = msgspec.msgpack.Decoder(App).decode
