"""A REST service as the portal's admin form shows and sends it, without I/O.

The form is flat text (``instance_url_0``, ``method_GET``, ``price_usd``);
the admin API's input is ``schemas.admin_services.ServiceCreate`` /
``ServiceUpdate``. ``parse`` turns the one into the fields of the other and
no more: whether they make a valid service is decided by the admin API's
own rules (the schema's bounds, then ``rest_records`` and
``rest_config.problem``), whose messages ``field_of`` ties back to the
input they are about, so the form can say which one is wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from schemas.errors import InvalidRequest
from schemas.rest import ALL_METHODS, RestService
from services import pricing, rest_config

# Rows the form shows beyond those in use: room for one more instance and
# one more header rule (and a few to start with).
MIN_INSTANCE_ROWS = 3
MIN_HEADER_ROWS = 2
STATES_ON_CREATE = ("draft", "published")
# A number typed into the form: no more digits than an int64 has.
_MAX_DIGITS = 19


class FieldError(InvalidRequest):
    """A form's value that is not even of the right kind (a weight that is
    not a number); ``field`` is the input's name."""

    code = "invalid_field"

    def __init__(self, field: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.field = field


@dataclass(frozen=True, slots=True)
class ServiceForm:
    """A parsed form: the admin API's fields, and the form row each
    instance and header rule came from (blank rows are left out, so the
    rules' ``instances[1]`` may be the form's third row)."""

    data: dict[str, Any]
    instance_rows: tuple[int, ...] = ()
    header_rows: tuple[int, ...] = ()


def _text(form: Mapping[str, str], name: str) -> str:
    return form.get(name, "").strip()


def _whole(form: Mapping[str, str], name: str, label: str) -> int | None:
    """A whole number, or None when left blank."""
    text = _text(form, name)
    if not text:
        return None
    if not text.isdigit() or len(text) > _MAX_DIGITS:
        raise FieldError(name, f"{label}: a whole number (digits only).")
    return int(text)


def _number(form: Mapping[str, str], name: str, label: str) -> float | None:
    text = _text(form, name)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise FieldError(name, f"{label}: a number, like 2 or 0.5.") from None
    if not math.isfinite(value):
        raise FieldError(name, f"{label}: a number, like 2 or 0.5.")
    return value


def _instances(form: Mapping[str, str]) -> tuple[list[dict[str, Any]], tuple[int, ...]]:
    found: list[dict[str, Any]] = []
    rows: list[int] = []
    for row in range(rest_config.MAX_INSTANCES):
        url, health = _text(form, f"instance_url_{row}"), _text(form, f"instance_health_{row}")
        if not url and not health:
            continue  # a blank row (its weight field keeps its default)
        if not url:
            raise FieldError(f"instance_url_{row}", f"Instance {row + 1}: its URL is missing.")
        weight = _number(form, f"instance_weight_{row}", f"Instance {row + 1} weight")
        instance: dict[str, Any] = {"url": url, "weight": 1.0 if weight is None else weight}
        if health:
            instance["health_path"] = health
        found.append(instance)
        rows.append(row)
    return found, tuple(rows)


def _headers(form: Mapping[str, str]) -> tuple[list[dict[str, str]], tuple[int, ...]]:
    found: list[dict[str, str]] = []
    rows: list[int] = []
    for row in range(rest_config.MAX_HEADER_RULES):
        name, env = _text(form, f"header_name_{row}"), _text(form, f"header_env_{row}")
        prefix = form.get(f"header_prefix_{row}", "")  # "Bearer " keeps its space
        if not (name or env or prefix):
            continue
        found.append({"name": name, "env": env, "prefix": prefix})
        rows.append(row)
    return found, tuple(rows)


def _price(form: Mapping[str, str]) -> int:
    text = _text(form, "price_usd").removeprefix("$").strip()
    if not text:
        return 0
    try:
        return pricing.usd_to_pico(text)
    except pricing.PricingError as exc:
        raise FieldError("price_usd", f"Price per call: {exc}.") from None


def parse(form: Mapping[str, str], *, creating: bool) -> ServiceForm:
    """The admin API's fields from the form: ``ServiceCreate``'s when
    ``creating``, else ``ServiceUpdate``'s (every field the form shows; a
    number left blank keeps what the service has, a limit left blank is none)."""
    instances, instance_rows = _instances(form)
    headers, header_rows = _headers(form)
    data: dict[str, Any] = {
        "title": _text(form, "title"),
        "description": form.get("description", "").replace("\r\n", "\n").strip(),
        "instances": instances,
        "methods": [m for m in ALL_METHODS if form.get(f"method_{m}")],
        "add_headers": headers,
        "strip_headers": [h for h in re.split(r"[\s,]+", _text(form, "strip_headers").lower()) if h],
        "requires_approval": bool(form.get("requires_approval")),
        "redact_json": bool(form.get("redact_json")),
        "rpm": _whole(form, "rpm", "Requests per minute"),
        "max_parallel": _whole(form, "max_parallel", "Calls at once"),
        "price_pico_usd": _price(form),
        "openapi_url": _text(form, "openapi_url"),
    }
    for name, label in (("connect_timeout_s", "Connect timeout"), ("read_timeout_s", "Read timeout")):
        if (seconds := _number(form, name, label)) is not None:
            data[name] = seconds
    for name, label in (("max_request_bytes", "Request size cap"), ("max_response_bytes", "Response size cap")):
        if (size := _whole(form, name, label)) is not None:
            data[name] = size
    if creating:
        version = _whole(form, "version", "Version")
        data.update(slug=_text(form, "slug"), version=1 if version is None else version)
        data["state"] = _text(form, "state") or "draft"
    elif not instances:
        # An update without instances would keep the old ones (a missing
        # field changes nothing): an emptied form is a mistake to say so.
        raise FieldError("instance_url_0", "instances: at least one URL.")
    return ServiceForm(data=data, instance_rows=instance_rows, header_rows=header_rows)


def usd(pico: int) -> str:
    return format(pricing.pico_to_usd(pico).normalize(), "f")


def values_of(service: RestService) -> dict[str, str]:
    """The form's values for a service (to change it, or the defaults of a new one)."""
    values = {
        "slug": service.slug,
        "version": str(service.version),
        "title": service.title,
        "description": service.description,
        "connect_timeout_s": f"{service.connect_timeout_s:g}",
        "read_timeout_s": f"{service.read_timeout_s:g}",
        "max_request_bytes": str(service.max_request_bytes),
        "max_response_bytes": str(service.max_response_bytes),
        "rpm": "" if service.rpm is None else str(service.rpm),
        "max_parallel": "" if service.max_parallel is None else str(service.max_parallel),
        "price_usd": usd(service.price_pico_usd),
        "requires_approval": "on" if service.requires_approval else "",
        "redact_json": "on" if service.redact_json else "",
        "strip_headers": ", ".join(service.strip_headers),
        "openapi_url": service.openapi_url,
        "state": service.state,
    }
    for row, instance in enumerate(service.instances):
        values[f"instance_url_{row}"] = instance.url
        values[f"instance_weight_{row}"] = f"{instance.weight:g}"
        values[f"instance_health_{row}"] = instance.health_path
    for row, rule in enumerate(service.add_headers):
        values.update(
            {f"header_name_{row}": rule.name, f"header_env_{row}": rule.env, f"header_prefix_{row}": rule.prefix}
        )
    for method in service.methods:
        values[f"method_{method}"] = "on"
    return values


def new_values() -> dict[str, str]:
    """A new service's form: the record's defaults, as a draft."""
    return values_of(RestService(slug="", state="draft")) | {"slug": ""}


def rows_shown(values: Mapping[str, str], kind: str) -> int:
    """How many instance (``kind`` "instance") or header rule ("header") rows
    the form shows: those in use and one more, at least a few."""
    if kind == "instance":
        least, most, names = MIN_INSTANCE_ROWS, rest_config.MAX_INSTANCES, ("instance_url_", "instance_health_")
    else:
        least, most, names = MIN_HEADER_ROWS, rest_config.MAX_HEADER_RULES, ("header_name_", "header_env_")
    used = [row for row in range(most) if any(values.get(f"{n}{row}", "").strip() for n in names)]
    return min(most, max(least, (used[-1] + 2) if used else 0))


# Where the rules' messages name a field: ``instances[1].url 'x': ...``
# (rest_config), ``... - at `$.instances[1].url``` (the schema's bounds).
_NAMED = re.compile(r"(?:^|: |`\$\.)([a-z_]+)(?:\[(\d+)\](?:\.([a-z_]+))?)?(?=[ :`]|$)")
_LIST_FIELDS = {
    ("instances", "url"): "instance_url_",
    ("instances", "weight"): "instance_weight_",
    ("instances", "health_path"): "instance_health_",
    ("add_headers", "name"): "header_name_",
    ("add_headers", "env"): "header_env_",
    ("add_headers", "prefix"): "header_prefix_",
}
# Record fields whose input has another name.
_RENAMED = {
    "price_pico_usd": "price_usd",
    "openapi": "openapi_file",
    "methods": f"method_{ALL_METHODS[0]}",
    "instances": "instance_url_0",
    "add_headers": "header_name_0",
}
_FORM_FIELDS = frozenset(
    {
        "slug",
        "version",
        "title",
        "description",
        "connect_timeout_s",
        "read_timeout_s",
        "max_request_bytes",
        "max_response_bytes",
        "rpm",
        "max_parallel",
        "strip_headers",
        "openapi_url",
        "state",
        "requires_approval",
        "redact_json",
    }
)


def field_of(message: str, parsed: ServiceForm | None = None) -> str:
    """The form input a rule's message is about ("" when none is)."""
    for match in _NAMED.finditer(message):
        name, index, part = match.group(1), match.group(2), match.group(3)
        if index is not None and (name, part) in _LIST_FIELDS:
            rows = (parsed.instance_rows if name == "instances" else parsed.header_rows) if parsed else ()
            row = rows[int(index)] if int(index) < len(rows) else int(index)
            return f"{_LIST_FIELDS[(name, part)]}{row}"
        if name in _RENAMED:
            return _RENAMED[name]
        if name in _FORM_FIELDS:
            return name
    return ""


def converted(data: dict[str, Any], schema: type[msgspec.Struct]) -> Any:
    """The fields held to the admin API's input schema (its bounds and types)."""
    try:
        return msgspec.convert(data, schema)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(str(exc), code="invalid_field") from None
