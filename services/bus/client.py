"""A small client for Python services that call Sluice over NATS, typed
with the wire Structs:

    async with await SluiceClient.connect(url, api_key, creds=path) as sluice:
        final = await sluice.request(ChatBody(model="gpt-4o-mini", messages=[...]))
        async for chunk in sluice.stream(body):
            ...
        answer = await sluice.call_api("summarize", {"text": "..."})
        response = await sluice.respond(ResponsesRequest(model="gpt-4o-mini", input="Hi"))
        job = await sluice.submit_job("chat", {"model": ..., "messages": [...]})
        result = await sluice.result(job, wait_s=60)

Every call has a timeout; leaving a stream early (or a timeout) cancels the
request, the upstream call with it. A gateway error is raised as
``SluiceError`` with its HTTP status and OpenAI error type.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
import nats
from nats.aio.client import Client

from schemas import bus, subjects
from schemas.chat import ChatBody, EmbeddingsBody
from schemas.envelope import Envelope
from schemas.ids import new_id
from schemas.jobs import Job, JobQuery, JobResult
from schemas.prompt_calls import ApiAnswer, ApiCall
from schemas.replies import Accepted, Admitted, Cancel, Chunk, Failure, Final
from schemas.responses import Response, ResponsesRequest, decode_response, encode_wire
from services.bus import process

_decode_answer = msgspec.msgpack.Decoder(ApiAnswer | Failure | Chunk).decode
_decode_job = msgspec.msgpack.Decoder(JobResult | Failure).decode


class SluiceError(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure.status} {failure.code}: {failure.message}")
        self.failure = failure
        self.status = failure.status
        self.type = failure.type
        self.code = failure.code


class Stream:
    def __init__(self, replies: AsyncGenerator[Chunk | Final, None]) -> None:
        self._replies = replies

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> Chunk | Final:
        return await self._replies.__anext__()

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._replies.aclose()


class SluiceClient:
    def __init__(self, nc: Client, api_key: str) -> None:
        self.nc = nc
        self.headers = {subjects.API_KEY_HEADER: api_key if api_key.startswith("Bearer ") else f"Bearer {api_key}"}

    @classmethod
    async def connect(cls, url: str, api_key: str, *, creds: str | None = None) -> SluiceClient:
        options = process.auth_options(creds) if creds else {}
        return cls(await nats.connect(process.servers(url), **options), api_key)

    async def __aenter__(self) -> SluiceClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.nc.close()

    async def request(self, body: ChatBody | EmbeddingsBody, *, timeout_s: float = 60.0) -> Final:
        """One answer (a chat completion or embeddings), whole."""
        if isinstance(body, ChatBody):
            body.stream = False
        final = None
        async for reply in self._replies(body, timeout_s):
            if isinstance(reply, Final):
                final = reply
        assert final is not None
        return final

    def stream(self, body: ChatBody, *, timeout_s: float = 60.0) -> Stream:
        """The answer's chunks as they come, then its Final (with usage and
        cost). Use it in ``async with``: leaving early cancels the request."""
        body.stream = True
        return Stream(self._replies(body, timeout_s))

    async def _replies(self, body: ChatBody | EmbeddingsBody, timeout_s: float) -> AsyncGenerator[Chunk | Final, None]:
        request_id = new_id()
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        chat = body if isinstance(body, ChatBody) else None
        embeddings = body if isinstance(body, EmbeddingsBody) else None
        api = "chat" if chat else "embeddings"
        env = Envelope(id=request_id, reply=inbox, body=chat, embeddings=embeddings, api=api)
        ended = False
        try:
            await self.nc.publish(subjects.IN_CHAT, bus.encode(env), headers=self.headers)
            deadline = time.monotonic() + timeout_s
            while True:
                msg = await sub.next_msg(timeout=max(0.001, deadline - time.monotonic()))
                reply = bus.decode_reply(msg.data)
                if isinstance(reply, Accepted | Admitted):
                    continue
                if isinstance(reply, Failure):
                    ended = True
                    raise SluiceError(reply)
                ended = isinstance(reply, Final)
                yield reply
                if ended:
                    return
        except (TimeoutError, nats.errors.TimeoutError):
            raise TimeoutError(f"No answer to request {request_id} within {timeout_s} s.") from None
        finally:
            if not ended:  # left early, timed out, or cancelled: stop the upstream call too
                await self.nc.publish(subjects.IN_CANCEL, bus.encode(Cancel(id=request_id)))
            await sub.unsubscribe()

    async def call_api(self, slug: str, variables: dict[str, Any], *, timeout_s: float = 60.0) -> ApiAnswer:
        """A prompt API's answer (``output`` is the text, or the parsed object)."""
        msg = await self.nc.request(
            subjects.in_api(slug), bus.encode(ApiCall(variables=variables)), timeout=timeout_s, headers=self.headers
        )
        answer = _decode_answer(msg.data)
        if isinstance(answer, Failure):
            raise SluiceError(answer)
        assert isinstance(answer, ApiAnswer)
        return answer

    async def respond(self, request: ResponsesRequest, *, timeout_s: float = 60.0) -> Response:
        """OpenAI's Responses API over the bus (whole answers: ``stream`` is
        ignored); ``previous_response_id`` continues any of the tenant's
        responses, made here or over HTTP."""
        payload = encode_wire(request)
        msg = await self.nc.request(subjects.IN_RESPONSES, payload, timeout=timeout_s, headers=self.headers)
        status = int((msg.headers or {}).get("Sluice-Status", "500"))
        if status != 200:
            error = msgspec.json.decode(msg.data).get("error") or {}
            said = {k: str(error.get(k) or "") for k in ("type", "code", "message")}
            request_id = (msg.headers or {}).get("x-request-id", "")
            raise SluiceError(Failure(id=request_id, seq=0, status=status, **said))
        return decode_response(msg.data)

    async def submit_job(
        self,
        api: str,
        body: dict[str, Any] | None = None,
        *,
        variables: dict[str, Any] | None = None,
        submission_id: str | None = None,
        traceparent: str | None = None,
    ) -> str:
        """Queue a durable job (``api``: chat, messages, embeddings, or
        "api.<slug>" for a prompt API); its id. The same ``submission_id``
        sent again within a day makes no second job (a safe retry); a W3C
        ``traceparent`` puts the job's requests in the caller's trace."""
        job = Job(body=body, variables=variables or {})
        headers = dict(self.headers)
        if submission_id:
            headers["Nats-Msg-Id"] = submission_id
        if traceparent:
            headers[subjects.TRACEPARENT_HEADER] = traceparent
        ack = await self.nc.jetstream().publish(
            subjects.jobs(api), bus.encode(job), stream=subjects.JOBS_STREAM, headers=headers
        )
        return str(ack.seq)

    async def result(self, job_id: str, *, wait_s: float = 0.0, poll_s: float = 0.2) -> JobResult | None:
        """The job's result; None if it is not done within ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                msg = await self.nc.request(
                    subjects.JOBS_RESULT, bus.encode(JobQuery(id=job_id)), timeout=10, headers=self.headers
                )
            # The gateway is (re)starting: no one answers, or the ask went to a
            # process that had just died. Reading a result is safe to ask again.
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(poll_s)
                continue
            answer = _decode_job(msg.data)
            if isinstance(answer, JobResult):
                return answer
            if answer.code != "job_pending":
                raise SluiceError(answer)
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(poll_s)
