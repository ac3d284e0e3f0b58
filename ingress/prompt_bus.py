"""Prompt APIs for services on the bus: ``sluice.v1.in.api.<slug>``, served
by every ingress process (queue group "apis") with the same ``PromptCall``
as HTTP. The request is an ``ApiCall`` in msgpack, or the same fields as a
JSON object (so the ``nats`` CLI or any language can call it); the answer
comes back in the encoding it was asked in."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
from nats.aio.msg import Msg

from ingress.gateway import Gateway
from ingress.prompt_call import PromptCall
from schemas import bus, subjects
from schemas.chat import Delta
from schemas.errors import GatewayBusy, GatewayError, InternalError, InvalidRequest
from schemas.ids import new_id
from schemas.prompt_calls import ApiAnswer, ApiCall
from schemas.replies import Chunk, Failure
from services.admission import valid_reply_subject
from services.apis import prompt_shapes
from services.apis.base import decode_json, is_json

log = logging.getLogger("sluice.ingress.apis")

# Calls one ingress process runs at once for bus callers; past this, a call
# is answered 503 at once rather than queued without bound.
MAX_IN_FLIGHT = 2048

_decode_msgpack = msgspec.msgpack.Decoder(ApiCall).decode
_decode_json = msgspec.json.Decoder(ApiCall).decode
_json = msgspec.json.Encoder()


class PromptBus:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.sub = await self.gw.nc.subscribe(
            subjects.IN_API_ALL, queue="apis", cb=self._on_call, pending_msgs_limit=100_000
        )

    async def stop(self) -> None:
        await self.sub.unsubscribe()  # take no more calls
        for task in list(self._tasks):
            task.cancel()

    async def _on_call(self, msg: Msg) -> None:
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: Msg) -> None:
        received_ns = time.time_ns()
        request_id = new_id(received_ns)
        as_json = is_json(msg.data)
        slug = msg.subject[len(subjects.IN_API) + 1 :]
        call = PromptCall(
            self.gw,
            slug,
            {},
            request_id=request_id,
            received_ns=received_ns,
            origin="nats",
            api_key=msg.headers.get(subjects.API_KEY_HEADER) if msg.headers else None,
            traceparent=msg.headers.get(subjects.TRACEPARENT_HEADER, "") if msg.headers else "",
        )
        reply_to = msg.reply if valid_reply_subject(msg.reply or "") else ""
        try:
            asked = decode_json(_decode_json if as_json else _decode_msgpack, msg.data)
            if asked.reply:
                if not valid_reply_subject(asked.reply):
                    raise InvalidRequest("'reply' must be an inbox subject (_INBOX...), without wildcards.")
                reply_to = asked.reply
            if len(self._tasks) > MAX_IN_FLIGHT:
                raise GatewayBusy("This gateway process has too many prompt-API calls in flight; retry shortly.")
        except GatewayError as exc:
            if reply_to:
                await self._send(reply_to, call.refuse(exc), as_json)
            return
        if not reply_to:  # nowhere to answer: running it would only spend money
            return
        call.variables, call.stream, call.test = asked.variables, asked.stream, asked.test
        seq = 0

        async def on_text(text: str) -> None:
            nonlocal seq
            if as_json:
                await self.gw.nc.publish(reply_to, _json.encode({"delta": text}))
            else:
                await self.gw.nc.publish(reply_to, bus.encode(Chunk(id=request_id, seq=seq, delta=Delta(content=text))))
            seq += 1

        try:
            result = await call.run(on_text if call.stream else None)
        except Exception:  # a bug: the caller still gets an answer with the id
            log.exception("prompt API call %s failed", request_id)
            result = call.refuse(InternalError(f"The gateway failed on this call; its id is {request_id}."))
        await self._send(reply_to, result, as_json)

    async def _send(self, subject: str, result: ApiAnswer | Failure, as_json: bool) -> None:
        if not as_json:
            payload = bus.encode(result)
        elif isinstance(result, ApiAnswer):
            payload = prompt_shapes.answer(result)
        else:
            payload = _error_json(result)
        await self.gw.nc.publish(subject, payload)


def _error_json(f: Failure) -> bytes:
    body: dict[str, Any] = msgspec.json.decode(prompt_shapes.error(f))
    body["error"]["status"] = f.status
    return _json.encode(body)
