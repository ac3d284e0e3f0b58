"""Where a REST call goes: the instance's base URL joined with the call's
path, refused when the path could reach outside the base.

The path is the caller's (``/users/42?x=1``, as it arrived, percent-encoded)
and hostile until checked: a ``..`` segment, in any spelling a server might
decode (``%2e%2e``, ``..%2f``, a backslash), would move the upstream's
request out of the service's base path (``/api/../admin``); anything that is
not a plain URL character (a space, a control character, non-ASCII) is no
path the gateway sends on. The URL is then passed as it is, already encoded,
so the upstream gets the caller's bytes, not a re-quoted copy.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from yarl import URL

from schemas.errors import InvalidRequest

# RFC 3986's unreserved, sub-delims, ":", "@", "/", "?" and "%" (escapes
# checked below): every character a path and query may hold as sent.
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
MAX_PATH = 8192


def upstream_url(base_url: str, path: str) -> URL:
    """``base_url`` (an instance's URL, ``http://host:port/api``) joined with
    ``path``; ``InvalidRequest`` for a path that is not one."""
    if not path.startswith("/") or len(path) > MAX_PATH:
        raise InvalidRequest("A REST call's path must start with '/' and be at most 8 KB.", code="invalid_path")
    if _URL_CHARS.fullmatch(path) is None or _BAD_ESCAPE.search(path):
        raise InvalidRequest("A REST call's path holds characters no URL path may hold.", code="invalid_path")
    route = path.split("?", 1)[0]
    for segment in route.split("/"):
        decoded = unquote(segment).replace("\\", "/")
        # ";" too: some servers read "..;" as ".." (path parameters).
        if any(part.split(";", 1)[0] in (".", "..") for part in decoded.split("/")):
            raise InvalidRequest("A REST call's path may not hold '.' or '..' segments.", code="invalid_path")
    return URL(base_url.rstrip("/") + path, encoded=True)
