from __future__ import annotations

import hashlib
import hmac
import json

from schemas.alerts import AlertRule
from services import alerts
from services.alerts import Measure

RULE = AlertRule(name="errors", kind="error_rate", threshold=0.5)


def test_only_subjects_over_the_threshold_breach() -> None:
    found = alerts.breaches(RULE, [Measure("a", "", 0.5), Measure("b", "", 0.51), Measure("c", "t", float("inf"))])
    assert sorted(found) == ["b", "c"]


def test_a_breach_fires_once_stays_firing_and_resolves_when_it_ends() -> None:
    fire, resolve = alerts.step(RULE, {}, alerts.breaches(RULE, [Measure("m", "", 0.9, "9 of 10")]), at_ns=5_000_000)
    assert resolve == [] and [(a.subject, a.state, a.value, a.detail) for a in fire] == [
        ("m", "firing", 0.9, "9 of 10")
    ]
    firing = {"m": fire[0]}
    assert alerts.step(RULE, firing, alerts.breaches(RULE, [Measure("m", "", 0.7)]), at_ns=6_000_000) == ([], [])
    fire, resolve = alerts.step(RULE, firing, {}, at_ns=7_000_000)
    assert fire == [] and len(resolve) == 1
    assert (resolve[0].alert_id, resolve[0].state, resolve[0].at_ns) == (firing["m"].alert_id, "resolved", 7_000_000)
    assert resolve[0].fired_at_ns == 5_000_000


def test_deliveries_are_identified_and_signed() -> None:
    (alert,), _ = alerts.step(RULE, {}, alerts.breaches(RULE, [Measure("gpt/4 o", "", float("inf"))]), at_ns=1)
    body = alerts.webhook_body(alert)
    sent = json.loads(body)
    assert sent["id"] == f"{alert.alert_id}.firing" and sent["value"] == 1e308  # JSON has no infinity
    assert alerts.state_key("errors", "gpt/4 o").replace(".", "").replace("errors", "").isalnum()
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert alerts.signature("s3cret", body) == f"sha256={expected}"


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [alerts.backoff_s(n) for n in (1, 2, 3, 10)] == [0.5, 1.0, 2.0, 30.0]
