"""How a layout names and counts its processes, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli.layout import Layout, parse_replicas
from services.cli.supervisor import StartupError, Supervisor


def test_replicas_are_read_per_stage() -> None:
    assert parse_replicas("route=3,provider=2, ingress=2") == {"route": 3, "provider": 2, "ingress": 2}
    assert parse_replicas("") == {}


@pytest.mark.parametrize(
    ("text", "says"),
    [("router=2", "unknown stage 'router'"), ("route=0", "1 to 64"), ("route=x", "1 to 64"), ("route", "1 to 64")],
)
def test_bad_replicas_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_replicas(text)


def test_a_pipeline_runs_as_often_as_its_most_replicated_stage(tmp_path: Path) -> None:
    sup = Supervisor(Layout(home=tmp_path, config=tmp_path / "c.toml", replicas={"route": 3, "provider": 2}))
    runs = {name: n for name, _, n in sup._stage_processes(sup.layout.replicas)}
    assert runs == {"pipeline": 3, "redact": 1, "cache": 1, "sink": 1}
    apart = Layout(home=tmp_path, config=tmp_path / "c.toml", replicas={"route": 3}, separate_stages=True)
    runs = {name: n for name, _, n in Supervisor(apart)._stage_processes(apart.replicas)}
    assert runs == {"policy": 1, "redact": 1, "route": 3, "cache": 1, "provider": 1, "sink": 1}


def test_the_embedded_clickhouse_takes_one_sink(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("")
    sup = Supervisor(Layout(home=tmp_path, config=config, replicas={"sink": 2}))
    with pytest.raises(StartupError, match="sink=1"):
        sup.start()
    assert sup.pids() == {}


def test_a_cluster_runs_two_of_each_process_unless_told_otherwise() -> None:
    from services.cli.cli import _replicas_for, parser

    def replicas(*argv: str) -> dict[str, int]:
        return _replicas_for(parser().parse_args(["up", *argv]))

    assert replicas() == {}
    assert replicas("--cluster", "3") == {"provider": 2, "redact": 2, "cache": 2, "ingress": 2}
    told = replicas("--cluster", "3", "--replicas", "provider=3,cache=1")
    assert told == {"provider": 3, "redact": 2, "cache": 1, "ingress": 2}
    assert replicas("--cluster", "3", "--clickhouse", "http://ch:8123")["sink"] == 2
