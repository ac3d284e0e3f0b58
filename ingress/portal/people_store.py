"""The portal's people in NATS KV: users (followed by a mirror, written with
revision checks), one-time invitations and sign-in sessions (read and
written key by key, each under its token's digest), and the audit trail of
everything people do.

Shared by the portal's pages (``ingress.portal.auth``) and the admin API
(``ingress.admin.users``): inviting, enabling and changing a role work the
same from either.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from schemas import subjects
from schemas.control import Tenant
from schemas.errors import RecordConflict, RecordNotFound
from schemas.events import AuditEvent
from schemas.ids import new_id
from schemas.people import (
    Invitation,
    PortalSession,
    User,
    decode_invitation,
    decode_portal_session,
    decode_user,
    kv_encode,
    token_digest,
)
from services.bus.kv import KvMirror
from services.control import Actor
from services.people import accounts, mail, passwords
from services.people.settings import PortalConfig

log = logging.getLogger("sluice.portal")
_json = msgspec.json.Encoder()
# Argon2 takes ~64 MiB and tens of ms a hash: at most this many at once per
# process, so a burst of sign-ins queues rather than exhausts memory.
HASHING_AT_ONCE = 2


def now_ms() -> int:
    return int(time.time() * 1000)


def audit_view(user: User | None) -> str:
    """A user as JSON for the audit trail, without the password's hash."""
    if user is None:
        return ""
    data = msgspec.to_builtins(user)
    data.pop("password_hash", None)
    data["has_password"] = bool(user.password_hash)
    return _json.encode(data).decode()


@dataclass(frozen=True, slots=True)
class Invited:
    user: User
    token: str
    invitation: Invitation
    link: str
    # Whether it also went by mail ([portal.smtp]); the link is shown either way.
    mailed: bool = False


class PeopleStore:
    def __init__(
        self,
        js: JetStreamContext,
        users: KvMirror[User],
        tenants: KvMirror[Tenant],
        audit: Callable[[AuditEvent], None],
        config: PortalConfig,
    ) -> None:
        self.js = js
        self.users = users
        self.tenants = tenants
        self._audit = audit
        self.config = config
        self._buckets: dict[str, KeyValue] = {}
        self._hashing = asyncio.Semaphore(HASHING_AT_ONCE)

    async def _kv(self, bucket: str) -> KeyValue:
        kv = self._buckets.get(bucket)
        if kv is None:
            kv = self._buckets[bucket] = await self.js.key_value(bucket)
        return kv

    @property
    def session_ms(self) -> int:
        return int(self.config.session_hours * 3_600_000)

    @property
    def invitation_ms(self) -> int:
        return int(self.config.invitation_days * 86_400_000)

    # --- passwords, off the event loop -------------------------------------

    async def hash_password(self, password: str) -> str:
        async with self._hashing:
            return await asyncio.to_thread(passwords.hash_password, password)

    async def check_password(self, user: User | None, password: str) -> bool:
        """Whether ``password`` is the user's; an unknown person or one with no
        password costs the same time (a decoy hash), so timing tells nothing."""
        stored = user.password_hash if user is not None and user.password_hash else passwords.decoy_hash()
        async with self._hashing:
            ok = await asyncio.to_thread(passwords.verify, stored, password)
        return ok and user is not None and bool(user.password_hash)

    # --- users ---------------------------------------------------------------

    def user(self, user_id: str) -> User | None:
        return self.users.items.get(user_id)

    def by_email(self, email: str) -> User | None:
        return self.users.items.get(accounts.user_id_for(email))

    def all_users(self) -> list[User]:
        return list(self.users.items.values())

    def tenant_exists(self, tenant_id: str) -> bool:
        return tenant_id in self.tenants.items

    async def read_user(self, user_id: str) -> tuple[User | None, int]:
        kv = await self._kv(subjects.KV_USERS)
        try:
            entry = await kv.get(user_id)
        except (KeyNotFoundError, KeyDeletedError):
            return None, 0
        if entry.value is None:
            return None, 0
        return decode_user(entry.value), entry.revision or 0

    async def write_user(self, user: User, revision: int, actor: str, action: str, before: User | None) -> None:
        """Create (``revision`` 0) or replace the revision read; audited."""
        kv = await self._kv(subjects.KV_USERS)
        try:
            if revision:
                await kv.update(user.id, kv_encode(user), last=revision)
            else:
                await kv.create(user.id, kv_encode(user))
        except KeyWrongLastSequenceError:
            if revision:
                raise RecordConflict(f"User {user.id!r} changed meanwhile; read it again and retry.") from None
            raise RecordConflict(f"{user.email} has an account already.") from None
        self.users.apply(user.id, user)
        self.audit(actor, action, user.id, user.tenant_id, before=audit_view(before), after=audit_view(user))

    async def change_user(self, user_id: str, by: Actor, action: str, change: Callable[[User], User]) -> User:
        """Read, change and write one user the actor may see (404 if not)."""
        before, revision = await self.read_user(user_id)
        accounts.require_sees(by, before, user_id)
        assert before is not None
        after = change(before)
        if after != before:
            await self.write_user(after, revision, by.key_id, action, before)
        return after

    # --- invitations -------------------------------------------------------

    def link(self, base_url: str, token: str) -> str:
        return f"{(self.config.base_url or base_url).rstrip('/')}/portal/invitations/{token}"

    async def invite(self, email: str, tenant_id: str, role: str, by: Actor, base_url: str, name: str = "") -> Invited:
        """A new person (or one invited before who never accepted: a new link)
        and their one-time link. Someone who already signs in is a conflict."""
        person_role = accounts.role_of(role)
        tenant_id = accounts.check_grant(by, tenant_id, person_role)
        if tenant_id and not self.tenant_exists(tenant_id):
            raise RecordNotFound(f"No tenant {tenant_id!r}.")
        at = now_ms()
        fresh = accounts.new_user(email, tenant_id, person_role, by.key_id, at, name)
        before, revision = await self.read_user(fresh.id)
        if before is None:
            user = fresh
            await self.write_user(user, 0, by.key_id, "invite", None)
        else:
            visible = by.is_gateway_admin or before.tenant_id == by.tenant_id
            if accounts.state_of(before) != "invited" or not visible:
                # Addresses are unique across tenants: another tenant's person is "taken", no more.
                raise RecordConflict(f"{before.email} has an account already.", code="user_exists")
            user = msgspec.structs.replace(
                before, role=fresh.role, tenant_id=fresh.tenant_id, name=fresh.name or before.name
            )
            if user != before:
                await self.write_user(user, revision, by.key_id, "invite", before)
            else:
                self.audit(by.key_id, "invite", user.id, user.tenant_id, after=audit_view(user))
        return await self._link_for(user, at, base_url)

    async def new_link(self, user_id: str, by: Actor, base_url: str) -> Invited:
        """Another one-time link for a person the actor sees: a new
        invitation for someone who never accepted, a password reset for
        someone who signs in (setting it ends their sessions)."""
        accounts.require_people_admin(by)
        user, _ = await self.read_user(user_id)
        user = accounts.require_sees(by, user, user_id)
        if user.disabled:
            raise RecordConflict(f"{user.email} is disabled: enable them first.", code="user_disabled")
        action = "invite" if accounts.state_of(user) == "invited" else "password_reset"
        self.audit(by.key_id, action, user.id, user.tenant_id, after=audit_view(user))
        return await self._link_for(user, now_ms(), base_url)

    async def _link_for(self, user: User, at: int, base_url: str) -> Invited:
        token, invitation = accounts.new_invitation(user, at, self.invitation_ms)
        kv = await self._kv(subjects.KV_INVITATIONS)
        await kv.create(token_digest(token), kv_encode(invitation))
        link = self.link(base_url, token)
        return Invited(user=user, token=token, invitation=invitation, link=link, mailed=await self._mail(user, link))

    async def _mail(self, user: User, link: str) -> bool:
        """Send the link by mail when SMTP is configured; a failure is logged
        (the admin has the link and passes it on another way)."""
        smtp = self.config.smtp
        if smtp is None:
            return False
        until = dt.datetime.fromtimestamp(now_ms() / 1000 + self.invitation_ms / 1000, dt.UTC)
        try:
            message = mail.invitation_message(
                smtp.sender, user.email, link, user.tenant_id, until.strftime("%Y-%m-%d %H:%M UTC")
            )
            await asyncio.to_thread(mail.send, smtp, message)
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            log.warning("invitation mail to %s not sent: %r", user.email, exc)
            return False
        return True

    async def invitation(self, token: str) -> tuple[Invitation | None, User | None, int]:
        """The invitation behind a link, if it can still be used, and its person."""
        kv = await self._kv(subjects.KV_INVITATIONS)
        try:
            entry = await kv.get(token_digest(token))
        except (KeyNotFoundError, KeyDeletedError):
            return None, None, 0
        if entry.value is None:
            return None, None, 0
        invitation = decode_invitation(entry.value)
        user = self.user(invitation.user_id)
        if not accounts.invitation_usable(invitation, user, now_ms()):
            return None, None, 0
        return invitation, user, entry.revision or 0

    async def accept(self, token: str, password: str) -> User:
        """Set the person's password from their link, which is then used up
        (deleted at the revision read: two tabs cannot both use it)."""
        passwords.check_new(password)
        invitation, user, revision = await self.invitation(token)
        if invitation is None or user is None:
            raise RecordNotFound("This invitation link is not valid: it was used, it expired, or it never was.")
        hashed = await self.hash_password(password)
        kv = await self._kv(subjects.KV_INVITATIONS)
        try:
            await kv.delete(token_digest(token), last=revision)
        except KeyWrongLastSequenceError:
            raise RecordNotFound("This invitation link was used already.") from None
        for _ in range(3):  # a concurrent change to the user (a role) is read again
            before, user_revision = await self.read_user(invitation.user_id)
            # Read fresh: another link of theirs may have set the password since this one was checked.
            if not accounts.invitation_usable(invitation, before, now_ms()):
                raise RecordNotFound("This invitation is no longer valid: its account is gone, disabled or changed.")
            assert before is not None
            try:
                after = accounts.with_password(before, hashed)
                await self.write_user(after, user_revision, f"user:{before.id}", "accept_invitation", before)
                return after
            except RecordConflict:
                continue
        raise RecordConflict("The account changed while the password was set; use a new invitation.")

    # --- sessions ------------------------------------------------------------

    async def open_session(self, user: User, via: str, replaces: str = "") -> tuple[str, PortalSession]:
        """A new session (and token) for a person who just proved who they
        are; the session the browser had before, if any, is ended: a token
        planted before sign-in is never the one signed in (fixation)."""
        if replaces:
            await self.end_session(replaces)
        token, session = accounts.new_session(user, now_ms(), self.session_ms, via)
        kv = await self._kv(subjects.KV_PORTAL_SESSIONS)
        await kv.put(token_digest(token), kv_encode(session))
        return token, session

    async def session(self, token: str) -> PortalSession | None:
        kv = await self._kv(subjects.KV_PORTAL_SESSIONS)
        try:
            entry = await kv.get(token_digest(token))
        except (KeyNotFoundError, KeyDeletedError):
            return None
        if entry.value is None:
            return None
        try:
            return decode_portal_session(entry.value)
        except msgspec.DecodeError:
            return None

    async def sessions_bucket(self) -> KeyValue:
        """The sessions' bucket, for what the portal keeps for one browser a
        little while (``ingress.portal.once``)."""
        return await self._kv(subjects.KV_PORTAL_SESSIONS)

    async def end_session(self, token: str) -> None:
        kv = await self._kv(subjects.KV_PORTAL_SESSIONS)
        await kv.delete(token_digest(token))  # no error for a key that is not there

    # --- audit -------------------------------------------------------------

    def audit(
        self,
        actor: str,
        action: str,
        user_id: str,
        tenant_id: str,
        *,
        before: str = "",
        after: str = "",
        detail: dict[str, Any] | None = None,
    ) -> None:
        """One audit event about a person (``detail``: what else is worth
        keeping, e.g. the client address of a failed sign-in)."""
        self._audit(
            AuditEvent(
                event_id=new_id(),
                at_ns=time.time_ns(),
                actor=actor,
                action=action,
                record_type="user",
                record_id=user_id,
                tenant_id=tenant_id,
                before=before,
                after=after or (_json.encode(detail).decode() if detail else ""),
            )
        )
