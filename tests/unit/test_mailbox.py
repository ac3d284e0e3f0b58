"""A request's replies wait in a Mailbox: in order, woken by the next one,
never timing out before the wait's own deadline, and one timer for a
stream's many waits."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from ingress.mailbox import Mailbox
from services.wait_timer import WaitTimer


@pytest.fixture
def armed(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """When each timer was armed for (``services.wait_timer``, under the Mailbox)."""
    armed: list[float] = []
    arm = WaitTimer._arm

    def counting(timer: WaitTimer, when: float) -> None:
        armed.append(when)
        arm(timer, when)

    monkeypatch.setattr(WaitTimer, "_arm", counting)
    return armed


async def test_items_come_in_order_and_wake_a_waiting_reader() -> None:
    box: Mailbox[str] = Mailbox()
    box.put_nowait("a")
    assert await box.get(1.0) == "a"
    reader = asyncio.create_task(box.get(5.0))
    await asyncio.sleep(0.01)
    assert not reader.done()
    box.put_nowait("b")
    box.put_nowait("c")
    assert await reader == "b"
    assert box.qsize() == 1 and not box.empty() and box.get_nowait() == "c" and box.empty()


async def test_a_wait_ends_at_its_own_deadline_not_an_earlier_waits() -> None:
    box: Mailbox[str] = Mailbox()
    loop = asyncio.get_running_loop()
    box.put_nowait("x")
    asyncio.get_running_loop().call_later(0.05, box.put_nowait, "first")
    assert await box.get(0.1) == "x"
    assert await box.get(0.1) == "first"  # armed a timer for ~0.1 s from now
    start = loop.time()
    with pytest.raises(TimeoutError):
        await box.get(0.2)  # the earlier timer fires first, and must not end this wait
    assert loop.time() - start >= 0.2 - 0.002


async def test_a_stream_of_replies_arms_one_timer_not_one_each(armed: list[float]) -> None:
    box: Mailbox[str] = Mailbox()

    async def writer() -> None:
        for i in range(50):
            await asyncio.sleep(0.002)
            box.put_nowait(str(i))

    task = asyncio.create_task(writer())
    got = [await box.get(60.0) for _ in range(50)]
    await task
    box.close()
    assert got == [str(i) for i in range(50)]
    assert len(armed) == 1


async def test_a_cancelled_reader_leaves_the_mailbox_usable() -> None:
    box: Mailbox[str] = Mailbox()
    reader = asyncio.create_task(box.get(5.0))
    await asyncio.sleep(0.01)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    box.put_nowait("later")
    assert await box.get(1.0) == "later"


def test_under_uvloop_no_wait_ends_before_its_deadline_by_the_true_clock() -> None:
    # uvloop keeps its clock and timers in whole milliseconds; the session
    # compares a wait's end with its own clock (redaction's deadline), so a
    # wait may end late, never early.
    async def waits() -> list[float]:
        box: Mailbox[str] = Mailbox()
        short = []
        for i in range(20):
            timeout = 0.0105 + i * 0.0003
            start = time.monotonic()
            with pytest.raises(TimeoutError):
                await box.get(timeout)
            if time.monotonic() - start < timeout:
                short.append(time.monotonic() - start)
        return short

    assert uvloop.run(waits()) == []
