"""The window logic of a paced REST answer (``services.flow_window``): how
far the provider may send past the requester's credit, when the requester
grants, and that the two together never stall, even when credits are lost
and granted again."""

from __future__ import annotations

import asyncio
import random

from services.flow_window import MIN_WINDOW, WINDOW, Grants, SendWindow

SLICE = 64 * 1024


async def test_the_window_is_open_until_a_window_past_the_credit_was_sent() -> None:
    w = SendWindow(4 * SLICE)
    assert w.open and await w.room(0.0)
    w.spent(3 * SLICE)
    assert w.open
    w.spent(SLICE)
    assert not w.open
    assert not await w.room(0.05), "shut, and no credit came"
    w.grant(SLICE)
    assert w.open and await w.room(0.0)


async def test_a_wait_ends_when_a_credit_opens_the_window() -> None:
    w = SendWindow(2 * SLICE)
    w.spent(2 * SLICE)
    waiting = asyncio.create_task(w.room(5.0))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    w.grant(SLICE // 2)  # opens it: 2 slices sent, half a slice + the window allowed
    assert await asyncio.wait_for(waiting, 1.0)


async def test_a_credit_that_does_not_open_the_window_keeps_the_wait_going() -> None:
    w = SendWindow(2 * SLICE)
    w.spent(3 * SLICE)
    waiting = asyncio.create_task(w.room(5.0))
    w.grant(SLICE // 2)
    await asyncio.sleep(0.01)
    assert not waiting.done(), "2.5 slices allowed, 3 sent"
    w.grant(SLICE + 1)
    assert await asyncio.wait_for(waiting, 1.0)


def test_credits_are_cumulative_and_bounded_by_what_was_sent() -> None:
    w = SendWindow(MIN_WINDOW)
    w.spent(5 * SLICE)
    w.grant(3 * SLICE)
    w.grant(2 * SLICE)  # an older one, late or repeated: no step back
    assert w.granted == 3 * SLICE
    w.grant(1 << 60)  # a requester cannot claim bytes it was never sent
    assert w.granted == 5 * SLICE
    assert w.sent + MIN_WINDOW == w.granted + w.size


def test_a_window_smaller_than_a_slice_is_a_slice() -> None:
    assert SendWindow(1).size == MIN_WINDOW and SendWindow(WINDOW).size == WINDOW


def test_the_requester_grants_each_quarter_window_it_wrote() -> None:
    g = Grants(4 * SLICE)
    assert g.step == SLICE
    assert g.wrote(SLICE // 2) is None
    assert g.wrote(SLICE // 2) == SLICE
    assert g.wrote(SLICE - 1) is None
    assert g.wrote(3 * SLICE) == 5 * SLICE - 1 and g.granted == 5 * SLICE - 1


async def _transfer(total: int, window: int, *, lose: float, seed: int) -> tuple[int, int]:
    """A provider sending ``total`` bytes in slices to a requester that
    writes them on in writes of up to 4 slices, some credits lost on the
    way and the latest granted again whenever the requester waits in
    silence. Returns (bytes the requester got, the most ever in flight)."""
    rng = random.Random(seed)
    send, grants = SendWindow(window), Grants(window)
    inbox: asyncio.Queue[int] = asyncio.Queue()
    peak = 0

    def credit(through: int) -> None:
        if rng.random() >= lose:
            send.grant(through)

    async def provider() -> None:
        nonlocal peak
        left = total
        while left:
            assert await send.room(5.0), "the provider's window stayed shut"
            n = min(SLICE, left)
            left -= n
            inbox.put_nowait(n)
            send.spent(n)
            peak = max(peak, send.sent - grants.written)

    async def requester() -> int:
        got = 0
        while got < total:
            try:
                n = await asyncio.wait_for(inbox.get(), 0.01)
            except TimeoutError:
                credit(grants.granted)  # silence: the latest credit again
                continue
            while not inbox.empty() and n < 4 * SLICE:
                n += inbox.get_nowait()
            got += n
            through = grants.wrote(n)
            if through is not None:
                credit(through)
        return got

    sender = asyncio.create_task(provider())
    got = await asyncio.wait_for(requester(), 10.0)
    await asyncio.wait_for(sender, 1.0)
    return got, peak


async def test_a_download_never_stalls_and_never_runs_more_than_a_window_ahead() -> None:
    for seed, lose in ((1, 0.0), (2, 0.3), (3, 0.7)):
        got, peak = await _transfer(8 * 1024 * 1024, 4 * SLICE, lose=lose, seed=seed)
        assert got == 8 * 1024 * 1024
        assert peak < 4 * SLICE + SLICE, f"{peak} in flight (lost {lose:.0%} of credits)"
