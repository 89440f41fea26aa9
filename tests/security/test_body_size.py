"""Request bodies are capped (MAX_CONTENT_LENGTH, default 1 MiB): a larger one gets 413 —
in the API's error shape under /api/ — and is never read into memory.

Against a real gunicorn on loopback, speaking HTTP over a raw socket: a body declared
too large is refused before a byte of it is sent, and an endless chunked body (no
Content-Length) is cut off at the limit instead of being read forever.
"""
from __future__ import annotations

import json
import re
import select
import socket
import time

import pytest

from deltacrown.config import ConfigError, load_config
from tests.support.processes import PYTHON, free_port, process_env, run_process, wait_for_http

MIB = 1024 * 1024


# --- the test client ------------------------------------------------------------------

def test_default_is_one_mib_and_bad_values_stop_the_process():
    assert load_config({})["MAX_CONTENT_LENGTH"] == MIB
    assert load_config({"MAX_CONTENT_LENGTH": "2048"})["MAX_CONTENT_LENGTH"] == 2048
    with pytest.raises(ConfigError, match="^MAX_CONTENT_LENGTH: "):
        load_config({"MAX_CONTENT_LENGTH": "1MB"})


def announcement(body_size: int) -> bytes:
    return json.dumps({"title": "Big", "body": "a" * body_size}).encode()


def test_api_body_over_the_limit_is_413_in_the_api_error_shape(app, client, users):
    users.create("admin", admin=True)
    headers = {**users.headers("admin"), "Content-Type": "application/json"}
    response = client.post("/api/v1/announcements", data=announcement(MIB), headers=headers)
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "too_large" and error["message"]
    # just under the limit, the body is read and validated as usual (the body field allows 5000)
    response = client.post("/api/v1/announcements", data=announcement(MIB - 100), headers=headers)
    assert response.status_code == 422


def test_the_largest_announcement_the_schema_allows_fits_under_the_default_limit(app, client, users):
    from deltacrown.notifications.api import MAX_ANNOUNCEMENT_RECIPIENTS

    users.create("admin", admin=True)
    headers = {**users.headers("admin"), "Content-Type": "application/json"}
    largest_id = 2**31 - 1
    ids = list(range(largest_id - MAX_ANNOUNCEMENT_RECIPIENTS + 1, largest_id + 1))
    body = {"title": "t" * 300, "body": "b" * 5000, "user_ids": ids}
    # read and validated (the ids name nobody: 404), not refused for its size
    response = client.post("/api/v1/announcements", data=json.dumps(body), headers=headers)
    assert response.status_code == 404, response.get_json()
    body["user_ids"] = [largest_id - MAX_ANNOUNCEMENT_RECIPIENTS] + ids
    response = client.post("/api/v1/announcements", data=json.dumps(body), headers=headers)
    assert response.status_code == 422 and "user_ids" in response.get_json()["error"]["fields"]


def test_page_form_over_the_limit_is_413(client):
    response = client.post("/login", data={"username": "x", "password": "p" * MIB})
    assert response.status_code == 413


# --- a real server ------------------------------------------------------------------

@pytest.fixture
def server(tmp_path, redis_url, spawn):
    env = process_env(DATABASE_URL=f"sqlite:///{tmp_path / 'big.sqlite'}", REDIS_URL=redis_url)
    assert run_process([PYTHON, "-m", "flask", "db", "upgrade"], env=env).returncode == 0
    created = run_process([PYTHON, "-m", "flask", "create-user", "admin", "--email", "a@example.com", "--admin"],
                          env=env)
    token = re.search(r"API token .*: (\S+)", created.stdout).group(1)
    port = free_port()
    web = spawn([PYTHON, "-m", "gunicorn", "app:app", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                 "--no-control-socket"], env=env, name="web")
    wait_for_http(f"http://127.0.0.1:{port}/login", timeout=60, process=web)
    return port, token


def read_response(sock: socket.socket, deadline: float) -> tuple[int, dict, bytes]:
    data = b""
    while b"\r\n\r\n" not in data or len(data) < _expected_length(data):
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _expected_length(data: bytes) -> int:
    head, sep, _ = data.partition(b"\r\n\r\n")
    match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return len(head) + len(sep) + (int(match.group(1)) if match else 0)


def request_head(port: int, method: str, path: str, headers: dict) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("path,content_type,api", [
    ("/api/v1/announcements", "application/json", True),
    ("/login", "application/x-www-form-urlencoded", False),
])
def test_declared_oversized_body_is_refused_before_it_is_sent(server, path, content_type, api):
    port, token = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_head(port, "POST", path, {
            "Authorization": f"Bearer {token}", "Content-Type": content_type, "Content-Length": str(50 * MIB)}))
        # not one byte of the body: the answer must come without waiting for it
        status, headers, body = read_response(sock, time.monotonic() + 20)
    assert status == 413
    if api:
        assert headers["content-type"].startswith("application/json")
        assert json.loads(body)["error"]["code"] == "too_large"


@pytest.mark.parametrize("path,content_type,prefix,api", [
    ("/api/v1/announcements", "application/json", b'{"title": "x", "body": "', True),
    ("/login", "application/x-www-form-urlencoded", b"username=x&password=", False),
])
def test_endless_chunked_body_is_cut_off_at_the_limit(server, path, content_type, prefix, api):
    port, token = server
    chunk = b"a" * 65536
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_head(port, "POST", path, {
            "Authorization": f"Bearer {token}", "Content-Type": content_type, "Transfer-Encoding": "chunked"}))
        sock.sendall(b"%x\r\n%s\r\n" % (len(prefix), prefix))
        deadline = time.monotonic() + 60
        # Keep sending until the server answers; without a limit it would read forever.
        while not select.select([sock], [], [], 0)[0]:
            assert sent < 64 * MIB and time.monotonic() < deadline, f"no answer after {sent} bytes"
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break  # the server stopped reading: its answer is waiting
            sent += len(chunk)
        status, headers, body = read_response(sock, time.monotonic() + 20)
    assert status == 413, (headers, body[:2000])
    assert sent >= MIB - len(chunk)  # it did read up to the limit
    if api:
        assert json.loads(body)["error"]["code"] == "too_large"


def test_chunked_body_under_the_limit_is_read_whole(server):
    port, token = server
    body = json.dumps({"title": "", "body": "b" * (MIB - 200)}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in
                      (body[i:i + 50_000] for i in range(0, len(body), 50_000)))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_head(port, "POST", "/api/v1/announcements", {
            "Authorization": f"Bearer {token}", "Content-Type": "application/json",
            "Transfer-Encoding": "chunked"}) + chunks + b"0\r\n\r\n")
        status, headers, answer = read_response(sock, time.monotonic() + 20)
    # read to its end and validated: the empty title is named (a truncated body would be a 400)
    assert status == 422, answer[:2000]
    assert set(json.loads(answer)["error"]["fields"]) == {"title", "body"}
