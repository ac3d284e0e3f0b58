"""Alert rules and webhooks, as configured ([[alerts]], [[webhooks]])."""

from __future__ import annotations

from typing import Literal

import msgspec

# error_rate: share of requests that failed (threshold 0.2 = 20 %), per model or deployment;
# latency_p95: p95 latency of successes in ms, per model or deployment;
# spend_spike / tokens_spike: a key's last hour against K times its trailing hourly average;
# zero_cost: successes that used tokens but cost nothing (a price missing), per model;
# budget: a budget's current period, share used (threshold 0.8 = 80 %);
# tool_error_rate: share of MCP calls that failed or answered isError, per tool or server;
# tool_latency_p95: p95 latency of MCP calls that did not fail, in ms, per tool or server;
# rest_error_rate: share of REST calls that failed (400 or above), per service or route;
# rest_latency_p95: p95 latency of REST calls that did not fail, in ms, per service or route.
AlertKind = Literal[
    "error_rate",
    "latency_p95",
    "spend_spike",
    "tokens_spike",
    "zero_cost",
    "budget",
    "tool_error_rate",
    "tool_latency_p95",
    "rest_error_rate",
    "rest_latency_p95",
]


class AlertRule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    kind: AlertKind
    threshold: float
    # What a rule is evaluated per: "model" or "deployment" (error_rate, latency_p95, zero_cost);
    # for the tool kinds "server", else each tool (server__tool); for the REST kinds "route"
    # (service, method and route template: "billing GET /invoices/{id}"), else each service
    # ("billing", "billing/v2").
    by: Literal["model", "deployment", "server", "tool", "service", "route"] = "model"
    window_minutes: int = 5
    # Below this many requests in the window there is no verdict (error_rate, latency_p95, the tool
    # and REST kinds).
    min_requests: int = 10
    # spend_spike / tokens_spike: the trailing hours the average is taken over, and
    # the least last-hour value that may fire (pico-USD or tokens), so a key that
    # spent nothing yesterday does not fire on its first cent.
    trailing_hours: int = 24
    min_value: float = 0.0
    webhooks: list[str] = []


class Webhook(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    url: str
    # An environment variable holding a secret: each delivery is signed with
    # it (Sluice-Signature: sha256=HMAC of the body).
    secret_env: str = ""
    timeout_s: float = 5.0
