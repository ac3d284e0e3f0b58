"""Who may do what with the object stores, read from the permissions
nats-server is given: the ingress owns them (reads, writes, deletes: a
purge), the provider stage reads uploads and writes images into the media
store only, and no other process role touches either."""

from __future__ import annotations

import pytest

from schemas import subjects
from tests.unit.test_jetstream_grants import PROCESS_ROLES, may_publish

BLOBS, MEDIA = subjects.OBJ_BLOBS, subjects.OBJ_MEDIA


def writes(role: str, bucket: str) -> bool:
    return may_publish(role, f"$O.{bucket}.C.abc") and may_publish(role, f"$O.{bucket}.M.YWJj")


def reads(role: str, bucket: str) -> bool:
    return may_publish(role, f"$JS.API.DIRECT.GET.OBJ_{bucket}") and may_publish(
        role, f"$JS.API.STREAM.MSG.GET.OBJ_{bucket}"
    )


def purges(role: str, bucket: str) -> bool:
    return may_publish(role, f"$JS.API.STREAM.PURGE.OBJ_{bucket}")


@pytest.mark.parametrize("bucket", [BLOBS, MEDIA])
def test_only_the_ingress_deletes_objects(bucket: str) -> None:
    assert {r for r in PROCESS_ROLES if purges(r, bucket)} == {"ingress"}


def test_the_files_store_is_the_ingress_alone() -> None:
    assert {r for r in PROCESS_ROLES if writes(r, BLOBS) or reads(r, BLOBS)} == {"ingress"}


def test_the_provider_reads_uploads_and_writes_images() -> None:
    assert {r for r in PROCESS_ROLES if writes(r, MEDIA)} == {"ingress", "provider", "pipeline"}
    assert {r for r in PROCESS_ROLES if reads(r, MEDIA)} == {"ingress", "provider", "pipeline"}


@pytest.mark.parametrize("role", PROCESS_ROLES)
def test_no_role_makes_or_drops_a_store(role: str) -> None:
    for bucket in (BLOBS, MEDIA):
        for action in ("CREATE", "UPDATE", "DELETE"):
            assert not may_publish(role, f"$JS.API.STREAM.{action}.OBJ_{bucket}")
        # Reads are message gets: no consumer on a store for anyone.
        assert not may_publish(role, f"$JS.API.CONSUMER.CREATE.OBJ_{bucket}")
