"""/admin/v1/users: the portal's people. A gateway admin invites anyone into
any tenant (and other gateway admins); a tenant admin its own tenant's
developers and tenant admins, and sees only them (another tenant's person is
a 404). Inviting answers with the one-time link (also mailed when SMTP is
configured); disabling ends the person's sessions at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import msgspec
from litestar import Controller, Request, get, patch, post
from litestar.params import Parameter
from msgspec import UNSET

from ingress.admin.deps import ERROR_RESPONSES
from ingress.portal.people_store import Invited, PeopleStore
from schemas.admin import Id
from schemas.admin_people import UserInvite, UserInvited, UserOut, UserUpdate
from schemas.errors import InvalidRequest, RecordNotFound
from schemas.people import User
from services.control import Actor, time_of
from services.people import accounts

UserId = Annotated[str, Parameter(pattern=r"^usr_[0-9a-f]{24}$", description="A person's id.")]


def user_out(u: User) -> UserOut:
    ways = [w for w, yes in (("password", bool(u.password_hash)), ("oidc", bool(u.oidc_subject))) if yes]
    return UserOut(
        id=u.id,
        email=u.email,
        role=u.role,
        tenant=u.tenant_id or None,
        state=accounts.state_of(u),  # type: ignore[arg-type]
        signs_in_with=ways,
        name=u.name,
        invited_by=u.invited_by,
        created_at=time_of(u.created_at_ms),
    )


def invited_out(invited: Invited) -> UserInvited:
    return UserInvited(
        user=user_out(invited.user),
        link=invited.link,
        expires_at=time_of(invited.invitation.expires_at_ms),
        mailed=invited.mailed,
    )


def _people(request: Request) -> PeopleStore:
    return request.app.state.gateway.people


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _changed(by: Actor, user: User, data: UserUpdate, tenant_exists: Callable[[str], bool]) -> User:
    """The user with the update applied, within what ``by`` may grant."""
    changes: dict = {}
    role = accounts.role_of(data.role) if data.role is not UNSET else user.role
    tenant = user.tenant_id
    if data.tenant is not UNSET:
        if not by.is_gateway_admin:
            raise RecordNotFound(f"No tenant {data.tenant!r}.")  # a tenant admin knows of no other tenant
        tenant = data.tenant
    if role != user.role or tenant != user.tenant_id:
        if user.role == "gateway_admin" and role != "gateway_admin" and not tenant:
            raise InvalidRequest(
                "A developer or tenant admin belongs to a tenant: send 'tenant'.", code="missing_tenant"
            )
        tenant = accounts.check_grant(by, tenant, role)
        if tenant and not tenant_exists(tenant):
            raise RecordNotFound(f"No tenant {tenant!r}.")
        changes.update(role=role, tenant_id=tenant)
    if data.name is not UNSET:
        changes["name"] = accounts.clean_name(data.name)
    after = msgspec.structs.replace(user, **changes)
    if data.disabled is not UNSET:
        after = accounts.with_disabled(after, data.disabled)
    return after


class Users(Controller):
    path = "/users"
    tags = ["users"]

    @post("/", responses=ERROR_RESPONSES)
    async def invite_user(self, request: Request, data: UserInvite, actor: Actor) -> UserInvited:
        """Invites a person (or, for one invited before who never accepted, makes
        a new link); the answer's ``link`` sets their password, once."""
        invited = await _people(request).invite(
            data.email, data.tenant or "", data.role, actor, _base_url(request), data.name
        )
        return invited_out(invited)

    @get("/", responses=ERROR_RESPONSES)
    async def list_users(self, request: Request, actor: Actor, tenant: Id | None = None) -> list[UserOut]:
        accounts.require_people_admin(actor)
        if tenant is not None and not actor.is_gateway_admin and tenant != actor.tenant_id:
            return []  # another tenant has no one, as far as a tenant admin can tell
        seen = [
            u
            for u in _people(request).all_users()
            if (actor.is_gateway_admin or (u.tenant_id and u.tenant_id == actor.tenant_id))
            and (tenant is None or u.tenant_id == tenant)
        ]
        return [user_out(u) for u in sorted(seen, key=lambda u: (u.tenant_id, u.email))]

    @get("/{user_id:str}", responses=ERROR_RESPONSES)
    async def get_user(self, request: Request, user_id: UserId, actor: Actor) -> UserOut:
        accounts.require_people_admin(actor)
        user, _ = await _people(request).read_user(user_id)
        return user_out(accounts.require_sees(actor, user, user_id))

    @patch("/{user_id:str}", responses=ERROR_RESPONSES)
    async def update_user(self, request: Request, user_id: UserId, data: UserUpdate, actor: Actor) -> UserOut:
        """Changes a role, name or tenant, or disables (ending their sessions at once) or enables."""
        accounts.require_people_admin(actor)
        store = _people(request)
        action = "update" if data.disabled is UNSET else "disable" if data.disabled else "enable"
        after = await store.change_user(user_id, actor, action, lambda u: _changed(actor, u, data, store.tenant_exists))
        return user_out(after)

    @post("/{user_id:str}/disable", status_code=200, responses=ERROR_RESPONSES)
    async def disable_user(self, request: Request, user_id: UserId, actor: Actor) -> UserOut:
        """Disables the person: their sessions end at once, they cannot sign in."""
        return await self._set_disabled(request, user_id, actor, True)

    @post("/{user_id:str}/enable", status_code=200, responses=ERROR_RESPONSES)
    async def enable_user(self, request: Request, user_id: UserId, actor: Actor) -> UserOut:
        return await self._set_disabled(request, user_id, actor, False)

    async def _set_disabled(self, request: Request, user_id: str, actor: Actor, disabled: bool) -> UserOut:
        accounts.require_people_admin(actor)
        action = "disable" if disabled else "enable"
        after = await _people(request).change_user(
            user_id, actor, action, lambda u: accounts.with_disabled(u, disabled)
        )
        return user_out(after)

    @post("/{user_id:str}/invitation", status_code=200, responses=ERROR_RESPONSES)
    async def new_invitation(self, request: Request, user_id: UserId, actor: Actor) -> UserInvited:
        """A new one-time link: an invitation again for someone who has not
        accepted, a password reset for someone who has (the password they set
        with it ends their sessions)."""
        invited = await _people(request).new_link(user_id, actor, _base_url(request))
        return invited_out(invited)
