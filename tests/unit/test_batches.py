"""The Batch API's rules (services/batches.py): a create's body, input
lines checked one by one, the splitter that never holds a long line, the
outcome lines, status moves and the list's pages."""

from __future__ import annotations

import json

import msgspec
import pytest

from schemas.batches import BatchOutput, BatchRecord, RequestCounts, decode_output
from schemas.errors import InvalidRequest, RecordConflict
from services import batches
from services.apis import chat

CHAT = "/v1/chat/completions"


def line(custom_id: str = "a", url: str = CHAT, method: str = "POST", body: object = None) -> bytes:
    body = body if body is not None else {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    return json.dumps({"custom_id": custom_id, "method": method, "url": url, "body": body}).encode()


def record(**fields: object) -> BatchRecord:
    base: dict[str, object] = {
        "id": batches.new_batch_id(),
        "endpoint": CHAT,
        "input_file_id": "file-x",
        "completion_window": "24h",
        "status": "in_progress",
        "created_at": 1000,
        "expires_at": 1000 + batches.WINDOW_S,
        "in_progress_at": 1001,
        "tenant_id": "t",
        "key_id": "k",
    }
    return BatchRecord(**{**base, **fields})  # type: ignore[arg-type]


def test_a_create_names_a_supported_endpoint_and_the_24h_window() -> None:
    body = {"input_file_id": "file-1", "endpoint": "/v1/embeddings", "completion_window": "24h"}
    assert batches.create_request(json.dumps(body).encode()).endpoint == "/v1/embeddings"
    for bad, code in (
        ({**body, "endpoint": "/v1/completions"}, "invalid_endpoint"),
        ({**body, "completion_window": "48h"}, "invalid_completion_window"),
        ({**body, "metadata": {f"k{i}": "v" for i in range(17)}}, "invalid_metadata"),
        ({**body, "metadata": {"k": "v" * 513}}, "invalid_metadata"),
        ({"endpoint": CHAT, "completion_window": "24h"}, "invalid_request"),
    ):
        with pytest.raises(InvalidRequest) as refused:
            batches.create_request(json.dumps(bad).encode())
        assert (refused.value.status, refused.value.code) == (400, code), bad
    with pytest.raises(InvalidRequest) as garbage:
        batches.create_request(b"\xff{")
    assert garbage.value.code == "invalid_json"


def test_good_lines_pass_and_each_bad_line_is_named_with_its_number_and_code() -> None:
    checker = batches.LineChecker(CHAT, chat.parse, 10_000)
    lines = [
        line("one"),
        b"{not json",
        line("one"),
        line("three", url="/v1/embeddings"),
        line("four", method="GET"),
        line("five", body={"model": "m", "messages": []}),
        b'{"custom_id": "six", "method": "POST", "url": "/v1/chat/completions"}',
        line(""),
        line("nine"),
    ]
    passed = [checker.check(n, raw) for n, raw in enumerate(lines, 1)]
    assert [p is not None for p in passed] == [True, False, False, False, False, False, False, False, True]
    errors = checker.finish()
    found = [(e.line, e.code, e.param) for e in errors]
    assert found == [
        (2, "invalid_json_line", None),
        (3, "duplicate_custom_id", "custom_id"),
        (4, "url_mismatch", "url"),
        (5, "invalid_request", "method"),
        (6, "invalid_request", "body"),
        (7, "invalid_request", "body"),
        (8, "invalid_request", "custom_id"),
    ]
    assert "at least one message" in errors[4].message


def test_an_empty_file_and_one_over_the_line_limit_fail() -> None:
    assert [e.code for e in batches.LineChecker(CHAT, chat.parse, 100).finish()] == ["empty_file"]
    checker = batches.LineChecker(CHAT, chat.parse, 10_000)
    checker.check(1, line("first"))
    checker.too_many(batches.MAX_LINES + 1)
    assert [(e.code, e.line) for e in checker.finish()] == [("too_many_tasks", batches.MAX_LINES + 1)]


def test_the_errors_kept_are_bounded_and_checking_stops_once_they_are_all() -> None:
    checker = batches.LineChecker(CHAT, chat.parse, 10_000)
    for n in range(1, batches.MAX_ERRORS):
        checker.check(n, b"nope")
        assert not checker.full
    checker.check(batches.MAX_ERRORS, b"nope")
    assert checker.full and len(checker.finish()) == batches.MAX_ERRORS


def test_blank_lines_count_toward_the_cap_and_the_splitter_reads_no_further() -> None:
    splitter = batches.LineSplitter(max_bytes=100, max_lines=4)
    got = list(splitter.feed(b"a\n\n  \nb\nc\nd\n"))
    # Four lines read (two of them blank), then it stopped: "c" and "d" are never yielded.
    assert got == [(1, b"a"), (2, b"b")] and splitter.too_many and splitter.read == 5
    assert list(splitter.feed(b"e\n")) == [] and list(splitter.finish()) == []


def test_a_file_of_newlines_costs_no_more_than_the_cap() -> None:
    """Blank lines were skipped uncounted: a 200 MB file of newlines was a
    200-million-step loop for one create. Now the first MAX_LINES + 1 end it."""
    splitter = batches.LineSplitter(max_bytes=100)
    assert list(splitter.feed(b"\n" * 5_000_000)) == []
    assert splitter.too_many and splitter.read == batches.MAX_LINES + 1


def test_a_last_line_without_a_newline_is_read_and_a_trailing_newline_adds_none() -> None:
    splitter = batches.LineSplitter(max_bytes=100, max_lines=2)
    assert list(splitter.feed(b"a\nb")) == [(1, b"a")]
    assert list(splitter.finish()) == [(2, b"b")] and not splitter.too_many
    ends_clean = batches.LineSplitter(max_bytes=100, max_lines=2)
    assert list(ends_clean.feed(b"a\nb\n")) == [(1, b"a"), (2, b"b")]
    assert list(ends_clean.finish()) == [] and not ends_clean.too_many


def test_the_splitter_numbers_lines_across_chunks_skips_blank_ones_and_never_holds_a_long_one() -> None:
    splitter = batches.LineSplitter(max_bytes=10)
    got = []
    for chunk in (b"ab", b"c\n\n  \nde", b"f\r\n", b"x" * 6, b"y" * 6, b"z\nlast"):
        got += list(splitter.feed(chunk))
        assert len(splitter._part) <= 10
    got += list(splitter.finish())
    assert got == [(1, b"abc"), (2, b"def"), (3, None), (4, b"last")]


def test_an_answered_line_is_openais_output_line_and_its_body_stays_as_rendered() -> None:
    out = batches.answered("req-1", "job-7", 200, b'{"id":"chatcmpl","object":"chat.completion"}')
    parsed = json.loads(batches.output_line(out))
    assert parsed == {
        "id": "batch_req_job-7",
        "custom_id": "req-1",
        "response": {
            "status_code": 200,
            "request_id": "job-7",
            "body": {"id": "chatcmpl", "object": "chat.completion"},
        },
        "error": None,
    }
    assert decode_output(msgspec.json.encode(out)).succeeded
    refused = batches.answered("req-2", "job-8", 429, b'{"error":{"message":"slow down"}}')
    cancelled = batches.not_run("req-3", batches.CANCELLED)
    assert not refused.succeeded and not cancelled.succeeded
    assert json.loads(batches.output_line(cancelled))["response"] is None
    assert cancelled.error is not None and cancelled.error.code == "batch_cancelled"


def test_a_line_not_started_is_cancelled_or_expired_and_otherwise_runs() -> None:
    assert batches.line_fate(record(), 2000) is None
    assert batches.line_fate(record(status="cancelling", cancelling_at=1500), 2000) == batches.CANCELLED
    assert batches.line_fate(record(status="failed"), 2000) == batches.CANCELLED
    assert batches.line_fate(record(), 1000 + batches.WINDOW_S) == batches.EXPIRED


def test_cancel_moves_a_running_batch_once_and_refuses_an_ended_one() -> None:
    running = record()
    cancelling = batches.cancelling(running, 1500)
    assert (cancelling.status, cancelling.cancelling_at) == ("cancelling", 1500)
    assert batches.cancelling(cancelling, 1600) is cancelling
    with pytest.raises(RecordConflict):
        batches.cancelling(record(status="completed"), 1600)


def test_a_batch_ends_cancelled_expired_or_completed_with_its_files_counts() -> None:
    counts = RequestCounts(total=3, completed=2, failed=1)
    done = batches.ended(record(status="finalizing"), counts, False, "file-o", "file-e", 3000)
    assert (done.status, done.completed_at, done.request_counts, done.output_file_id) == (
        "completed",
        3000,
        counts,
        "file-o",
    )
    cancelled = batches.ended(record(status="finalizing", cancelling_at=2000), counts, True, None, "file-e", 3000)
    assert (cancelled.status, cancelled.cancelled_at, cancelled.completed_at) == ("cancelled", 3000, None)
    assert batches.ended(record(status="finalizing"), counts, True, None, None, 3000).status == "expired"
    started = batches.started(record(status="cancelling", in_progress_at=None), 9, 1200)
    assert (started.status, started.request_counts.total) == ("cancelling", 9)


def test_the_public_view_holds_no_tenant_or_key() -> None:
    shown = msgspec.json.decode(msgspec.json.encode(record().public()))
    assert "tenant_id" not in shown and "key_id" not in shown and shown["object"] == "batch"


def test_pages_are_newest_first_after_a_cursor() -> None:
    made = [batches.new_batch_id(n * 1_000_000_000) for n in range(1, 8)]
    first, more = batches.page(made, "", 3)
    assert first == made[::-1][:3] and more
    rest, more = batches.page(made, first[-1], 10)
    assert rest == made[::-1][3:] and not more
    with pytest.raises(InvalidRequest):
        batches.list_limit("0")
    assert batches.list_limit(None) == batches.DEFAULT_LIST_LIMIT


def test_only_the_gateways_own_ids_name_a_batch() -> None:
    assert batches.is_batch_id(batches.new_batch_id())
    for bad in ("batch_", "batch_../../x", "file-" + "0" * 26, "batch_" + "0" * 27):
        assert not batches.is_batch_id(bad)


def test_an_output_line_of_a_failed_request_goes_to_the_error_file() -> None:
    out = BatchOutput(id="x", custom_id="c", response=None, error=None)
    assert not out.succeeded


def test_a_body_larger_than_the_endpoint_takes_is_refused_as_the_endpoint_would() -> None:
    checker = batches.LineChecker(CHAT, chat.parse, 200)
    big = {"model": "m", "messages": [{"role": "user", "content": "x" * 300}]}
    assert checker.check(1, line("big", body=big)) is None
    assert checker.check(2, line("small")) is not None
    assert [(e.line, e.param) for e in checker.finish()] == [(1, "body")]
