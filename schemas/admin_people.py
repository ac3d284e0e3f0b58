"""The admin API's shapes for the portal's people (``/admin/v1/users``):
inviting someone (the answer carries the one-time link), reading people,
disabling and enabling them, changing their role."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from msgspec import UNSET, Meta, UnsetType

from schemas.admin import Id, Strict

Email = Annotated[str, Meta(min_length=3, max_length=254, description="An e-mail address (kept lower-case).")]
RoleName = Annotated[
    Literal["developer", "tenant_admin", "tenant-admin", "gateway_admin", "gateway-admin"],
    Meta(description="developer or tenant_admin (tenant-admin too); gateway_admin: a gateway admin only, no tenant."),
]
PersonName = Annotated[str, Meta(max_length=200)]
UserState = Literal["invited", "active", "disabled"]


class UserInvite(Strict):
    email: Email
    role: RoleName = "developer"
    # Required from a gateway admin (but for a gateway admin invited); a tenant admin's own otherwise.
    tenant: Id | None = None
    name: PersonName = ""


class UserUpdate(Strict):
    """Only the fields sent change. ``tenant`` moves a person to another
    tenant (a gateway admin only), e.g. with a role other than gateway_admin."""

    role: RoleName | UnsetType = UNSET
    tenant: Id | UnsetType = UNSET
    name: PersonName | UnsetType = UNSET
    disabled: bool | UnsetType = UNSET


class UserOut(Strict):
    id: str
    email: str
    role: str
    tenant: str | None
    state: UserState
    # How they sign in: "password", "oidc" (both once linked); none before they accept.
    signs_in_with: list[str]
    name: str = ""
    invited_by: str = ""
    created_at: dt.datetime | None = None


class UserInvited(Strict):
    user: UserOut
    # The one-time link that sets the password: give it to the person.
    link: str
    expires_at: dt.datetime | None
    # Whether it was also sent by mail ([portal.smtp]).
    mailed: bool = False
