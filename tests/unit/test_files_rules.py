"""The Files API's pure rules (``services.files``): purposes, ids, expiry,
caps, names, download headers, and listing pages."""

from __future__ import annotations

import random

import msgspec
import pytest

from schemas.control import Tenant
from schemas.errors import InvalidRequest
from schemas.files import FileObject, FileRecord, decode_record, encode_record
from schemas.tasks import BlobRef
from services import files
from services.config import GatewaySettings

NOW_S = 1_750_000_000


def record(
    file_id: str | None = None, *, purpose: str = "batch", expires_at: int | None = None, content_type: str = ""
) -> FileRecord:
    return FileRecord(
        id=file_id or files.new_file_id(),
        bytes=3,
        created_at=NOW_S,
        filename="in.jsonl",
        purpose=purpose,  # type: ignore[arg-type]
        expires_at=expires_at,
        tenant_id="acme",
        key_id="k1",
        blob=BlobRef(name="acme/file/abc", size=3, content_type=content_type),
    )


def test_ids_sort_by_creation_and_are_recognised() -> None:
    early, late = files.new_file_id(1_000_000_000_000), files.new_file_id(2_000_000_000_000)
    assert early < late and early.startswith("file-") and len(early) == 31
    assert files.is_file_id(early)
    for bad in ("", "file-", "file-abc", early + "0", early.lower(), "batch_" + early[5:], early[:-1] + "/", "../x"):
        assert not files.is_file_id(bad), bad


def test_upload_purposes_are_openais_and_batch_output_is_not_one() -> None:
    for purpose in ("assistants", "batch", "fine-tune", "vision", "user_data", "evals"):
        assert files.upload_purpose(purpose) == purpose
    for bad in ("batch_output", "", "BATCH", "batch ", "x" * 10_000):
        with pytest.raises(InvalidRequest) as caught:
            files.upload_purpose(bad)
        assert caught.value.status == 400 and len(caught.value.message) < 200


def test_batch_files_expire_after_the_retention_and_others_never() -> None:
    assert files.expires_at("batch", NOW_S, None, None, 86400) == NOW_S + 86400
    assert files.expires_at("batch_output", NOW_S, None, None, 86400) == NOW_S + 86400
    assert files.expires_at("batch", NOW_S, None, None, 0) is None
    assert files.expires_at("user_data", NOW_S, None, None, 86400) is None


def test_expires_after_is_checked_as_openai_bounds_it() -> None:
    assert files.expires_at("user_data", NOW_S, "created_at", "3600", 0) == NOW_S + 3600
    assert files.expires_at("batch", NOW_S, "created_at", str(30 * 86400), 86400) == NOW_S + 30 * 86400
    for anchor, seconds in [
        ("created_at", "3599"),
        ("created_at", str(30 * 86400 + 1)),
        ("created_at", "-3600"),
        ("created_at", "3600.5"),
        ("created_at", "٣٦٠٠"),  # digits, but not ASCII ones
        ("created_at", "9" * 5000),
        ("created_at", None),
        ("last_active_at", "3600"),
        (None, "3600"),
    ]:
        with pytest.raises(InvalidRequest):
            files.expires_at("batch", NOW_S, anchor, seconds, 86400)


def test_expired_means_at_or_after_the_time() -> None:
    assert not files.is_expired(record(expires_at=None), NOW_S * 2)
    assert not files.is_expired(record(expires_at=NOW_S + 10), NOW_S + 9.9)
    assert files.is_expired(record(expires_at=NOW_S + 10), NOW_S + 10)


def test_cap_is_the_tenants_else_the_gateways() -> None:
    assert files.cap_of(None, 100) == 100
    assert files.cap_of(Tenant(id="t"), 100) == 100
    assert files.cap_of(Tenant(id="t", files_max_bytes=7), 100) == 7


def test_storage_limits_are_the_tenants_else_the_gateways() -> None:
    gateway = GatewaySettings(files_max_bytes=100, files_total_bytes=1000, files_max_count=10)
    assert files.storage_limits(None, gateway) == files.StorageLimits(100, 1000, 10)
    assert files.storage_limits(Tenant(id="t"), gateway) == files.StorageLimits(100, 1000, 10)
    own = Tenant(id="t", files_max_bytes=7, files_total_bytes=70, files_max_count=3)
    assert files.storage_limits(own, gateway) == files.StorageLimits(7, 70, 3)
    defaults = GatewaySettings()
    assert (defaults.files_total_bytes, defaults.files_max_count) == (10 * 1024**3, 10_000)


def test_an_upload_holds_the_least_of_its_declared_body_its_cap_and_the_total() -> None:
    limits = files.StorageLimits(max_bytes=100, total_bytes=1000, max_count=10)
    assert files.reservation(limits, None) == 100  # no length said: the cap
    assert files.reservation(limits, "40") == 40
    assert files.reservation(limits, "400") == 100
    for hostile in ("-5", "1e3", "", "4 0", "٣", "9" * 40):
        assert files.reservation(limits, hostile) == 100
    assert files.reservation(files.StorageLimits(100, 30, 10), None) == 30
    assert files.reservation(files.StorageLimits(100, 0, 0), None) == 100  # no total


def test_totals_are_passed_by_bytes_or_by_count_and_refused_as_openai_does() -> None:
    limits = files.StorageLimits(max_bytes=100, total_bytes=1000, max_count=10)
    assert not files.over_total(limits, 1000, 10)
    assert files.over_total(limits, 1001, 1) and files.over_total(limits, 0, 11)
    assert not files.over_total(files.StorageLimits(100, 0, 0), 10**15, 10**9)
    full = files.storage_full(limits)
    assert full.status == 400 and full.code == "file_storage_limit"
    assert "exceeded your file storage quota" in full.message and "1000 bytes in 10 files" in full.message


def test_list_query_defaults_and_refusals() -> None:
    assert files.list_query({}) == files.ListQuery(limit=10_000, order="desc", after="", purpose="")
    fid = files.new_file_id()
    q = files.list_query({"limit": ["5"], "order": ["asc"], "after": [fid], "purpose": ["batch"]})
    assert q == files.ListQuery(limit=5, order="asc", after=fid, purpose="batch")
    for bad in (
        {"limit": ["0"]},
        {"limit": ["10001"]},
        {"limit": ["0000001"]},
        {"limit": ["-1"]},
        {"limit": ["1e3"]},
        {"limit": ["9" * 5000]},
        {"order": ["up"]},
        {"after": ["file-nope"]},
        {"purpose": ["p" * 65]},
    ):
        with pytest.raises(InvalidRequest) as caught:
            files.list_query(bad)
        assert caught.value.status == 400


def test_pages_walk_every_file_once_in_either_order() -> None:
    ids = sorted(files.new_file_id(1_700_000_000_000 + i * 1000) for i in range(57))
    records = [record(i) for i in ids]
    random.Random(7).shuffle(records)
    for order, expected in (("desc", ids[::-1]), ("asc", ids)):
        seen: list[str] = []
        after = ""
        while True:
            got, more = files.page(records, files.ListQuery(limit=10, order=order, after=after), NOW_S)  # type: ignore[arg-type]
            seen += [r.id for r in got]
            if not more:
                break
            after = got[-1].id
        assert seen == expected


def test_a_page_leaves_out_other_purposes_expired_files_and_holds_limit_plus_one() -> None:
    keep = record(purpose="batch")
    other = record(purpose="user_data")
    expired = record(purpose="batch", expires_at=NOW_S - 1)
    got, more = files.page([keep, other, expired], files.ListQuery(purpose="batch"), NOW_S)
    assert [r.id for r in got] == [keep.id] and not more
    pager = files.Pager(files.ListQuery(limit=3), NOW_S)
    for _ in range(1000):
        pager.offer(record())
        assert len(pager._heap) <= 4
    got, more = pager.result()
    assert len(got) == 3 and more


def test_a_cursor_whose_file_is_gone_still_pages_on() -> None:
    ids = sorted(files.new_file_id(1_700_000_000_000 + i * 1000) for i in range(5))
    gone = ids.pop(2)
    got, _ = files.page([record(i) for i in ids], files.ListQuery(order="asc", after=gone), NOW_S)
    assert [r.id for r in got] == ids[2:]


def test_filenames_keep_their_last_part_without_control_characters() -> None:
    assert files.safe_filename("../../etc/passwd") == "passwd"
    assert files.safe_filename("C:\\Users\\me\\batch.jsonl") == "batch.jsonl"
    assert files.safe_filename("a\r\nb\x00c\u202e.jsonl") == "abc.jsonl"
    assert files.safe_filename("") == "file" and files.safe_filename("dir/") == "file"
    assert len(files.safe_filename("é" * 1000)) == files.MAX_FILENAME_CHARS


def test_downloads_are_never_served_as_active_content() -> None:
    assert files.download_type(record(purpose="batch", content_type="text/html")) == files.JSONL
    assert files.download_type(record(purpose="user_data", content_type="text/html")) == files.OCTET_STREAM
    assert files.download_type(record(purpose="vision", content_type="image/svg+xml")) == files.OCTET_STREAM
    assert files.download_type(record(purpose="vision", content_type="Image/PNG")) == "image/png"
    header = files.content_disposition('evil"; filename=x.html\r\nset-cookie: a=b é')
    assert header.startswith("attachment; filename*=UTF-8''")
    assert all(ch not in header[len("attachment; ") :] for ch in ('"', "\r", "\n", " ", ";"))


def test_a_record_shows_only_openais_fields_and_round_trips() -> None:
    r = record(expires_at=NOW_S + 5)
    shown = msgspec.json.decode(msgspec.json.encode(r.public()))
    assert shown == {
        "id": r.id,
        "object": "file",
        "bytes": 3,
        "created_at": NOW_S,
        "filename": "in.jsonl",
        "purpose": "batch",
        "status": "processed",
        "expires_at": NOW_S + 5,
    }
    assert type(r.public()) is FileObject
    assert decode_record(encode_record(r)) == r
