"""The analytics sink: JetStream events -> ClickHouse, and named queries.

FastStream runs both consumers here (DESIGN.md §6): a durable pull consumer
that takes events in batches and acks only after ClickHouse accepted them, so
a ClickHouse outage leaves events waiting in the stream, not lost; and a
queue-grouped request handler for ``sluice.v1.analytics.query``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

import msgspec
from clickhouse_connect.driver.exceptions import OperationalError
from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.message import NatsMessage
from faststream.security import SASLPlaintext
from nats.js.api import ConsumerConfig

from analytics import intake, recost
from analytics.alerting import Alerting
from analytics.intake import Pulled
from analytics.queries import bind
from analytics.store import Store
from schemas import bus, subjects
from schemas.analytics import QueryRequest, QueryResult, RecostRequest, RecostResult
from services.config import config_from_env, settings_from_env
from services.runtime import process

log = logging.getLogger("sluice.sink")
DURABLE = "analytics-sink"
ACK_WAIT_S = 5.0
OUTAGE_PAUSE_S = 1.0
_decode_query = msgspec.json.Decoder(QueryRequest).decode
_decode_recost = msgspec.json.Decoder(RecostRequest).decode
_json = msgspec.json.Encoder()


async def _raw_body(msg: NatsMessage) -> bytes:
    # Bodies are msgpack (events) or JSON we decode with msgspec ourselves;
    # FastStream's own decoding would turn JSON into dicts through pydantic.
    return msg.body


async def _pulled(msg: NatsMessage) -> list[Pulled]:
    # A pulled batch, each message with its subject: a dead letter names where it came from.
    return [Pulled(subject=m.subject, data=m.data) for m in msg.raw_message]


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


def build(store: Store, nats_url: str, batch_size: int = 1000) -> NatsBroker:
    auth = process.auth_options()
    inbox = auth.get("inbox_prefix", "_INBOX")
    security = SASLPlaintext(username=auth["user"], password=auth["password"]) if auth else None
    broker = NatsBroker(
        nats_url,
        logger=None,
        apply_types=False,
        decoder=_raw_body,
        security=security,
        inbox_prefix=inbox,
    )

    @broker.subscriber(
        subjects.EVENTS_ALL,
        stream=JStream(subjects.EVENTS_STREAM, declare=False),
        durable=DURABLE,
        # A pull request that expires just as the server hands it messages can
        # strand them until their ack wait ends; keep that wait short (events
        # are deduplicated, so an early redelivery costs nothing).
        config=ConsumerConfig(ack_wait=ACK_WAIT_S),
        pull_sub=PullSub(batch_size=batch_size, timeout=1.0, batch=True),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        include_in_schema=False,
        decoder=_pulled,
        # The pull requests' own inboxes: the sink's user may read only its prefix.
        inbox_prefix=f"{inbox}.".encode(),
    )
    async def on_events(pulled: list[Pulled]) -> None:
        # A message that can never be stored must not be redelivered forever
        # and block the stream behind it: it becomes a dead letter.
        events, dead = intake.sort(pulled)
        try:
            dead = await asyncio.to_thread(intake.store_all, events, dead, store.insert)
        except OperationalError as exc:
            # ClickHouse is away: the pull is redelivered (nacked), after a
            # pause rather than at once, so an outage is not a busy loop.
            log.warning("ClickHouse unavailable (%s); %d events wait in the stream", exc, len(pulled))
            await asyncio.sleep(OUTAGE_PAUSE_S)
            raise
        _crash_if_asked()
        for d in dead:
            log.error("dead letter from %s: %s", d.subject, d.reason)
            await broker.publish(bus.encode(d), subjects.DEAD_LETTER)

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
        config = config_from_env()
        alerting = None
        if config.alerts:
            alerting = Alerting(broker.connection, store, config.alerts, config.webhooks, settings.alert_interval_s)
            await alerting.start()
            log.info("alert rules: %s", ", ".join(r.name for r in config.alerts))
        name = process.instance_name("sink")
        heartbeat = process.Heartbeat(broker.connection, name)
        heartbeat.start()
        await process.announce_ready(broker.connection, name)
        log.info("sink: consuming %s into %s", subjects.EVENTS_ALL, args.clickhouse.split("?")[0])
        await stop.wait()
        heartbeat.stop()
        if alerting is not None:
            await alerting.stop()
        await broker.stop()
        store.close()

    process.run(run)


if __name__ == "__main__":
    main()
