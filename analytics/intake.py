"""From pulled JetStream messages to rows, without letting one bad message
stop the rest: what cannot be decoded, validated or inserted becomes a dead
letter (with its reason) and the others land."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import msgspec
from clickhouse_connect.driver.exceptions import OperationalError

from analytics.rows import Rows, problem, to_rows
from analytics.store import NotWriter
from schemas import bus
from schemas.events import AlertEvent, DeadLetter, Event
from schemas.ids import new_id

log = logging.getLogger("sluice.sink")
_json = msgspec.json.Encoder()


class Pulled(msgspec.Struct):
    subject: str
    data: bytes


def _dead(subject: str, reason: str, payload: bytes, request_id: str = "") -> DeadLetter:
    return DeadLetter(
        id=new_id(), at_ns=time.time_ns(), subject=subject, reason=reason, payload=payload, request_id=request_id
    )


def _payload(e: Event) -> bytes:
    try:
        return _json.encode(e)
    except UnicodeEncodeError:  # the very reason it was refused
        return repr(e).encode("utf-8", "backslashreplace")


def sort(messages: Sequence[Pulled]) -> tuple[list[Event], list[DeadLetter]]:
    """Decode and check every event; the ones that cannot be stored come back as dead letters."""
    events: list[Event] = []
    dead: list[DeadLetter] = []
    for m in messages:
        try:
            batch = bus.decode_batch(m.data)
        except msgspec.DecodeError as exc:
            dead.append(_dead(m.subject, f"undecodable event batch: {exc}", m.data))
            continue
        for e in batch.events:
            reason = problem(e)
            if reason is None:
                events.append(e)
            else:
                dead.append(_dead(m.subject, reason, _payload(e), e.request_id))
    return events, dead


def alerts_for(dead: Sequence[DeadLetter]) -> list[AlertEvent]:
    return [
        AlertEvent(
            event_id=new_id(),
            request_id=d.request_id,
            at_ns=d.at_ns,
            alert="dead_letter",
            detail=f"{d.subject}: {d.reason}"[:1000],
        )
        for d in dead
    ]


def store_all(events: list[Event], dead: list[DeadLetter], insert: Callable[[Rows], None]) -> list[DeadLetter]:
    """Insert everything; if the batch is refused for its data, insert event by
    event and dead-letter the ones refused. A lost connection is raised: then
    the whole pull is redelivered later, as an outage should be, and so is
    ``NotWriter`` (another sink replica writes now)."""
    try:
        insert(to_rows([*events, *alerts_for(dead)], dead))
        return dead
    except (OperationalError, NotWriter):
        raise
    except Exception as exc:  # a value our checks did not foresee: find it
        log.warning("insert of %d events refused (%r); inserting them one by one", len(events), exc)
    refused: list[DeadLetter] = []
    for e in events:
        try:
            insert(to_rows([e]))
        except (OperationalError, NotWriter):
            raise
        except Exception as exc:
            refused.append(_dead("(insert)", f"insert refused: {exc!r}"[:1000], _payload(e), e.request_id))
    dead = [*dead, *refused]
    insert(to_rows(alerts_for(dead), dead))
    return dead
