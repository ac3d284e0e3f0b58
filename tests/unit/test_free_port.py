"""``free_port`` under parallel test workers: each draws from a slice of its
own (``SLUICE_PORT_SLICE``, set per pytest-xdist worker by tests/conftest.py),
so two workers never hand out the same port."""

from __future__ import annotations

import os

import pytest

from services.cli import nats_server


def test_the_slices_of_two_workers_are_disjoint_and_cover_the_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(nats_server.PORT_SLICE_ENV, raising=False)
    whole = nats_server._port_range()
    slices = []
    for i in range(2):
        monkeypatch.setenv(nats_server.PORT_SLICE_ENV, f"{i}/2")
        slices.append(nats_server._port_range())
    (a_start, a_stop), (b_start, b_stop) = slices
    assert whole[0] == a_start < a_stop == b_start < b_stop <= whole[1]
    assert whole[1] - b_stop < 2  # nothing but the remainder of the division is left out


def test_a_port_handed_out_is_in_the_workers_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(nats_server.PORT_SLICE_ENV, "1/2")
    start, stop = nats_server._port_range()
    assert all(start <= nats_server.free_port() < stop for _ in range(20))


@pytest.mark.parametrize("value", ["", "2/2", "x/2", "1/0", "-1/2", "1/", "/2", "0/999999"])
def test_a_setting_that_names_no_slice_leaves_the_whole_range(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.delenv(nats_server.PORT_SLICE_ENV, raising=False)
    whole = nats_server._port_range()
    monkeypatch.setenv(nats_server.PORT_SLICE_ENV, value)
    assert nats_server._port_range() == whole


def test_the_suite_under_xdist_gives_each_worker_its_slice() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        assert os.environ.get(nats_server.PORT_SLICE_ENV) in (None, "")
    else:
        count = os.environ["PYTEST_XDIST_WORKER_COUNT"]
        assert os.environ[nats_server.PORT_SLICE_ENV] == f"{worker.removeprefix('gw')}/{count}"
