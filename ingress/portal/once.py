"""Something shown once after a form: a new key's secret, a person's new
one-time link. The form's POST keeps it in a slot and answers with a 303 to
the page that shows it (POST/redirect/GET); that page's first GET takes the
slot, and a reload finds it gone and says so, instead of posting the form
again (another key, another link).

A slot lives in the sessions bucket (``sluice_portal_sessions``: its entries
age out with the bucket's TTL) for ``SLOT_MS`` at most, under a name derived
from the browser's session token and what the slot is for (``purpose``:
``key:<id>``, ``link:<user id>``), sealed (AES-GCM) with a key derived from
that token too. The token is the browser's cookie, and the bucket keeps
only its digest: neither the bucket, nor a URL, nor a log holds the secret
or what opens it, and another browser (another session) finds nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any, Protocol

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from litestar import Request
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError

from ingress.portal import browser

# Long enough to follow a redirect on a slow link; the slot is taken at once.
SLOT_MS = 10 * 60 * 1000
_NONCE_BYTES = 12
_payload_encoder = msgspec.msgpack.Encoder()
_payload_decoder = msgspec.msgpack.Decoder(dict[str, str])


class Slot(msgspec.Struct, omit_defaults=True):
    """The record kept: whose it is, until when, and the sealed payload.
    The portal's own: nothing else reads the sessions bucket's ``once.`` keys."""

    user_id: str
    expires_at_ms: int
    nonce: bytes
    sealed: bytes


_slot_decoder = msgspec.msgpack.Decoder(Slot)


class Entry(Protocol):
    value: bytes | None
    revision: int | None


class Bucket(Protocol):
    """What of a NATS KV bucket a slot needs (``nats.js.kv.KeyValue``)."""

    async def put(self, key: str, value: bytes) -> int: ...

    async def get(self, key: str) -> Entry: ...

    async def delete(self, key: str, last: int | None = None) -> bool: ...


def _derived(token: str, label: str) -> bytes:
    return hmac.new(token.encode(), label.encode(), hashlib.sha256).digest()


def slot_name(token: str, purpose: str) -> str:
    """The slot's key in the bucket: only the browser's token leads to it."""
    return "once." + _derived(token, "slot:" + purpose).hex()


def seal(token: str, purpose: str, user_id: str, payload: dict[str, str], expires_at_ms: int) -> Slot:
    nonce = os.urandom(_NONCE_BYTES)
    key = _derived(token, "seal:" + purpose)
    sealed = AESGCM(key).encrypt(nonce, _payload_encoder.encode(payload), _bound(purpose, user_id))
    return Slot(user_id=user_id, expires_at_ms=expires_at_ms, nonce=nonce, sealed=sealed)


def unseal(token: str, purpose: str, user_id: str, slot: Slot) -> dict[str, str] | None:
    """The payload, if this browser's token, purpose and person sealed it."""
    if slot.user_id != user_id:
        return None
    try:
        plain = AESGCM(_derived(token, "seal:" + purpose)).decrypt(slot.nonce, slot.sealed, _bound(purpose, user_id))
        return _payload_decoder.decode(plain)
    except (InvalidTag, ValueError, msgspec.DecodeError):
        return None


def _bound(purpose: str, user_id: str) -> bytes:
    # What the sealed bytes are about: a slot moved to another name or person does not open.
    return f"{purpose}\n{user_id}".encode()


async def keep(bucket: Bucket, token: str, purpose: str, user_id: str, payload: dict[str, str], now_ms: int) -> None:
    """Keep ``payload`` for the browser holding ``token`` (a later slot of the
    same purpose replaces an earlier one, never shown)."""
    slot = seal(token, purpose, user_id, payload, now_ms + SLOT_MS)
    await bucket.put(slot_name(token, purpose), msgspec.msgpack.encode(slot))


async def take(bucket: Bucket, token: str, purpose: str, user_id: str, now_ms: int) -> dict[str, str] | None:
    """The payload kept for this browser and purpose, once: the slot is
    deleted at the revision read (two tabs cannot both show it); None when
    there is none, it was taken, it expired, or it is not this browser's."""
    name = slot_name(token, purpose)
    try:
        entry = await bucket.get(name)
    except (KeyNotFoundError, KeyDeletedError):
        return None
    if entry.value is None:
        return None
    try:
        slot = _slot_decoder.decode(entry.value)
    except msgspec.DecodeError:
        return None
    try:
        await bucket.delete(name, last=entry.revision)
    except KeyWrongLastSequenceError:
        return None  # another request took it first
    if now_ms >= slot.expires_at_ms:
        return None
    return unseal(token, purpose, user_id, slot)


# --- for a page's handler: the browser's session, the person --------------------


async def keep_for(request: Request, person: Any, purpose: str, payload: dict[str, str]) -> None:
    """Keep ``payload`` for the signed-in browser of ``request`` (``person``:
    ``ingress.portal.auth.Person``), to show on the next page."""
    bucket = await browser.people(request).sessions_bucket()
    await keep(bucket, request.cookies.get(browser.COOKIE, ""), purpose, person.user.id, payload, browser.now_ms())


async def take_for(request: Request, person: Any, purpose: str) -> dict[str, str] | None:
    """What ``keep_for`` kept for this browser and purpose, once."""
    bucket = await browser.people(request).sessions_bucket()
    return await take(bucket, request.cookies.get(browser.COOKIE, ""), purpose, person.user.id, browser.now_ms())
