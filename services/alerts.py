"""Alert rules: from measurements to alerts that fire and resolve, and the
webhook deliveries they make. No I/O here: the evaluator and the webhook
sender (``analytics/alerting.py``) feed these functions and act on them.

An alert is one rule about one subject (a model, a deployment, a key, a
budget) from the time it fires until it resolves; its id names all three,
so its firing and its resolution pair up everywhere (rows, webhooks).
"""

from __future__ import annotations

import hashlib
import hmac
import math

import msgspec

from schemas.alerts import AlertRule
from schemas.events import AlertStateEvent


class Breach(msgspec.Struct):
    subject: str
    tenant_id: str
    value: float
    detail: str


class Measure(msgspec.Struct):
    """One row of a rule's measurement query."""

    subject: str
    tenant_id: str
    value: float
    detail: str = ""


def breaches(rule: AlertRule, measured: list[Measure]) -> dict[str, Breach]:
    """The subjects over the rule's threshold now."""
    return {
        m.subject: Breach(m.subject, m.tenant_id, m.value, m.detail)
        for m in measured
        if m.value > rule.threshold or (math.isinf(m.value) and m.value > 0)
    }


def state_key(rule: str, subject: str) -> str:
    """A KV key for (rule, subject): subjects are model names and the like,
    which may hold characters a key may not."""
    return f"{rule}.{hashlib.sha256(subject.encode()).hexdigest()[:20]}"


def alert_id(rule: str, subject: str, fired_at_ns: int) -> str:
    return f"{state_key(rule, subject).replace('.', '-')}-{fired_at_ns // 1_000_000}"


def step(
    rule: AlertRule, firing: dict[str, AlertStateEvent], now: dict[str, Breach], at_ns: int
) -> tuple[list[AlertStateEvent], list[AlertStateEvent]]:
    """What changes: alerts to fire (a subject newly over) and to resolve
    (a firing subject no longer over). A firing alert stays as it is while
    its subject stays over: one firing, however long it lasts."""
    fire = [
        AlertStateEvent(
            alert_id=alert_id(rule.name, b.subject, at_ns),
            state="firing",
            rule=rule.name,
            rule_kind=rule.kind,
            subject=b.subject,
            tenant_id=b.tenant_id,
            at_ns=at_ns,
            fired_at_ns=at_ns,
            value=_finite(b.value),
            threshold=rule.threshold,
            detail=b.detail,
        )
        for b in now.values()
        if b.subject not in firing
    ]
    resolve = [
        msgspec.structs.replace(alert, state="resolved", at_ns=at_ns, detail=f"back under {rule.threshold:g}")
        for subject, alert in firing.items()
        if subject not in now
    ]
    return fire, resolve


def _finite(value: float) -> float:
    # A key with no trailing spend has an infinite ratio; JSON and rows want a number.
    return value if math.isfinite(value) else 1e308


def webhook_body(alert: AlertStateEvent) -> bytes:
    """What a webhook is sent: the alert as JSON, with ``id`` unique per
    firing and per resolution (a receiver may use it to drop a repeat)."""
    return msgspec.json.encode(
        {
            "id": delivery_id(alert),
            "alert_id": alert.alert_id,
            "state": alert.state,
            "rule": alert.rule,
            "kind": alert.rule_kind,
            "subject": alert.subject,
            "tenant_id": alert.tenant_id,
            "value": alert.value,
            "threshold": alert.threshold,
            "detail": alert.detail,
            "at_ns": alert.at_ns,
            "fired_at_ns": alert.fired_at_ns,
        }
    )


def delivery_id(alert: AlertStateEvent) -> str:
    return f"{alert.alert_id}.{alert.state}"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff_s(attempt: int, first_s: float = 0.5, most_s: float = 30.0) -> float:
    """The wait before try ``attempt`` + 1 (attempt counts from 1)."""
    return min(most_s, first_s * 2 ** (attempt - 1))
