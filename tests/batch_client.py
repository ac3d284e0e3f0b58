"""What the Batch API tests do with the official ``openai`` SDK: wait for a
batch to end, and read its output or error file."""

from __future__ import annotations

import json
import time

import openai
from openai.types import Batch

ENDED = ("completed", "failed", "expired", "cancelled")


def ended(client: openai.OpenAI, batch_id: str, timeout: float = 30.0, poll_s: float = 0.2) -> Batch:
    """The batch once it ended; fails the test if it has not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ENDED:
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status}: {batch.request_counts}"
        time.sleep(poll_s)


def lines_of(client: openai.OpenAI, file_id: str | None) -> list[dict]:
    """A batch's output or error file, one object per line ([] for none)."""
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]
