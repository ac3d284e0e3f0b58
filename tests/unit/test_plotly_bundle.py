"""The vendored plotly.js bundle: the file is the one its comment names (a
changed copy must change the recorded hash too), and the dashboard and the
portal serve it under /static/plotly.min.js, gzipped to a browser that takes
gzip and plain otherwise, and never the stored files themselves."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest
from litestar import Litestar, Router
from litestar.testing import TestClient

from ingress.dashboard import app as dashboard_app
from ingress.dashboard import plotly_bundle
from ingress.portal import app as portal_app

# plotly.js-basic-dist-min 4.1.1's plotly-basic.min.js, as the comment above PLOTLY_GZ says.
SHA256 = "99784e3abfb07b142a15e521a439e6d9addceadb3f79553fd24c72774f0649ba"


def test_the_bundle_is_the_recorded_one() -> None:
    raw, zipped = plotly_bundle.plotly_js()
    assert hashlib.sha256(raw).hexdigest() == SHA256
    assert raw.startswith(b"/**\n* plotly.js (basic - minified) v4.1.1\n")
    assert zipped == plotly_bundle.PLOTLY_GZ.read_bytes() and gzip.decompress(zipped) == raw
    license_text = (dashboard_app.STATIC / "plotly-basic.LICENSE").read_text()
    assert license_text.startswith("MIT License") and "Plotly" in license_text


@pytest.mark.parametrize(("prefix", "handler"), [("/dashboard", dashboard_app.static), ("/portal", portal_app.static)])
def test_served_gzipped_or_plain(prefix: str, handler: object) -> None:
    raw, _ = plotly_bundle.plotly_js()
    app = Litestar(route_handlers=[Router(path=prefix, route_handlers=[handler])])  # type: ignore[list-item]
    with TestClient(app) as client:
        url = f"{prefix}/static/plotly.min.js"
        zipped = client.get(url, headers={"accept-encoding": "gzip"})
        assert zipped.status_code == 200 and zipped.headers["content-encoding"] == "gzip"
        assert zipped.headers["content-type"].startswith("text/javascript") and zipped.content == raw
        plain = client.get(url, headers={"accept-encoding": "gzip;q=0"})
        assert plain.status_code == 200 and "content-encoding" not in plain.headers and plain.content == raw
        for stored in ("plotly-basic.min.js.gz", "plotly-basic.LICENSE"):
            assert client.get(f"{prefix}/static/{stored}").status_code == 404


def test_a_missing_bundle_is_said_by_the_start_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plotly_bundle, "PLOTLY_GZ", tmp_path / "gone.js.gz")
    with pytest.raises(RuntimeError, match=r"gone\.js\.gz is missing"):
        plotly_bundle.check()
