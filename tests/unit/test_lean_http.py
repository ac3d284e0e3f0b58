"""The lean upstream client's own promises, against a raw loopback server
that shows what reached it: connections kept and reused, never a closed
one, a POST never sent twice, uploads framed right, the pool bounded,
interim and unframed answers, TLS, and a caller that leaves."""

from __future__ import annotations

import asyncio
import datetime
import gc
import gzip
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.providers.lean_http import LeanUpstream

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # the request's body -> keep the connection?


def ok(body: bytes = b'{"ok": true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


class Server:
    """Reads requests (length or chunked bodies) and answers each with ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body)
        self.closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)
                }
                if b"content-length" in lines:
                    body = await reader.readexactly(int(lines[b"content-length"]))
                else:
                    body = b""
                    while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                        body += await reader.readexactly(size)
                        await reader.readexactly(2)
                    await reader.readexactly(2)
                self.requests.append((head, body))
                if not await self.answer(body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            self.closed.set()
            writer.close()


async def serve(answer: Answer, tls: ssl.SSLContext | None = None) -> tuple[Server, asyncio.Server, int]:
    server = Server(answer)
    srv = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    return server, srv, srv.sockets[0].getsockname()[1]


async def echo(body: bytes, w: asyncio.StreamWriter) -> bool:
    """Answers each request with its own body, keeping the connection."""
    w.write(ok(body))
    return True


@pytest.fixture
async def client() -> AsyncIterator[LeanUpstream]:
    c = LeanUpstream()
    yield c
    await c.aclose()


async def call(client: LeanUpstream, url: str, body: bytes = b"hi", headers: dict[str, str] | None = None) -> bytes:
    resp = await client.post(url, headers or {}, body, 5.0)
    try:
        return await resp.aread()
    finally:
        await resp.aclose()


async def test_one_connection_carries_call_after_call(client: LeanUpstream) -> None:
    server, srv, port = await serve(echo)
    async with srv:
        got = [await call(client, f"http://127.0.0.1:{port}/v1/x?q=1", f"n{i}".encode()) for i in range(3)]
    assert got == [b"n0", b"n1", b"n2"]
    assert server.connections == 1
    head = server.requests[0][0]
    assert head.startswith(b"POST /v1/x?q=1 HTTP/1.1\r\n") and b"host: 127.0.0.1:" in head
    assert b"accept-encoding: gzip, deflate" in head


async def test_a_connection_the_server_closes_is_never_used_again(client: LeanUpstream) -> None:
    async def answer(body: bytes, w: asyncio.StreamWriter) -> bool:
        if body == b"close":
            w.write(ok(body, b"connection: close\r\n"))
            return False
        w.write(ok(body))
        await w.drain()
        if body == b"idle":
            asyncio.get_running_loop().call_later(0.05, w.close)  # an idle keep-alive dropped by the server
        return True

    server, srv, port = await serve(answer)
    url = f"http://127.0.0.1:{port}/"
    async with srv:
        assert await call(client, url, b"close") == b"close"
        assert await call(client, url, b"idle") == b"idle"
        await asyncio.sleep(0.2)
        assert await call(client, url, b"after") == b"after"
    # Each POST reached the server once, the last on a connection of its own.
    assert [b for _, b in server.requests] == [b"close", b"idle", b"after"]
    assert server.connections == 3


async def test_a_connection_cut_mid_answer_fails_and_is_not_sent_again(client: LeanUpstream) -> None:
    async def answer(body: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await w.drain()
        return False

    server, srv, port = await serve(answer)
    async with srv:
        with pytest.raises(httpx.ReadError):
            await call(client, f"http://127.0.0.1:{port}/")
    assert len(server.requests) == 1


async def test_uploads_are_framed_by_their_length_or_in_chunks(client: LeanUpstream) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for piece in (b"a" * 70_000, b"", b"bc"):
            yield piece

    server, srv, port = await serve(echo)
    url = f"http://127.0.0.1:{port}/upload"
    async with srv:
        for headers in ({}, {"Content-Length": "70002"}):
            resp = await client.post(url, headers, pieces(), 5.0)
            assert len(await resp.aread()) == 70_002
            await resp.aclose()
    (chunked, body1), (sized, body2) = server.requests
    assert b"transfer-encoding: chunked" in chunked and body1 == b"a" * 70_000 + b"bc"
    assert b"content-length: 70002" in sized and b"chunked" not in sized and body2 == body1


async def test_the_pool_holds_at_most_its_bound_and_the_rest_wait() -> None:
    async def answer(body: bytes, w: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.1)
        w.write(ok(body))
        return True

    client = LeanUpstream(max_connections=2)
    server, srv, port = await serve(answer)
    async with srv:
        got = await asyncio.gather(*(call(client, f"http://127.0.0.1:{port}/", f"{i}".encode()) for i in range(5)))
    await client.aclose()
    assert sorted(got) == [b"0", b"1", b"2", b"3", b"4"]
    assert server.most_open == 2


async def test_a_header_that_would_split_the_request_is_refused(client: LeanUpstream) -> None:
    server, srv, port = await serve(echo)
    async with srv:
        with pytest.raises(ValueError):
            await client.post(f"http://127.0.0.1:{port}/", {"x-beta": "a\r\nx-admin: 1"}, b"", 5.0)
    assert server.requests == []


async def test_interim_and_unframed_answers(client: LeanUpstream) -> None:
    async def answer(body: bytes, w: asyncio.StreamWriter) -> bool:
        if body == b"continue":
            w.write(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"final"))
            return True
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nread to the end")  # framed by the close
        return False

    _, srv, port = await serve(answer)
    url = f"http://127.0.0.1:{port}/"
    async with srv:
        resp = await client.post(url, {}, b"continue", 5.0)
        assert resp.status_code == 200 and await resp.aread() == b"final"
        await resp.aclose()
        unframed = await client.post(url, {}, b"unframed", 5.0)
        assert unframed.headers["Content-Type"] == "text/plain"
        assert await unframed.aread() == b"read to the end"
        await unframed.aclose()


async def test_a_gzip_stream_is_decoded_as_it_comes(client: LeanUpstream) -> None:
    packed = gzip.compress(b"data: 1\n\n" * 200)

    async def answer(body: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(0, len(packed), 16):
            piece = packed[i : i + 16]
            w.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await w.drain()
        w.write(b"0\r\n\r\n")
        return True

    _, srv, port = await serve(answer)
    async with srv:
        resp = await client.post(f"http://127.0.0.1:{port}/", {}, b"", 5.0)
        got = b"".join([piece async for piece in resp.aiter_bytes()])
        await resp.aclose()
    assert got == b"data: 1\n\n" * 200


async def test_an_answer_dropped_unclosed_gives_its_connection_back() -> None:
    client = LeanUpstream(max_connections=1)
    _, srv, port = await serve(echo)
    url = f"http://127.0.0.1:{port}/"
    async with srv:
        resp = await client.post(url, {}, b"dropped", 5.0)
        del resp  # a caller that raised before aclose
        gc.collect()
        assert await call(client, url, b"next") == b"next"
    await client.aclose()


async def test_a_caller_that_leaves_closes_the_upstream_connection(client: LeanUpstream) -> None:
    async def answer(body: bytes, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await w.drain()
        return True  # a slow model, still writing: the server reads on, and sees the connection end

    server, srv, port = await serve(answer)
    async with srv:
        resp = await client.post(f"http://127.0.0.1:{port}/", {}, b"", 60.0)
        stream = resp.aiter_bytes()
        assert await anext(stream) == b"first"
        await resp.aclose()  # the caller left mid-answer
        await asyncio.wait_for(server.closed.wait(), 5)
    assert server.open == 0


def _certificate(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_tls_with_a_trusted_certificate_and_not_without(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    _, srv, port = await serve(echo, server_tls)
    url = f"https://127.0.0.1:{port}/"
    trusting = LeanUpstream(tls=ssl.create_default_context(cafile=str(cert)))
    untrusting = LeanUpstream()
    async with srv:
        assert await call(trusting, url, b"secret") == b"secret"
        with pytest.raises(httpx.ConnectError):
            await call(untrusting, url)
    await trusting.aclose()
    await untrusting.aclose()


async def test_a_path_with_an_upstreams_odd_id_is_percent_encoded_never_split(client: LeanUpstream) -> None:
    server, srv, port = await serve(echo)
    async with srv:
        await call(client, f"http://127.0.0.1:{port}/v1/files/file x\r\nx-admin: 1é/content?after=a%20b")
    head = server.requests[0][0]
    assert head.startswith(b"POST /v1/files/file%20xx-admin:%201%C3%A9/content?after=a%20b HTTP/1.1\r\n")
    assert b"\r\nx-admin" not in head
