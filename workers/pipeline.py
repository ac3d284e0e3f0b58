"""Several request-path stages in one process: ``python -m workers.pipeline
policy route provider``.

Each stage still serves its own subjects in its own queue group; a request
one of them forwards to another hosted here is handed over in memory (see
``workers.runner``). The supervisor runs the default layout's ``pipeline``
processes this way.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from workers import runner


def _policy() -> runner.Stage:
    from workers.policy import PolicyStage

    return PolicyStage()


def _redact() -> runner.Stage:
    from workers.redaction import RedactionStage

    return RedactionStage()


def _route() -> runner.Stage:
    from workers.routing import RoutingStage

    return RoutingStage()


def _cache() -> runner.Stage:
    from workers.cache import CacheStage

    return CacheStage()


def _provider() -> runner.Stage:
    from workers.provider import ProviderStage

    return ProviderStage()


STAGES: dict[str, Callable[[], runner.Stage]] = {
    "policy": _policy,
    "redact": _redact,
    "route": _route,
    "cache": _cache,
    "provider": _provider,
}
ROLE = "pipeline"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("stages", nargs="+", choices=list(STAGES), help="the stages to host, in slip order")
    args = parser.parse_args(argv)
    if len(set(args.stages)) != len(args.stages):
        parser.error("a stage is named twice")
    runner.main(*(STAGES[name]() for name in args.stages), role=ROLE)


if __name__ == "__main__":
    main()
