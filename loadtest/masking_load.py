"""The masking loads of `make bench`: a tenant that masks every built-in
detector, sending what a chat app sends, a conversation of five turns (about
4 KB, PII in every turn) of which the first four were sent before and the
last is new in every request; alone at 64 connections, and mixed with the
ordinary tenant (a third of the connections mask) to show whether a masking
tenant slows the others.

wrk makes each request's last turn from a counter (its own email, phone
and address in every request), so no two requests are the same and only
the earlier turns can be remembered (``services.scan_memo``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from loadtest.bench import cpu_seconds, parse_wrk, rss_mb
from loadtest.privacy_bench import PROSE

CONVERSATIONS = 256
TURN_CHARS = 820  # five of them: about 4 KB


def pii(c: int, t: int) -> str:
    """One turn's values: its own email, phone and address; a card, IBAN and key."""
    return (
        f"Customer user{c}.{t}@example.com (phone +44 20 7946 {(c * 7 + t) % 10000:04d}) paid with "
        "4111 1111 1111 1111 from IBAN DE89 3704 0044 0532 0130 00; "
        f"login from 10.{c % 250}.{t}.7, key sk-proj-abcdefghijklmnopqrstuvwx{c:04d}{t:02d}. "
    )


def turn(c: int, t: int) -> str:
    head = f"Turn {t} of conversation {c}. " + pii(c, t)
    return (head + PROSE * (TURN_CHARS // len(PROSE) + 1))[:TURN_CHARS]


def prefix(c: int, model: str) -> str:
    """The request's JSON up to the new turn's text: four earlier turns."""
    earlier = [{"role": "user" if t % 2 == 0 else "assistant", "content": turn(c, t)} for t in range(4)]
    doc = json.dumps({"model": model, "messages": [*earlier, {"role": "user", "content": "@"}]})
    return doc[: doc.rindex('"@"}]}') + 1]


# The last turn is written in Lua from request number k: the same shape as
# ``turn`` (its values, then prose), so it costs a scan as the others did.
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
local prefixes = {{ {prefixes} }}
local prose = [==[{prose}]==]
local n = 0
function setup(thread)
  thread_count = (thread_count or 0) + 1
  thread:set("id", thread_count)
end
request = function()
  n = n + 1
  local k = n * 64 + (id or 0)
  local head = string.format(
    "Turn 4, request %d. Customer user%d@example.com (phone +44 20 7946 %04d) paid with 4111 1111 1111 1111 " ..
    "from IBAN DE89 3704 0044 0532 0130 00; login from 10.%d.%d.9, key sk-proj-abcdefghijklmnopqrst%010d. ",
    k, k, k % 10000, k % 250, math.floor(k / 250) % 250, k)
  local text = string.sub(head .. prose, 1, {turn_chars})
  return wrk.format(nil, nil, nil, prefixes[(k % #prefixes) + 1] .. text .. '"}}]}}')
end
"""


def script(path: Path, key: str, model: str) -> Path:
    prefixes = ", ".join(f"[==[{prefix(c, model)}]==]" for c in range(CONVERSATIONS))
    prose = PROSE * (TURN_CHARS // len(PROSE) + 1)
    path.write_text(LUA.format(key=key, prefixes=prefixes, prose=prose, turn_chars=TURN_CHARS))
    return path


def _wrk(url: str, script: Path, connections: int, duration: int) -> subprocess.Popen[str]:
    cmd = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script)]
    return subprocess.Popen([*cmd, url], stdout=subprocess.PIPE, text=True)


def together(url: str, loads: dict[str, tuple[Path, int]], duration: int, pids: dict[str, int]) -> dict:
    """Run each named load (a script, its connections) at once, for the
    same ``duration``: each load's requests/s and latency, and the CPU µs
    per request (all loads' requests) of each process."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    running = {name: _wrk(url, path, connections, duration) for name, (path, connections) in loads.items()}
    out: dict = {name: parse_wrk(proc.communicate()[0]) for name, proc in running.items()}
    total = sum(r["requests"] for r in out.values())
    for r in out.values():
        r["share"] = round(r["requests"] / max(1, total), 3)
    out["cpu_us_per_request"] = {
        name: round((cpu_seconds(pid) - before[name]) / max(1, total) * 1e6, 1) for name, pid in pids.items()
    }
    out["rss_mb"] = {name: round(rss_mb(pid), 1) for name, pid in pids.items()}
    return out
