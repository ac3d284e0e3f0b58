"""What the portal's access, apps, usage and admin pages share: the
signed-in person as the rules see them, a posted form read with its CSRF
token checked, the apps' records, and the answer to a form (a 303 back, or
the form again with what was wrong: ``FormError``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from litestar import Request
from litestar.datastructures import UploadFile
from litestar.response import Redirect

from ingress.admin.store import ControlStore, Records
from ingress.portal import views
from schemas import subjects
from schemas.errors import GatewayError, InvalidRequest, RecordConflict, RequestTooLarge, UpstreamError
from schemas.people import App, decode_app
from schemas.rest import RestService, decode_service
from services.portal_scope import Who

# A field of a form is at most this long; the rules then hold each to its own,
# shorter limit (a reason, a name).
MAX_FIELD = 64 * 1024


def now_ms() -> int:
    return int(time.time() * 1000)


async def signed_in(request: Request) -> tuple[Any, Who]:
    """The person (``ingress.portal.auth.Person``) and their rules' view.
    Not signed in: ``NotSignedIn``, which the app answers with the sign-in page."""
    person = await views.signed_in(request)
    return person, views.who_of(person)


async def posted(request: Request, person: Any) -> dict[str, str]:
    """The form's text fields, once its CSRF token is the session's (403 otherwise)."""
    fields, _ = await posted_with_files(request, person)
    return fields


async def posted_with_files(request: Request, person: Any) -> tuple[dict[str, str], dict[str, bytes]]:
    """A form's text fields and its files' contents (a ``multipart/form-data``
    form), once its CSRF token is the session's. The portal's body limit
    (``app.MAX_BODY``) bounds what a file may be."""
    from ingress.portal.auth import check_csrf

    form = await request.form()
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for name, value in form.items():
        if isinstance(value, str):
            if len(value) > MAX_FIELD:
                raise InvalidRequest(f"The field {name[:40]!r} is too long.", code="field_too_long")
            fields[name] = value
        elif isinstance(value, UploadFile):
            files[name] = await value.read()
    check_csrf(request, person, fields.get("csrf", ""))
    return fields, files


@dataclass(frozen=True, slots=True)
class FormError:
    """What was wrong with a form, shown on the form itself (the page again,
    with what the person gave): ``form`` names which form of the page,
    ``field`` the input it is about (linked to the message with
    ``aria-describedby``; empty when no one input is)."""

    form: str
    message: str
    field: str = ""


# What a form's own content can be wrong with; anything else (a 403, another
# tenant's record as a 404) keeps its error page, as it would for any request.
INLINE_ERRORS: tuple[type[GatewayError], ...] = (InvalidRequest, RecordConflict, RequestTooLarge, UpstreamError)


def is_inline(exc: Exception) -> bool:
    return isinstance(exc, INLINE_ERRORS)


def form_error(form: str, exc: GatewayError, field: str = "") -> FormError:
    return FormError(form=form, message=exc.message, field=field)


def kept(fields: dict[str, str], *secret: str) -> dict[str, str]:
    """The values a form is shown again with: what was given, less its CSRF
    token and any secret (a password is typed again)."""
    return {k: v for k, v in fields.items() if k != "csrf" and k not in secret}


def back_to(path: str, done: str = "") -> Redirect:
    """After a form: see the page again (a reload does not post twice). ``done``
    names one of the page's fixed messages, never text a person wrote."""
    return Redirect(path=f"{path}?done={done}" if done else path, status_code=303)


def store_of(request: Request) -> ControlStore:
    return request.app.state.store


def apps_of(request: Request) -> Records[App]:
    """The apps' records, written as the admin API writes (revision-checked,
    audited) and read from the ingress's watched copy of ``sluice_apps``."""
    store = store_of(request)
    mirror = request.app.state.gateway.mirrors[subjects.KV_APPS]
    return Records(store.keys.writer, "app", subjects.KV_APPS, decode_app, mirror)


def people_of(request: Request) -> dict[str, Any]:
    """The ingress's copy of the people's records (``sluice_users``), by id."""
    mirror = request.app.state.gateway.mirrors.get(subjects.KV_USERS)
    return mirror.items if mirror is not None else {}


def email_of(people: dict[str, Any], user_id: str) -> str:
    """A person by e-mail; an id no person has (a key's, from the admin API) as it is."""
    user = people.get(user_id)
    return user.email if user is not None else user_id


def when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC") if ms > 0 else ""


def services_of(request: Request) -> Records[RestService]:
    """The REST services' records (``sluice_services``), as ``apps_of``."""
    store = store_of(request)
    kept = getattr(store, "services", None)
    if kept is not None:
        return kept
    mirror = request.app.state.gateway.mirrors.get(subjects.KV_SERVICES) or request.app.state.gateway.rest_services
    return Records(store.keys.writer, "service", subjects.KV_SERVICES, decode_service, mirror)
