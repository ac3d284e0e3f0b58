"""Provider stage: call the request's candidate deployments in order (the
walk is ``services.providers.attempts``), stream the answer back chunk by
chunk, and tell every routing replica how each try went."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from schemas import bus, subjects
from schemas.cached_answer import CacheStore
from schemas.chat import Cost, Delta, Message, Usage
from schemas.envelope import Deployment, Envelope
from schemas.errors import ClientClosed, InternalError, StageStopping, UpstreamTimeout
from schemas.events import AlertEvent, AttemptEvent, Detection
from schemas.health import TryOutcome
from schemas.ids import new_id
from schemas.replies import Accepted, Cancel, Chunk, Failure, Fence, Fenced, Final, ReplayAsk, Timing
from services import admission, answer_cache, call_logs, detectors, privacy
from services import usage as usage_svc
from services.bus import process
from services.config import settings_from_env
from services.fence import Fences
from services.masking import AnswerRestorer, OutputScanner
from services.providers import passthrough
from services.providers.attempts import Try, Walk, WalkFailed, retryable
from services.providers.call import CallOutcome, CallProgress, OnDelta, OnRead, call_chat, call_embeddings
from services.providers.http import Upstream, make_upstream_http
from services.recent import RecentSet
from services.reply_log import ReplyLog
from workers import runner

# Request ids are remembered this long (and at most this many): a cancel that
# arrives before its request (the client left while the request was still in
# policy or routing), so the request is not sent upstream when it gets here;
# and the requests taken, so that a copy the ingress sent again is ignored.
MEMORY_NS = 60 * 1_000_000_000
MEMORY_MAX = 50_000


_decode_cancel = msgspec.msgpack.Decoder(Cancel).decode
_decode_replay_ask = msgspec.msgpack.Decoder(ReplayAsk).decode
_decode_fence = msgspec.msgpack.Decoder(Fence).decode


class ProviderStage:
    name = "provider"
    listen_on = (subjects.STAGE_CALL,)
    entry = False
    concurrent = True

    def __init__(self) -> None:
        self.client: Upstream | None = None
        self._nc: Client | None = None
        self._instance = ""
        self.inflight: dict[str, asyncio.Task] = {}
        # request id -> when its client went away
        self.cancelled = RecentSet(MEMORY_NS, MEMORY_MAX)
        # request id -> when it arrived: the ingress may send a request again
        # when it saw no acceptance in time; a second copy is not called again.
        self.seen = RecentSet(MEMORY_NS, MEMORY_MAX)
        # request id -> the lowest copy this process may still take (see ``services.fence``)
        # Kept past any deadline: a copy is never taken after its deadline.
        timeout_ns = int(settings_from_env().request_timeout_s * 1e9)
        self.fences = Fences(max(MEMORY_NS, timeout_ns), MEMORY_MAX)
        # deployment name -> calls in flight from this process (least-busy routing)
        self.calls: dict[str, int] = {}
        self.replies = ReplyLog()

    async def start(self, ctx: runner.StageContext) -> None:
        self.client = make_upstream_http()
        await ctx.nc.subscribe(subjects.CONTROL_CANCEL, cb=self._on_cancel)
        ctx.replies = self.replies
        self._nc = ctx.nc
        await ctx.nc.subscribe(subjects.CONTROL_REPLAY, cb=self._on_replay)
        self._instance = ctx.instance
        await ctx.nc.subscribe(subjects.CONTROL_FENCE, cb=self._on_fence)
        # Services on the bus cancel their own requests here (by id: ids are
        # not guessable, so a caller can only cancel one it was told of).
        await ctx.nc.subscribe(subjects.IN_CANCEL, cb=self._on_cancel)

    async def _on_cancel(self, msg: Msg) -> None:
        try:
            cancel = _decode_cancel(msg.data)
        except msgspec.DecodeError:  # not a Cancel: anyone allowed on the subject may send anything
            return
        self.cancelled.add(cancel.id)
        task = self.inflight.get(cancel.id)
        if task is not None:
            task.cancel()

    async def _on_replay(self, msg: Msg) -> None:
        """Send a request's replies again from ``from_seq`` on, if this
        process holds them (every provider hears the ask)."""
        try:
            ask = _decode_replay_ask(msg.data)
        except msgspec.DecodeError:
            return
        kept = self.replies.replies(ask.id)
        nc = self._nc
        if kept is None or nc is None:
            return
        reply_to, payloads, _ = kept
        for payload in payloads:
            reply = bus.decode_reply(payload)
            # Accepted is not sent again: the ingress asks only once it had it.
            if isinstance(reply, Chunk | Final | Failure) and reply.seq >= ask.from_seq:
                await nc.publish(reply_to, payload)

    async def _on_fence(self, msg: Msg) -> None:
        """Say whether this process took a copy of the request; if it did
        not, it takes none older than the fence's from now on. Both the
        check and the mark happen before any await, as in ``handle``: a copy
        is either taken before the fence (this answers "holds") or refused."""
        try:
            fence = _decode_fence(msg.data)
        except msgspec.DecodeError:
            return
        if self._nc is None or not admission.valid_reply_subject(msg.reply or ""):
            return
        holds = fence.id in self.seen
        if not holds:
            self.fences.raise_to(fence.id, fence.copy)
        answer = Fenced(id=fence.id, worker=self._instance, holds=holds, copy=fence.copy)
        await self._nc.publish(msg.reply, bus.encode(answer))

    async def _tried(self, ctx: runner.StageContext, env: Envelope, t: Try, *, says_health: bool = True) -> None:
        """An attempt row, and the outcome every routing replica's health
        board hears (``says_health``: the try's end tells of the deployment,
        not of the client leaving or the gateway stopping)."""
        dep = t.deployment
        ctx.events.emit(
            AttemptEvent(
                event_id=new_id(),
                request_id=env.id,
                started_at_ns=t.start_ns,
                deployment=dep.name,
                provider=dep.provider,
                upstream_model=dep.upstream_model,
                status=t.status,
                stream=env.stream,
                error_code=t.error.code if t.error else "",
                error_message=t.error.message[:1000] if t.error else "",
                ttfb_ns=(t.first_byte_ns - t.start_ns) if t.first_byte_ns else 0,
                duration_ns=t.end_ns - t.start_ns,
                number=t.number,
            )
        )
        if not says_health or (t.error is not None and not retryable(t.error)):
            return  # the caller's mistake (a 400) says nothing of the deployment's health
        outcome = TryOutcome(
            deployment=dep.name,
            ok=t.error is None,
            at_ns=t.end_ns,
            ttfb_ns=(t.first_byte_ns - t.start_ns) if t.first_byte_ns and t.error is None else 0,
            tokens=t.tokens,
            in_flight=self.calls.get(dep.name, 0),
            replica=ctx.instance,
        )
        await ctx.nc.publish(subjects.HEALTH_ATTEMPT, bus.encode(outcome))

    def _billed_so_far(self, env: Envelope, walk: Walk, *, refused: bool) -> tuple[Usage, Cost] | None:
        """What the upstream processed and generated of a call that ended
        early. ``refused``: the upstream answered with an error (a 429, a 5xx,
        no connection), which bills nothing unless a stream had begun."""
        progress, dep = walk.progress, walk.current
        if not progress.sent or (refused and not progress.first_byte_ns):
            return None
        if env.embeddings is not None:
            usage = usage_svc.settle_embeddings(None, env.embeddings, dep.catalog_model)
        else:
            assert env.body is not None
            text = "".join(progress.parts)
            usage = usage_svc.settle_cut_short(progress.reported, env.body, text, dep.catalog_model)
        return usage, usage_svc.cost_of(usage, dep.catalog_model)

    async def handle(self, ctx: runner.StageContext, env: Envelope, msg: Msg | None, start_ns: int) -> None:
        if not env.candidates or self.client is None:
            raise InternalError("Request reached the provider stage without a deployment.")
        if not self.fences.admits(env.id, env.copy):
            return  # sent before a fence this process answered: the requester has moved on
        if not self.seen.add(env.id):  # a copy the ingress sent again, which this process already took
            return  # it carries the first copy's reservation, which the first copy settles
        first = env.candidates[0]
        if env.id in self.cancelled:  # its client left before it got here: never sent upstream
            closed = ClientClosed("The client closed the connection before the upstream was called.")
            failure = Failure.from_error(env.id, closed, deployment=first.name, provider=first.provider)
            await ctx.finish(env, failure, start_ns, client_disconnected=True)
            return
        seq = 0
        first_chunk_ns = 0
        # A streamed answer to keep in the cache or the call log is joined as it goes out.
        keeps = env.cache_key or env.call_log_max_bytes > 0
        transcript = answer_cache.Transcript() if keeps and env.stream else None
        # Masked values go back into the answer for the caller, and only there:
        # the transcript (call log, cache) keeps what the upstream wrote.
        restorer = AnswerRestorer(env.privacy.vault, self._output(env)) if env.privacy is not None else None

        # Deltas of one upstream read, for a requester that takes them together.
        batch: list[Delta] = []
        upstream_model = env.model

        async def on_delta(delta: Delta, model: str) -> None:
            nonlocal upstream_model
            batch.append(restorer.delta(delta) if restorer is not None else delta)
            if transcript is not None:
                transcript.add(delta)
            upstream_model = model or upstream_model
            if not env.batch_chunks:
                await send_batch()

        async def send_batch() -> None:
            nonlocal seq, first_chunk_ns
            if not batch:
                return
            chunk = Chunk(id=env.id, seq=seq, delta=batch[0], model=upstream_model, more=batch[1:])
            batch.clear()
            if seq == 0:  # it carries the response headers' facts
                chunk.deployment, chunk.cache = walk.current.name, "miss" if env.cache_key else ""
            await ctx.send(env, bus.encode(chunk))
            first_chunk_ns = first_chunk_ns or time.time_ns()
            seq += 1

        self.inflight[env.id] = asyncio.current_task()  # type: ignore[assignment]
        if env.progress:
            await ctx.send(env, bus.encode(Accepted(id=env.id, worker=ctx.instance)))
            # On the socket before the upstream hears of the request: if this
            # process dies calling it, the requester knows who held it and
            # does not send it again.
            await process.written(ctx.nc)
        walk = Walk(
            env.candidates, context_candidates=env.context_candidates, retries=env.retries, deadline_ns=env.deadline_ns
        )
        call_start = time.time_ns()
        try:
            remaining = max(0.0, (env.deadline_ns - call_start) / 1e9)
            async with asyncio.timeout(remaining):
                outcome = await walk.run(
                    lambda dep, progress, send: self._call(env, dep, progress, send, send_batch),
                    lambda t: self._tried(ctx, env, t),
                    on_delta if env.stream else None,
                )
        except (WalkFailed, TimeoutError, asyncio.CancelledError) as exc:
            if isinstance(exc, WalkFailed):
                error, started, first_byte = exc.error, exc.last.start_ns, exc.last.first_byte_ns
            else:
                if isinstance(exc, TimeoutError):
                    error = UpstreamTimeout("Request deadline passed while waiting for the upstream.")
                elif env.id in self.cancelled:
                    error = ClientClosed("The client closed the connection.")
                else:
                    error = StageStopping("The gateway stopped while calling the upstream.")
                started, first_byte = call_start, walk.progress.first_byte_ns
                # The try cut short from outside has no row of its own yet.
                cut = Try(len(walk.tries) + 1, walk.current, started, first_byte, time.time_ns(), error.status, error)
                walk.tries.append(cut)
                await self._tried(ctx, env, cut, says_health=isinstance(error, UpstreamTimeout))
            dep = walk.current
            await send_batch()  # what came before the end reaches the client before it
            if restorer is not None and first_chunk_ns:
                seq = await self._send_held(ctx, env, restorer, seq)
            failure = Failure.from_error(env.id, error, seq, deployment=dep.name, provider=dep.provider)
            failure.timing = Timing(
                upstream_start_ns=started, upstream_first_byte_ns=first_byte, upstream_end_ns=time.time_ns()
            )
            failure.attempts = len(walk.tries)
            billed = self._billed_so_far(env, walk, refused=isinstance(exc, WalkFailed))
            if billed is not None:
                failure.usage, failure.cost = billed
            ttft = first_chunk_ns - env.received_at_ns if first_chunk_ns else 0
            if env.call_log_max_bytes > 0:
                error_body = {"type": failure.type, "code": failure.code, "message": failure.message}
                message = transcript.message() if transcript is not None and transcript.parts else None
                logged = call_logs.answer_json(
                    message=self._loggable(env, message), usage=failure.usage, error=error_body
                )
                ctx.events.emit(call_logs.entry(env, failure.status, logged, time.time_ns()))
            await ctx.finish(
                env,
                failure,
                start_ns,
                billed=billed is not None,
                ttft_ns=ttft,
                client_disconnected=isinstance(error, ClientClosed),
            )
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        finally:
            self.inflight.pop(env.id, None)
        dep = walk.current
        if usage_svc.is_suspiciously_free(outcome.cost, dep.catalog_model):
            ctx.events.emit(
                AlertEvent(
                    event_id=new_id(),
                    request_id=env.id,
                    at_ns=time.time_ns(),
                    alert="zero_cost",
                    model=env.model,
                    deployment=dep.name,
                    detail=f"priced model {dep.catalog_model!r} cost 0 (usage {outcome.usage.source}: "
                    f"{outcome.usage.prompt_tokens} in, {outcome.usage.completion_tokens} out)",
                )
            )
        answer, others = outcome.message, outcome.other_choices
        await send_batch()
        if restorer is not None:
            seq = await self._send_held(ctx, env, restorer, seq)
            answer = restorer.message(answer)
            others = [msgspec.structs.replace(c, message=restorer.message(c.message, c.index)) for c in others]
            self._report_output(ctx, env, restorer)
        final = Final(
            id=env.id,
            seq=seq,
            model=outcome.model,
            usage=outcome.usage,
            cost_pico_usd=outcome.cost.total,
            cost=outcome.cost,
            message=answer,
            other_choices=others,
            embeddings=outcome.embeddings,
            finish_reason=outcome.finish_reason,
            deployment=dep.name,
            provider=dep.provider,
            attempts=len(walk.tries),
            cache="miss" if env.cache_key else "",
            timing=Timing(
                upstream_start_ns=outcome.start_ns,
                upstream_first_byte_ns=outcome.first_byte_ns,
                upstream_end_ns=outcome.end_ns,
            ),
        )
        ttft = first_chunk_ns - env.received_at_ns if first_chunk_ns else 0
        message = transcript.message() if transcript is not None else outcome.message
        if env.call_log_max_bytes > 0:
            logged = call_logs.answer_json(
                message=self._loggable(env, message),
                embeddings=outcome.embeddings,
                finish_reason=outcome.finish_reason,
                usage=outcome.usage,
            )
            ctx.events.emit(call_logs.entry(env, 200, logged, time.time_ns()))
        await ctx.finish(env, final, start_ns, billed=True, ttft_ns=ttft)
        if env.cache_key and env.cache_ttl_s > 0:
            await self._keep(ctx, env, final, message)

    @staticmethod
    def _output(env: Envelope) -> Callable[[], OutputScanner] | None:
        """The tenant's output checks, a scanner for each text (a choice's
        content, a tool call's arguments); the caller's own (restored) values
        are not leaks."""
        p = env.privacy
        if p is None or not p.output:
            return None
        kinds, given = list(p.output), list(p.vault.values())
        return lambda: OutputScanner(lambda text: detectors.find(text, kinds, p.phone_region), p.output, given)

    @classmethod
    def _loggable(cls, env: Envelope, message: Message | None) -> Message | None:
        """The answer as its call log keeps it: as the upstream wrote it
        (placeholders unrestored), less what the output checks take out, so
        a key the model leaked is not kept in a log either."""
        output = cls._output(env)
        return AnswerRestorer({}, output).message(message) if output is not None else message

    @staticmethod
    def _report_output(ctx: runner.StageContext, env: Envelope, restorer: AnswerRestorer) -> None:
        p = env.privacy
        if p is None:
            return
        found = [
            Detection(f.detector, p.output.get(f.detector, "flag"), where, f.start, f.end)
            for where, f in restorer.found
        ]
        for event in privacy.events(env.id, env.tenant_id, found, p.version, time.time_ns()):
            ctx.events.emit(event)

    async def _send_held(self, ctx: runner.StageContext, env: Envelope, restorer: AnswerRestorer, seq: int) -> int:
        """What the restorer still held at the stream's end (an unfinished
        placeholder's start is the model's own text), before the last reply."""
        for delta in restorer.rest():
            await ctx.send(env, bus.encode(Chunk(id=env.id, seq=seq, delta=delta, model=env.model)))
            seq += 1
        return seq

    async def _keep(self, ctx: runner.StageContext, env: Envelope, final: Final, message: Message | None) -> None:
        """Ask the cache stage to keep a whole answer (sent after the Final,
        so the client never waits on it). One too large for a NATS message is
        not kept."""
        answer = answer_cache.answer_of(final, message, time.time_ns() // 1_000_000, env.cache_ttl_s)
        payload = bus.encode(CacheStore(key=env.cache_key, ttl_s=env.cache_ttl_s, answer=answer))
        if len(payload) <= ctx.nc.max_payload - 1024:
            await ctx.nc.publish(subjects.CACHE_STORE, payload)

    async def _call(
        self, env: Envelope, dep: Deployment, progress: CallProgress, on_delta: OnDelta | None, on_read: OnRead
    ) -> CallOutcome:
        assert self.client is not None
        self.calls[dep.name] = self.calls.get(dep.name, 0) + 1
        try:
            if env.embeddings is not None:
                return await call_embeddings(self.client, dep, env.embeddings, progress)
            assert env.body is not None  # policy let through exactly one body
            raw = env.raw if env.raw and passthrough.native(env.api, dep) else None
            return await call_chat(
                self.client,
                dep,
                env.body,
                on_delta=on_delta,
                on_read=on_read,
                progress=progress,
                raw=raw,
                anthropic_beta=env.anthropic_beta,
            )
        finally:
            self.calls[dep.name] -= 1

    async def stop(self) -> None:
        for task in list(self.inflight.values()):
            task.cancel()
        if self.inflight:
            await asyncio.wait(list(self.inflight.values()), timeout=1.0)
        if self.client is not None:
            await self.client.aclose()


if __name__ == "__main__":
    runner.main(ProviderStage())
