"""A 1 GB file through the Files API: uploaded by a client that makes its
bytes as it sends them, downloaded by one that hashes them as they come.
What came back is what went up (sha256), and no process of the gateway
(the supervisor's: stages, ingress, sink, nats-server) grew its memory by
300 MB over its memory at rest while the file passed through."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.stack import DEMO_KEY, Stack

pytestmark = pytest.mark.serial

MB = 1024 * 1024
SIZE = 1024 * MB
PIECE = MB
# How much more than at rest any one process may hold while the file passes.
RSS_MARGIN = 300 * MB
BOUNDARY = "sluice-large-file-test-boundary"


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class PeakRss:
    """Each process's resident memory at rest, then its peak while in use
    (sampled every 50 ms from /proc)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before = {n: rss(p) for n, p in pids.items()}
        self.peak = dict(self.before)
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            for n, p in self.pids.items():
                self.peak[n] = max(self.peak[n], rss(p))

    def __enter__(self) -> PeakRss:
        self._sampler.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._sampler.join(5)

    def grown_mb(self) -> dict[str, int]:
        return {n: (self.peak[n] - self.before[n]) // MB for n in self.pids}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp("files-large"),
        timeout_s=30,
        gateway=f"files_max_bytes = {2 * SIZE}\nfiles_idle_timeout_s = 30",
    ).start()
    yield s
    s.stop()


def multipart_body(digest: hashlib._Hash) -> Iterator[bytes]:
    """A form with ``purpose`` and a file of ``SIZE`` bytes, each MB made when
    the client asks for it (and hashed on the way): never all in memory."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    seed = hashlib.sha256(b"sluice").digest() * (PIECE // 32)
    for n in range(SIZE // PIECE):
        piece = n.to_bytes(8, "big") + seed[8:]
        digest.update(piece)
        yield piece
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


@pytest.mark.timeout(240)
def test_a_1_gb_file_goes_up_and_down_in_bounded_memory(stack: Stack) -> None:
    auth = {"authorization": f"Bearer {DEMO_KEY}"}
    pids = stack.supervisor.pids()
    up = hashlib.sha256()
    down = hashlib.sha256()
    received = 0
    started = time.monotonic()
    with PeakRss(pids) as peak, httpx.Client(base_url=stack.base_url, timeout=60) as client:
        made = client.post(
            "/files",
            content=multipart_body(up),
            headers={**auth, "content-type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
        assert made.status_code == 200, made.text
        uploaded_s = time.monotonic() - started
        file = made.json()
        assert file["bytes"] == SIZE and file["filename"] == "big.bin"
        with client.stream("GET", f"/files/{file['id']}/content", headers=auth) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-length"] == str(SIZE)
            for piece in answer.iter_bytes():
                down.update(piece)
                received += len(piece)
        assert client.delete(f"/files/{file['id']}", headers=auth).status_code == 200
    total_s = time.monotonic() - started
    grown = peak.grown_mb()
    print(
        f"\n1 GB file: up {uploaded_s:.1f} s, up and down {total_s:.1f} s; "
        f"RSS at rest (MB): { {n: b // MB for n, b in peak.before.items()} }; grown at peak (MB): {grown}"
    )
    assert received == SIZE and down.hexdigest() == up.hexdigest()
    assert all(peak.peak[n] - peak.before[n] < RSS_MARGIN for n in pids), f"MB grown at peak: {grown}"
