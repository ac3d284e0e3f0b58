"""A batch run as one batch of a provider's own batch API (``native_batch``
deployments): the lines the ingress's driver hands the provider stage, each
line's end the provider stage hands back (both msgpack blobs in the blob
store: a batch of 50,000 lines is larger than a message), and the driver's
state in the batch's record (``BatchRecord.native``).

The driver (``ingress.batch_native``) takes these steps, each a request
through the pipeline (``schemas.tasks.NativeBatchRequest``): submit (policy
reserves the lines' worst case at batch price from the budgets), poll until
the upstream batch ended, fetch its results, and write each line's outcome,
row and settlement as a line run as a job would have.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.chat import ChatBody, EmbeddingsBody
from schemas.replies import Failure, Final
from schemas.reservation import Reservation


class NativeLine(msgspec.Struct, omit_defaults=True):
    """One line as the gateway read it: exactly one of the bodies (a chat
    or messages line's unified body, an embeddings line's)."""

    custom_id: str
    chat: ChatBody | None = None
    embeddings: EmbeddingsBody | None = None


class NativeLines(msgspec.Struct):
    lines: list[NativeLine]


class NativeLineEnd(msgspec.Struct):
    """How one line ended upstream: its answer (usage and cost at the batch
    price, ``deployment`` set) or its failure; ``Final.id`` and
    ``Failure.id`` are the line's custom_id. A line the upstream never ran
    (cancelled, expired) is left out: the driver ends it as not run."""

    custom_id: str
    reply: Final | Failure


class NativeLineEnds(msgspec.Struct):
    ends: list[NativeLineEnd]


# submit, running (polled), collect (its results being written), written
# (every line's outcome kept: the finisher ends it); jobs: its lines run as
# jobs after all (policy would not send them upstream unscreened: the
# tenant's redaction or moderation, which a native batch would bypass).
NativePhase = Literal["submit", "running", "collect", "written", "jobs"]


class NativeRun(msgspec.Struct, omit_defaults=True):
    """The driver's state, in the batch's record: changed by compare-and-set."""

    model: str
    phase: NativePhase = "submit"
    # The submit runs as a durable job (``ingress.job_run``): which one (a
    # new one after one failed), and how often it was delivered (once more
    # by each driver that takes it over).
    submit_job: int = 0
    submit_tries: int = 0
    # Submits that failed upstream (a limit of the key's own is waited out).
    submit_failures: int = 0
    upstream_id: str = ""
    deployment: str = ""
    # What the submit reserved from the budgets; the lines' costs settle it.
    reservation: Reservation | None = None
    # When to ask the upstream again (unix seconds).
    next_poll_at: float = 0.0
    # The caller cancelled, and the upstream was asked to cancel.
    cancel_sent: bool = False
