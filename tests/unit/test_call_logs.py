from __future__ import annotations

import json

from schemas.chat import ChatBody, Message
from schemas.envelope import Envelope
from services.call_logs import CUT_MARKER, answer_json, cut, entry


def test_a_body_under_the_cap_is_kept_whole() -> None:
    assert cut("héllo", 6) == ("héllo", 6)


def test_a_cut_never_splits_a_character_and_says_how_much_was_kept() -> None:
    text = "é" * 10  # 20 bytes
    kept, total = cut(text, 5)
    assert total == 20
    assert kept == "éé" + CUT_MARKER.format(kept=4, total=20)


def test_an_entry_carries_the_envelope_as_the_upstream_saw_it() -> None:
    env = Envelope(
        reply="r",
        id="req-1",
        tenant_id="t",
        key_id="k",
        call_log_max_bytes=1000,
        body=ChatBody(model="m", messages=[Message(role="user", content="[REDACTED:email]")]),
    )
    log = entry(env, 200, answer_json(message=Message(role="assistant", content="ok"), finish_reason="stop"), 5)
    assert json.loads(log.request_body)["messages"][0]["content"] == "[REDACTED:email]"
    assert json.loads(log.response_body) == {"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    assert (log.request_id, log.tenant_id, log.key_id, log.model, log.at_ns) == ("req-1", "t", "k", "m", 5)
    assert log.response_bytes == len(log.response_body.encode())
