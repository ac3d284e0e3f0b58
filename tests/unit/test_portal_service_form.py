"""The portal's REST service form: what it sends is the admin API's input,
held to the admin API's own rules, and a rule's message points back at the
input it is about (the form's row, not the list's index)."""

from __future__ import annotations

import pytest

from schemas.admin_services import ServiceCreate, ServiceUpdate
from schemas.errors import InvalidRequest
from schemas.rest import HeaderRule, RestInstance, RestService
from services import rest_records
from services.portal_service_form import (
    FieldError,
    converted,
    field_of,
    new_values,
    parse,
    rows_shown,
    values_of,
)

FORM = {
    "slug": "billing",
    "version": "2",
    "state": "published",
    "title": "Billing",
    "description": "Invoices\r\nand refunds",
    "instance_url_0": "",
    "instance_weight_0": "1",
    "instance_url_1": "http://127.0.0.1:9000/api",
    "instance_weight_1": "3",
    "instance_health_1": "/healthz",
    "method_GET": "on",
    "method_POST": "on",
    "connect_timeout_s": "2.5",
    "read_timeout_s": "30",
    "max_request_bytes": "1024",
    "max_response_bytes": "2048",
    "rpm": "600",
    "max_parallel": "",
    "price_usd": "0.000001",
    "requires_approval": "on",
    "strip_headers": "Authorization, Cookie  x-debug",
    "header_name_1": "Authorization",
    "header_env_1": "BILLING_TOKEN",
    "header_prefix_1": "Bearer ",
    "openapi_url": "http://127.0.0.1:9000/openapi.json",
}


def created(form: dict[str, str]) -> RestService:
    parsed = parse(form, creating=True)
    return rest_records.created(converted(parsed.data, ServiceCreate), 7)


def test_a_filled_form_is_the_service_the_admin_api_would_make() -> None:
    service = created(FORM)
    assert (service.slug, service.version, service.state, service.owner) == ("billing", 2, "published", "api")
    assert service.description == "Invoices\nand refunds"
    # The blank first row is skipped: its default weight alone is no instance.
    assert service.instances == [RestInstance(url="http://127.0.0.1:9000/api", weight=3.0, health_path="/healthz")]
    assert service.methods == ["GET", "POST"]
    assert (service.connect_timeout_s, service.read_timeout_s) == (2.5, 30.0)
    assert (service.max_request_bytes, service.max_response_bytes, service.rpm, service.max_parallel) == (
        1024,
        2048,
        600,
        None,
    )
    assert service.price_pico_usd == 1_000_000 and service.requires_approval and not service.redact_json
    assert service.strip_headers == ["authorization", "cookie", "x-debug"]
    assert service.add_headers == [HeaderRule(name="Authorization", env="BILLING_TOKEN", prefix="Bearer ")]


def test_a_service_shown_and_sent_back_unchanged_is_the_same_service() -> None:
    before = created(FORM)
    parsed = parse(values_of(before), creating=False)
    assert rest_records.updated(before, converted(parsed.data, ServiceUpdate)) == before


def test_a_new_services_form_starts_from_the_records_defaults_as_a_draft() -> None:
    values = new_values()
    assert values["slug"] == "" and values["state"] == "draft" and values["strip_headers"] == "authorization, cookie"
    assert all(values[f"method_{m}"] == "on" for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
    service = created(values | {"slug": "fresh", "instance_url_0": "https://svc.example/v1"})
    assert service == rest_records.created(
        ServiceCreate(slug="fresh", instances=[RestInstance(url="https://svc.example/v1")]), 7
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"instance_url_1": "ftp://example.test/"}, "instance_url_1"),
        ({"instance_url_1": "http://user:pw@example.test/"}, "instance_url_1"),
        ({"instance_weight_1": "0"}, "instance_weight_1"),
        ({"instance_weight_1": "heavy"}, "instance_weight_1"),
        ({"instance_health_1": "/../admin"}, "instance_health_1"),
        ({"instance_url_1": "", "instance_health_1": ""}, "instance_url_0"),
        ({"instance_url_1": "", "instance_health_1": "/h"}, "instance_url_1"),
        ({"header_env_1": "1-not-a-name"}, "header_env_1"),
        ({"header_name_1": "Connection"}, "header_name_1"),
        ({"slug": "Not A Slug"}, "slug"),
        ({"version": "two"}, "version"),
        ({"title": "x" * 201}, "title"),
        ({"method_GET": "", "method_POST": ""}, "method_GET"),
        ({"read_timeout_s": "0"}, "read_timeout_s"),
        ({"read_timeout_s": "nan"}, "read_timeout_s"),
        ({"max_request_bytes": "-5"}, "max_request_bytes"),
        ({"rpm": "0"}, "rpm"),
        ({"price_usd": "0.0000000000001"}, "price_usd"),
        ({"price_usd": "lots"}, "price_usd"),
        ({"strip_headers": "bad/header"}, "strip_headers"),
        ({"openapi_url": "ftp://example.test/doc"}, "openapi_url"),
        ({"state": "gone"}, "state"),
    ],
)
def test_a_broken_rule_names_the_input_it_is_about(change: dict[str, str], field: str) -> None:
    form = FORM | change
    parsed = None
    with pytest.raises(InvalidRequest) as caught:
        parsed = parse(form, creating=True)
        created(form)
    exc = caught.value
    found = exc.field if isinstance(exc, FieldError) else field_of(exc.message, parsed)
    assert found == field, exc.message


def test_a_rules_index_is_mapped_to_the_forms_row() -> None:
    parsed = parse(
        FORM | {"instance_url_4": "http://b.example/", "header_name_3": "X-A", "header_env_3": "A"}, creating=True
    )
    assert parsed.instance_rows == (1, 4) and parsed.header_rows == (1, 3)
    assert field_of("Service 'b' version 1: instances[1].weight: more than 0", parsed) == "instance_weight_4"
    assert field_of("Expected `str` of length <= 64 - at `$.add_headers[1].name`", parsed) == "header_name_3"
    assert field_of("A service 'billing.v2' exists already.", parsed) == ""


def test_an_update_never_empties_the_instances_by_leaving_them_out() -> None:
    with pytest.raises(FieldError) as caught:
        parse(FORM | {"instance_url_1": "", "instance_health_1": ""}, creating=False)
    assert caught.value.field == "instance_url_0"
    update = parse(FORM, creating=False).data
    assert "slug" not in update and "version" not in update and "state" not in update
    # A number left blank keeps what the service has; a limit left blank is none.
    blank = parse(FORM | {"read_timeout_s": "", "rpm": ""}, creating=False).data
    assert "read_timeout_s" not in blank and blank["rpm"] is None


def test_the_form_shows_the_rows_in_use_and_one_more() -> None:
    assert rows_shown({}, "instance") == 3 and rows_shown({}, "header") == 2
    assert rows_shown({"instance_url_5": "http://x/"}, "instance") == 7
    assert rows_shown({f"instance_url_{i}": "http://x/" for i in range(16)}, "instance") == 16
    assert rows_shown({"header_env_2": "A"}, "header") == 4
