"""The one stage runner every request-path stage uses.

It owns the nats-py connection, the queue subscriptions, decoding, the
routing slip, failure replies and the request's row, so a stage is only its
``handle``. Raw nats-py, not FastStream, because per-hop CPU is what bounds
the pipeline.

A process may host several stages (``serve`` takes a list). Each still
listens on its own subjects in its own queue group, so requests from other
processes reach it as before; but when a stage forwards to a subject a stage
in the same process listens on, the envelope is handed over in memory: no
encode, no NATS round trip, the same slip and spans. Like
operator chaining in a stream processor, this is a deployment choice, not a
change of the stages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from schemas import bus
from schemas.envelope import Envelope, Span, StageName
from schemas.errors import GatewayError, InternalError, InvalidRequest, StageTimeout
from schemas.events import add_rest_call, add_tool_call
from schemas.ids import new_id
from schemas.replies import Failure, Final
from services import admission, records, reply_split
from services import quota as quota_svc
from services.bus import metrics, process, quota_ledger, tracing
from services.bus.events import EventPublisher
from services.config import settings_from_env
from services.providers import passthrough
from services.reply_log import ReplyLog

log = logging.getLogger("sluice.stage")


# Takes an envelope from a stage in the same process (see ``forward``).
HandOff = Callable[[Envelope], Awaitable[None]]


class StageContext:
    """What a stage's ``handle`` may do with a request."""

    def __init__(
        self,
        name: StageName,
        nc: Client,
        js: JetStreamContext,
        events: EventPublisher,
        counters: quota_ledger.Counters,
        local: dict[str, HandOff],
    ) -> None:
        self.name = name
        # This process among its role's replicas, e.g. "provider-1"; stages
        # hosted together share it.
        self.instance = process.instance_name(name)
        self.nc = nc
        self.js = js
        self.events = events
        self.counters = counters
        # subject -> the stage in this process that listens on it
        self._local = local
        # Set by a stage whose replies may be asked for again (the provider).
        self.replies: ReplyLog | None = None

    def span(self, start_ns: int) -> Span:
        return Span(self.name, start_ns, time.time_ns())

    async def forward(self, env: Envelope, start_ns: int) -> None:
        """Send the request to the next subject on its slip."""
        env.spans.append(self.span(start_ns))
        if not env.slip:
            raise InternalError(f"stage {self.name}: routing slip is empty")
        subject = env.slip.pop(0)
        hand_off = self._local.get(subject)
        if hand_off is not None:
            await hand_off(env)
        else:
            await self.nc.publish(subject, bus.encode(env))

    async def send(self, env: Envelope, payload: bytes) -> None:
        """Publish an already-encoded reply (a streamed chunk) to the requester."""
        if self.replies is not None:
            self.replies.sent(env.id, env.reply, payload)
        await self.nc.publish(env.reply, payload)

    async def finish(
        self,
        env: Envelope,
        reply: Final | Failure,
        start_ns: int,
        *,
        billed: bool = False,
        ttft_ns: int = 0,
        client_disconnected: bool = False,
    ) -> None:
        """Send the last reply and record the request. The stage that ends a
        request records it, whichever way it came in: it knows how it ended and
        what the upstream billed, and the row does not depend on the ingress
        surviving. A ``billed`` row is written to JetStream ahead of the reply,
        in the same connection, so no answer reaches a client without its row."""
        reply.timing.spans = [*env.spans, self.span(start_ns), *reply.timing.spans]
        reply.key_id, reply.tenant_id = env.key_id, env.tenant_id
        reply.model_group, reply.arm = env.group, env.arm
        if env.quota is not None:
            reply.rate = reply.rate or env.quota.rate
            used = reply.usage.prompt_tokens + reply.usage.completion_tokens if reply.usage else 0
            if env.task is not None and not used:
                # A task's upstream reports units, not tokens: its text as admission counted it.
                used = quota_svc.reserved_tokens(env.quota)
            quota_ledger.settle(self.counters, env.quota, used, reply.cost.total if reply.cost else 0)
        row = records.request_event(
            request_id=env.id,
            received_at_ns=env.received_at_ns,
            origin=env.origin,
            api=env.api,
            model=env.model,
            stream=env.stream,
            done_ns=time.time_ns(),
            reply=reply,
            ttft_ns=ttft_ns,
            client_disconnected=client_disconnected,
            prompt=env.prompt,
            trace_id=env.trace_id,
            dropped=passthrough.dropped_for(env, reply.deployment),
            batch_id=env.batch_id,
        )
        if env.tool is not None:
            add_tool_call(row, env.tool, reply)
        elif env.rest is not None:
            add_rest_call(row, env.rest, reply)
        self.events.emit(row)
        metrics.request_ended(row)
        tracing.request_ended(row, env.parent_span_id)
        if billed:
            await self.events.flush_now()
        # A failure may end a request before policy checked its reply subject:
        # never answer onto anything but an inbox.
        if isinstance(reply, Final) or admission.valid_reply_subject(env.reply):
            for payload in reply_split.encode_final(reply):
                if self.replies is not None:
                    self.replies.sent(env.id, env.reply, payload)
                await self.nc.publish(env.reply, payload)
        if self.replies is not None:
            self.replies.ended(env.id)

    async def fail(self, env: Envelope, error: GatewayError, start_ns: int) -> None:
        await self.finish(env, Failure.from_error(env.id, error), start_ns)


class Stage(Protocol):
    name: StageName
    # Subjects it serves, all in one queue group named after the stage.
    listen_on: tuple[str, ...]
    # The stage where requests enter the pipeline: it sets the deadline
    # itself, so the runner checks none before it.
    entry: bool
    # True: each request runs in its own task (stages that wait on I/O).
    # False: requests are handled one after another in the subscription's
    # task, the cheapest path for CPU-only stages.
    concurrent: bool

    async def start(self, ctx: StageContext) -> None: ...

    # ``msg`` is the NATS message the envelope came in, or None when a stage
    # in the same process handed it over (never so for the entry stage).
    async def handle(self, ctx: StageContext, env: Envelope, msg: Msg | None, start_ns: int) -> None: ...

    async def stop(self) -> None: ...


class _ReplyTo(msgspec.Struct):
    """The one field of an envelope that tells where to answer, read alone
    when the whole envelope does not decode."""

    reply: str = ""


_decode_reply_to = msgspec.msgpack.Decoder(_ReplyTo).decode


async def _refuse_undecodable(ctx: StageContext, msg: Msg, error: msgspec.DecodeError) -> None:
    """Answer a message that is no envelope, where it names an inbox to answer."""
    try:
        reply = _decode_reply_to(msg.data).reply
    except msgspec.DecodeError:
        reply = ""
    if not admission.valid_reply_subject(reply):
        reply = msg.reply if admission.valid_reply_subject(msg.reply or "") else ""
    now = time.time_ns()
    failure = Failure.from_error(
        new_id(now), InvalidRequest(f"The request is not a valid envelope: {error}.", code="invalid_envelope")
    )
    log.warning("%s: undecodable message on %s (%s); answered: %s", ctx.name, msg.subject, error, bool(reply))
    env = Envelope(id=failure.id, reply=reply, received_at_ns=now)
    await ctx.finish(env, failure, now)


async def _run(stage: Stage, ctx: StageContext, env: Envelope, msg: Msg | None, start_ns: int) -> None:
    try:
        if not stage.entry and env.deadline_ns and start_ns > env.deadline_ns:
            raise StageTimeout(f"Request deadline passed before stage {stage.name}.")
        await stage.handle(ctx, env, msg, start_ns)
    except GatewayError as exc:
        await ctx.fail(env, exc, start_ns)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s: request %s failed", stage.name, env.id)
        await ctx.fail(env, InternalError(f"Stage {stage.name} failed."), start_ns)


class _Hosted:
    """One stage in this process: how a request reaches its ``handle``, from
    the bus or from the stage before it."""

    def __init__(self, stage: Stage, ctx: StageContext, tasks: set[asyncio.Task[None]]) -> None:
        self.stage, self.ctx, self._tasks = stage, ctx, tasks

    async def take(self, env: Envelope, msg: Msg | None = None, start_ns: int = 0) -> None:
        run = _run(self.stage, self.ctx, env, msg, start_ns or time.time_ns())
        if not self.stage.concurrent:
            await run
            return
        task = asyncio.create_task(run)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_message(self, msg: Msg) -> None:
        start_ns = time.time_ns()
        try:
            env = bus.decode_envelope(msg.data)
        except msgspec.DecodeError as exc:
            await _refuse_undecodable(self.ctx, msg, exc)
            return
        await self.take(env, msg, start_ns)


async def run_stages(stages: list[Stage], stop: asyncio.Event, role: str) -> None:
    """Serve ``stages`` from one process until ``stop`` is set."""
    drain_s = settings_from_env().drain_s
    nc = await process.connect(role)
    js = nc.jetstream()
    events = EventPublisher(js, role)
    events.start()
    counters = quota_ledger.Counters(js, events)
    local: dict[str, HandOff] = {}
    tasks: set[asyncio.Task[None]] = set()
    hosted = [_Hosted(stage, StageContext(stage.name, nc, js, events, counters, local), tasks) for stage in stages]
    for h in hosted:
        await h.stage.start(h.ctx)
    subs = []
    for h in hosted:
        for subject in h.stage.listen_on:
            local[subject] = h.take
            subs.append(await nc.subscribe(subject, queue=h.stage.name, cb=h.on_message, pending_msgs_limit=1_000_000))
    instance = process.instance_name(role)
    tracing.setup(instance)
    log.info("%s: serving %s", instance, ", ".join(f"{s.name} ({', '.join(s.listen_on)})" for s in stages))
    heartbeat = process.Heartbeat(nc, instance, tuple(s.name for s in stages), in_flight=lambda: len(tasks))
    heartbeat.start()
    flushing = asyncio.create_task(metrics.run_flusher(), name="metrics")
    await process.announce_ready(nc, instance)
    await stop.wait()
    await _drain(subs, tasks, drain_s, instance)
    # Beating until here: a long drain is not mistaken for a stuck process.
    heartbeat.stop()
    flushing.cancel()
    for h in hosted:
        await h.stage.stop()
    await counters.close()
    await events.close()
    await asyncio.to_thread(tracing.shutdown)
    await nc.drain()


async def _drain(subs: list[Subscription], tasks: set[asyncio.Task[None]], bound_s: float, instance: str) -> None:
    """Stop taking requests and finish the ones held, for at most ``bound_s``.
    Draining (not unsubscribing) also handles the messages NATS had already
    delivered to this process: dropped, each would wait for the ingress to
    send it again. What still runs at the bound is cancelled by the stage's
    ``stop`` (the provider records what each had billed)."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(bound_s):
            for sub in subs:
                await sub.drain()
            while tasks:
                await asyncio.wait(set(tasks))
    except TimeoutError:
        log.warning("%s: drain bound of %gs reached with %d requests in flight", instance, bound_s, len(tasks))
    log.info("%s: drained in %.2fs", instance, time.monotonic() - started)


def main(*stages: Stage, role: str = "") -> None:
    """Run ``stages`` in this process: one stage's role is its name; stages
    hosted together go by the ``role`` given."""
    role = role or stages[0].name
    process.setup_logging(role)
    process.run(lambda stop: run_stages(list(stages), stop, role))
