"""``python -m ingress``: serve the ingress with uvicorn (httptools, uvloop)."""

from __future__ import annotations

import argparse

import uvicorn

from ingress.app import IngressApp
from services import config as config_mod
from services.runtime import process


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ingress")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    process.setup_logging("ingress")
    settings = config_mod.settings_from_env()
    uvicorn.run(
        IngressApp(settings),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_max_size=settings.max_body_bytes,
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
