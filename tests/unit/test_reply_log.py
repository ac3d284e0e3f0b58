"""The provider's memory of the replies it sent, for a replay."""

from __future__ import annotations

from services.reply_log import ReplyLog

S = 1_000_000_000


def test_a_running_request_and_a_recent_one_can_be_replayed() -> None:
    log = ReplyLog(keep_ns=10 * S)
    log.sent("a", "_INBOX.x.1", b"one")
    log.sent("a", "_INBOX.x.1", b"two")
    assert log.replies("a", now_ns=0) == ("_INBOX.x.1", [b"one", b"two"], 0)
    log.ended("a", now_ns=1 * S)
    assert log.replies("a", now_ns=5 * S) == ("_INBOX.x.1", [b"one", b"two"], 0)
    assert log.replies("a", now_ns=12 * S) is None  # kept 10 s after its end
    assert log.replies("never", now_ns=0) is None


def test_memory_stays_bounded() -> None:
    log = ReplyLog(keep_ns=10 * S, max_requests=3, max_bytes=10)
    for i in range(5):
        log.sent(str(i), "_INBOX.x", b"0123456789")
        log.ended(str(i), now_ns=i)
    assert len(log) == 3 and log.replies("0", now_ns=5) is None and log.replies("4", now_ns=5) is not None
    # One long answer keeps only its last replies, and says how many it dropped.
    for part in (b"aaaa", b"bbbb", b"cccc", b"dddd"):
        log.sent("long", "_INBOX.y", part)
    assert log.replies("long", now_ns=5) == ("_INBOX.y", [b"cccc", b"dddd"], 2)
