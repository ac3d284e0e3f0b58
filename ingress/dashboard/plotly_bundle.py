"""Plotly's bundle for the dashboard's and the portal's charts, kept in
``static/`` and served by the gateway itself (no CDN: the pages work
offline). Apart from the dashboard's app so the ingress can check it at
start without loading Litestar, which it loads only on a first page view.

plotly.js-basic-dist-min 4.1.1 from npm (MIT, its LICENSE beside it): the
package's plotly-basic.min.js, sha256
99784e3abfb07b142a15e521a439e6d9addceadb3f79553fd24c72774f0649ba, kept as
`gzip -9 -n` of it (byte-reproducible). The basic bundle has scatter, bar and
pie, all that dashboard.js and the portal's usage.js draw, at a quarter of the
full bundle's size; a trace type it lacks would quietly be drawn as a
scatter, so the browser tests compare each chart's traces with what was asked.
"""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

PLOTLY_GZ = Path(__file__).parent / "static" / "plotly-basic.min.js.gz"


def check() -> None:
    """Raise at start when the bundle is missing (a broken checkout or
    install): said so then, never a blank chart on a first page view."""
    if not PLOTLY_GZ.is_file():
        raise RuntimeError(f"{PLOTLY_GZ} is missing: the dashboard's and the portal's charts need it")


@cache
def plotly_js() -> tuple[bytes, bytes]:
    """The bundle, plain and gzipped (the stored file is already gzipped,
    and smaller at -9 than a gzip made here)."""
    check()
    zipped = PLOTLY_GZ.read_bytes()
    return gzip.decompress(zipped), zipped
