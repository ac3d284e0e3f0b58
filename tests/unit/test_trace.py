from __future__ import annotations

import pytest

from services.trace import parse, trace_id

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_valid_traceparent_gives_its_trace_id() -> None:
    assert trace_id(f"00-{TRACE}-00f067aa0ba902b7-01") == TRACE
    assert trace_id(f" 00-{TRACE}-00f067aa0ba902b7-00 ") == TRACE
    assert trace_id(f"01-{TRACE}-00f067aa0ba902b7-01-later-fields") == TRACE  # a later version may add fields
    # The caller's span: the parent of the request's own spans.
    assert parse(f"00-{TRACE}-00f067aa0ba902b7-01") == (TRACE, "00f067aa0ba902b7")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "garbage",
        f"00-{TRACE.upper()}-00f067aa0ba902b7-01",  # upper-case hex is invalid
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE}-00f067aa0ba902b7-01",  # version ff is forbidden
        f"00-{TRACE}-00f067aa0ba902b7-01-extra",  # version 00 has four fields
        f"00-{TRACE}-00f067aa0ba902b7",
        "00-" + "a" * 5000,
    ],
)
def test_anything_else_is_ignored(header: str | None) -> None:
    assert trace_id(header) == "" and parse(header) == ("", "")
