"""Who sees and changes what in the developer portal, without I/O.

A developer sees their tenant's APIs and their own apps and keys; a tenant
admin all of the tenant's apps, keys, subscriptions and users, and decides
the tenant's subscriptions; a gateway admin (no tenant) everything. Another
tenant's record is reported missing exactly as a missing one is (a 404), so
ids are never confirmed to strangers; a page a role may not use at all is a
403 (it names no record).
"""

from __future__ import annotations

import msgspec

from schemas.control import Role
from schemas.errors import InvalidRequest, PermissionDenied, RecordNotFound
from schemas.people import PersonRole
from services.control import Actor

# A person writes control records as the admin API's actors do (audited
# under their user id); a developer has a caller's rights there.
_ACTOR_ROLE: dict[str, Role] = {"developer": "caller", "tenant_admin": "tenant_admin", "gateway_admin": "gateway_admin"}


class Who(msgspec.Struct, frozen=True):
    """The signed-in person, as the portal's rules need them."""

    user_id: str
    role: PersonRole
    tenant_id: str = ""

    @property
    def is_gateway_admin(self) -> bool:
        return self.role == "gateway_admin"

    @property
    def is_admin(self) -> bool:
        return self.role in ("tenant_admin", "gateway_admin")

    def sees_tenant(self, tenant_id: str) -> bool:
        return self.is_gateway_admin or (bool(self.tenant_id) and self.tenant_id == tenant_id)

    def actor(self) -> Actor:
        """The actor the control store audits the person's writes under:
        ``user:<id>``, as the sign-in's own audit names a person (never
        confused with a key's id)."""
        return Actor(key_id=f"user:{self.user_id}", role=_ACTOR_ROLE[self.role], tenant_id=self.tenant_id)


def require_visible(who: Who, tenant_id: str, kind: str, record_id: str) -> None:
    if not who.sees_tenant(tenant_id):
        raise RecordNotFound(f"No {kind} {record_id!r}.")


def require_admin(who: Who, what: str) -> None:
    if not who.is_admin:
        raise PermissionDenied(f"Only a tenant admin or gateway admin may {what}.", code="admin_only")


def require_gateway_admin(who: Who, what: str) -> None:
    if not who.is_gateway_admin:
        raise PermissionDenied(f"Only a gateway admin may {what}.", code="gateway_admin_only")


def require_tenant(who: Who, what: str) -> str:
    """The person's tenant; a gateway admin has none to act for."""
    if not who.tenant_id:
        raise InvalidRequest(f"A gateway admin belongs to no tenant, so cannot {what}.", code="no_tenant")
    return who.tenant_id


def clean_text(value: str, field: str, most: int, *, required: bool = False, lines: bool = False) -> str:
    """A person's free text (a name, a reason) trimmed and checked: at most
    ``most`` characters, no control characters (they would break a log line
    or a header if the text ever reached one); line breaks only where
    ``lines`` allows them (a reason, not a name)."""
    text = value.replace("\r\n", "\n").strip()
    if required and not text:
        raise InvalidRequest(f"{field} is required.", code="missing_field")
    if len(text) > most:
        raise InvalidRequest(f"{field} is at most {most} characters.", code="field_too_long")
    allowed = "\n\t" if lines else ""
    if any((ord(c) < 32 and c not in allowed) or 127 <= ord(c) < 160 or c in "\u2028\u2029" for c in text):
        raise InvalidRequest(f"{field} may not hold control characters.", code="invalid_characters")
    return text
