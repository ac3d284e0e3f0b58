"""OpenAI's Files API through the gateway with the official ``openai`` SDK:
upload, list, retrieve, content, delete; a key sees its own tenant's files
only (another's are 404 on every route), purposes and the tenant's cap are
enforced, a call without a key is 401; expired files are swept, bytes and
record. A tenant's total of bytes and files holds while uploads are in
flight (one of two that together pass it is refused) and a delete gives
its room back."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from ingress.file_sweeper import sweep
from schemas import subjects
from services.bus.blobs import BlobStore
from services.bus.file_records import FileRecords
from services.bus.file_usage import FileUsage
from services.bus.quota_ledger import Counters
from services.config import GatewaySettings
from services.keys import hash_key
from tests.stack import ADMIN_KEY, DEMO_KEY, PRIVATE_KEY, Stack

TINY_KEY = "sk-test-tiny-files-0123456789"
TINY_CAP = 1000
QUOTA_KEY = "sk-test-quota-files-0123456789"
QUOTA_CAP = 600
QUOTA_TOTAL = 1000
EXTRA = f"""
[[tenants]]
id = "tiny"
files_max_bytes = {TINY_CAP}

[[keys]]
id = "tiny"
tenant = "tiny"
sha256 = "{hash_key(TINY_KEY)}"

[[tenants]]
id = "quota"
files_max_bytes = {QUOTA_CAP}
files_total_bytes = {QUOTA_TOTAL}

[[keys]]
id = "quota"
tenant = "quota"
sha256 = "{hash_key(QUOTA_KEY)}"
"""
LINES = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n' * 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("files"), extra_config=EXTRA).start()
    yield s
    s.stop()


def sdk(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key=key, max_retries=0, timeout=20)


@pytest.fixture(scope="module")
def demo(stack: Stack) -> Iterator[openai.OpenAI]:
    with sdk(stack, DEMO_KEY) as c:
        yield c


@pytest.fixture(scope="module")
def other(stack: Stack) -> Iterator[openai.OpenAI]:
    with sdk(stack, PRIVATE_KEY) as c:
        yield c


def stored_objects(stack: Stack) -> int:
    """Messages in the files' object store (chunks and metas of every file)."""

    async def count() -> int:
        nc = await stack.connect("admin")
        try:
            return (await nc.jetstream().stream_info(f"OBJ_{subjects.OBJ_BLOBS}")).state.messages
        finally:
            await nc.close()

    return asyncio.run(count())


def counted(stack: Stack, tenant: str) -> tuple[int, int]:
    """The tenant's bytes and files as its counters have them."""

    async def read() -> tuple[int, int]:
        nc = await stack.connect("admin")
        try:
            return await FileUsage(Counters(nc.jetstream()), FileRecords(nc.jetstream())).used(tenant)
        finally:
            await nc.close()

    return asyncio.run(read())


def test_upload_retrieve_list_content_delete(demo: openai.OpenAI) -> None:
    before = int(time.time())
    raw = demo.files.with_raw_response.create(file=("in.jsonl", LINES, "application/jsonl"), purpose="batch")
    made = raw.parse()
    assert raw.headers["x-request-id"]
    assert made.id.startswith("file-") and made.object == "file" and made.status == "processed"
    assert made.bytes == len(LINES) and made.filename == "in.jsonl" and made.purpose == "batch"
    assert before <= made.created_at <= int(time.time())
    # OpenAI's default for batch files: 30 days.
    assert made.expires_at == made.created_at + int(GatewaySettings().files_retention_s)

    assert demo.files.retrieve(made.id).model_dump() == made.model_dump()
    # Only OpenAI's fields: nothing of where or whose the bytes are.
    assert set(raw.http_response.json()) == {
        "id",
        "object",
        "bytes",
        "created_at",
        "expires_at",
        "filename",
        "purpose",
        "status",
    }
    assert made.id in [f.id for f in demo.files.list()]
    content = demo.files.with_raw_response.content(made.id)
    assert content.content == LINES
    assert content.headers["content-type"] == "application/jsonl"
    assert content.headers["content-length"] == str(len(LINES))
    assert content.headers["x-content-type-options"] == "nosniff"

    deleted = demo.files.delete(made.id)
    assert deleted.id == made.id and deleted.deleted and deleted.object == "file"
    for call in (demo.files.retrieve, demo.files.content, demo.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(made.id)
    assert made.id not in [f.id for f in demo.files.list()]


def test_an_empty_file_and_a_name_of_any_characters_round_trip(demo: openai.OpenAI) -> None:
    made = demo.files.create(file=("résumé 2025\r\n.txt", b""), purpose="user_data")
    assert made.bytes == 0 and made.filename == "résumé 2025.txt"
    content = demo.files.with_raw_response.content(made.id)
    assert content.content == b"" and content.headers["content-length"] == "0"
    assert content.headers["content-disposition"] == "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9%202025.txt"
    assert content.headers["content-type"] == "text/plain"  # as uploaded (the SDK guessed it from the name)


def test_list_pages_newest_first_and_filters_by_purpose(demo: openai.OpenAI) -> None:
    made = [demo.files.create(file=(f"f{i}.txt", b"x" * (i + 1)), purpose="user_data") for i in range(5)]
    batch = demo.files.create(file=("b.jsonl", LINES), purpose="batch")
    ids = [f.id for f in made]
    # The SDK follows has_more/after by itself: pages of two.
    listed = [f.id for f in demo.files.list(limit=2, purpose="user_data")]
    assert [i for i in listed if i in ids] == ids[::-1]
    assert batch.id not in listed
    ascending = [f.id for f in demo.files.list(order="asc", purpose="user_data")]
    assert [i for i in ascending if i in ids] == ids
    page = demo.files.list(limit=2, order="asc", after=ids[1], purpose="user_data")
    assert [f.id for f in page.data] == ids[2:4] and page.has_more
    assert [f.bytes for f in made] == [1, 2, 3, 4, 5]


def test_another_tenants_file_is_404_on_every_route(demo: openai.OpenAI, other: openai.OpenAI) -> None:
    made = demo.files.create(file=("mine.jsonl", LINES), purpose="batch")
    for call in (other.files.retrieve, other.files.content, other.files.delete):
        with pytest.raises(openai.NotFoundError) as caught:
            call(made.id)
        assert made.id in caught.value.message
    assert made.id not in [f.id for f in other.files.list()]
    # Its owner still has it, whole.
    assert demo.files.content(made.id).content == LINES
    # An id that is not one, and one never made, answer the same.
    for fake in ("file-" + "0" * 26, "nope", "file-../../x"):
        with pytest.raises(openai.NotFoundError):
            other.files.retrieve(fake)


def test_purposes_are_checked(demo: openai.OpenAI, stack: Stack) -> None:
    for purpose in ("batch_output", "training", ""):
        with pytest.raises(openai.BadRequestError) as caught:
            demo.files.create(file=("x.jsonl", LINES), purpose=purpose)  # type: ignore[arg-type]
        assert caught.value.status_code == 400
    # A form without purpose, or without a file, or with two files.
    url = f"{stack.base_url}/files"
    auth = {"authorization": f"Bearer {DEMO_KEY}"}
    one = {"file": ("x.jsonl", LINES)}
    two = [("file", ("x.jsonl", LINES)), ("file", ("y.jsonl", LINES))]
    forms = (
        ({}, one),  # no purpose
        ({"purpose": "batch"}, None),  # no file (nor multipart)
        ({"purpose": "batch"}, {"note": ("n.txt", b"n")}),  # a file, not in 'file'
        ({"purpose": "batch"}, two),
        ({"purpose": ["batch", "batch"]}, one),
    )
    for data, files in forms:
        answer = httpx.post(url, data=data, files=files, headers=auth)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["type"] == "invalid_request_error" and answer.headers["x-request-id"]


def test_expires_after_is_taken_and_checked(demo: openai.OpenAI) -> None:
    made = demo.files.create(
        file=("e.txt", b"e"), purpose="user_data", expires_after={"anchor": "created_at", "seconds": 3600}
    )
    assert made.expires_at == made.created_at + 3600
    assert demo.files.create(file=("k.txt", b"k"), purpose="user_data").expires_at is None
    with pytest.raises(openai.BadRequestError):
        demo.files.create(
            file=("e.txt", b"e"), purpose="user_data", expires_after={"anchor": "created_at", "seconds": 60}
        )


def test_a_file_over_the_tenants_cap_is_413_and_nothing_is_kept(stack: Stack) -> None:
    with sdk(stack, TINY_KEY) as tiny:
        made = tiny.files.create(file=("ok.txt", b"a" * TINY_CAP), purpose="user_data")
        assert made.bytes == TINY_CAP
        kept_before = stored_objects(stack)
        with pytest.raises(openai.APIStatusError) as caught:
            tiny.files.create(file=("big.txt", b"a" * (TINY_CAP + 1)), purpose="user_data")
        assert caught.value.status_code == 413
        # Declared too large up front: refused before the body is read.
        with pytest.raises(openai.APIStatusError) as caught:
            tiny.files.create(file=("huge.txt", b"a" * 200_000), purpose="user_data")
        assert caught.value.status_code == 413
        assert [f.id for f in tiny.files.list()] == [made.id]
    assert stored_objects(stack) == kept_before


def test_the_cap_is_set_and_changed_through_the_admin_api(stack: Stack) -> None:
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    made = httpx.post(f"{stack.admin_url}/tenants", json={"id": "capped", "files_max_bytes": 10}, headers=admin)
    assert made.status_code == 201 and made.json()["files_max_bytes"] == 10, made.text
    assert httpx.post(f"{stack.admin_url}/tenants", json={"id": "neg", "files_max_bytes": -1}, headers=admin).is_error
    key = httpx.post(f"{stack.admin_url}/keys", json={"tenant": "capped"}, headers=admin).json()["secret"]
    with sdk(stack, key) as capped:
        with pytest.raises(openai.APIStatusError) as caught:
            capped.files.create(file=("a.txt", b"a" * 11), purpose="user_data")
        assert caught.value.status_code == 413
        changed = httpx.patch(f"{stack.admin_url}/tenants/capped", json={"files_max_bytes": 0}, headers=admin)
        assert changed.status_code == 200 and changed.json()["files_max_bytes"] == 0, changed.text
        deadline = time.monotonic() + 10  # the ingress's copy of the tenant follows the bucket
        while True:
            try:
                assert capped.files.create(file=("a.txt", b"a" * 11), purpose="user_data").bytes == 11
                break
            except openai.APIStatusError as exc:
                assert exc.status_code == 413 and time.monotonic() < deadline
                time.sleep(0.1)


def test_no_key_is_401_on_every_route(stack: Stack, demo: openai.OpenAI) -> None:
    made = demo.files.create(file=("k.jsonl", LINES), purpose="batch")
    url = f"{stack.base_url}/files"
    for method, path in (
        ("POST", ""),
        ("GET", ""),
        ("GET", f"/{made.id}"),
        ("DELETE", f"/{made.id}"),
        ("GET", f"/{made.id}/content"),
    ):
        for headers in ({}, {"authorization": "Bearer sk-wrong"}):
            answer = httpx.request(method, url + path, headers=headers)
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.json()["error"]["type"] == "authentication_error"
            assert answer.headers["x-request-id"]
    assert demo.files.retrieve(made.id).id == made.id


def test_other_methods_and_paths(stack: Stack) -> None:
    auth = {"authorization": f"Bearer {DEMO_KEY}"}
    url = f"{stack.base_url}/files"
    assert httpx.put(url, headers=auth).status_code == 405
    assert httpx.post(f"{url}/file-{'0' * 26}", headers=auth).status_code == 405
    assert httpx.get(f"{url}/a/b/c", headers=auth).status_code == 404
    assert httpx.get(url, params={"limit": "0"}, headers=auth).status_code == 400
    assert httpx.get(url, params={"order": "sideways"}, headers=auth).status_code == 400


def test_expired_files_are_swept_bytes_and_record(stack: Stack, demo: openai.OpenAI) -> None:
    made = demo.files.create(
        file=("old.txt", b"old"), purpose="user_data", expires_after={"anchor": "created_at", "seconds": 3600}
    )
    kept = demo.files.create(file=("keep.txt", b"keep"), purpose="user_data")

    class Sweeping:
        """What the sweep uses of the ingress's gateway."""

        def __init__(self, js: object) -> None:
            self.files = FileRecords(js)  # type: ignore[arg-type]
            self.blobs = BlobStore(js)  # type: ignore[arg-type]
            self.counters = Counters(js)  # type: ignore[arg-type]

    async def run() -> tuple[int, object, object]:
        nc = await stack.connect("admin")
        try:
            gw = Sweeping(nc.jetstream())
            record = await gw.files.get("demo", made.id)
            assert record is not None and record.blob.size == 3
            await sweep(gw, now_s=made.created_at + 3599)  # type: ignore[arg-type]
            assert await gw.files.get("demo", made.id) == record  # not yet
            deleted = await sweep(gw, now_s=made.created_at + 3600)  # type: ignore[arg-type]
            return deleted, await gw.files.get("demo", made.id), await gw.blobs.info(record.blob.name)
        finally:
            await nc.close()

    deleted, record_after, blob_after = asyncio.run(run())
    assert deleted >= 1 and record_after is None and blob_after is None
    with pytest.raises(openai.NotFoundError):
        demo.files.retrieve(made.id)
    assert demo.files.content(kept.id).content == b"keep"


def _form_upload(url: str, key: str, size: int, go: threading.Event, answers: list[httpx.Response]) -> None:
    """An upload whose body stops after its first bytes until ``go``;
    chunked, so it is held at the tenant's cap until its size is known."""
    boundary = "sluice-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:
        yield head + b"s" * 10
        assert go.wait(20)
        yield b"s" * (size - 10) + f"\r\n--{boundary}--\r\n".encode()

    headers = {"authorization": f"Bearer {key}", "content-type": f"multipart/form-data; boundary={boundary}"}
    answers.append(httpx.post(url, content=body(), headers=headers, timeout=30))


@pytest.mark.timeout(60)
def test_two_uploads_that_together_pass_the_total_one_is_refused_and_a_delete_gives_room(stack: Stack) -> None:
    go, answers = threading.Event(), []
    slow = threading.Thread(target=_form_upload, args=(f"{stack.base_url}/files", QUOTA_KEY, 600, go, answers))
    slow.start()
    try:
        deadline = time.monotonic() + 10
        while counted(stack, "quota") != (QUOTA_CAP, 1):  # the first is held, its body not read yet
            assert time.monotonic() < deadline, counted(stack, "quota")
            time.sleep(0.05)
        with sdk(stack, QUOTA_KEY) as quota:
            with pytest.raises(openai.BadRequestError) as caught:
                quota.files.create(file=("b.txt", b"b" * 600), purpose="user_data")
            assert caught.value.code == "file_storage_limit" and "file storage quota" in caught.value.message
            assert counted(stack, "quota") == (QUOTA_CAP, 1)  # nothing of the refused one stays counted
            go.set()
            slow.join(20)
            assert answers and answers[0].status_code == 200, answers
            first = answers[0].json()
            assert first["bytes"] == 600 and counted(stack, "quota") == (600, 1)
            with pytest.raises(openai.BadRequestError):  # 600 + 600 is past 1000 kept or not
                quota.files.create(file=("b.txt", b"b" * 600), purpose="user_data")
            quota.files.delete(first["id"])
            assert counted(stack, "quota") == (0, 0)
            second = quota.files.create(file=("b.txt", b"b" * 600), purpose="user_data")
            assert [f.id for f in quota.files.list()] == [second.id]
            assert counted(stack, "quota") == (600, 1)
    finally:
        go.set()
        slow.join(20)


def test_the_number_of_files_is_a_total_set_through_the_admin_api(stack: Stack) -> None:
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    made = httpx.post(
        f"{stack.admin_url}/tenants",
        json={"id": "counted", "files_max_count": 2, "files_total_bytes": 10**6},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    assert (made.json()["files_max_count"], made.json()["files_total_bytes"]) == (2, 10**6)
    bad = httpx.post(f"{stack.admin_url}/tenants", json={"id": "neg2", "files_max_count": -1}, headers=admin)
    assert bad.status_code == 400
    key = httpx.post(f"{stack.admin_url}/keys", json={"tenant": "counted"}, headers=admin).json()["secret"]
    with sdk(stack, key) as tenant:
        kept = [tenant.files.create(file=(f"{i}.txt", b"n"), purpose="user_data") for i in range(2)]
        with pytest.raises(openai.BadRequestError) as caught:
            tenant.files.create(file=("3.txt", b"n"), purpose="user_data")
        assert caught.value.code == "file_storage_limit"
        changed = httpx.patch(f"{stack.admin_url}/tenants/counted", json={"files_max_count": 3}, headers=admin)
        assert changed.status_code == 200 and changed.json()["files_max_count"] == 3, changed.text
        deadline = time.monotonic() + 10  # the ingress's copy of the tenant follows the bucket
        while True:
            try:
                kept.append(tenant.files.create(file=("3.txt", b"n"), purpose="user_data"))
                break
            except openai.BadRequestError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert counted(stack, "counted") == (3, 3)
