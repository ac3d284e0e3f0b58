"""Alert rules, evaluated in the sink (one process: it owns ClickHouse), and
their webhooks.

Every ``interval`` the evaluator measures each rule over the rollups and
compares with what is firing. A change is first written to the KV bucket
``sluice_alerts`` (the state that survives a restart), then published as an
event (``sluice.v1.events.alerts``, its Nats-Msg-Id the alert and state) and
marked published. The sink stores it like any event (``alert_events``), and
each webhook has its own durable consumer of that subject, so one slow or
failing receiver delays only itself.

A webhook is retried with backoff until it answers 2xx; a delivery is
recorded (``sluice_alert_deliveries``) before its message is acked, so a
redelivery after a crash is not sent again. Each body carries an ``id`` (also
the ``Sluice-Delivery-Id`` header) for receivers that want to be sure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import msgspec
import nats.errors
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy, KeyValueConfig, StorageType
from nats.js.errors import KeyNotFoundError

from analytics.queries import Named, load
from schemas import bus, subjects
from schemas.alerts import AlertRule, Webhook
from schemas.control import Budget, decode_key, decode_tenant
from schemas.events import AlertStateEvent, EventBatch
from services import alerts, quota
from services.bus.kv import ensure_kv, read_bucket

if TYPE_CHECKING:  # the supervisor makes the buckets through this module, and needs no ClickHouse client
    from analytics.store import Store

log = logging.getLogger("sluice.alerts")
MEASURES: dict[str, Named] = load(Path(__file__).parent / "alert_measures")
ALERTS_SUBJECT = subjects.events("alerts")
DELIVERIES_TTL_S = 7 * 24 * 3600
_MEASURE_OF = {
    "error_rate": "error_rate",
    "latency_p95": "latency_p95",
    "zero_cost": "zero_cost",
    "spend_spike": "key_spike",
    "tokens_spike": "key_spike",
    "tool_error_rate": "tool_error_rate",
    "tool_latency_p95": "tool_latency_p95",
    "rest_error_rate": "rest_error_rate",
    "rest_latency_p95": "rest_latency_p95",
}


class AlertRecord(msgspec.Struct):
    """A firing alert as kept in KV: ``published`` once its firing is on the
    stream, ``resolving`` once its resolution is being published."""

    alert: AlertStateEvent
    published: bool = False
    resolving: bool = False


async def ensure_buckets(nc: Client, replicas: int = 1) -> None:
    js = nc.jetstream()
    await ensure_kv(
        js,
        *(
            KeyValueConfig(bucket=bucket, ttl=ttl, storage=StorageType.FILE, replicas=replicas)
            for bucket, ttl in ((subjects.KV_ALERTS, 0), (subjects.KV_ALERT_DELIVERIES, DELIVERIES_TTL_S))
        ),
    )


class Evaluator:
    def __init__(self, nc: Client, store: Store, rules: list[AlertRule], interval_s: float) -> None:
        self.nc, self.store, self.rules, self.interval_s = nc, store, rules, interval_s
        self.js = nc.jetstream()
        # rule -> subject -> its firing record
        self.firing: dict[str, dict[str, AlertRecord]] = {r.name: {} for r in rules}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.kv = await self.js.key_value(subjects.KV_ALERTS)
        for record in (
            await read_bucket(self.nc, subjects.KV_ALERTS, msgspec.json.Decoder(AlertRecord).decode)
        ).values():
            if record.alert.rule in self.firing:
                self.firing[record.alert.rule][record.alert.subject] = record
        self._task = asyncio.create_task(self._loop(), name="alert-rules")

    async def _catch_up(self) -> None:
        """Publish a change written down but not published (the last run died
        in between, or NATS was away): the stream drops a repeat by its id."""
        for by_subject in self.firing.values():
            for record in list(by_subject.values()):
                if record.resolving:
                    await self._resolve(record, record.alert)
                elif not record.published:
                    await self._publish(record.alert)
                    record.published = True
                    await self._keep(record)

    async def _loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self._catch_up()
            except Exception:
                log.exception("alert rules: publishing a pending change failed; trying again next round")
            for rule in self.rules:
                try:
                    await self.evaluate(rule)
                except Exception:  # one rule's failure (ClickHouse busy, NATS away) must not stop the others
                    log.exception("alert rule %s: evaluation failed", rule.name)
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    async def evaluate(self, rule: AlertRule) -> None:
        measured = await self._measure(rule)
        at_ns = time.time_ns()
        current = self.firing[rule.name]
        fire, resolve = alerts.step(
            rule, {s: r.alert for s, r in current.items()}, alerts.breaches(rule, measured), at_ns
        )
        for alert in fire:
            record = AlertRecord(alert=alert)
            current[alert.subject] = record
            await self._keep(record)
            await self._publish(alert)
            record.published = True
            await self._keep(record)
            log.warning("alert %s firing on %s: %s", rule.name, alert.subject, alert.detail)
        for resolved in resolve:
            record = current[resolved.subject]
            record.resolving = True
            await self._keep(record)
            await self._resolve(record, resolved)
            log.warning("alert %s resolved on %s", rule.name, resolved.subject)

    async def _resolve(self, record: AlertRecord, resolved: AlertStateEvent) -> None:
        if resolved.state != "resolved":
            resolved = msgspec.structs.replace(resolved, state="resolved", at_ns=time.time_ns(), detail="resolved")
        await self._publish(resolved)
        await self.kv.delete(alerts.state_key(resolved.rule, resolved.subject))
        self.firing[resolved.rule].pop(resolved.subject, None)

    async def _keep(self, record: AlertRecord) -> None:
        await self.kv.put(alerts.state_key(record.alert.rule, record.alert.subject), msgspec.json.encode(record))

    async def _publish(self, alert: AlertStateEvent) -> None:
        batch = EventBatch(id=alerts.delivery_id(alert), events=[alert])
        await self.js.publish(ALERTS_SUBJECT, bus.encode(batch), headers={"Nats-Msg-Id": batch.id}, timeout=5.0)

    async def _measure(self, rule: AlertRule) -> list[alerts.Measure]:
        if rule.kind == "budget":
            return await self._budgets()
        named = MEASURES[_MEASURE_OF[rule.kind]]
        params = {
            "minutes": rule.window_minutes,
            "by": rule.by,
            "min_requests": rule.min_requests,
            "trailing_hours": rule.trailing_hours,
            "measure": "tokens" if rule.kind == "tokens_spike" else "cost",
            "min_value": rule.min_value,
        }
        params = {k: v for k, v in params.items() if k in named.params}
        columns, rows = await asyncio.to_thread(self.store.query, named.sql, params)
        out = []
        for row in rows:
            r = dict(zip(columns, row, strict=True))
            out.append(alerts.Measure(str(r["subject"]), str(r["tenant_id"]), float(r["value"]), str(r["detail"])))
        return out

    async def _budgets(self) -> list[alerts.Measure]:
        """Each budget's share used in its current period, from its counter."""
        now_ms = int(time.time() * 1000)
        found: list[tuple[str, str, str, Budget]] = []
        for t in (await read_bucket(self.nc, subjects.KV_TENANTS, decode_tenant)).values():
            if t.budget is not None:
                found.append(("tenant", t.id, t.id, t.budget))
        for k in (await read_bucket(self.nc, subjects.KV_KEYS, decode_key)).values():
            if k.budget is not None:
                found.append(("key", k.id, k.tenant_id, k.budget))
        out = []
        for scope, record_id, tenant_id, budget in found:
            subject, _ = quota.spend_counter(scope, record_id, budget, now_ms)
            used = await quota_committed(self.nc, subject)
            share = used / budget.limit_pico_usd if budget.limit_pico_usd else 0.0
            detail = f"{share:.0%} of the {budget.period} budget used"
            out.append(alerts.Measure(f"{scope} {record_id}", tenant_id, share, detail))
        return out

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def quota_committed(nc: Client, subject: str) -> int:
    try:
        msg = await nc.jetstream().get_last_msg(subjects.SPEND_STREAM, subject, direct=True)
    except nats.js.errors.NotFoundError:
        return 0
    return int(msgspec.json.decode(msg.data)["val"])


class Alerting:
    """The rules' evaluator and one sender per webhook, started in that
    order: a webhook's consumer exists before the first alert is published."""

    def __init__(self, nc: Client, store: Store, rules: list[AlertRule], hooks: list[Webhook], interval_s: float):
        self.nc = nc
        self.client = httpx.AsyncClient()
        self.senders = [WebhookSender(nc, h, rules) for h in hooks if any(h.name in r.webhooks for r in rules)]
        self.evaluator = Evaluator(nc, store, rules, interval_s)

    async def start(self) -> None:
        await ensure_buckets(self.nc)
        for sender in self.senders:
            await sender.start(self.client)
        await self.evaluator.start()

    async def stop(self) -> None:
        await self.evaluator.stop()
        for sender in self.senders:
            await sender.stop()
        await self.client.aclose()


class WebhookSender:
    """One webhook's deliveries, in order, each until it is taken."""

    def __init__(self, nc: Client, hook: Webhook, rules: list[AlertRule], max_tries: int = 8) -> None:
        self.nc, self.hook, self.max_tries = nc, hook, max_tries
        self.rules = {r.name for r in rules if hook.name in r.webhooks}
        self.secret = os.environ.get(hook.secret_env, "") if hook.secret_env else ""
        self._task: asyncio.Task[None] | None = None

    async def start(self, client: httpx.AsyncClient) -> None:
        js = self.nc.jetstream()
        self.kv = await js.key_value(subjects.KV_ALERT_DELIVERIES)
        self.sub = await js.pull_subscribe(
            ALERTS_SUBJECT,
            durable=f"alerts-webhook-{self.hook.name}",
            stream=subjects.EVENTS_STREAM,
            # One at a time: a resolution never overtakes its firing. Long
            # enough for the backoff below before the server sends it again.
            config=ConsumerConfig(ack_wait=120.0, max_ack_pending=1, deliver_policy=DeliverPolicy.NEW),
        )
        self._task = asyncio.create_task(self._run(client), name=f"webhook-{self.hook.name}")

    async def _run(self, client: httpx.AsyncClient) -> None:
        while True:
            try:
                msgs = await self.sub.fetch(1, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except nats.errors.Error as exc:
                log.warning("webhook %s: fetch failed (%r)", self.hook.name, exc)
                await asyncio.sleep(1.0)
                continue
            for msg in msgs:
                try:
                    batch = bus.decode_batch(msg.data)
                except msgspec.DecodeError:
                    await msg.ack()  # not ours to judge: the sink dead-letters it
                    continue
                delivered = True
                for alert in batch.events:
                    if isinstance(alert, AlertStateEvent) and alert.rule in self.rules:
                        delivered = delivered and await self._deliver(client, alert, msg)
                if delivered:
                    await msg.ack()
                else:  # kept on the stream: tried again later, never dropped
                    await msg.nak(delay=30.0)

    async def _deliver(self, client: httpx.AsyncClient, alert: AlertStateEvent, msg) -> bool:  # type: ignore[no-untyped-def]
        key = f"{self.hook.name}.{alerts.delivery_id(alert)}"
        try:
            await self.kv.get(key)
            return True  # sent before its ack was lost
        except KeyNotFoundError:
            pass
        body = alerts.webhook_body(alert)
        headers = {"content-type": "application/json", "sluice-delivery-id": alerts.delivery_id(alert)}
        if self.secret:
            headers["sluice-signature"] = alerts.signature(self.secret, body)
        for attempt in range(1, self.max_tries + 1):
            try:
                resp = await client.post(self.hook.url, content=body, headers=headers, timeout=self.hook.timeout_s)
                if 200 <= resp.status_code < 300:
                    await self.kv.put(key, b"1")
                    return True
                problem = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                problem = repr(exc)
            log.warning(
                "webhook %s: %s try %d failed (%s)", self.hook.name, alerts.delivery_id(alert), attempt, problem
            )
            await msg.in_progress()
            await asyncio.sleep(alerts.backoff_s(attempt))
        return False

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(nats.errors.Error):
                await self.sub.unsubscribe()
