"""Masking and restoring, by properties (hypothesis) and by example."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from schemas.chat import Delta, FunctionCall, FunctionDelta, Message, ToolCall, ToolCallDelta
from services.detectors import find, scan, unfinished
from services.masking import (
    PLACEHOLDER,
    AnswerRestorer,
    Masker,
    OutputScanner,
    StreamRestorer,
    label_of,
    restore,
)

VALUES = [
    "jane.doe@example.com",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00",
    "078-05-1120",
    "10.0.0.1",
    "AKIAIOSFODNN7EXAMPLE",
]
# Text around the values: anything, brackets and would-be placeholders included.
filler = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["[", "]", "[EMAIL_1]", "[EMAIL_", "[PHONE_2]", "[[", " ", "\n", "数字"]),
)
texts = st.lists(st.one_of(filler, st.sampled_from(VALUES)), max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_masking_then_restoring_gives_back_any_text(text: str) -> None:
    masker = Masker([text])
    masked = masker.mask(text, scan(text))
    assert restore(masked, masker.vault) == text
    # Every placeholder stands in the masked text, each for one value.
    assert all(p in masked for p in masker.vault)
    assert len(set(masker.vault.values())) == len(masker.vault)
    assert {m.group() for m in PLACEHOLDER.finditer(masked)} >= set(masker.vault)


@settings(max_examples=300, deadline=None)
@given(texts, st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_restoring_chunk_by_chunk_equals_restoring_the_whole(text: str, cuts: list[int]) -> None:
    masker = Masker([text])
    answer = masker.mask(text, scan(text))
    points = sorted({min(c, len(answer)) for c in cuts})
    chunks = [answer[a:b] for a, b in zip([0, *points], [*points, len(answer)], strict=True)]
    restorer = StreamRestorer(masker.vault)
    longest = max((len(p) for p in masker.vault), default=0)
    out = []
    for chunk in chunks:
        out.append(restorer.feed(chunk))
        assert len(restorer.held) < max(longest, 1)  # never more than a placeholder's start
    out.append(restorer.flush())
    assert "".join(out) == restore(answer, masker.vault) == text


def test_the_same_value_is_the_same_placeholder_and_taken_ones_are_skipped() -> None:
    text = "Mail [EMAIL_1] a@example.com, then a@example.com again; b@example.org too."
    masker = Masker([text])
    masked = masker.mask(text, scan(text))
    assert masked == "Mail [EMAIL_1] [EMAIL_2], then [EMAIL_2] again; [EMAIL_3] too."
    assert restore(masked, masker.vault) == text


def test_a_split_placeholder_is_held_only_until_it_can_no_longer_be_one() -> None:
    restorer = StreamRestorer({"[EMAIL_1]": "a@example.com"})
    assert restorer.feed("Write to [EMA") == "Write to "
    assert restorer.held == "[EMA"
    assert restorer.feed("IL_1] now") == "a@example.com now"
    assert restorer.feed("a [note] and [E") == "a [note] and "
    assert restorer.feed("X") == "[EX"  # no placeholder starts so: passed on at once
    assert restorer.feed("[EMAIL_") == ""
    assert restorer.flush() == "[EMAIL_"


def test_labels_come_from_detector_and_rule_names() -> None:
    assert [label_of(n) for n in ("email", "ipv4", "emp-id", "9lives")] == ["EMAIL", "IPV4", "EMP_ID", "X_9LIVES"]


LEAKS = ["sk-proj-" + "Ab9_" * 12, "leaked@example.org", "4111 1111 1111 1111"]
answers = st.lists(st.one_of(filler, st.sampled_from(LEAKS), st.just(" ")), max_size=10).map("".join)


def _scanner() -> OutputScanner:
    # ``find`` looks for every kind, so the stream waits on every kind's unfinished values.
    actions = {"secret": "redact", "email": "mask", "card": "flag"}
    return OutputScanner(find, actions, given=["given@example.com"], unfinished=unfinished)


@settings(max_examples=300, deadline=None)
@given(answers, st.lists(st.integers(min_value=0, max_value=300), max_size=10))
# The context kept from what was passed on began inside a long token: read
# from there, "Ab9_…0@0.AA" was an address the whole text does not have,
# and it crowded out the one it has ("0.AA@0.AA").
@example("0" + LEAKS[0] + "0" * 15 + "@0.AA@0.AA:" + "0" * 10 + LEAKS[0], [])
def test_an_output_scan_of_a_stream_equals_the_scan_of_the_whole(text: str, cuts: list[int]) -> None:
    points = sorted({min(c, len(text)) for c in cuts})
    chunks = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    streamed = _scanner()
    out = "".join(streamed.feed(c) for c in chunks) + streamed.flush()
    assert out == _scanner().whole(text)


def test_an_output_scan_leaves_the_callers_own_values_and_flags_without_changing() -> None:
    scanner = _scanner()
    text = f"Your address given@example.com; mine is leaked@example.org; card 4111 1111 1111 1111; {LEAKS[0]}"
    out = scanner.whole(text)
    assert out == "Your address given@example.com; mine is [EMAIL_1]; card 4111 1111 1111 1111; [REDACTED:secret]"
    assert sorted(f.detector for f in scanner.found) == ["card", "email", "secret"]


def test_tool_call_arguments_are_restored_and_checked_streamed_or_whole() -> None:
    vault = {"[EMAIL_1]": "given@example.com"}
    args = '{"to": "[EMAIL_1]", "cc": "leaked@example.org", "note": "[EMAIL_"}'
    expected = '{"to": "given@example.com", "cc": "[EMAIL_1]", "note": "[EMAIL_"}'

    def call_delta(text: str) -> Delta:
        return Delta(index=0, tool_calls=[ToolCallDelta(index=1, function=FunctionDelta(arguments=text))])

    streamed = AnswerRestorer(vault, _scanner)
    sent = [streamed.delta(call_delta(args[i : i + 7])) for i in range(0, len(args), 7)] + streamed.rest()
    assert "".join(tc.function.arguments for d in sent for tc in d.tool_calls or () if tc.function) == expected

    whole = AnswerRestorer(vault, _scanner)
    call = ToolCall(id="c0", function=FunctionCall(name="n", arguments="{}"))
    message = Message(
        role="assistant",
        content=None,
        tool_calls=[call, ToolCall(id="c1", function=FunctionCall(name="send", arguments=args))],
    )
    restored = whole.message(message)
    assert restored is not None and restored.tool_calls is not None
    assert restored.tool_calls[1].function.arguments == expected
    assert message.tool_calls[1].function.arguments == args  # what the gateway keeps is the upstream's

    for r in (streamed, whole):
        assert [(where, f.detector) for where, f in r.found] == [("choices[0].tool_calls[1].arguments", "email")]
