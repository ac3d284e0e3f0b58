"""The root of every Struct that crosses the bus.

One base class carries the tag field, so a single decoder (``schemas.bus``)
decodes any message on any subject into the right type; subclasses only name
their tag. Fields added later must have defaults (msgspec schema evolution).
"""

from __future__ import annotations

import msgspec


class BusMessage(msgspec.Struct, tag_field="kind", omit_defaults=True, kw_only=True):
    pass
