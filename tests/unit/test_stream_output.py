"""Output checks of a streamed answer: whatever the chunks, the caller gets
exactly what the check of the whole answer gives, and the stream stays a
stream. Values of every detector's kind, of any length the detector takes
(and just past it), in text made of the characters they are made of."""

from __future__ import annotations

import base64
import json
import string

from hypothesis import example, given, settings
from hypothesis import strategies as st

from schemas.chat import Delta, Message
from services import detectors
from services.detectors.cards import luhn_ok
from services.masking import AnswerRestorer, OutputScanner

B64 = string.ascii_letters + string.digits + "+/="
B64URL = string.ascii_letters + string.digits + "_-"
ALNUM = string.ascii_letters + string.digits
ACTIONS = {
    "secret": "redact",
    "email": "mask",
    "card": "mask",
    "iban": "redact",
    "phone": "mask",
    "ssn": "redact",
    "ipv4": "flag",
    "ipv6": "mask",
}
GIVEN = ["given@example.com"]


def _jwt_head(alg: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"alg": alg, "typ": "JWT"}).encode()).decode().rstrip("=")


@st.composite
def private_keys(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["", "RSA ", "EC ", "OPENSSH ", "ENCRYPTED ", "PGP "]))
    lines = draw(st.lists(st.text(B64, min_size=1, max_size=64), min_size=0, max_size=60))
    end = draw(st.sampled_from(["-----END {}PRIVATE KEY-----", "-----END {}PRIVATE KEY BLOCK-----", ""]))
    # Some blocks never end, or end too soon after their BEGIN line (under 16 characters).
    return f"-----BEGIN {kind}PRIVATE KEY-----\n" + "\n".join(lines) + "\n" + end.format(kind)


@st.composite
def jwts(draw: st.DrawFn) -> str:
    head = draw(st.sampled_from([_jwt_head("HS256"), _jwt_head("RS512"), "eyJub3RoaW5nIjoxfQ"]))
    payload = "eyJ" + draw(st.text(B64URL, min_size=0, max_size=400))
    signature = draw(st.text(B64URL, min_size=0, max_size=400))
    return ".".join(draw(st.sampled_from([[head, payload, signature], [head, payload], [head]])))


def _token(prefix: str, chars: str, low: int, high: int) -> st.SearchStrategy[str]:
    # From too short to one past the longest the detector takes.
    return st.text(chars, min_size=max(0, low - 2), max_size=high + 1).map(lambda s: prefix + s)


@st.composite
def cards(draw: st.DrawFn) -> str:
    body = draw(st.sampled_from(["4", "51", "37", "6011"])) + draw(st.text(string.digits, min_size=10, max_size=14))
    check = next(d for d in string.digits if luhn_ok(body + d))
    sep = draw(st.sampled_from(["", " ", "-"]))
    digits = body + check
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))


secrets = st.one_of(
    _token("sk-proj-", B64URL, 20, 200),
    _token("sk-", B64URL, 20, 208),
    _token("sk-ant-api03-", B64URL, 80, 120),
    _token("AKIA", string.ascii_uppercase + string.digits, 16, 16),
    _token("ghp_", ALNUM, 36, 255),
    _token("github_pat_", ALNUM + "_", 60, 255),
    _token("xoxb-", ALNUM + "-", 10, 250),
    jwts(),
    private_keys(),
)
emails = st.builds(
    lambda local, domain, tld: f"{local}@{domain}.{tld}",
    st.text(ALNUM + "._%+-", min_size=1, max_size=66),
    st.text(string.ascii_lowercase + string.digits + "-.", min_size=1, max_size=30),
    st.text(string.ascii_letters, min_size=1, max_size=26),
)
numbers = st.one_of(
    st.sampled_from(
        [
            "+44 20 7946 0958",
            "(415) 555-0132",
            "+1 (243) 295-9639",
            "415.555.0132",
            "0044 20 7946 0958",
            "078-05-1120",
            "219 09 9999",
            "DE89 3704 0044 0532 0130 00",
            "GB29NWBK60161331926819",
            "FR14 2004 1010 0505 0001 3M02 606",
        ]
    ),
    cards(),
    st.builds(lambda *n: ".".join(map(str, n)), *[st.integers(0, 300)] * 4),
    st.sampled_from(["2001:db8::1", "fe80::1%eth0", "::1", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "12:30:45"]),
)
values = st.one_of(secrets, emails, numbers, st.sampled_from(GIVEN))
# Text around the values, rich in what values are made of and what ends them.
filler = st.one_of(
    st.text(max_size=12),
    st.text(ALNUM + " .-_@:%+()/,\n", max_size=12),
    st.sampled_from([" ", "\n", ". ", "-----", "-----BEGIN ", "eyJ", "sk-", "version ", "v", "e", "A", "数字", ","]),
)
answers = st.lists(st.one_of(filler, values), max_size=8).map("".join)


def _scanner() -> OutputScanner:
    return OutputScanner(detectors.find, ACTIONS, given=GIVEN)


def _chunks(text: str, cuts: list[int]) -> list[str]:
    points = sorted({min(c, len(text)) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


def _streamed(chunks: list[str]) -> str:
    scanner = _scanner()
    return "".join(scanner.feed(c) for c in chunks) + scanner.flush()


@settings(max_examples=400, deadline=None)
@given(answers, st.lists(st.integers(min_value=0, max_value=3000), max_size=40))
@example("a@b.co" + "m.au and more", [6])
@example("-----BEGIN RSA PRIVATE KEY-----\n" + "A" * 64 + "\n-----END RSA PRIVATE KEY-----", [10, 40, 70])
def test_a_streamed_answer_gets_the_whole_answers_checks_for_any_chunks(text: str, cuts: list[int]) -> None:
    assert _streamed(_chunks(text, cuts)) == _scanner().whole(text)


@settings(max_examples=60, deadline=None)
@given(answers)
def test_one_character_at_a_time_too(text: str) -> None:
    assert _streamed(list(text)) == _scanner().whole(text)


KEY = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(["MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" * 2] * 25)
KEY += "\n-----END PRIVATE KEY-----"
SIGNATURE = "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c" * 3
JWT = f"{_jwt_head('HS256')}.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUifQ.{SIGNATURE}"
API_KEY = "sk-proj-" + "Ab9_" * 12
ANSWER = f"Here is the key:\n{KEY}\nthe token {JWT} and {API_KEY}, mail me at leaked@example.org."


def test_every_split_in_two_of_an_answer_with_a_key_block_a_jwt_and_a_key() -> None:
    whole = _scanner().whole(ANSWER)
    assert KEY not in whole and JWT not in whole and API_KEY not in whole
    for at in range(len(ANSWER) + 1):
        assert _streamed([ANSWER[:at], ANSWER[at:]]) == whole, at


def test_no_part_of_a_value_is_passed_on_before_it_is_checked() -> None:
    scanner = _scanner()
    sent = ""
    for i in range(0, len(ANSWER), 3):
        sent += scanner.feed(ANSWER[i : i + 3])
        # Whatever has gone holds no beginning of the three values.
        assert "-----BEGIN" not in sent and "eyJ" not in sent and "sk-" not in sent
    assert sent + scanner.flush() == _scanner().whole(ANSWER)


def test_plain_text_is_passed_on_at_once_but_for_a_word_that_could_go_on() -> None:
    prose = "Sluice routes this answer through a mock upstream, for testing only. It has 3 parts (a, b and c).\n"
    scanner = _scanner()
    for i in range(0, len(prose), 5):
        sent = scanner.feed(prose[i : i + 5])
        assert " " not in scanner.held and len(scanner.held) <= 8, (sent, scanner.held)
    assert scanner.flush() == ""


def test_a_block_past_the_detectors_size_cap_is_released_before_the_stream_ends() -> None:
    scanner = _scanner()
    head = "-----BEGIN RSA PRIVATE KEY-----\n"
    sent = scanner.feed(head)
    assert sent == ""
    body = "QUJD" * 1000 + "\n"
    for _ in range(5):  # 20,000 characters: more than the 16,384 a block may hold
        sent += scanner.feed(body)
    assert sent.startswith(head)
    assert len(scanner.held) < 100


def test_a_stream_through_the_answer_restorer_equals_the_whole_message() -> None:
    text = f"{ANSWER} and given@example.com"
    streamed = AnswerRestorer({}, _scanner)
    deltas = [streamed.delta(Delta(index=0, content=text[i : i + 7])) for i in range(0, len(text), 7)]
    out = "".join(d.content or "" for d in deltas + streamed.rest())
    whole = AnswerRestorer({}, _scanner).message(Message(role="assistant", content=text))
    assert whole is not None and out == whole.content
    assert "given@example.com" in out and "leaked@example.org" not in out
