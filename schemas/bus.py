"""One encoder and one decoder for everything on the bus (msgpack)."""

from __future__ import annotations

import msgspec

from schemas.envelope import Envelope
from schemas.events import DeadLetter, EventBatch
from schemas.lifecycle import Beat, ProcessDied
from schemas.replies import Accepted, Admitted, Cancel, Chunk, Failure, Fence, Fenced, Final, Redacted, ReplayAsk

Reply = Chunk | Final | Failure | Accepted | Admitted | Redacted | Fenced
AnyMessage = (
    Envelope
    | Chunk
    | Final
    | Failure
    | Accepted
    | Admitted
    | Redacted
    | Cancel
    | ReplayAsk
    | Fence
    | Fenced
    | EventBatch
    | DeadLetter
    | ProcessDied
    | Beat
)

encoder = msgspec.msgpack.Encoder()
encode = encoder.encode

_any = msgspec.msgpack.Decoder(AnyMessage)
_envelope = msgspec.msgpack.Decoder(Envelope)
_reply = msgspec.msgpack.Decoder(Reply)
_batch = msgspec.msgpack.Decoder(EventBatch)
_died = msgspec.msgpack.Decoder(ProcessDied)

decode = _any.decode
decode_envelope = _envelope.decode
decode_reply = _reply.decode
decode_batch = _batch.decode
decode_died = _died.decode
