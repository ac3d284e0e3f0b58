"""One request's trip through the bus, from the ingress's side: publish it,
receive its replies in order, send it again if it was lost on the way, cancel
it, and end it when its deadline or the process holding it is gone. Each
front door relays what ``next_reply`` gives in its own way (``http_relay``).

A door that paces a REST answer (``publish(flow_window=...)``) says how much
of the body it wrote on (``wrote``); the session grants the provider credit
for it (``services.flow_window``), and sends its latest credit again with
each ask of a silent provider, in case one was lost."""

from __future__ import annotations

import asyncio
import time
from collections import deque

import msgspec

from ingress import worker_died
from ingress.gateway import Gateway
from ingress.replies import Disconnected, ProcessNews
from schemas import bus, subjects
from schemas.chat import ChatBody, EmbeddingsBody
from schemas.envelope import Api, Envelope, Origin, PromptRef, Span
from schemas.errors import (
    ClientClosed,
    GatewayError,
    InternalError,
    InvalidRequest,
    RedactionUnavailable,
    StageTimeout,
    UpstreamError,
)
from schemas.mcp import McpCall
from schemas.replies import (
    Accepted,
    Admitted,
    Cancel,
    Chunk,
    Credit,
    Failure,
    Fence,
    Fenced,
    Final,
    Redacted,
    ReplayAsk,
)
from schemas.reservation import Reservation
from schemas.rest import RestCall
from schemas.tasks import TaskRequest
from services import fence, trace
from services.bus import quota_ledger
from services.flow_window import Grants
from services.reply_split import Assembler

# Replies travel on core NATS, which keeps nothing: one in flight when a
# NATS node dies is lost. A request its provider took that is silent this
# long asks that provider to send its replies again from the first one
# missing (``ReplayAsk``); so does a gap in the replies' order, at once, at most
# MAX_GAP_REPLAYS times. Copies already relayed are dropped by their seq.
REPLAY_AFTER_S = 2.0
MAX_GAP_REPLAYS = 3

# The ingress waits this long past the deadline, so that a stage that gave up
# at the deadline (e.g. the provider on a slow upstream) can still say why.
DEADLINE_GRACE_S = 0.25


class BusSession:
    def __init__(
        self,
        gw: Gateway,
        api: Api,
        model: str,
        stream: bool,
        received_ns: int,
        request_id: str,
        *,
        origin: Origin = "http",
        deadline_ns: int = 0,
        job: bool = False,
        first_copy: int = 0,
    ) -> None:
        self.gw = gw
        self.api = api
        self.model = model
        self.stream = stream
        self.id = request_id
        self.origin: Origin = origin
        self.received_ns = received_ns
        self.created = received_ns // 1_000_000_000
        # A step of a prompt API gets what is left of its call's deadline.
        self.deadline_ns = deadline_ns or received_ns + int(gw.settings.request_timeout_s * 1e9)
        # A job's replies go where a stream keeps them (see ``ingress.jobs``).
        self.reply_subject, self.queue = gw.replies.open(request_id, job=job)
        self.spans: list[Span] = []
        self.expected_seq = 0
        # The deltas after the first of a reply that carried several (one
        # upstream read's), handed out one chunk at a time.
        self._held: deque[Chunk] = deque()
        self.body: ChatBody | None = None
        self.embeddings: EmbeddingsBody | None = None
        self.tool: McpCall | None = None
        self.rest: RestCall | None = None
        self.task: TaskRequest | None = None
        self.batch_id = ""
        # What was published, kept to send again if the request is lost on
        # the way to the provider (a stage died while holding it).
        self._published: tuple[Envelope, bytes, dict[str, str] | None] | None = None
        self._published_ns = 0
        # The copy sent last (or to send first: a job taken over after its
        # runner died starts above every copy the earlier runs sent, and
        # fences them before its first send).
        self._copy = first_copy
        self._sent = False
        self._fence: fence.FenceRound | None = None
        self._resent = 0
        self._gap_replays = 0
        self._replay_asked = 0.0
        # The provider process that took the request, once it said so.
        self.accepted_by = ""
        # Streamed text relayed so far: what is billed if the provider dies.
        self.relayed: list[str] = []
        # A failure this ingress made up (no stage sent it) and must record.
        self._ours: Failure | None = None
        # What policy reserved (it says so when it admits): if the request is
        # sent again it carries this, and if its provider dies this settles it.
        self.quota: Reservation | None = None
        self.prompt: PromptRef | None = None
        # Set when policy says redaction is on the slip: the time it must have
        # passed the request by (it says so), else the request fails closed.
        self.redaction_by_ns = 0
        self.redacted = False
        # The caller's W3C trace id (a valid traceparent), for rows made here.
        self.trace_id = ""
        self.parent_span_id = ""
        # The caller, when the door authenticated it itself (an MCP call): a
        # row made here carries them, as a stage's reply does.
        self.key_id = ""
        self.tenant_id = ""
        # A REST answer's pace: what the door wrote on, the credit granted for it.
        self.flow: Grants | None = None

    @property
    def id_header(self) -> list[tuple[bytes, bytes]]:
        return [(b"x-request-id", self.id.encode())]

    async def publish(
        self,
        api_key_header: str | None,
        body: ChatBody | None = None,
        embeddings: EmbeddingsBody | None = None,
        *,
        pin: str = "",
        cache_control: str = "",
        raw: bytes = b"",
        prompt: PromptRef | None = None,
        traceparent: str = "",
        key_id: str = "",
        dropped: list[str] | None = None,
        anthropic_beta: str = "",
        tool: McpCall | None = None,
        rest: RestCall | None = None,
        flow_window: int = 0,
        task: TaskRequest | None = None,
        batch_id: str = "",
    ) -> None:
        """Send the request: a chat or embeddings body, a call to an MCP
        server (``tool``, api "mcp") or to a REST service (``rest``, api
        "rest"; ``flow_window``: its body is paced, see ``wrote``). A
        durable job's request names its key by id (``key_id``; policy
        trusts it from the ingress alone), never by secret."""
        self.body, self.embeddings, self.prompt, self.tool = body, embeddings, prompt, tool
        self.rest, self.task, self.batch_id = rest, task, batch_id
        self.flow = Grants(flow_window) if flow_window > 0 else None
        self.trace_id, self.parent_span_id = trace.parse(traceparent)
        # The ingress's own time rides with the request: the stage that ends it records it.
        self.spans.append(Span("ingress", self.received_ns, time.time_ns()))
        env = Envelope(
            id=self.id,
            received_at_ns=self.received_ns,
            deadline_ns=self.deadline_ns,
            body=body,
            embeddings=embeddings,
            tool=tool,
            rest=rest,
            task=task,
            batch_id=batch_id,
            api=self.api,
            reply=self.reply_subject,
            origin=self.origin,
            spans=self.spans,
            pin=pin,
            cache_control=cache_control,
            raw=raw,
            dropped=dropped or [],
            anthropic_beta=anthropic_beta,
            prompt=prompt,
            # A job run again carries what policy reserved for its first run.
            quota=self.quota,
            batch_chunks=True,
            progress=True,
            copy=self._copy,
            flow_window=flow_window,
        )
        given = {subjects.API_KEY_HEADER: api_key_header} if api_key_header else {}
        if key_id:
            given = {subjects.KEY_ID_HEADER: key_id}
        if self.trace_id:
            given[subjects.TRACEPARENT_HEADER] = traceparent.strip()
        headers = given or None
        try:
            payload = bus.encode(env)
        except OverflowError:
            try:
                payload = bus.encode(bus.widen_envelope(env))
            except OverflowError:  # in a typed field (token ids): no float stands in for those
                raise InvalidRequest("A number in the request is out of range: integers must fit in 64 bits.") from None
        self._published = (env, payload, headers)
        self._published_ns = time.time_ns()
        if self._copy:  # a run taken over: earlier runs' copies are fenced off first
            await self._fence_then_send()
            return
        self._sent = True
        await self.gw.nc.publish(subjects.FROM_INGRESS, payload, headers=headers)

    def has_more(self) -> bool:
        """A reply is here already: ``next_reply`` returns without waiting."""
        return bool(self._held) or not self.queue.empty()

    async def next_reply(self, timeout_s: float) -> Chunk | Final | Failure | None:
        """The next reply in order; None when the client went away."""
        if self._held:
            return self._relayed(self._held.popleft())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            wait = deadline - loop.time()
            # Until a provider takes the request, wait for it only so long:
            # a request no provider took by then was lost on the way.
            unclaimed = not self.accepted_by and self.expected_seq == 0 and self._published is not None
            if unclaimed:
                if self._fence is not None:
                    wait = min(wait, fence.FENCE_AGAIN_S)
                else:
                    wait = min(wait, fence.RESEND_AFTER_S if self._resent else fence.FIRST_RESEND_AFTER_S)
            elif self.accepted_by or self._may_wait_for_credit:
                wait = min(wait, REPLAY_AFTER_S)
            redacting = self.redaction_by_ns and not self.redacted
            if redacting:
                wait = min(wait, (self.redaction_by_ns - time.time_ns()) / 1e9)
            try:
                data = await self.queue.get(max(0.0, wait))  # one timer per deadline, not per reply (ingress.mailbox)
            except TimeoutError:
                if redacting and time.time_ns() >= self.redaction_by_ns:
                    # Fail closed: a late pass is refused by the provider (cancelled).
                    await self.cancel()
                    unavailable = RedactionUnavailable("The redaction stage did not pass the request in time.")
                    return self._ended_here(unavailable, record=True)
                if unclaimed and loop.time() < deadline and self._resent < fence.MAX_RESENDS:
                    await self._fence_then_send()
                    continue
                if (self.accepted_by or self._may_wait_for_credit) and loop.time() < deadline:
                    await self._ask_replay()
                    continue
                # Nothing came: unless a stage answers late, no one else will record it.
                # What policy reserved is not settled here: a stage still holding
                # the request settles it when it fails it at the deadline, and a
                # second settlement would hand back units (or spend) twice.
                return self._ended_here(StageTimeout("The gateway did not answer in time."), record=True)
            if isinstance(data, ProcessNews):
                failure = await self._on_process_news(data)
                if failure is not None:
                    return failure
                continue
            if isinstance(data, Disconnected):
                return None
            try:
                reply = bus.decode_reply(data)
            except msgspec.DecodeError:
                continue  # not a reply of any stage's: it cannot end the request (a bug's, or anyone's on the inbox)
            if isinstance(reply, Admitted):
                # Only the copy in flight's own: an older copy's, heard late, is
                # not what the next fence says goes on, and its provider settles it.
                if reply.quota is not None and reply.quota.copy == self._copy:
                    self.quota = reply.quota
                if reply.redaction_by_ns:
                    # The first admission's budget holds: a resent copy's
                    # admission must not push the fail-closed deadline out.
                    first = self.redaction_by_ns or reply.redaction_by_ns
                    self.redaction_by_ns = min(first, reply.redaction_by_ns)
                continue
            if isinstance(reply, Redacted):
                self.redacted = True
                continue
            if isinstance(reply, Fenced):
                await self._on_fenced(reply)
                continue
            if not isinstance(reply, Accepted):
                if reply.seq < self.expected_seq:
                    continue  # a copy sent again: relayed already
                if reply.seq > self.expected_seq and self.accepted_by and self._gap_replays < MAX_GAP_REPLAYS:
                    # One missing: its copy and those after it are coming.
                    if loop.time() - self._replay_asked > REPLAY_AFTER_S:
                        self._gap_replays += 1
                        await self._ask_replay()
                    continue
                break
            self.accepted_by = reply.worker
        if reply.seq != self.expected_seq:
            # The stage that sent the rest records the request; a gap is ours to report only.
            return self._ended_here(InternalError(f"Reply {self.expected_seq} was lost on the bus.", status=502))
        self.expected_seq += 1
        if isinstance(reply, Chunk) and reply.more:
            self._held.extend(Chunk(id=reply.id, seq=reply.seq, delta=d, model=reply.model) for d in reply.more)
            reply.more = []
        return self._relayed(reply)

    def _relayed(self, reply: Chunk | Final | Failure) -> Chunk | Final | Failure:
        if isinstance(reply, Chunk) and self.stream:
            delta = reply.delta
            if delta.content:
                self.relayed.append(delta.content)
            for tc in delta.tool_calls or ():
                self.relayed.append(tc.function.arguments or "" if tc.function else "")
        return reply

    async def collect(self) -> Final | Failure | None:
        """A whole answer, its pieces joined (one too large for one message
        comes in chunks first); None when the client went away."""
        pieces = Assembler()
        reply = await self.next_reply(self.first_timeout())
        while isinstance(reply, Chunk):
            pieces.add(reply)
            reply = await self.next_reply(self.first_timeout())
        if reply is None:
            await self.cancel()
            return None
        if isinstance(reply, Final):
            return pieces.complete(reply)
        if not isinstance(reply, Failure):
            reply = Failure.from_error(self.id, InternalError("The pipeline sent an unexpected reply.", status=502))
        elif reply.code == StageTimeout.code:
            await self.cancel()
        self.record(reply)
        return reply

    def _ended_here(self, error: GatewayError, *, record: bool = False) -> Failure:
        failure = Failure.from_error(self.id, error, self.expected_seq, key_id=self.key_id, tenant_id=self.tenant_id)
        if record:
            self._ours = failure
        return failure

    async def _on_process_news(self, news: ProcessNews) -> Failure | None:
        """A process died or came back. If the one that held this request
        died, the request ends now (the upstream may have answered, so it is
        not sent again); if the request never reached a provider, it was lost
        on the way and is sent again, which cannot call the upstream twice."""
        if news.died and news.died == self.accepted_by:
            return self.end_as_worker_died()
        if self._fence is not None:
            # The dead one will take nothing; its answer is no longer awaited.
            await self._fence_then_send()
            return None
        unclaimed = not self.accepted_by and self.expected_seq == 0 and self._published is not None
        waited_ns = time.time_ns() - self._published_ns
        if unclaimed and waited_ns > fence.NEWS_RESEND_AFTER_NS and self._resent < fence.MAX_RESENDS:
            await self._fence_then_send()
        return None

    def made_here(self, reply: Final | Failure | None) -> bool:
        """True for a failure this session made up (no stage sent it, none recorded it)."""
        return reply is not None and reply is self._ours

    def end_as_worker_died(self) -> Failure:
        """The provider that took the request is gone: it ends now, billed
        for what the upstream was sent and sent back as far as we know (the
        provider can no longer say), and what policy reserved is settled."""
        error = UpstreamError(
            "The gateway process serving this request stopped; it was not retried because the "
            "upstream may already have processed it.",
            code="worker_died",
        )
        failure = self._ended_here(error, record=True)
        failure.usage, failure.cost = worker_died.billed_so_far(self)
        used = failure.usage.prompt_tokens + failure.usage.completion_tokens or worker_died.tokens_held(self)
        quota_ledger.settle(self.gw.counters, self.quota, used, failure.cost.total)
        return failure

    @property
    def _may_wait_for_credit(self) -> bool:
        """A credit was granted: the provider may be waiting for it, if it was lost."""
        return self.flow is not None and self.flow.granted > 0

    async def _ask_replay(self) -> None:
        """Ask a silent provider for what it sent from the first reply
        missing on, and grant again what was granted (a lost credit leaves a
        paced provider silent too)."""
        self._replay_asked = asyncio.get_running_loop().time()
        nc = self.gw.nc
        if self.accepted_by:
            await nc.publish(subjects.CONTROL_REPLAY, bus.encode(ReplayAsk(id=self.id, from_seq=self.expected_seq)))
        if self._may_wait_for_credit:
            assert self.flow is not None
            await nc.publish(subjects.CONTROL_CREDIT, bus.encode(Credit(id=self.id, through=self.flow.granted)))

    async def wrote(self, n: int) -> None:
        """The door wrote ``n`` more bytes of a paced answer on to its client."""
        if self.flow is None:
            return
        through = self.flow.wrote(n)
        if through is not None:
            await self.gw.nc.publish(subjects.CONTROL_CREDIT, bus.encode(Credit(id=self.id, through=through)))

    async def _fence_then_send(self) -> None:
        """Ask every live provider whether it holds the request (again, for
        those that have not answered); send the next copy once none does."""
        live = self.gw.providers.live(time.monotonic())
        if self._fence is None:
            self._fence = fence.FenceRound(self._copy + 1 if self._sent else self._copy, live, self.quota)
        else:
            self._fence.gone(live)
        if self._fence.clear:
            await self._send_copy()
            return
        asked = Fence(id=self.id, copy=self._fence.copy, carries=self._fence.carries_copy)
        await self.gw.nc.publish(subjects.CONTROL_FENCE, bus.encode(asked), reply=self.reply_subject)

    async def _on_fenced(self, answer: Fenced) -> None:
        if answer.holds:
            # It took a copy: as good as its Accepted (a replay asks it for
            # whatever replies were lost), and nothing is sent again.
            self.accepted_by = self.accepted_by or answer.worker
            self._fence = None
            return
        if self._fence is not None:
            self._fence.answered(answer.worker, answer.copy)
            if self._fence.clear:
                await self._send_copy()

    async def _send_copy(self) -> None:
        """Publish the fenced-off request's next copy. It carries what policy
        admitted the first copy with, so it is neither counted twice nor
        refused by its own first copy."""
        assert self._published is not None and self._fence is not None
        env, _, headers = self._published
        env.quota = self.quota = self._fence.carries
        env.copy, self._copy, self._fence = self._fence.copy, self._fence.copy, None
        payload = bus.encode(env)
        self._published = (env, payload, headers)
        if self._sent:
            self._resent += 1
        self._sent = True
        self._published_ns = time.time_ns()
        await self.gw.nc.publish(subjects.FROM_INGRESS, payload, headers=headers)

    def first_timeout(self) -> float:
        return max(0.0, (self.deadline_ns - time.time_ns()) / 1e9) + DEADLINE_GRACE_S

    def record(self, reply: Final | Failure, ttft_ns: int = 0) -> None:
        """Record the request if it ended here without a stage that records it
        (a deadline with no answer, the process holding it gone). A stage that
        sends the last reply records the request itself."""
        if reply is self._ours:
            gw, spans = self.gw, self.spans
            gw.record(
                self.id,
                self.received_ns,
                self.api,
                self.model,
                self.stream,
                reply,
                spans,
                ttft_ns=ttft_ns,
                origin=self.origin,
                prompt=self.prompt,
                trace_id=self.trace_id,
                parent_span_id=self.parent_span_id,
                tool=self.tool,
                rest=self.rest,
                batch_id=self.batch_id,
            )

    async def cancel(self) -> None:
        await self.gw.nc.publish(subjects.CONTROL_CANCEL, bus.encode(Cancel(id=self.id)))

    def close(self) -> None:
        self.gw.replies.close(self.id)


def client_closed(request_id: str) -> Failure:
    return Failure.from_error(request_id, ClientClosed("The client closed the connection."))
