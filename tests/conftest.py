from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from analytics.store import Store
from services.cli import nats_server
from tests.stack import Stack


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test``), each worker draws its free ports
    from a slice of its own: two workers picking at once never get the same
    port, and a port one probed as free is not bound by the other before its
    server starts. Children (``sluice up``, stages) inherit the slice."""
    # A shell without job control starts background commands with SIGINT
    # ignored, and children inherit that: tests that stop `sluice up` or
    # `sluice logs --follow` with Ctrl-C's signal would then wait forever.
    # A handler of our own is reset to the default in every child we start.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if worker.startswith("gw") and worker[2:].isdigit() and count.isdigit():
        os.environ[nats_server.PORT_SLICE_ENV] = f"{worker[2:]}/{count}"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("sluice")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server with JetStream and nothing else around it, for one module."""
    port = nats_server.free_port()
    server = nats_server.start(tmp_path_factory.mktemp("nats") / "nats", port)
    yield f"nats://127.0.0.1:{port}"
    server.terminate()
    server.wait(10)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """An embedded ClickHouse, migrated, for one module (chdb holds one data
    directory per process: a module has one store)."""
    s = Store(f"chdb://{Path(tmp_path_factory.mktemp('clickhouse')) / 'data'}")
    s.migrate()
    yield s
    s.close()
