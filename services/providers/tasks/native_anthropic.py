"""The steps of a native batch at Anthropic (Message Batches,
``services.providers.anthropic.batch``).

Anthropic's batches carry no metadata and list only their counts and times,
so nothing tells a batch an earlier submit made from another batch of as
many lines made meanwhile by anyone on the same key: a submit just creates.
What keeps it from running twice is the submit's own delivery (a durable
job, answered once), and here: once the create was sent, a try cut off
before its answer is not repeated (``may_have_made``), since the batch
may exist.

Anthropic takes only custom_ids of 1 to 64 letters, digits, "_" and "-";
a batch with another is refused (``UNFIT_IDS``) before anything is sent,
since its answers could not be matched to its lines.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from schemas.errors import GatewayError, InvalidRequest
from schemas.tasks import NativeBatchRequest
from services import native_batch
from services.providers.anthropic.batch import MAX_LINES, MAX_REQUEST_BYTES, AnthropicBatches, fits
from services.providers.openai.batch import LineKind
from services.providers.tasks.batch_types import BatchState
from services.providers.tasks.native_batch_io import BatchHttp, slices
from services.providers.tasks.native_ends import EndsWriter, read_into

UNFIT_IDS = native_batch.UNFIT_IDS


class AnthropicSteps:
    def __init__(self, http: BatchHttp, api: AnthropicBatches, api_key: str | None) -> None:
        self.http = http
        self.api = api
        self.dep = http.dep
        self.key = api_key
        # The create was sent: until its answer says otherwise, the batch may exist.
        self.create_sent = False

    def may_have_made(self) -> bool:
        """Whether a failed step may have made an upstream batch (the create
        sent, and no error status came back): trying again could make a second."""
        return self.create_sent and self.http.last_status < 400  # 0: no answer came

    async def submit(
        self, task: NativeBatchRequest, kind: LineKind, lines: AsyncIterator[tuple[str, bytes]]
    ) -> BatchState:
        body = bytearray(self.api.opening())
        count = 0
        async for custom_id, params in lines:
            if not fits(custom_id):
                raise InvalidRequest(
                    f"custom_id {custom_id[:80]!r} cannot go to Anthropic's Message Batches "
                    "(1 to 64 letters, digits, '_' and '-').",
                    code=UNFIT_IDS,
                )
            body += self.api.request(custom_id, params, first=not count)
            count += 1
            if count > MAX_LINES or len(body) > MAX_REQUEST_BYTES:
                raise InvalidRequest(
                    f"The batch is larger than Anthropic's Message Batches take "
                    f"({MAX_LINES} requests, {MAX_REQUEST_BYTES} bytes as it is sent).",
                    code=native_batch.TOO_LARGE,
                )
        if not count:
            raise InvalidRequest("A batch needs at least one line.")
        body += self.api.closing()
        headers = {**self.api.headers(self.dep, self.key), "content-length": str(len(body))}
        self.create_sent = True
        created = await self.http.post(self.api.batches_url(self.dep), headers, slices(body))
        return self.api.read_batch(created)

    async def poll(self, upstream_id: str) -> BatchState:
        url = self.api.batch_url(self.dep, upstream_id)
        return self.api.read_batch(await self.http.get(url, self.api.headers(self.dep, self.key, json_body=False)))

    async def cancel(self, upstream_id: str) -> BatchState:
        url = self.api.cancel_url(self.dep, upstream_id)
        try:
            answer = await self.http.post(url, self.api.headers(self.dep, self.key, json_body=False), b"")
        except GatewayError as exc:
            if exc.status not in (400, 409):
                raise
            return await self.poll(upstream_id)  # it ended already: how it stands is the answer
        return self.api.read_batch(answer)

    async def results(self, upstream_id: str, ends: EndsWriter) -> BatchState:
        state = await self.poll(upstream_id)
        if not state.ended:
            return state
        headers = {**self.api.headers(self.dep, self.key, json_body=False), "accept": "application/binary"}
        await read_into(
            ends, self.http.lines(self.api.results_url(self.dep, upstream_id), headers), self.api.read_line, "chat"
        )
        return state
