"""The steps of a native batch at OpenAI or Azure OpenAI (their Batch and
Files APIs, ``services.providers.openai.batch``).

Submit looks for the batch first: a batch of theirs carries Sluice's batch
id in its metadata, so a submit sent again (the driver died after the
upstream made it, the walk tried again after a lost answer) adopts the
batch an earlier one made instead of running every line twice. Only then
is the JSONL built (one buffer, a line at a time), uploaded and the batch
created.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from schemas.errors import GatewayError, InvalidRequest
from schemas.tasks import NativeBatchRequest
from services import native_batch
from services.providers.openai.batch import (
    MAX_INPUT_BYTES,
    MAX_LINES,
    UPLOAD_NAME,
    UPLOAD_TYPE,
    LineKind,
    OpenAIBatches,
)
from services.providers.tasks.batch_types import BatchState
from services.providers.tasks.native_batch_io import BatchHttp, slices
from services.providers.tasks.native_ends import EndsWriter, read_into
from services.providers.upload_body import FilePart, MultipartBody

# How far back a submit sent again looks for the batch an earlier one made
# (pages of 100, newest first): far more than are made while a submit is retried.
MAX_LIST_PAGES = 5


class OpenAISteps:
    def __init__(self, http: BatchHttp, api: OpenAIBatches, api_key: str | None) -> None:
        self.http = http
        self.api = api
        self.dep = http.dep
        self.key = api_key
        self.create_sent = False

    async def submit(
        self, task: NativeBatchRequest, kind: LineKind, lines: AsyncIterator[tuple[str, bytes]]
    ) -> BatchState:
        found = await self.find(task.batch_id)
        if found is not None:
            return found
        jsonl = bytearray()
        count = 0
        async for custom_id, body in lines:
            jsonl += self.api.line(custom_id, kind, body)
            count += 1
            if count > MAX_LINES or len(jsonl) > MAX_INPUT_BYTES:
                raise InvalidRequest(
                    f"The batch is larger than {self.dep.provider}'s batch API takes "
                    f"({MAX_LINES} lines, {MAX_INPUT_BYTES} bytes as it is sent).",
                    code=native_batch.TOO_LARGE,
                )
        if not count:
            raise InvalidRequest("A batch needs at least one line.")
        form = MultipartBody(
            self.api.upload_fields(), [FilePart("file", UPLOAD_NAME, UPLOAD_TYPE, len(jsonl), slices(jsonl))]
        )
        headers = {**self.api.headers(self.key, None), **form.headers()}
        file_id = self.api.read_file(await self.http.post(self.api.files_url(self.dep), headers, form.stream()))
        del form, jsonl  # the upload is sent: the lines are not needed again
        body = self.api.create_body(file_id, kind, task.batch_id)
        self.create_sent = True
        return self.api.read_batch(
            await self.http.post(self.api.batches_url(self.dep), self.api.headers(self.key), body)
        )

    def may_have_made(self) -> bool:
        """Whether a failed step may have made an upstream batch (the create
        sent, and no error status came back): then the walk goes to no other
        deployment, whose list would not show it; the driver's next submit
        comes here first and finds it by its metadata."""
        return self.create_sent and self.http.last_status < 400

    async def find(self, batch_id: str) -> BatchState | None:
        """The upstream batch that runs Sluice's ``batch_id``, if one was made."""
        after = ""
        for _ in range(MAX_LIST_PAGES):
            page = await self.http.get(self.api.list_url(self.dep, after), self.api.headers(self.key, None))
            found, after = self.api.read_list(page)
            for state in found:
                if state.sluice_batch_id == batch_id:
                    return state
            if not after:
                break
        return None

    async def poll(self, upstream_id: str) -> BatchState:
        url = self.api.batch_url(self.dep, upstream_id)
        return self.api.read_batch(await self.http.get(url, self.api.headers(self.key, None)))

    async def cancel(self, upstream_id: str) -> BatchState:
        url = self.api.cancel_url(self.dep, upstream_id)
        try:
            return self.api.read_batch(await self.http.post(url, self.api.headers(self.key, None), b""))
        except GatewayError as exc:
            if exc.status not in (400, 409):
                raise
            # Refused: it ended (or is ending) already; how it stands is the answer.
            return await self.poll(upstream_id)

    async def results(self, upstream_id: str, ends: EndsWriter) -> BatchState:
        state = await self.poll(upstream_id)
        if not state.ended:
            return state
        kind: LineKind = "embeddings" if state.endpoint.endswith("/embeddings") else "chat"
        for file_id in (state.output_file_id, state.error_file_id):
            if file_id:
                url = self.api.file_content_url(self.dep, file_id)
                await read_into(ends, self.http.lines(url, self.api.headers(self.key, None)), self.api.read_line, kind)
        return state
