from __future__ import annotations

from services.readiness import NEEDED, Readiness


def test_ready_only_while_every_needed_stage_beat_recently_and_nats_is_up() -> None:
    r = Readiness(stale_s=3.0)
    assert r.report(0.0, nats=True)[0] is False  # nothing heard yet
    r.saw(["policy", "route", "provider"], 10.0)  # a pipeline
    r.saw(["redact"], 10.0)
    r.saw(["cache"], 10.0)
    ready, body = r.report(11.0, nats=True)
    assert not ready and body["stages"]["sink"] is False and body["stages"]["policy"] is True
    r.saw(["sink"], 11.0)
    assert r.report(12.0, nats=True) == (True, {"status": "ready", "nats": True, "stages": dict.fromkeys(NEEDED, True)})
    assert r.report(12.0, nats=False)[1]["status"] == "not_ready"
    # Redaction falls silent: stale after 3 s.
    for stage in ("policy", "route", "provider", "cache", "sink"):
        r.saw([stage], 14.5)
    ready, body = r.report(14.5, nats=True)
    assert not ready and [s for s, up in body["stages"].items() if not up] == ["redact"]


def test_names_it_does_not_need_are_ignored() -> None:
    r = Readiness()
    r.saw(["", "ingress", "anything,else"], 1.0)
    assert not any(r.report(1.0, nats=True)[1]["stages"].values())
