"""People's records and the rules on them: e-mail addresses, ids,
invitations, sessions, and who may manage whom."""

from __future__ import annotations

import hashlib
import re

import msgspec

from schemas.errors import InvalidRequest, PermissionDenied, RecordNotFound
from schemas.people import Invitation, PersonRole, PortalSession, User
from services.control import Actor
from services.people.tokens import new_token

# RFC 5321's limit; a practical shape check (the invitation proves the address).
MAX_EMAIL = 254
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"^[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$")
MAX_NAME = 200
# What an admin (or the CLI, as "tenant-admin") may say for a role.
ROLE_NAMES: dict[str, PersonRole] = {
    "developer": "developer",
    "tenant_admin": "tenant_admin",
    "tenant-admin": "tenant_admin",
    "gateway_admin": "gateway_admin",
    "gateway-admin": "gateway_admin",
}


def normal_email(email: str) -> str:
    """The address as kept (trimmed, lower-case); 400 unless it looks like one."""
    email = email.strip().lower()
    if len(email) > MAX_EMAIL or not _EMAIL.fullmatch(email):
        raise InvalidRequest("That is not an e-mail address.", code="invalid_email")
    return email


def user_id_for(email: str) -> str:
    """A person's id, from their (normalised) address: the bucket's key is
    then unique per address, so two replicas cannot both invite one person
    (the second create fails on the revision check)."""
    return "usr_" + hashlib.sha256(email.encode()).hexdigest()[:24]


def role_of(name: str) -> PersonRole:
    role = ROLE_NAMES.get(name.strip().lower())
    if role is None:
        raise InvalidRequest("A role is developer, tenant_admin or gateway_admin.", code="invalid_role")
    return role


def clean_name(name: str) -> str:
    name = " ".join(name.split())
    if len(name) > MAX_NAME:
        raise InvalidRequest(f"A name has at most {MAX_NAME} characters.", code="invalid_name")
    return name


def new_user(email: str, tenant_id: str, role: PersonRole, invited_by: str, now_ms: int, name: str = "") -> User:
    """A person as invited: no password until the invitation is accepted.
    A gateway admin belongs to no tenant; everyone else to exactly one."""
    if role == "gateway_admin":
        tenant_id = ""
    elif not tenant_id:
        raise InvalidRequest("A developer or tenant admin belongs to a tenant: name one.", code="missing_tenant")
    email = normal_email(email)
    return User(
        id=user_id_for(email),
        email=email,
        role=role,
        tenant_id=tenant_id,
        name=clean_name(name),
        invited_by=invited_by,
        created_at_ms=now_ms,
    )


def state_of(user: User) -> str:
    if user.disabled:
        return "disabled"
    return "active" if user.password_hash or user.oidc_subject else "invited"


def new_invitation(user: User, now_ms: int, ttl_ms: int) -> tuple[str, Invitation]:
    """(the link's token, the record kept under its digest)."""
    invitation = Invitation(
        user_id=user.id, expires_at_ms=now_ms + ttl_ms, created_at_ms=now_ms, session_epoch=user.session_epoch
    )
    return new_token(), invitation


def invitation_usable(invitation: Invitation, user: User | None, now_ms: int) -> bool:
    """Unexpired, its person enabled, and no password set nor disable since it was made."""
    return (
        user is not None
        and not user.disabled
        and now_ms < invitation.expires_at_ms
        and invitation.session_epoch == user.session_epoch
    )


def with_password(user: User, password_hash: str) -> User:
    """The user with a new password: sessions made before it end (epoch)."""
    return msgspec.structs.replace(user, password_hash=password_hash, session_epoch=user.session_epoch + 1)


def with_oidc(user: User, subject: str, role: PersonRole) -> User:
    """The user signing in as an identity provider's ``subject``, with the
    role it names. A person who never accepted their invitation is active
    from now on: their pending links end (epoch), lest one set a password
    beside the provider's sign-in."""
    epoch = user.session_epoch + 1 if state_of(user) == "invited" else user.session_epoch
    return msgspec.structs.replace(user, oidc_subject=subject, role=role, session_epoch=epoch)


def with_disabled(user: User, disabled: bool) -> User:
    """Disabling ends every session at once (epoch); enabling starts none."""
    if user.disabled == disabled:
        return user
    epoch = user.session_epoch + 1 if disabled else user.session_epoch
    return msgspec.structs.replace(user, disabled=disabled, session_epoch=epoch)


def new_session(user: User, now_ms: int, ttl_ms: int, via: str = "password") -> tuple[str, PortalSession]:
    """(the cookie's token, the record kept under its digest), with its own CSRF token."""
    session = PortalSession(
        user_id=user.id,
        csrf=new_token(),
        created_at_ms=now_ms,
        expires_at_ms=now_ms + ttl_ms,
        session_epoch=user.session_epoch,
        via=via,  # type: ignore[arg-type]
    )
    return new_token(), session


def session_valid(session: PortalSession, user: User | None, now_ms: int) -> bool:
    """A session holds while it has not expired, its person exists and is
    enabled, and nothing (a new password, a disable) bumped their epoch."""
    return (
        user is not None
        and not user.disabled
        and now_ms < session.expires_at_ms
        and session.session_epoch == user.session_epoch
    )


# Who manages people is an ``Actor``, as for every admin rule: an admin key
# (the admin API) or a signed-in person (``ingress.portal.auth.Person.actor``:
# key_id "user:<id>", and a developer is a "caller", who manages no one).


def require_people_admin(by: Actor) -> None:
    if by.role not in ("gateway_admin", "tenant_admin"):
        raise PermissionDenied("Only a gateway or tenant admin may manage people.", code="not_an_admin")


def require_sees(by: Actor, user: User | None, user_id: str) -> User:
    """The user, if ``by`` may see them; another tenant's person (or a
    gateway admin, to a tenant admin) is reported missing, as a missing one is."""
    if user is None or not (by.is_gateway_admin or (user.tenant_id and user.tenant_id == by.tenant_id)):
        raise RecordNotFound(f"No user {user_id!r}.")
    return user


def check_grant(by: Actor, tenant_id: str, role: PersonRole) -> str:
    """The tenant a person is invited into (or moved to a role in): a gateway
    admin names any; a tenant admin only its own, and no gateway admins."""
    require_people_admin(by)
    if role == "gateway_admin":
        if not by.is_gateway_admin:
            raise PermissionDenied("Only a gateway admin may make gateway admins.", code="gateway_admin_only")
        return ""
    if by.is_gateway_admin:
        if not tenant_id:
            raise InvalidRequest("'tenant' is required.", code="missing_tenant")
        return tenant_id
    if tenant_id and tenant_id != by.tenant_id:
        # As if the tenant did not exist: a tenant admin learns nothing of others.
        raise RecordNotFound(f"No tenant {tenant_id!r}.")
    return by.tenant_id
