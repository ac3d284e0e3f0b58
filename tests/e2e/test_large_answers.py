"""An answer larger than one NATS message (a 20 MB embeddings answer) is
delivered whole and charged like any other."""

from __future__ import annotations

import openai

from loadtest.mock_upstream.answer import vector
from services import pricing
from tests.stack import DEMO_KEY, Stack


def test_a_20_mb_embeddings_answer_is_delivered_and_charged(stack: Stack) -> None:
    texts = [f"text{i}" for i in range(700)]
    with openai.OpenAI(base_url=stack.base_url, api_key=DEMO_KEY, max_retries=0, timeout=60) as client:
        raw = client.embeddings.with_raw_response.create(
            model="embed-model", input=texts, dimensions=1536, encoding_format="float"
        )
    assert len(raw.content) > 20_000_000  # the HTTP answer; on the bus it was over 8 MB too
    result = raw.parse()
    assert len(result.data) == 700
    assert [d.index for d in result.data] == list(range(700))
    for i in (0, 350, 699):
        assert result.data[i].embedding == vector(texts[i], 1536)
    row = stack.request_row(raw.headers["x-request-id"], timeout=60)
    assert row["status"] == 200 and row["prompt_tokens"] == 700
    price = pricing.price_for("text-embedding-3-small")
    assert price is not None and row["cost_pico_usd"] == 700 * price.input > 0
