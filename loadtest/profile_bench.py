"""Where the gateway's CPU goes per request, by function: ``make bench``'s
non-streaming load (wrk, 64 connections, nginx as the upstream, Sluice as
`sluice up` runs it) with py-spy sampling each Sluice process meanwhile.

Issue 29 wants 350 µs of CPU per request where the gateway spends ~700;
this says which functions those µs are in. For each process: its CPU µs per
request over the run, and the functions that hold the most of its samples,
on their own ("self": the frame that was running) and with what they call
("total"), each as µs per request (its share of the samples times the
process's µs per request). py-spy samples without stopping the process
(``--nonblocking``) 100 times a second, and only threads that run (idle
ones are left out), so a share of samples is a share of CPU.

    python -m loadtest.profile_bench [--duration 20] [--top 25] [--out loadtest/results/profile_bench.json]

Needs nginx and wrk (as ``make bench``) and py-spy (the ``bench`` extra, which ``make
test`` and ``make bench`` install).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from loadtest.bench import LUA, run_wrk, write_results
from loadtest.nginx_bench import KEY, chat_body, nginx, sluice

PROCESSES = ("ingress", "pipeline", "sink")
PY_SPY = Path(sys.executable).with_name("py-spy")


def profile(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    # --function: a function's samples together, whichever of its lines ran.
    cmd = [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(seconds), "--nonblocking", "--function"]
    cmd += ["--format", "raw", "-o", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def package(frame: str) -> str:
    """The package a frame's code is in ("asyncio", "uvicorn", "ingress", ...), from "name (path/file.py:line)"."""
    path = frame.rpartition("(")[2].rpartition(":")[0]
    return path.split("/", 1)[0].removesuffix(".py") or "(native)"


def shares(raw: Path) -> tuple[int, Counter[str], Counter[str], Counter[str]]:
    """(samples, self samples by function, total samples by function, self
    samples by package) of a py-spy raw file: one line per stack,
    "frame;frame;...;leaf count"."""
    samples = 0
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        samples += n
        own[frames[-1]] += n
        packages[package(frames[-1])] += n
        for frame in set(frames):
            total[frame] += n
    return samples, own, total, packages


def table(samples: int, counts: Counter[str], us_per_request: float, top: int) -> list[dict[str, Any]]:
    return [
        {"function": name, "share": round(n / samples, 4), "us_per_request": round(n / samples * us_per_request, 1)}
        for name, n in counts.most_common(top)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.profile_bench")
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", default="loadtest/results/profile_bench.json")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sluice-profile-"))
    result: dict[str, Any] = {"duration_s": args.duration, "connections": 64, "processes": {}}
    with nginx(root / "nginx") as ngx, sluice(root / "sluice", ngx) as (layout, sup):
        pids = sup.pids()
        script = root / "chat.lua"
        script.write_text(LUA.format(body=json.dumps(chat_body("bench-model", False)), key=KEY))
        url = f"http://127.0.0.1:{layout.http_port}/v1/chat/completions"
        run_wrk(url, script, 64, 3, {})  # warm-up
        load: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: load.update(run_wrk(url, script, 64, args.duration, pids)))
        runner.start()
        time.sleep(2)  # into the run's steady part
        sampled = max(1, args.duration - 4)
        spies = {name: profile(pids[name], sampled, root / f"{name}.txt") for name in PROCESSES if name in pids}
        for spy in spies.values():
            spy.wait()
        runner.join()
        result["requests_per_s"] = load["rps"]
        result["cpu_us_per_request"] = load["cpu_us_per_request"]
        print(f"{load['rps']:.0f} requests/s at 64 connections; CPU µs per request: {load['cpu_us_per_request']}")
        for name in spies:
            samples, own, total, packages = shares(root / f"{name}.txt")
            us = load["cpu_us_per_request"][name]
            result["processes"][name] = {
                "samples": samples,
                "self_by_package": table(samples, packages, us, args.top),
                "self": table(samples, own, us, args.top),
                "total": table(samples, total, us, args.top),
            }
    lines = []
    for name, p in result["processes"].items():
        lines.append(f"\n{name}: {result['cpu_us_per_request'][name]} µs per request, {p['samples']} samples")
        by_package = ", ".join(f"{row['function']} {row['us_per_request']}" for row in p["self_by_package"][:10])
        lines.append(f"  self µs/request by package: {by_package}")
        lines.append("  self µs/request  function")
        lines += [f"  {row['us_per_request']:>15.1f}  {row['function']}" for row in p["self"]]
    write_results(result, args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
