"""MCP sessions, the gateway's own: minted on ``initialize``, kept in the KV
bucket ``sluice_mcp_sessions`` (one small entry each, aging out with the
bucket's TTL), and checked on every later request that names one.

The SDK's transport runs stateless, so any ingress replica serves any
request of a session and a process holds nothing per session: the session
says only who opened it. A request naming a session must come with the same
key and the same secret of it; any other, like an unknown or expired id, is
answered as if the session did not exist (404, so the client opens a new
one), and reveals nothing of whose it is.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from schemas import subjects
from schemas.control import ApiKey
from schemas.errors import InternalError, RecordNotFound
from schemas.ids import new_id

# What a session id the gateway minted looks like (new_id: 26 characters of
# Crockford base32); anything else is unknown without a read.
SESSION_ID = re.compile(r"[0-9A-Z]{26}")
# A session is written again when used after this share of the bucket's TTL,
# so one in use does not age out: at most a few writes per TTL per session.
REFRESH_SHARE = 8
# A session read from the bucket is taken as it was for this long, so a
# busy session costs one read per interval, not one per request (the read
# was a tenth of the ingress's CPU per tool call). A session ended through
# another ingress process stays usable here for at most this long.
CONFIRMED_S = 5.0
# At most this many sessions remembered (the most recently used).
CONFIRMED_MAX = 4096


class McpSession(msgspec.Struct, omit_defaults=True):
    """One open MCP session (KV ``sluice_mcp_sessions``, by its id)."""

    key_id: str
    tenant_id: str
    # sha256 of the secret that opened it (a key may hold several while one
    # is rotated out): only that secret continues it.
    secret_sha256: str
    created_ms: int
    # When it was last written (its age in the bucket counts from then).
    touched_ms: int = 0


class SessionNotFound(RecordNotFound):
    """404, per MCP's Streamable HTTP: the client starts a new session."""

    code = "mcp_session_not_found"


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(McpSession).decode


def _not_found(session_id: str) -> SessionNotFound:
    shown = session_id[:40]
    return SessionNotFound(
        f"MCP session {shown!r} was not found: unknown, expired, ended, or opened with another API key. "
        "Send 'initialize' without an Mcp-Session-Id header to start a new one."
    )


class McpSessions:
    def __init__(self, js: JetStreamContext, ttl_s: float) -> None:
        self._js = js
        self._kv: KeyValue | None = None
        self._refresh_ms = int(ttl_s * 1000 / REFRESH_SHARE) if ttl_s > 0 else 0
        # session id -> (its record, revision, when read: monotonic s)
        self._confirmed: OrderedDict[str, tuple[McpSession, int, float]] = OrderedDict()

    async def _bucket(self) -> KeyValue:
        # Looked up at first use: the bootstrap makes the bucket, and a
        # process may start before it did.
        if self._kv is None:
            try:
                self._kv = await self._js.key_value(subjects.KV_MCP_SESSIONS)
            except (BucketNotFoundError, nats.errors.Error) as exc:
                raise InternalError(f"MCP sessions are not available ({exc}).", status=503) from exc
        return self._kv

    async def open(self, key: ApiKey, secret_sha256: str) -> str:
        """A new session of ``key``; its id."""
        now_ms = time.time_ns() // 1_000_000
        session_id = new_id()
        record = McpSession(key.id, key.tenant_id, secret_sha256, now_ms, now_ms)
        kv = await self._bucket()
        try:
            await kv.create(session_id, _encode(record))
        except nats.errors.Error as exc:
            raise InternalError(f"The MCP session could not be stored ({exc}).", status=503) from exc
        return session_id

    async def check(self, session_id: str, key: ApiKey, secret_sha256: str) -> McpSession:
        """The session, if it is this caller's; else SessionNotFound."""
        record, revision = await self._recent(session_id)
        if record is None or record.key_id != key.id or record.secret_sha256 != secret_sha256:
            raise _not_found(session_id)
        now_ms = time.time_ns() // 1_000_000
        if self._refresh_ms and now_ms - (record.touched_ms or record.created_ms) > self._refresh_ms:
            record.touched_ms = now_ms
            kv = await self._bucket()
            try:
                revision = await kv.update(session_id, _encode(record), last=revision)
                self._remember(session_id, record, revision)
            except KeyWrongLastSequenceError:
                pass  # another request of the session refreshed it, or it was ended
            except nats.errors.Error as exc:
                raise InternalError(f"The MCP session could not be stored ({exc}).", status=503) from exc
        return record

    async def end(self, session_id: str, key: ApiKey, secret_sha256: str) -> None:
        """End the caller's session (``DELETE /mcp``); SessionNotFound if it has none by that id."""
        await self.check(session_id, key, secret_sha256)
        self._confirmed.pop(session_id, None)
        kv = await self._bucket()
        try:
            await kv.purge(session_id)
        except nats.errors.Error as exc:
            raise InternalError(f"The MCP session could not be ended ({exc}).", status=503) from exc

    async def _recent(self, session_id: str) -> tuple[McpSession | None, int]:
        now = time.monotonic()
        kept = self._confirmed.get(session_id)
        if kept is not None and now - kept[2] < CONFIRMED_S:
            self._confirmed.move_to_end(session_id)
            return kept[0], kept[1]
        record, revision = await self._read(session_id)
        if record is not None:
            self._remember(session_id, record, revision, now)
        else:
            self._confirmed.pop(session_id, None)
        return record, revision

    def _remember(self, session_id: str, record: McpSession, revision: int, at: float | None = None) -> None:
        self._confirmed[session_id] = (record, revision, time.monotonic() if at is None else at)
        self._confirmed.move_to_end(session_id)
        while len(self._confirmed) > CONFIRMED_MAX:
            self._confirmed.popitem(last=False)

    async def _read(self, session_id: str) -> tuple[McpSession | None, int]:
        if SESSION_ID.fullmatch(session_id) is None:
            return None, 0
        kv = await self._bucket()
        try:
            entry = await kv.get(session_id)
        except (KeyNotFoundError, KeyDeletedError):
            return None, 0
        except nats.errors.Error as exc:
            raise InternalError(f"MCP sessions could not be read ({exc}); try again.", status=503) from exc
        if not entry.value:
            return None, 0
        try:
            return _decode(entry.value), entry.revision or 0
        except msgspec.DecodeError:
            return None, 0
