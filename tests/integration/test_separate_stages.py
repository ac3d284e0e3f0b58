"""Every stage in its own process (``sluice up --separate-stages``): each
hop crosses the bus, and each stage the default layout hosts together in
its pipeline is killed alone here (the kills of ``test_faults``)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli.layout import PIPELINE
from tests.integration.test_faults import DEADLINE_S, assert_killed_and_recovered
from tests.integration.test_pipeline import stage_messages
from tests.stack import REDACT_KEY, Stack

# Each stage killed under load, recovery held to time bounds, which a busy
# neighbour would break: alone, after the parallel part of `make test`.
pytestmark = pytest.mark.serial


@pytest.fixture(scope="module")
def separate_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(Path(tmp_path_factory.mktemp("faults-separate")), timeout_s=DEADLINE_S, separate_stages=True).start()
    yield s
    s.stop()


def test_every_hop_crosses_the_bus(separate_stack: Stack) -> None:
    response, seen = asyncio.run(stage_messages(separate_stack, REDACT_KEY))
    assert response.status_code == 200
    assert seen == Counter({"redact": 1, "route": 1, "call": 1})


@pytest.mark.parametrize("name", PIPELINE)
def test_a_killed_stage_is_replaced_and_nothing_billed_is_lost(separate_stack: Stack, name: str) -> None:
    assert separate_stack.layout.process_of(name) == name
    assert_killed_and_recovered(separate_stack, name)
