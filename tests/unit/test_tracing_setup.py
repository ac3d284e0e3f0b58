"""Tracing's start (``services/bus/tracing.setup``): off without an endpoint,
and loud when an endpoint is set but the ``otel`` extra is not installed."""

from __future__ import annotations

import sys

import pytest

from services.bus import tracing


@pytest.fixture(autouse=True)
def untraced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setattr(tracing, "_tracer", None)
    monkeypatch.setattr(tracing, "_provider", None)


def test_without_an_endpoint_nothing_is_imported_or_started() -> None:
    assert tracing.setup("ingress") is False and tracing._tracer is None


def test_an_endpoint_without_the_sdk_stops_the_process_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if the extra were not installed
    with pytest.raises(RuntimeError, match=r"sluice\[otel\]") as refused:
        tracing.setup("ingress")
    assert "127.0.0.1:4318" in str(refused.value) and tracing._tracer is None
