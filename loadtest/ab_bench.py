"""One lever's effect, before and after in one run: `make bench`'s measures
(``nginx_bench.measure``, the default layout) on Sluice as it was at a
commit and as it is in the work tree, in turn, against the same nginx.

The commit is checked out into a temporary git worktree, and the gateway's
processes start there (``python -m`` imports from the directory it runs
in first, ahead of the installed work tree): only the gateway changes
between the two, never the load or the tools.

    python -m loadtest.ab_bench --base HEAD~1 [--duration 10] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from loadtest import nginx_bench
from loadtest.bench import write_results

ROWS = (
    ("non-streaming c=64, requests/s", lambda lay: lay["runs"]["sluice complete c=64"]["rps"]),
    ("added p50 c=1, ms", lambda lay: _added(lay, "complete", "p50_ms")),
    ("added p99 c=1, ms", lambda lay: _added(lay, "complete", "p99_ms")),
    ("streams c=64, streams/s", lambda lay: lay["runs"]["sluice stream c=64"]["rps"]),
    ("masking c=64, requests/s", lambda lay: lay["runs"]["sluice masking c=64"]["rps"]),
    ("mixed: plain requests/s", lambda lay: lay["mixed c=64"]["plain"]["rps"]),
    ("mixed: plain p99, ms", lambda lay: lay["mixed c=64"]["plain"]["p99_ms"]),
    ("mixed: masking requests/s", lambda lay: lay["mixed c=64"]["masking"]["rps"]),
    ("CPU µs/request c=64", lambda lay: sum(lay["runs"]["sluice complete c=64"]["cpu_us_per_request"].values())),
    ("CPU µs/request masking", lambda lay: sum(lay["runs"]["sluice masking c=64"]["cpu_us_per_request"].values())),
    ("RSS MB, all processes, at rest", lambda lay: lay.get("rss_mb_at_rest_total", 0)),
    ("RSS MB, all processes, after the loads", lambda lay: lay["rss_mb_total"]),
)


def _added(lay: dict, kind: str, measure: str) -> float:
    runs = lay["runs"]
    return round(runs[f"sluice {kind} c=1"][measure] - runs[f"direct {kind} c=1"][measure], 3)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.ab_bench")
    parser.add_argument("--base", required=True, help="the commit to measure against the work tree")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1, help="before and after, this many times each, alternating")
    parser.add_argument("--out", default="loadtest/results/ab_bench.json")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sluice-ab-"))
    base = root / "base"
    subprocess.run(["git", "worktree", "add", "--detach", str(base), args.base], check=True, capture_output=True)
    here = Path.cwd()
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    try:
        with nginx_bench.nginx(root / "nginx") as ngx:
            for n in range(args.rounds):
                for label, tree in (("before", base), ("after", here)):
                    os.chdir(tree)  # the supervisor's children start here
                    os.environ["PYTHONPATH"] = str(tree)
                    print(f"--- {label} (round {n + 1})", flush=True)
                    runs[label].append(nginx_bench.measure("default", {}, ngx, root / f"{label}{n}", args.duration))
    finally:
        os.chdir(here)
        os.environ.pop("PYTHONPATH", None)
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], check=False)
        shutil.rmtree(root, ignore_errors=True)
    table = {name: {label: [round(get(lay), 3) for lay in runs[label]] for label in runs} for name, get in ROWS}
    lines = [f"\nbefore = {args.base}, after = the work tree ({args.rounds} round(s), {args.duration} s each)"]
    lines += [f"  {name:34} before {v['before']}  after {v['after']}" for name, v in table.items()]
    write_results({"base": args.base, "table": table, "runs": runs}, args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
