"""``sluice nats-user``: NATS credentials, for an internal service that
calls the gateway over the bus (``create``), or for every role of a
deployment not made by ``sluice up`` (``roles``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from services.bus import credentials
from services.cli import nats_server


def cmd_nats_user_create(args: argparse.Namespace) -> int:
    """Credentials an internal service connects with: it may publish requests
    to sluice.v1.in.> and read its own inbox, nothing else."""
    home = Path(args.home)
    try:
        user = credentials.service_user(args.name)
    except ValueError as exc:
        print(f"sluice nats-user: {exc}", file=sys.stderr)
        return 2
    creds = credentials.ensure(home, user, args.nats)
    running = False
    # Every node of a cluster has its own copy of the users ("nats", "nats-2", ...).
    for nats_dir in [d for d in sorted(home.glob("nats*")) if d.is_dir() and d.name.partition("-")[0] == "nats"]:
        nats_server.write_auth(nats_dir, credentials.server_block(credentials.users(home)))
        running = nats_server.reload(nats_dir) or running
    path = credentials.path_of(home, user)
    print(f"credentials for {creds.user!r} in {path} (mode 600)")
    print(f"  may publish to   sluice.v1.in.>  and read  {creds.inbox_prefix}.>")
    print("  the running gateway's NATS took them" if running else "  they take effect at the next `sluice up`")
    return 0


def cmd_nats_user_roles(args: argparse.Namespace) -> int:
    """For a deployment not made by `sluice up` (compose/): one user per role,
    and the ``authorization`` block every NATS node includes."""
    home = Path(args.home)
    for user in credentials.ROLES:
        credentials.ensure(home, user, args.nats)
    nats_server.write_auth(home, credentials.server_block(credentials.users(home)))
    print(f"credentials for {', '.join(credentials.ROLES)} in {home / 'creds'} (mode 600)")
    print(f"nats-server authorization in {home / nats_server.AUTH_CONF}: include it in every node's config")
    return 0


def add_parser(sub: argparse._SubParsersAction, nats_url: str) -> None:
    users = sub.add_parser("nats-user", help="NATS credentials for an internal service")
    users_sub = users.add_subparsers(dest="action", required=True)
    create = users_sub.add_parser("create", help="make (or show) a service's credentials file")
    create.add_argument("name", help="the service's name: lower-case letters, digits, dashes")
    create.add_argument("--home", default=os.environ.get("SLUICE_HOME", ".sluice"))
    create.add_argument("--nats", default=nats_url)
    create.set_defaults(func=cmd_nats_user_create)
    roles = users_sub.add_parser(
        "roles", help="credentials for every gateway role, and the nats-server authorization file (a deployment)"
    )
    roles.add_argument("--home", required=True, help="where to write creds/<role>.json and sluice-auth.conf")
    roles.add_argument("--nats", default=nats_url)
    roles.set_defaults(func=cmd_nats_user_roles)
