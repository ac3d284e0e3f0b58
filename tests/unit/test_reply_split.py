"""Answers over the NATS message limit are split and joined back exactly."""

from __future__ import annotations

from schemas import bus
from schemas.chat import Message, Usage
from schemas.replies import Chunk, Failure, Final
from services.reply_split import Assembler, encode_final


def join(payloads: list[bytes]) -> tuple[Final, int]:
    assembler = Assembler()
    for seq, payload in enumerate(payloads):
        reply = bus.decode_reply(payload)
        assert reply.seq == 3 + seq  # the sequence continues from the final's own
        if isinstance(reply, Chunk):
            assembler.add(reply)
        else:
            assert isinstance(reply, Final) and seq == len(payloads) - 1
            return assembler.complete(reply), len(payloads)
    raise AssertionError("no final")


def test_small_answers_stay_one_message() -> None:
    message = Message(role="assistant", content="x")
    final = Final(id="r", seq=3, model="m", usage=Usage(prompt_tokens=1), message=message)
    assert encode_final(final) == [bus.encode(final)]
    failure = Failure(id="r", seq=3, status=500, type="t", code="c", message="x" * 2_000_000)
    assert len(encode_final(failure)) == 1


def test_large_embeddings_are_sliced_under_the_limit_and_rejoined_in_order() -> None:
    vectors = [[float(i) + j / 1536 for j in range(1536)] for i in range(300)]
    final = Final(id="r", seq=3, model="m", usage=Usage(prompt_tokens=9), embeddings=vectors)
    payloads = encode_final(final, limit=200_000)
    assert len(payloads) > 5 and all(len(p) <= 200_000 for p in payloads)
    joined, _ = join(payloads)
    assert joined.embeddings == vectors and joined.usage.prompt_tokens == 9


def test_large_text_is_split_by_characters_and_rejoined() -> None:
    text = "naïve 🚀 " * 100_000  # multi-byte characters across piece boundaries
    final = Final(id="r", seq=3, model="m", usage=Usage(), message=Message(role="assistant", content=text))
    payloads = encode_final(final, limit=100_000)
    assert all(len(p) <= 100_000 for p in payloads)
    joined, count = join(payloads)
    assert joined.message is not None and joined.message.content == text and count > 10
