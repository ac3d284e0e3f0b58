"""The ``sluice`` command: up, status, stats, models, seed, mock-upstream;
nats-user, logs, prompts and the admin commands have modules of their own."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import nats.errors

from schemas.control import ApiKey
from services import config as config_mod
from services.bus import credentials, process
from services.cli import admin_cli, analytics_cli, logs_cli, mcp_cli, nats_users_cli, prompts_cli, up_banner, users_cli
from services.cli.layout import Analytics, Layout, parse_analytics, parse_replicas
from services.cli.named_query import query
from services.cli.supervisor import StartupError, Supervisor
from services.keys import new_key

DEMO_CONFIG = Path(__file__).parent / "demo.toml"


def secret_file(home: Path, name: str) -> str:
    """A key kept in ``home/name`` (mode 600), made on first use."""
    path = home / name
    if path.exists():
        return path.read_text().strip()
    key = new_key()
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_uninterrupted(sup: Supervisor) -> None:
    # A second Ctrl-C (or make passing one on) must not cut the clean-up short
    # and leave children running.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sup.stop()


def _replicas_for(args: argparse.Namespace) -> dict[str, int]:
    """A cluster is for surviving a death: two of each stage and of the
    ingress unless --replicas says otherwise (one sink with the embedded
    ClickHouse, which is one process's)."""
    if args.cluster == 1:
        return args.replicas
    two = {"provider": 2, "redact": 2, "cache": 2, "ingress": 2, **({"sink": 2} if args.analytics.server else {})}
    return {**two, **args.replicas}


def cmd_up(args: argparse.Namespace) -> int:
    process.setup_logging("supervisor")
    home = Path(args.home).resolve()
    key = secret_file(home, "demo-key")
    private_key = secret_file(home, "demo-private-key")
    admin_key = secret_file(home, "admin-key")
    os.environ["SLUICE_MOCK_PORT"] = str(args.mock_port)
    layout = Layout(
        home=home,
        config=Path(args.config).resolve(),
        nats_port=args.nats_port,
        http_port=args.port,
        mock_port=None if args.no_mock else args.mock_port,
        clickhouse_dsn=args.analytics.server,
        analytics=args.analytics.here,
        replicas=_replicas_for(args),
        cluster=args.cluster,
        separate_stages=args.separate_stages,
    )
    try:
        config = config_mod.load(layout.config)
    except config_mod.ConfigError as exc:
        print(f"sluice up: {exc}", file=sys.stderr)
        return 1
    # The demo key belongs to the demo tenant; a config without one gets no demo key.
    demo = any(t.id == "demo" for t in config.tenants)
    extra_keys = {admin_key: ApiKey(id="admin", tenant_id="", role="gateway_admin")}
    if demo:
        extra_keys[key] = ApiKey(id="demo", tenant_id="demo")
    # Its sibling that masks every built-in detector, to see masking at work.
    private = any(t.id == "demo-private" for t in config.tenants)
    if private:
        extra_keys[private_key] = ApiKey(id="demo-private", tenant_id="demo-private")
    sup = Supervisor(layout, extra_keys=extra_keys)
    # SIGTERM (from a service manager or `kill`) stops cleanly, like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"Starting Sluice in {home} ...", flush=True)
    try:
        warnings = config_mod.unset_key_variables(config)
    except config_mod.ConfigError as exc:
        print(f"sluice up: {exc}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    try:
        sup.start()
    except StartupError as exc:
        print(f"sluice up: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"sluice up: start-up failed: {exc!r}", file=sys.stderr)
        return 1
    print(up_banner.text(config, layout, home, key, sup.pids()), flush=True)
    try:
        sup.wait()
    except KeyboardInterrupt:
        print("\nStopping ...", flush=True)
    _stop_uninterrupted(sup)
    print("Stopped.", flush=True)
    return 0


def default_creds() -> str | None:
    """The admin credentials a local `sluice up` wrote, unless SLUICE_NATS_CREDS names others."""
    named = os.environ.get("SLUICE_NATS_CREDS")
    if named:
        return named
    local = credentials.path_of(Path(os.environ.get("SLUICE_HOME", ".sluice")), "admin")
    return str(local) if local.exists() else None


def cmd_stats(args: argparse.Namespace) -> int:
    from analytics.queries import NAMED
    from services.cli.stats_table import render, render_named, rows_as_dicts

    if args.list:
        for name, named in NAMED.items():
            params = ", ".join(f"{k}={d!r}" for k, (_, d) in named.params.items())
            print(f"{name:<20} {named.description}" + (f" [{params}]" if params else ""))
        return 0
    if args.name not in NAMED:
        print(f"sluice stats: no query {args.name!r}; `sluice stats --list` shows them", file=sys.stderr)
        return 1
    params: dict[str, str | int] = {"minutes": args.minutes} if args.name == "stats" else {}
    for pair in args.param or []:
        key, sep, value = pair.partition("=")
        if not sep or key not in NAMED[args.name].params:
            known = ", ".join(NAMED[args.name].params) or "none"
            print(f"sluice stats: --param {pair!r}: write NAME=VALUE; {args.name} takes: {known}", file=sys.stderr)
            return 1
        params[key] = value
    try:
        result = asyncio.run(query(args.name, params, args.nats, creds=args.creds))
    except process.GatewayNotRunning as exc:
        print(f"sluice stats: {exc}", file=sys.stderr)
        return 1
    except (TimeoutError, nats.errors.Error) as exc:
        print(f"sluice stats: the analytics sink did not answer over NATS at {args.nats} ({exc!r})", file=sys.stderr)
        return 1
    if result.get("error"):
        print(f"query failed: {result['error']}", file=sys.stderr)
        return 1
    if args.name != "stats":
        rows = [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]
        print(json.dumps(rows, indent=2, default=str) if args.json else render_named(result["columns"], result["rows"]))
        return 0
    records = rows_as_dicts(result["columns"], result["rows"])
    print(json.dumps(records, indent=2) if args.json else render(records, args.minutes))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from services.cli import status

    try:
        return status.run(args.nats, args.creds, args.json)
    except process.GatewayNotRunning as exc:
        print(f"sluice status: {exc}", file=sys.stderr)
        return 1


def cmd_routes(args: argparse.Namespace) -> int:
    from services.cli import routes_table

    try:
        rows = process.run_tool(args.nats, args.creds, lambda nc: routes_table.gather(nc, args.minutes))
    except process.GatewayNotRunning as exc:
        print(f"sluice routes: {exc}", file=sys.stderr)
        return 1
    except (TimeoutError, nats.errors.Error) as exc:
        print(f"sluice routes: cannot read the model groups over NATS at {args.nats} ({exc!r})", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if args.json else routes_table.render(rows, args.minutes))
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from services.cli import bootstrap

    records = config_mod.control_records(config_mod.load(args.config))

    try:
        warnings = process.run_tool(args.nats, args.creds, lambda nc: bootstrap.prepare(nc, records, args.replicas))
    except process.GatewayNotRunning as exc:
        print(f"sluice seed: {exc}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    counts = (
        f"{len(records.keys)} keys, {len(records.tenants)} tenants, {len(records.routes)} models, "
        f"{len(records.mcp_servers)} MCP servers"
    )
    print(f"seeded {counts} into {args.nats}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from services import config
    from services.cli import models_table

    if args.catalog:
        records = models_table.catalog(args.provider)
        title = f"The catalog: {len(records)} models" + (f" of {args.provider}" if args.provider else "")
    else:
        try:
            records = models_table.configured(config.load(args.config))
        except config.ConfigError as exc:
            print(f"sluice models: {exc}", file=sys.stderr)
            return 2
        title = f"Models configured in {args.config}: {len(records)} (prices in USD per million tokens)"
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        print(models_table.render(records, title, whole_catalog=args.catalog))
    return 0


def cmd_mock_upstream(args: argparse.Namespace) -> int:
    """The mock is a test double shipped for the demo (``loadtest/``), run as
    its own module: the domain code never imports it."""
    flags = ["--host", args.host, "--port", str(args.port), "--latency-ms", str(args.latency_ms)]
    flags += ["--chunk-ms", str(args.chunk_ms), "--chunks", str(args.chunks)]
    os.execv(sys.executable, [sys.executable, "-m", "loadtest.mock_upstream", *flags])


def _analytics(text: str) -> Analytics:
    try:
        return parse_analytics(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _replicas(text: str) -> dict[str, int]:
    try:
        return parse_replicas(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sluice", description="Sluice, an AI API gateway over NATS.")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the embedded gateway (nats-server, stages, ingress, mock upstream)")
    up.add_argument("--home", default=os.environ.get("SLUICE_HOME", ".sluice"))
    up.add_argument("--config", default=str(DEMO_CONFIG))
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--nats-port", type=int, default=4222)
    up.add_argument("--mock-port", type=int, default=9100)
    up.add_argument("--no-mock", action="store_true", help="do not start the mock upstream")
    up.add_argument(
        "--analytics",
        type=_analytics,
        default=Analytics(),
        metavar="embedded|server=URL|none",
        help="where the rows go: embedded (default: ClickHouse in the sink's process, under --home), "
        "server=http://HOST:8123 (a ClickHouse server; no engine here), or none (no sink, no engine: rows wait "
        "in the events stream for a sink elsewhere on this NATS)",
    )
    up.add_argument(
        "--clickhouse",
        dest="analytics",
        metavar="DSN",
        type=lambda dsn: _analytics(f"server={dsn}"),
        help="same as --analytics server=DSN",
    )
    up.add_argument(
        "--no-analytics-engine",
        dest="analytics",
        action="store_const",
        const=Analytics(here=False),
        help="same as --analytics none",
    )
    up.add_argument(
        "--replicas",
        type=_replicas,
        default={},
        metavar="STAGE=N,...",
        help="processes per stage, e.g. route=3,provider=2,ingress=2 (ingress replicas share --port); "
        "policy, route and provider run together, as many times as the most any of them is given",
    )
    up.add_argument(
        "--cluster",
        type=int,
        default=1,
        choices=range(1, 6),
        metavar="N",
        help="NATS nodes clustered on loopback (clients on --nats-port and the N-1 ports after it, routes "
        "2000 above): with 3, every stream and bucket keeps 3 copies and one node may die",
    )
    up.add_argument(
        "--separate-stages",
        action="store_true",
        help="run policy, routing and the provider each in its own process instead of together in a pipeline",
    )
    up.set_defaults(func=cmd_up)

    status = sub.add_parser("status", help="processes, replicas, in-flight work, event lag, NATS and ClickHouse")
    status.add_argument("--json", action="store_true")
    status.add_argument("--nats", default=process.nats_url())
    status.add_argument("--creds", default=default_creds(), help="NATS credentials file (default: .sluice's admin)")
    status.set_defaults(func=cmd_status)

    analytics_cli.add_parser(sub, process.nats_url(), default_creds())

    stats = sub.add_parser("stats", help="named analytics queries from ClickHouse (default: requests per model)")
    stats.add_argument("name", nargs="?", default="stats", help="a named query (--list shows them)")
    stats.add_argument("--param", nargs="+", metavar="NAME=VALUE", help="the query's parameters")
    stats.add_argument("--list", action="store_true", help="the named queries and their parameters")
    stats.add_argument("--minutes", type=int, default=60, help="for the default query")
    stats.add_argument("--json", action="store_true")
    stats.add_argument("--nats", default=process.nats_url())
    stats.add_argument("--creds", default=default_creds(), help="NATS credentials file (default: .sluice's admin)")
    stats.set_defaults(func=cmd_stats)

    models = sub.add_parser("models", help="the configured models (or the whole catalog) with prices and limits")
    models.add_argument("--config", default=os.environ.get("SLUICE_CONFIG", str(DEMO_CONFIG)))
    models.add_argument("--catalog", action="store_true", help="list the whole catalog instead")
    models.add_argument("--provider", default=None, help="with --catalog: only this provider's models")
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=cmd_models)

    routes = sub.add_parser("routes", help="model groups: deployments, weights, breaker states, recent latency")
    routes.add_argument("--minutes", type=int, default=15, help="window for tries and latency")
    routes.add_argument("--json", action="store_true")
    routes.add_argument("--nats", default=process.nats_url())
    routes.add_argument("--creds", default=default_creds(), help="NATS credentials file (default: .sluice's admin)")
    routes.set_defaults(func=cmd_routes)

    seed = sub.add_parser("seed", help="create the event stream and KV buckets and load a config into them")
    seed.add_argument("--config", required=True)
    seed.add_argument(
        "--replicas",
        type=int,
        default=1,
        choices=range(1, 6),
        metavar="R",
        help="copies of each stream and bucket (3 on a 3-node cluster)",
    )
    seed.add_argument("--nats", default=process.nats_url())
    seed.add_argument("--creds", default=default_creds(), help="NATS credentials file (default: .sluice's admin)")
    seed.set_defaults(func=cmd_seed)

    nats_users_cli.add_parser(sub, process.nats_url())
    admin_cli.add_parsers(sub)
    users_cli.add_parser(sub)
    mcp_cli.add_parser(sub)
    prompts_cli.add_parser(sub, process.nats_url(), default_creds())
    logs_cli.add_parser(sub, process.nats_url(), default_creds())

    mock = sub.add_parser("mock-upstream", help="serve the mock LLM upstream")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=9100)
    mock.add_argument("--latency-ms", type=int, default=0)
    mock.add_argument("--chunk-ms", type=int, default=0)
    mock.add_argument("--chunks", type=int, default=12)
    mock.set_defaults(func=cmd_mock_upstream)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader went away (`sluice stats ... | head`): no traceback, and
        # no second error from Python flushing stdout into the closed pipe at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
