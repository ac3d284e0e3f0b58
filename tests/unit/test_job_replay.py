"""How a job taken over reads what its request's reply subject kept (``JobRun._replay``)."""

from __future__ import annotations

from ingress.job_run import Replay
from schemas.chat import Delta, Message, Usage
from schemas.replies import Accepted, Admitted, Chunk, Failure, Fenced, Final
from schemas.reservation import Reservation
from services.reply_split import Assembler


def test_a_fence_answer_kept_on_the_subject_never_ends_the_request() -> None:
    """A fence asks with the job's reply subject, so the stream keeps each
    provider's answer beside the request's replies. Read as the end, it became
    the job's result: a JobResult no reader could decode, and a job pending forever."""
    replay, pieces = Replay(), Assembler()
    assert not replay.saw(Fenced(id="job-1", worker="provider-0", holds=False, copy=100), pieces)
    assert replay.ended is None and not replay.accepted


def test_a_provider_that_says_it_holds_a_copy_took_the_request() -> None:
    replay, pieces = Replay(), Assembler()
    replay.saw(Fenced(id="job-1", worker="provider-0", holds=False, copy=100), pieces)
    replay.saw(Fenced(id="job-1", worker="provider-1", holds=True, copy=100), pieces)
    assert replay.accepted and replay.ended is None


def test_the_replies_in_order_end_with_the_answer_joined() -> None:
    replay, pieces = Replay(), Assembler()
    quota = Reservation()
    kept = [
        Admitted(id="job-1", quota=quota),
        Accepted(id="job-1", worker="provider-0"),
        Chunk(id="job-1", seq=0, delta=Delta(content="Hel")),
        Chunk(id="job-1", seq=1, delta=Delta(content="lo")),
        Final(
            id="job-1",
            seq=2,
            model="m",
            usage=Usage(prompt_tokens=1, completion_tokens=2),
            message=Message(role="assistant", content=""),
        ),
    ]
    ended = [replay.saw(reply, pieces) for reply in kept]
    assert ended == [False, False, False, False, True]
    assert replay.quota == quota and replay.accepted
    assert isinstance(replay.ended, Final) and replay.ended.message == Message(role="assistant", content="Hello")


def test_a_failure_ends_it_as_it_is() -> None:
    replay, pieces = Replay(), Assembler()
    failure = Failure(id="job-1", seq=0, status=502, type="api_error", code="upstream_error", message="no")
    assert replay.saw(failure, pieces) and replay.ended == failure


def test_the_newest_copy_s_admission_is_the_one_carried_on() -> None:
    """A copy sent before its runner heard the first one's admission was
    admitted afresh; the first copy's admission, kept after it, was settled
    by the provider that refused that copy, and must not be carried again."""
    replay, pieces = Replay(), Assembler()
    first, second = Reservation(copy=0), Reservation(copy=1)
    replay.saw(Admitted(id="job-1", quota=second), pieces)
    replay.saw(Admitted(id="job-1", quota=first), pieces)  # late
    replay.saw(Admitted(id="job-1"), pieces)  # a resent copy's, reserving nothing
    assert replay.quota is second


def test_a_run_policy_refused_for_the_caller_s_rate_limit_is_one_no_provider_took() -> None:
    refused = Failure(id="job-1", seq=0, status=429, type="rate_limit_error", code="rate_limit_exceeded", message="no")
    replay = Replay()
    replay.saw(refused, Assembler())
    assert replay.refused
    # Over budget is no rate limit: that run ended.
    over = Failure(id="job-1", seq=0, status=429, type="insufficient_quota", code="insufficient_quota", message="no")
    replay = Replay()
    replay.saw(over, Assembler())
    assert not replay.refused
    # A provider took a copy (a 429 from another copy says nothing of it): not a refusal.
    replay = Replay()
    replay.saw(Accepted(id="job-1", worker="provider-0"), Assembler())
    replay.saw(refused, Assembler())
    assert not replay.refused
