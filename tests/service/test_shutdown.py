"""Shutdown of the real server (`python -m service`, service/server.py) on SIGTERM: readiness drops at once,
requests in progress finish (within VAE_SHUTDOWN_TIMEOUT_S), and the process exits 0."""

from __future__ import annotations

import shutil
import signal
import socket
import time

import pytest

from tests.service.conftest import ROOT, server_process

EXAMPLE_PNG = (ROOT / "docs" / "example-ankle-boot.png").read_bytes()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The shipped default model only: no training, a quick start."""
    root = tmp_path_factory.mktemp("shutdown_models")
    shutil.copytree(ROOT / "models" / "fashion-mnist", root / "fashion-mnist")
    return root


def loglik_request(images: int, k: int = 5000) -> bytes:
    """POST /loglik of `images` copies of one PNG, as raw HTTP/1.1."""
    parts = b"".join(b'--xyz\r\nContent-Disposition: form-data; name="images"; filename="b.png"\r\n'
                     b"Content-Type: image/png\r\n\r\n" + EXAMPLE_PNG + b"\r\n" for _ in range(images))
    body = parts + b"--xyz--\r\n"
    return (b"POST /loglik?k=%d&seed=1 HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
            b"Content-Length: %d\r\n\r\n" % (k, len(body))) + body


def read_replies(sock: socket.socket) -> list[tuple[int, bytes]]:
    """(status, head and body) of each response until the server closes the connection."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    replies = []
    while data:
        head, data = data.split(b"\r\n\r\n", 1)
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(
            b"content-length:")))
        replies.append((int(head.split()[1]), head + b"\r\n\r\n" + data[:length]))
        data = data[length:]
    return replies


def connect(address: str) -> socket.socket:
    host, port = address.split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def refused(address: str) -> bool:
    try:
        connect(address).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_drains_the_requests_in_progress_and_exits_0(models):
    with server_process(models) as (address, proc), connect(address) as sock:
        # A /loglik that takes about a second, then two more requests on the same connection (pipelined), which
        # the server reads after it: they arrive during the drain.
        sock.sendall(loglik_request(images=4) + b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n"
                     b"GET /models HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        while not refused(address):  # uvicorn stops listening at its next tick (0.1 s)
            assert time.monotonic() - signalled < 1.0, "still accepting connections 1 s after SIGTERM"
            time.sleep(0.02)
        replies = read_replies(sock)
        assert [status for status, _ in replies] == [200, 503, 503], replies
        assert b'"log_likelihood"' in replies[0][1]
        assert b"shutting down" in replies[1][1] and b"retry-after" in replies[2][1].lower()
        assert proc.wait(timeout=10) == 0


def test_sigterm_cuts_requests_at_the_shutdown_timeout_and_exits_0(models):
    with server_process(models, VAE_SHUTDOWN_TIMEOUT_S="1") as (address, proc), connect(address) as sock:
        sock.sendall(loglik_request(images=16))  # several seconds of work
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - signalled < 1.0 + 1.5  # the timeout, uvicorn's ticks, the app's shutdown
        replies = read_replies(sock)
        assert [status for status, _ in replies] == [503], replies  # cut, and told so in the JSON error shape
        assert b'"message":"the server is shutting down"' in replies[0][1] and b"retry-after" in replies[0][1].lower()
        log = proc.stdout.read() if proc.stdout else ""
        assert "Traceback" not in log and "cut at shutdown: POST /loglik" in log, log
