"""``sluice prompts``: the prompts in KV. Reads go over NATS (list, show,
diff, render); changes go through the admin API (create, version, label,
publish), so they are checked and audited like any other.

``render`` fills a version's template with sample variables exactly as the
gateway will, so a prompt can be checked before it is published."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any, TypeVar, get_args

import msgspec
import nats.errors
from nats.aio.client import Client

from schemas import subjects
from schemas.admin import ApiIn, LabelMove, PromptContent, PromptCreate, VersionCreate
from schemas.errors import GatewayError
from schemas.prompts import ApiState, Prompt, PromptVersion, decode_prompt, decode_version
from services import prompts
from services.bus import process
from services.bus.kv import read_bucket
from services.cli import admin_cli
from services.cli.prompt_seed import version_name
from services.cli.text_table import render_table


async def _load(nc: Client) -> tuple[dict[str, Prompt], dict[str, PromptVersion]]:
    return (
        await read_bucket(nc, subjects.KV_PROMPTS, decode_prompt),
        await read_bucket(nc, subjects.KV_PROMPT_VERSIONS, decode_version),
    )


def _version(found: dict[str, Prompt], versions: dict[str, PromptVersion], name: str, which: str) -> PromptVersion:
    prompt = found.get(name)
    if prompt is None:
        raise SystemExit(f"sluice prompts: no prompt {name!r}")
    number = prompts.version_of(prompt, which)
    version = versions.get(version_name(name, number))
    if version is None:
        raise SystemExit(f"sluice prompts: version {number} of {name!r} is missing from the store")
    return version


def _value(text: str) -> Any:
    """A sample variable: a JSON number as a number, anything else as text."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if isinstance(value, int | float) and not isinstance(value, bool) else text


WRITES = ("create", "version", "label", "publish")
C = TypeVar("C", bound=PromptContent)


def _content(path: str, shape: type[C]) -> C:
    """A version's content from a TOML or JSON file (the fields of a
    ``[[prompts]]`` entry in the config file), read as ``shape``."""
    text = Path(path).read_text()
    try:
        data = tomllib.loads(text) if not path.endswith(".json") else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise admin_cli.AdminError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise admin_cli.AdminError(f"{path}: expected a table of the prompt's fields")
    try:
        # As lax as the admin API's own reading (Litestar converts with strict=False).
        return msgspec.convert(data, shape, strict=False)
    except msgspec.ValidationError as exc:
        raise admin_cli.AdminError(f"{path}: {exc}") from None


def _ms_of(text: str) -> int:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise admin_cli.AdminError(f"--sunset {text!r}: write an ISO 8601 time, e.g. 2027-01-01T00:00:00Z") from None
    if when.tzinfo is None:
        raise admin_cli.AdminError(f"--sunset {text!r}: give a time zone, e.g. a trailing Z for UTC")
    return int(when.timestamp() * 1000)


def _write(args: argparse.Namespace) -> Any:
    name = args.name
    if args.action == "create":
        prompt = msgspec.structs.replace(_content(args.file, PromptCreate), name=name)
        return admin_cli.call(args, "POST", "/prompts", prompt)
    if args.action == "version":
        version = _content(args.file, VersionCreate)
        if args.label:
            version = msgspec.structs.replace(version, label=args.label)
        return admin_cli.call(args, "POST", f"/prompts/{name}/versions", version)
    if args.action == "label":
        move = LabelMove(version=args.version)
        return admin_cli.call(args, "PUT", f"/prompts/{name}/labels/{args.label}", move)
    api = ApiIn(
        slug=args.slug or name,
        state=args.state,
        label=args.serve,
        successor=args.successor,
        requires_approval=args.requires_approval,
        sunset_at_ms=_ms_of(args.sunset) if args.sunset else 0,
    )
    return admin_cli.call(args, "PUT", f"/prompts/{name}/api", api)


def run(args: argparse.Namespace) -> int:
    if args.action in WRITES:
        try:
            data = _write(args)
        except admin_cli.AdminError as exc:
            print(f"sluice prompts {args.action}: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(data, indent=2))
        return 0
    try:
        found, versions = process.run_tool(args.nats, args.creds, _load)
    except process.GatewayNotRunning as exc:
        print(f"sluice prompts: {exc}", file=sys.stderr)
        return 1
    except (TimeoutError, nats.errors.Error) as exc:
        print(f"sluice prompts: cannot read the prompts over NATS at {args.nats} ({exc!r})", file=sys.stderr)
        return 1
    try:
        out = _act(args, found, versions)
    except GatewayError as exc:
        print(f"sluice prompts: {exc.message}", file=sys.stderr)
        return 1
    print(out)
    return 0


def _act(args: argparse.Namespace, found: dict[str, Prompt], versions: dict[str, PromptVersion]) -> str:
    if args.action == "list":
        if args.json:
            return json.dumps([msgspec.to_builtins(p) for _, p in sorted(found.items())], indent=2)
        lines = [
            [
                p.name,
                str(p.latest),
                ", ".join(f"{label}={v}" for label, v in sorted(p.labels.items())) or "-",
                f"/apis/{p.api.slug} ({p.api.state})" if p.api else "-",
                p.owner,
            ]
            for _, p in sorted(found.items())
        ]
        return "\n".join(render_table(["prompt", "latest", "labels", "api", "owner"], lines, "lrlll"))
    if args.action == "show":
        return json.dumps(msgspec.to_builtins(_version(found, versions, args.name, args.version)), indent=2)
    if args.action == "diff":
        a, b = (_version(found, versions, args.name, which) for which in (args.a, args.b))
        return prompts.diff(a, b) or f"versions {a.version} and {b.version} of {args.name!r} say the same"
    version = _version(found, versions, args.name, args.version)
    given = {}
    for pair in args.var or []:
        key, sep, text = pair.partition("=")
        if not sep:
            raise SystemExit(f"sluice prompts: --var {pair!r}: write NAME=VALUE")
        given[key] = _value(text)
    body = prompts.render(version, prompts.bind(version, given))
    return json.dumps(msgspec.to_builtins(body), indent=2)


def add_parser(sub: argparse._SubParsersAction, nats_url: str, creds: str | None) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--nats", default=nats_url)
    common.add_argument("--creds", default=creds, help="NATS credentials file (default: .sluice's admin)")
    p = sub.add_parser("prompts", help="prompts: versions, labels, and what a version renders")
    p.set_defaults(func=run)
    actions = p.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", parents=[common], help="every prompt with its labels and API")
    listing.add_argument("--json", action="store_true")
    show = actions.add_parser("show", parents=[common], help="one version (a label or a number)")
    show.add_argument("name")
    show.add_argument("--version", default="production")
    diff = actions.add_parser("diff", parents=[common], help="what changed between two versions or labels")
    diff.add_argument("name")
    diff.add_argument("a")
    diff.add_argument("b")
    render = actions.add_parser("render", parents=[common], help="fill a version with sample variables")
    render.add_argument("name")
    render.add_argument("--version", default="production")
    render.add_argument("--var", nargs="+", metavar="NAME=VALUE")

    admin = argparse.ArgumentParser(add_help=False)
    admin.add_argument("--url", default=os.environ.get("SLUICE_URL", "http://127.0.0.1:8080"), help="the gateway")
    create = actions.add_parser("create", parents=[admin], help="a new prompt from a TOML or JSON file (version 1)")
    create.add_argument("name")
    create.add_argument("file")
    version = actions.add_parser("version", parents=[admin], help="the next version, from a TOML or JSON file")
    version.add_argument("name")
    version.add_argument("file")
    version.add_argument("--label", help="point this label at the new version at once (e.g. staging)")
    label = actions.add_parser("label", parents=[admin], help="point a label at a version (a rollout or rollback)")
    label.add_argument("name")
    label.add_argument("label")
    label.add_argument("version", type=int)
    publish = actions.add_parser("publish", parents=[admin], help="publish as POST /apis/<slug>, or change its state")
    publish.add_argument("name")
    publish.add_argument("--slug", help="default: the prompt's name")
    publish.add_argument("--state", choices=get_args(ApiState), default="published")
    publish.add_argument("--serve", default="production", metavar="LABEL", help="the label whose version answers")
    publish.add_argument("--successor", default="", metavar="SLUG", help="where callers should go instead")
    publish.add_argument("--sunset", help="when it goes away: ISO 8601 time with a zone")
    publish.add_argument("--requires-approval", action="store_true")
