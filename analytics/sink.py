"""The analytics sink: JetStream events -> ClickHouse, named queries,
re-costing and the alert rules.

Events come from a durable pull consumer, taken in batches and acked only
after ClickHouse accepted them, so a ClickHouse outage leaves events waiting
in the stream, not lost (``analytics.pull`` reads it: nats-py's own fetch can
drop a message on Python 3.11). FastStream serves the queue-grouped request
handlers for ``sluice.v1.analytics.query`` and ``.recost``.

Of several replicas (on a ClickHouse server), one pulls and writes events at
a time, the holder of the lease in ``analytics.lease``; the others answer
queries and stand by to take over.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from functools import partial

import msgspec
from clickhouse_connect.driver.exceptions import OperationalError
from faststream.nats import NatsBroker
from faststream.nats.message import NatsMessage
from faststream.security import SASLPlaintext
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig

from analytics import intake, lease, recost
from analytics.alerting import Alerting
from analytics.intake import Pulled
from analytics.pull import BatchPuller
from analytics.queries import bind
from analytics.store import NotWriter, Store
from schemas import bus, subjects
from schemas.analytics import QueryRequest, QueryResult, RecostRequest, RecostResult
from services.bus import metrics, process
from services.config import config_from_env, settings_from_env

log = logging.getLogger("sluice.sink")
DURABLE = subjects.SINK_DURABLE
ACK_WAIT_S = 5.0
OUTAGE_PAUSE_S = 1.0
# How long a pull waits for a batch to fill: a row is visible no later than
# this after it comes. Each insert has a fixed cost in ClickHouse (parts, and
# every materialized view once per block): from 0.2 to 0.5 s halved the sink's
# CPU per request under load (issue 13's note) for ~0.3 s more lag.
PULL_WAIT_S = 0.5
# How often a standby looks whether it may write now.
STANDBY_POLL_S = 0.2
_decode_query = msgspec.json.Decoder(QueryRequest).decode
_decode_recost = msgspec.json.Decoder(RecostRequest).decode
_json = msgspec.json.Encoder()


async def _raw_body(msg: NatsMessage) -> bytes:
    # Bodies are msgpack (events) or JSON we decode with msgspec ourselves;
    # FastStream's own decoding would turn JSON into dicts through pydantic.
    return msg.body


# A test hook: the path of a file that, while it does not exist, makes the
# sink die right after an insert and before its ack (once: it writes the file).
CRASH_AFTER_INSERT = "SLUICE_TEST_SINK_CRASH_AFTER_INSERT"


def _crash_if_asked() -> None:
    marker = os.environ.get(CRASH_AFTER_INSERT)
    if marker and not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write("crashed after an insert, before its ack\n")
        log.warning("test hook %s: dying between insert and ack", CRASH_AFTER_INSERT)
        os._exit(70)


def build(store: Store, nats_url: str) -> NatsBroker:
    auth = process.auth_options()
    inbox = auth.get("inbox_prefix", "_INBOX")
    security = SASLPlaintext(username=auth["user"], password=auth["password"]) if auth else None
    broker = NatsBroker(
        process.servers(nats_url),
        logger=None,
        apply_types=False,
        decoder=_raw_body,
        security=security,
        inbox_prefix=inbox,
    )

    @broker.subscriber(subjects.ANALYTICS_RECOST, queue="analytics", include_in_schema=False)
    async def on_recost(raw: bytes) -> bytes:
        try:
            ask = _decode_recost(raw)
            return _json.encode(await asyncio.to_thread(recost.recost, store, config_from_env(), ask))
        except Exception as exc:  # the caller gets the reason, the sink keeps serving
            log.exception("recost failed")
            return _json.encode(RecostResult(error=f"{type(exc).__name__}: {exc}"))

    @broker.subscriber(subjects.ANALYTICS_QUERY, queue="analytics", include_in_schema=False)
    async def on_query(raw: bytes) -> bytes:
        try:
            sql, params = bind(_decode_query(raw))
            columns, rows = await asyncio.to_thread(store.query, sql, params)
            answer = _json.encode(QueryResult(columns=columns, rows=[list(r) for r in rows]))
        except Exception as exc:  # the caller gets the reason, the sink keeps serving
            return _json.encode(QueryResult(error=f"{type(exc).__name__}: {exc}"))
        if len(answer) > broker.connection.max_payload - 1024:  # nats-server would refuse the reply
            too_large = f"the answer is {len(answer):,} bytes, more than one NATS message: ask for fewer rows"
            return _json.encode(QueryResult(error=too_large))
        return answer

    return broker


async def ensure_consumer(nc: Client) -> None:
    config = ConsumerConfig(
        durable_name=DURABLE,
        filter_subject=subjects.EVENTS_ALL,
        ack_policy=AckPolicy.EXPLICIT,
        # Events are deduplicated, so a redelivery costs nothing; keep it prompt.
        ack_wait=ACK_WAIT_S,
        max_ack_pending=20_000,
    )
    # Creates it, or finds it as it is (the server takes the same config again).
    await nc.jetstream().add_consumer(subjects.EVENTS_STREAM, config)


def _always() -> bool:
    return True


async def store_events(store: Store, nc: Client, pulled: list[Pulled], may_write: Callable[[], bool] = _always) -> None:
    """One pull's events into ClickHouse. A message that can never be stored
    must not be redelivered forever and block the stream behind it: it
    becomes a dead letter. Raises ``NotWriter``, having stored nothing, when
    ``may_write`` says another replica writes now."""

    def guard() -> None:
        if not may_write():
            raise NotWriter("another sink replica holds the writer's lease, or ours was not renewed in time")

    events, dead = intake.sort(pulled)
    dead = await asyncio.to_thread(intake.store_all, events, dead, partial(store.insert, guard=guard))
    _crash_if_asked()
    for d in dead:
        log.error("dead letter from %s: %s", d.subject, d.reason)
        await nc.publish(subjects.DEAD_LETTER, bus.encode(d))


async def consume_events(
    store: Store, nc: Client, stop: asyncio.Event, batch_size: int = 1000, may_write: Callable[[], bool] = _always
) -> None:
    """Pull, store, then ack: what ClickHouse has not taken stays in the
    stream. While ``may_write`` says no, nothing is pulled: another replica
    writes."""
    await ensure_consumer(nc)
    puller = BatchPuller(nc, subjects.EVENTS_STREAM, DURABLE, batch_size, PULL_WAIT_S)
    await puller.start()
    try:
        while not stop.is_set():
            if not may_write():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), STANDBY_POLL_S)
                continue
            msgs = await puller.next_batch()
            if not msgs:
                continue
            try:
                await store_events(store, nc, [Pulled(subject=m.subject, data=m.data) for m in msgs], may_write)
            except NotWriter:
                # The lease went while this pull was in hand: the writer gets it now.
                log.warning("not the writer any more; %d event batches go back to the stream", len(msgs))
                await asyncio.gather(*(m.nak() for m in msgs))
                continue
            except OperationalError as exc:
                # ClickHouse is away: the pull comes again (nacked), after a
                # pause rather than at once, so an outage is not a busy loop.
                log.warning("ClickHouse unavailable (%s); %d event batches wait in the stream", exc, len(msgs))
                await asyncio.sleep(OUTAGE_PAUSE_S)
                await asyncio.gather(*(m.nak() for m in msgs))
                continue
            except Exception:
                log.exception("storing %d event batches failed; they come again", len(msgs))
                await asyncio.gather(*(m.nak() for m in msgs))
                continue
            await asyncio.gather(*(m.ack() for m in msgs))
            metrics.EVENTS_PENDING.set(msgs[-1].metadata.num_pending)
    finally:
        await puller.stop()


def _writer_lease(nc: Client, name: str, dsn: str) -> tuple[lease.Lease, Callable[[], bool]]:
    """The lease, and whether this replica may write now. The embedded
    ClickHouse locks its data to one process, so there this sink is the only
    one that can write: it takes the lease at once, and writes even when the
    lease cannot be reached (a NATS user not granted the bucket)."""
    embedded = dsn.startswith("chdb://")
    writer = lease.Lease(nc, lease.holder_name(name), take_over_at_once=embedded)

    def may_write() -> bool:
        return writer.may_write() or (embedded and writer.failing)

    return writer, may_write


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m analytics.sink")
    parser.add_argument("--clickhouse", default=os.environ.get("SLUICE_CLICKHOUSE_DSN", "chdb://.sluice/clickhouse"))
    args = parser.parse_args()
    process.setup_logging("sink")

    async def run(stop: asyncio.Event) -> None:
        store = Store(args.clickhouse)
        applied = store.migrate()
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        settings = settings_from_env()
        ttls = (settings.analytics_raw_ttl_days, settings.analytics_rollup_ttl_days, settings.call_log_ttl_days)
        for change in store.apply_ttls(*ttls):
            log.info("retention: %s", change)
        broker = build(store, process.nats_url())
        await broker.start()
        name = process.instance_name("sink")
        writer, may_write = _writer_lease(broker.connection, name, args.clickhouse)
        # Its own stop: the lease is given up only after the last insert.
        lease_stop = asyncio.Event()
        leasing = asyncio.create_task(writer.run(lease_stop), name="lease")
        consuming = asyncio.create_task(
            consume_events(store, broker.connection, stop, may_write=may_write), name="events"
        )
        config = config_from_env()
        alerting = None
        if config.alerts:
            alerting = Alerting(broker.connection, store, config.alerts, config.webhooks, settings.alert_interval_s)
            await alerting.start()
            log.info("alert rules: %s", ", ".join(r.name for r in config.alerts))
        heartbeat = process.Heartbeat(broker.connection, name, ("sink",))
        heartbeat.start()
        await process.announce_ready(broker.connection, name)
        log.info("sink: consuming %s into %s", subjects.EVENTS_ALL, args.clickhouse.split("?")[0])
        stopping = asyncio.create_task(stop.wait())
        # The events consumer never ends on its own: if it does, it failed, and
        # the sink exits (to be restarted) rather than stay up storing nothing.
        await asyncio.wait({stopping, consuming}, return_when=asyncio.FIRST_COMPLETED)
        heartbeat.stop()
        try:
            if consuming.done():
                stopping.cancel()
                consuming.result()  # raises its error
            consuming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consuming
        finally:
            # A cancelled insert's thread runs on: the lease is given up (and
            # a standby takes over at once) only when none can be running.
            await asyncio.to_thread(store.wait_idle)
            lease_stop.set()
            await leasing
        if alerting is not None:
            await alerting.stop()
        await broker.stop()
        store.close()

    process.run(run)


if __name__ == "__main__":
    main()
