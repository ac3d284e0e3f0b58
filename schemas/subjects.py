"""NATS subjects (DESIGN.md §3). The wire version is part of every name."""

from __future__ import annotations

PREFIX = "sluice.v1"

IN_CHAT = f"{PREFIX}.in.chat"
STAGE_REDACT = f"{PREFIX}.stage.redact"
STAGE_ROUTE = f"{PREFIX}.stage.route"
STAGE_CALL = f"{PREFIX}.stage.call"
STAGE_REDACT_OUT = f"{PREFIX}.stage.redact_out"
# Not queue-grouped: every provider replica hears a cancel and the one that
# holds the request stops it.
CONTROL_CANCEL = f"{PREFIX}.control.cancel"
ANALYTICS_QUERY = f"{PREFIX}.analytics.query"

EVENTS_STREAM = "SLUICE_EVENTS"
EVENTS_ALL = f"{PREFIX}.events.>"


def events(stage: str) -> str:
    return f"{PREFIX}.events.{stage}"


def entry(api: str) -> str:
    return f"{PREFIX}.in.{api}"


# Control-plane KV buckets.
KV_KEYS = "sluice_keys"
KV_MODELS = "sluice_models"
KV_TENANTS = "sluice_tenants"

# Header that carries the caller's API key on a request published to NATS.
API_KEY_HEADER = "Authorization"
