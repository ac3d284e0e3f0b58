"""A REST call's row, from the reply that ended it (``schemas.events.add_rest_call``)."""

from __future__ import annotations

from schemas.chat import Usage
from schemas.events import RequestEvent, add_rest_call
from schemas.replies import Failure, Final
from schemas.rest import RestCall, RestResult


def event(status: int) -> RequestEvent:
    return RequestEvent(
        event_id="e", request_id="r", received_at_ns=1, origin="http", api="rest", model="service:s", status=status
    )


CALL = RestCall(service="billing", version=2, method="POST", path="/invoices/7", route="/invoices/{id}", body=b"abc")


def test_an_answer_s_row_has_the_upstream_s_status_and_sizes() -> None:
    row = event(200)
    final = Final(id="r", seq=3, model="m", usage=Usage(), rest=RestResult(status=404, response_bytes=12))
    add_rest_call(row, CALL, final)
    assert (row.rest_service, row.rest_version, row.http_method, row.route) == ("billing", 2, "POST", "/invoices/{id}")
    assert (row.status, row.request_bytes, row.response_bytes) == (404, 3, 12)


def test_a_call_cut_after_its_head_keeps_its_failure_status_and_counts_what_was_relayed() -> None:
    row = event(499)
    cut = Failure(
        id="r", seq=9, status=499, type="x", code="client_closed", message="gone",
        rest=RestResult(status=200, response_bytes=5_000),
    )  # fmt: skip
    add_rest_call(row, CALL, cut)
    assert (row.status, row.response_bytes) == (499, 5_000)


def test_a_call_refused_before_any_answer_has_no_response_bytes() -> None:
    row = event(403)
    add_rest_call(row, CALL, Failure(id="r", seq=0, status=403, type="x", code="nope", message="no"))
    assert (row.status, row.request_bytes, row.response_bytes) == (403, 3, 0)
