"""Alert rules over REST calls as the config declares them: the two kinds,
grouped per service or per route, an error rate being a share (at most 1);
each kind has a measure the evaluator runs."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import msgspec
import pytest

from analytics.alerting import _MEASURE_OF, MEASURES
from schemas.alerts import AlertKind, AlertRule
from services import alerts, config

RULES = """
[[alerts]]
name = "rest-errors"
kind = "rest_error_rate"
threshold = 0.1
min_requests = 20

[[alerts]]
name = "rest-slow-routes"
kind = "rest_latency_p95"
by = "route"
threshold = 1500
window_minutes = 10
"""


def test_rest_rules_read_from_config(tmp_path: Path) -> None:
    path = tmp_path / "rest.toml"
    path.write_text(RULES)
    errors, slow = config.load(path).alerts
    assert (errors.kind, errors.threshold, errors.min_requests) == ("rest_error_rate", 0.1, 20)
    assert (slow.kind, slow.by, slow.threshold, slow.window_minutes) == ("rest_latency_p95", "route", 1500, 10)


@pytest.mark.parametrize(
    ("kind", "threshold", "ok"), [("rest_error_rate", 1.5, False), ("rest_latency_p95", 1.5, True)]
)
def test_a_rest_error_rate_is_a_share_and_a_latency_is_not(
    tmp_path: Path, kind: str, threshold: float, ok: bool
) -> None:
    path = tmp_path / "share.toml"
    path.write_text(f'[[alerts]]\nname = "a"\nkind = "{kind}"\nthreshold = {threshold}\n')
    if ok:
        assert config.load(path).alerts[0].threshold == threshold
    else:
        with pytest.raises(config.ConfigError, match="at most 1"):
            config.load(path)


def test_each_rest_kind_has_a_measure_grouped_as_the_rule_says() -> None:
    rest_kinds = {k for k in get_args(AlertKind) if k.startswith("rest_")}
    assert rest_kinds == {"rest_error_rate", "rest_latency_p95"}
    for kind in rest_kinds:
        assert set(MEASURES[_MEASURE_OF[kind]].params) == {"minutes", "by", "min_requests"}


def test_a_service_over_the_threshold_fires_and_resolves_once_back_under() -> None:
    rule = msgspec.convert({"name": "r", "kind": "rest_error_rate", "threshold": 0.2}, AlertRule)
    over = alerts.breaches(rule, [alerts.Measure("billing", "", 0.5, "5 of 10 calls failed"),
                                  alerts.Measure("billing/v2", "", 0.1)])  # fmt: skip
    assert set(over) == {"billing"}
    fire, resolve = alerts.step(rule, {}, over, 1)
    assert [(a.subject, a.state) for a in fire] == [("billing", "firing")] and resolve == []
    # Still over: no second firing; back under: resolved.
    assert alerts.step(rule, {a.subject: a for a in fire}, over, 2) == ([], [])
    fire, resolve = alerts.step(rule, {a.subject: a for a in fire}, {}, 3)
    assert fire == [] and [(a.subject, a.state) for a in resolve] == [("billing", "resolved")]
