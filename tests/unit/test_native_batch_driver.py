"""The native batch driver's decisions (``ingress.batch_native``): which
failed submits are tried again, and when a batch is looked at."""

from __future__ import annotations

from ingress.batch_native import _due, _may_pass
from schemas.batches import BatchRecord
from schemas.errors import QuotaExceeded, UpstreamOverloaded, UpstreamTimeout
from schemas.native_batch import NativeRun
from schemas.replies import Failure


def failure(error: Exception) -> Failure:
    return Failure.from_error("r", error)  # type: ignore[arg-type]


def test_a_submit_is_tried_again_where_a_second_cannot_make_a_second_batch() -> None:
    died = Failure(id="r", seq=0, status=502, type="upstream_error", code="worker_died", message="gone")
    timed_out = failure(UpstreamTimeout("slow"))
    busy = failure(UpstreamOverloaded("busy"))
    # OpenAI's batches carry our id: a second submit finds the first's batch.
    assert _may_pass(died, "openai") and _may_pass(timed_out, "azure") and _may_pass(busy, "openai")
    # Anthropic's carry nothing of ours: once its create may have arrived, never again.
    assert not _may_pass(died, "anthropic") and not _may_pass(timed_out, "anthropic")
    assert _may_pass(busy, "anthropic")  # it answered: it made nothing
    # Over budget is no passing trouble.
    assert not _may_pass(failure(QuotaExceeded("no money")), "openai")


def record(
    phase: str, status: str = "in_progress", next_poll_at: float = 100.0, cancel_sent: bool = False
) -> BatchRecord:
    native = NativeRun(model="m", phase=phase, next_poll_at=next_poll_at, cancel_sent=cancel_sent)  # type: ignore[arg-type]
    return BatchRecord(
        id="batch_x", endpoint="/v1/chat/completions", input_file_id="f", completion_window="24h",
        status=status, created_at=1, tenant_id="t", key_id="k", native=native,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_batch_is_looked_at_when_its_next_poll_is_due_or_a_cancel_waits_to_be_sent() -> None:
    assert not _due(record("running"), now_s=99.0) and _due(record("running"), now_s=100.0)
    # A failed results fetch waits its turn too, rather than fetching again every tick.
    assert not _due(record("collect"), now_s=99.0)
    assert _due(record("running", status="cancelling"), now_s=0.0)
    assert not _due(record("running", status="cancelling", cancel_sent=True), now_s=0.0)
