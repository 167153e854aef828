"""Limits at the connection (service/server.py), against the real server over real sockets: oversized request
heads, slow or stalled heads and bodies, idle connections, and the caps on connections and requests in progress.

Slow and malformed clients are raw sockets; each test bounds its own time."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.service.conftest import ROOT, running_server

TIMEOUT_S = 1.0  # the header, body and keep-alive timeouts of the `server` fixture
SLACK_S = 0.8  # the server's timers may fire late by this much on 2 busy cores
MULTIPART = b"multipart/form-data; boundary=xyz"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The shipped default model only: no training, a quick start."""
    root = tmp_path_factory.mktemp("connection_models")
    shutil.copytree(ROOT / "models" / "fashion-mnist", root / "fashion-mnist")
    return root


@pytest.fixture(scope="module")
def server(models) -> Iterator[str]:
    """host:port of a server with 1 s timeouts."""
    with running_server(models, VAE_HEADER_TIMEOUT_S=str(TIMEOUT_S), VAE_BODY_TIMEOUT_S=str(TIMEOUT_S),
                        VAE_KEEP_ALIVE_TIMEOUT_S=str(TIMEOUT_S)) as address:
        yield address


@pytest.fixture(scope="module")
def capped(models) -> Iterator[str]:
    """host:port of a server with room for 8 connections and 4 requests in progress, plus 2 of each for health
    checks (and the default 10 s timeouts, so that stalled clients stay for the test's length), behind a proxy
    at 127.0.0.1."""
    with running_server(models, VAE_MAX_CONNECTIONS="8", VAE_MAX_REQUESTS_IN_PROGRESS="4",
                        VAE_HEALTH_RESERVE="2", VAE_RETRY_AFTER_S="3", VAE_FORWARDED_ALLOW_IPS="127.0.0.1") as address:
        yield address


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict:
        return json.loads(self.body)["error"]


def connect(address: str, timeout: float = 5.0) -> socket.socket:
    host, port = address.split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def read_reply(sock: socket.socket) -> Reply:
    """One HTTP/1.1 response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a whole answer: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return Reply(int(lines[0].split()[1]), headers, body)


def closed_by_server(sock: socket.socket) -> bool:
    """The server closed the connection (EOF or reset) before the socket's timeout."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def send_and_read(address: str, data: bytes) -> Reply:
    with connect(address) as sock:
        sock.sendall(data)
        return read_reply(sock)


def rejected(address: str, reason: str) -> float:
    text = httpx.get(f"http://{address}/metrics", timeout=5).text
    return gauge(text, f'vae_rejected_total{{reason="{reason}"}}')


def gauge(metrics_text: str, name: str) -> float:
    """A metric's value; 0 if absent (a labelled counter appears once it is counted)."""
    line = next((line for line in metrics_text.splitlines() if line.startswith(name + " ")), f"{name} 0")
    return float(line.split()[-1])


def stalled_upload(address: str, length: int = 100_000) -> socket.socket:
    """A connection whose POST /encode has sent its head and the first line of its body, and then nothing."""
    sock = connect(address)
    sock.sendall(b"POST /encode HTTP/1.1\r\nHost: t\r\nContent-Type: " + MULTIPART +
                 b"\r\nContent-Length: %d\r\n\r\n--xyz\r\n" % length)
    return sock


# --- request heads -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("head, status, message, limit", [
    (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "request line is over", 8192),
    (b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n", 431,
     "too many header lines", 100),
    (b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431, "a header line", 16384),
    (b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000) for i in range(70)) + b"\r\n",
     431, "request headers are over", 65536),
])
def test_an_oversized_head_is_refused_and_its_connection_closed(server, head, status, message, limit):
    before = rejected(server, "header_too_large")
    started = time.monotonic()
    with connect(server) as sock:
        sock.sendall(head)
        reply = read_reply(sock)
        assert time.monotonic() - started < 1.0
        assert (reply.status, reply.headers["connection"]) == (status, "close")
        assert message in reply.error()["message"] and reply.error()["limit"] == limit
        assert reply.error()["field"] == ("request_line" if status == 414 else "headers")
        assert closed_by_server(sock)
    assert rejected(server, "header_too_large") == before + 1


def test_an_endless_header_is_refused_without_reading_it_while_others_are_served(server):
    """A client streams a header line that never ends (up to 128 MiB): the server answers 431 once the head
    cannot fit, closes the connection long before the client is done, and /healthz answers all along."""
    sent, total, chunk = [0], 128 * 1024 * 1024, b"a" * 65536
    sock = connect(server)

    def stream() -> None:
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Endless: ")
            while sent[0] < total:
                sock.sendall(chunk)
                sent[0] += len(chunk)
        except OSError:
            pass  # the server closed the connection

    started = time.monotonic()
    sender = threading.Thread(target=stream, daemon=True)
    sender.start()
    reply = read_reply(sock)
    assert time.monotonic() - started < 1.0
    assert reply.status == 431 and reply.error()["limit"] == 65536
    health_started = time.monotonic()
    assert httpx.get(f"http://{server}/healthz", timeout=5).status_code == 200
    assert time.monotonic() - health_started < 0.5
    sender.join(timeout=10)
    sock.close()
    assert not sender.is_alive() and sent[0] < total // 8  # stopped by the server, not by running out


def test_a_slow_head_is_answered_408_after_the_header_timeout(server):
    """One byte of header every 0.3 s: each arrives in time, the head as a whole does not."""
    before = rejected(server, "header_timeout")
    started = time.monotonic()
    with connect(server, timeout=0.3) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        for byte in b"X-Slow: " + b"a" * 100:
            if time.monotonic() - started > 5:
                break
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(1, socket.MSG_PEEK):
                    break  # an answer is waiting
            except TimeoutError:
                continue
            except OSError:
                break
        sock.settimeout(5)
        reply = read_reply(sock)
        elapsed = time.monotonic() - started
        assert reply.status == 408 and reply.error()["field"] == "headers"
        assert TIMEOUT_S - 0.05 <= elapsed < TIMEOUT_S + SLACK_S
        assert closed_by_server(sock)
    assert rejected(server, "header_timeout") == before + 1


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(server):
    started = time.monotonic()
    with connect(server) as sock:
        assert closed_by_server(sock)  # no answer: there was no request
    assert TIMEOUT_S - 0.05 <= time.monotonic() - started < TIMEOUT_S + SLACK_S


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(server):
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_reply(sock).status == 200
        answered = time.monotonic()
        assert closed_by_server(sock)
        assert TIMEOUT_S - 0.1 <= time.monotonic() - answered < TIMEOUT_S + SLACK_S


# --- request bodies ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gap_s, message", [(None, "paused longer"), (0.3, "slower than")])
def test_a_stalled_or_trickling_body_is_answered_408_after_the_body_timeout(server, gap_s, message):
    """The body stops (gap_s None), or comes one byte every gap_s: slower than body_min_rate (1024 bytes/s)."""
    before = rejected(server, "body_timeout")
    sock = stalled_upload(server)
    sock.settimeout(gap_s or 5)
    started = time.monotonic()
    with sock:
        while gap_s is not None and time.monotonic() - started < 5:
            try:
                sock.sendall(b"a")
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except TimeoutError:
                continue
        sock.settimeout(5)
        reply = read_reply(sock)
        elapsed = time.monotonic() - started
        assert reply.status == 408 and reply.error()["field"] == "body" and message in reply.error()["message"]
        assert TIMEOUT_S - 0.05 <= elapsed < TIMEOUT_S + SLACK_S
        assert closed_by_server(sock)
    assert rejected(server, "body_timeout") == before + 1


def test_a_body_that_keeps_coming_is_not_cut(server):
    """A 2 s upload at 10 KiB/s, longer than the body timeout, is read whole and answered by the app (422: the
    part is no image)."""
    length = 20_000
    sock = stalled_upload(server, length)
    with sock:
        part = b'Content-Disposition: form-data; name="images"; filename="x.png"\r\n\r\n'
        end = b"\r\n--xyz--\r\n"
        body = part + b"a" * (length - len(b"--xyz\r\n") - len(part) - len(end)) + end
        for start in range(0, len(body), 2048):
            sock.sendall(body[start:start + 2048])
            time.sleep(0.2)
        reply = read_reply(sock)
        assert reply.status == 422, reply.body


# --- caps ----------------------------------------------------------------------------------------------------

def wait_for_open_connections(address: str, count: int) -> str:
    """The metrics once the server counts `count` open connections (this request's included)."""
    deadline = time.monotonic() + 5
    while True:
        text = httpx.get(f"http://{address}/metrics", timeout=5).text
        if gauge(text, "vae_open_connections") == count or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def test_past_max_connections_requests_get_503_but_health_checks_are_answered(capped):
    before = rejected(capped, "connections")
    stalled = [connect(capped) for _ in range(8)]
    for sock in stalled:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # heads that never finish
    try:
        started = time.monotonic()
        reply = send_and_read(capped, b"POST /encode HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        assert time.monotonic() - started < 0.5
        assert (reply.status, reply.headers["retry-after"], reply.headers["connection"]) == (503, "3", "close")
        assert reply.error()["field"] == "connections" and reply.error()["limit"] == 8
        assert send_and_read(capped, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").status == 200
        assert send_and_read(capped, b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n").status == 200
        # Past the reserve too, a new connection is answered 503 before it sends anything.
        time.sleep(0.2)  # the server has closed the connections above
        with connect(capped), connect(capped), connect(capped) as third:  # the first two take the reserve
            assert read_reply(third).status == 503 and closed_by_server(third)
    finally:
        for sock in stalled:
            sock.close()
    wait_for_open_connections(capped, 1)
    assert rejected(capped, "connections") == before + 2


def test_past_max_requests_in_progress_requests_get_503_but_health_checks_are_answered(capped):
    before = rejected(capped, "in_progress")
    uploads = [stalled_upload(capped) for _ in range(3)]
    try:
        metrics = wait_for_open_connections(capped, 4)
        assert gauge(metrics, "vae_requests_in_progress") == 4  # 3 uploads and the metrics request
        uploads.append(stalled_upload(capped))
        time.sleep(0.2)
        with connect(capped) as sock:  # under max_connections: this one may keep its connection
            started = time.monotonic()
            sock.sendall(b"GET /models HTTP/1.1\r\nHost: t\r\n\r\n")
            reply = read_reply(sock)
            assert time.monotonic() - started < 0.5
            assert (reply.status, reply.headers["retry-after"]) == (503, "3") and "connection" not in reply.headers
            assert reply.error()["field"] == "requests" and reply.error()["limit"] == 4
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_reply(sock).status == 200
    finally:
        for sock in uploads:
            sock.close()
    wait_for_open_connections(capped, 1)
    assert rejected(capped, "in_progress") == before + 1


def test_forwarded_headers_count_only_from_the_named_proxies(server, capped):
    """X-Forwarded-Proto sets the scheme (seen here in a redirect's Location) only from VAE_FORWARDED_ALLOW_IPS."""
    headers = {"X-Forwarded-Proto": "https"}
    direct = httpx.get(f"http://{server}/healthz/", headers=headers, timeout=5)
    proxied = httpx.get(f"http://{capped}/healthz/", headers=headers, timeout=5)
    assert (direct.status_code, direct.headers["location"]) == (307, f"http://{server}/healthz")
    assert (proxied.status_code, proxied.headers["location"]) == (307, f"https://{capped}/healthz")


def test_no_server_banner(server):
    response = httpx.get(f"http://{server}/healthz", timeout=5)
    assert "server" not in response.headers and "date" in response.headers
