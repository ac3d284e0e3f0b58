"""A multipart/form-data request body for an upstream, its files streamed
from the object store as the body is sent: an upload of any size passes
through a slice at a time, never whole.

Its length is known before a byte is sent (the parts' heads, the files'
sizes from their refs), so the upstream gets a ``content-length`` rather
than a chunked body, which some servers refuse for uploads. A file that
yields another number of bytes than its ref says is an error, not a body
the upstream would misread.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from schemas.errors import InternalError

CRLF = b"\r\n"


@dataclass(frozen=True, slots=True)
class FilePart:
    """A file of the form: its bytes come from ``chunks`` as they are read."""

    field: str
    filename: str
    content_type: str
    size: int
    chunks: AsyncIterator[bytes]


def _quoted(value: str) -> str:
    """A name or file name inside a header's quotes, as browsers write it
    (the HTML standard's escapes): a quote or a line break cannot end the
    value early or add a header of its own."""
    return value.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")


class MultipartBody:
    """``fields`` (name, value) then ``files``, each file read once: a new
    body for each try (the walk may call another deployment)."""

    def __init__(self, fields: Sequence[tuple[str, str]], files: Sequence[FilePart]) -> None:
        self.boundary = "sluice-" + secrets.token_hex(16)
        self._fields = [self._field_head(name) + value.encode() + CRLF for name, value in fields]
        self._files = [(self._file_head(f), f) for f in files]
        self._end = b"--" + self.boundary.encode() + b"--" + CRLF
        self.length = (
            sum(len(part) for part in self._fields)
            + sum(len(head) + f.size + len(CRLF) for head, f in self._files)
            + len(self._end)
        )

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def headers(self) -> dict[str, str]:
        return {"content-type": self.content_type, "content-length": str(self.length)}

    def _field_head(self, name: str) -> bytes:
        return f'--{self.boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"\r\n\r\n'.encode()

    def _file_head(self, f: FilePart) -> bytes:
        content_type = _quoted(f.content_type or "application/octet-stream")
        return (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="{_quoted(f.field)}"; filename="{_quoted(f.filename)}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()

    async def stream(self) -> AsyncIterator[bytes]:
        """The body, a slice at a time."""
        if self._fields:
            yield b"".join(self._fields)
        for head, f in self._files:
            yield head
            sent = 0
            async for chunk in f.chunks:
                sent += len(chunk)
                if sent > f.size:
                    break
                yield chunk
            if sent != f.size:
                raise InternalError(f"Stored file {f.filename!r} read as {sent} bytes, not the {f.size} kept.")
            yield CRLF
        yield self._end
