"""``sluice users``: the developer portal's people, through the admin API.

``invite`` prints the one-time link that sets the person's password (and the
gateway mails it too when ``[portal.smtp]`` is configured); ``link`` makes
another (the invitation again, or a password reset); ``list`` shows
people and their state; ``disable`` ends a person's sessions at once and
keeps them out, ``enable`` lets them sign in again. People are named by
e-mail address: their id follows from it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from schemas.admin_people import UserInvite, UserInvited, UserOut
from schemas.errors import InvalidRequest
from services.cli.admin_cli import AdminError, call
from services.people import accounts

ROLES = ("developer", "tenant-admin", "gateway-admin")


def _user_path(email: str) -> str:
    try:
        return f"/users/{accounts.user_id_for(accounts.normal_email(email))}"
    except InvalidRequest as exc:
        raise AdminError(f"{email!r}: {exc.message}") from None


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2))


def invite(args: argparse.Namespace) -> int:
    role = args.role.replace("-", "_")
    if role != "gateway_admin" and not args.tenant:
        raise AdminError("--tenant is required for a developer or tenant admin")
    body = UserInvite(email=args.email, role=role, tenant=args.tenant, name=args.name)  # type: ignore[arg-type]
    return _show_link(args, call(args, "POST", "/users", body))


def new_link(args: argparse.Namespace) -> int:
    return _show_link(args, call(args, "POST", f"{_user_path(args.email)}/invitation"))


def _show_link(args: argparse.Namespace, data: Any) -> int:
    if args.json:
        _print(data)
        return 0
    invited = msgspec.convert(data, UserInvited)
    where = f" in {invited.user.tenant}" if invited.user.tenant else ""
    print(f"{invited.user.email}, {invited.user.role}{where}, {invited.user.state}")
    print(f"one-time link (until {_when(invited.expires_at)}):")
    print(invited.link)
    if invited.mailed:
        print(f"(also mailed to {invited.user.email})")
    return 0


def list_users(args: argparse.Namespace) -> int:
    data = call(args, "GET", "/users", params={"tenant": args.tenant} if args.tenant else None)
    if args.json:
        _print(data)
        return 0
    table = Table(show_edge=False, header_style="bold")
    for title in ("email", "tenant", "role", "state", "signs in with", "name", "created"):
        table.add_column(title, overflow="fold")
    for u in msgspec.convert(data, list[UserOut]):
        table.add_row(
            u.email,
            u.tenant or "-",
            u.role,
            u.state,
            ", ".join(u.signs_in_with) or "-",
            u.name or "-",
            _when(u.created_at),
        )
    Console(width=None if sys.stdout.isatty() else 250).print(table)
    return 0


def set_disabled(args: argparse.Namespace) -> int:
    data = call(args, "POST", f"{_user_path(args.email)}/{args.action}")
    if args.json:
        _print(data)
        return 0
    user = msgspec.convert(data, UserOut)
    print(f"{user.email} is {user.state}" + (": their sessions have ended" if user.state == "disabled" else ""))
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return args.handler(args)
    except AdminError as exc:
        print(f"sluice users {args.action}: {exc}", file=sys.stderr)
        return 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("SLUICE_URL", "http://127.0.0.1:8080"), help="the gateway")
    common.add_argument("--json", action="store_true", help="print the API's JSON answer")
    users = sub.add_parser("users", help="the developer portal's people: invite, list, disable")
    users.set_defaults(func=run)
    actions = users.add_subparsers(dest="action", required=True)
    p = actions.add_parser("invite", parents=[common], help="invite a person; prints the one-time link")
    p.add_argument("email")
    p.add_argument("--tenant", help="the tenant they join (not for a gateway admin)")
    p.add_argument("--role", choices=ROLES, default="developer")
    p.add_argument("--name", default="")
    p.set_defaults(handler=invite)
    p = actions.add_parser(
        "link", parents=[common], help="a new one-time link: the invitation again, or a password reset"
    )
    p.add_argument("email")
    p.set_defaults(handler=new_link)
    p = actions.add_parser("list", parents=[common], help="people, their tenant, role and state")
    p.add_argument("--tenant")
    p.set_defaults(handler=list_users)
    for action, help_ in (("disable", "end their sessions and keep them out"), ("enable", "let them sign in again")):
        p = actions.add_parser(action, parents=[common], help=help_)
        p.add_argument("email")
        p.set_defaults(handler=set_disabled)
