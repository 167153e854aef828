"""Retries against a real HTTP server (the standard library's, in a thread) that answers as scripted: 503 with
Retry-After then 200, 429, dropped connections, errors that must not be retried, and a timeout."""

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.service.conftest import free_port
from vae_client import (
    AsyncClient,
    BadRequestError,
    Client,
    InvalidInputError,
    NetworkError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    ServiceUnavailableError,
)

MODELS = {"default": "m", "models": [], "skipped": {}}
DROP = "drop"  # close the connection without an answer
SLOW = "slow"  # answer after 2 s


def error_body(status: int, field: str | None = None, limit: object = None) -> bytes:
    return json.dumps({"error": {"status": status, "field": field, "message": f"scripted {status}",
                                 "limit": limit}}).encode()


@dataclass
class Script:
    """The answers to give, in order (then 200 with MODELS), and what was asked."""

    answers: list = field(default_factory=list)
    seen: list = field(default_factory=list)  # (method, path, headers) of each request
    lock: threading.Lock = field(default_factory=threading.Lock)


def handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            with script.lock:
                script.seen.append((self.command, self.path, dict(self.headers)))
                step = script.answers.pop(0) if script.answers else (200, {}, json.dumps(MODELS).encode())
            if step == DROP:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if step == SLOW:
                time.sleep(2)
                step = (200, {}, json.dumps(MODELS).encode())
            status, headers, body = step
            self.send_response(status)
            for name, value in {"content-type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:  # the client gave up (its timeout) before the answer
                self.close_connection = True

        do_GET = do_POST = answer

    return Handler


@pytest.fixture
def scripted() -> Iterator[tuple[str, Script]]:
    script = Script()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler(script))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_503_with_retry_after_is_retried_after_the_wait(scripted):
    url, script = scripted
    script.answers = [(503, {"Retry-After": "1"}, error_body(503))]
    started = time.monotonic()
    with Client(url, api_key="k", retries=3, backoff=0.01) as vae:
        listed = vae.models()
    assert listed.default == "m" and len(script.seen) == 2
    assert time.monotonic() - started >= 1.0  # waited at least Retry-After
    assert all(headers["Authorization"] == "Bearer k" for _, _, headers in script.seen)


def test_async_503_then_200_and_429_are_retried(scripted):
    url, script = scripted
    script.answers = [(503, {"Retry-After": "1"}, error_body(503)), (429, {"Retry-After": "0"}, error_body(429))]

    async def main() -> str | None:
        async with AsyncClient(url, retries=3, backoff=0.01) as vae:
            return (await vae.models()).default

    started = time.monotonic()
    assert asyncio.run(main()) == "m"
    assert len(script.seen) == 3 and time.monotonic() - started >= 1.0


@pytest.mark.parametrize("status, kind", [(400, BadRequestError), (404, BadRequestError), (422, InvalidInputError),
                                          (500, ServerError)])
def test_other_errors_are_not_retried(scripted, status, kind):
    url, script = scripted
    script.answers = [(status, {"Retry-After": "0"}, error_body(status, "query.k", 5))] * 3
    with Client(url, retries=3, backoff=0.01) as vae, pytest.raises(kind) as raised:
        vae.sample(1, seed=1)  # one image: nothing to split, so no look at the limits first
    assert len(script.seen) == 1 and (raised.value.status, raised.value.field, raised.value.limit) == (
        status, "query.k", 5)
    method, path, _ = script.seen[0]
    assert method == "GET" and path.startswith("/sample?") and "n=1" in path and "seed=1" in path


def test_async_422_is_not_retried(scripted):
    url, script = scripted
    script.answers = [(422, {}, error_body(422, "query.k", 5000))] * 2

    async def main() -> None:
        async with AsyncClient(url, retries=3, backoff=0.01) as vae:
            await vae.models()

    with pytest.raises(InvalidInputError):
        asyncio.run(main())
    assert len(script.seen) == 1


def test_retries_are_bounded(scripted):
    url, script = scripted
    script.answers = [(503, {"Retry-After": "0"}, error_body(503))] * 5 + [(429, {}, error_body(429))] * 5
    with Client(url, retries=2, backoff=0.01) as vae, pytest.raises(ServiceUnavailableError) as raised:
        vae.models()
    assert len(script.seen) == 3 and raised.value.status == 503 and raised.value.retry_after == 0.0
    script.answers, script.seen[:] = [(429, {"Retry-After": "0"}, error_body(429))] * 5, []
    with Client(url, retries=1, backoff=0.01) as vae, pytest.raises(RateLimitError):
        vae.models()
    assert len(script.seen) == 2


def test_a_retry_after_past_the_maximum_is_not_waited_for(scripted):
    url, script = scripted
    script.answers = [(503, {"Retry-After": "3600"}, error_body(503))]
    started = time.monotonic()
    with Client(url, retries=3, max_retry_after=60) as vae, pytest.raises(ServiceUnavailableError) as raised:
        vae.models()
    assert raised.value.retry_after == 3600 and len(script.seen) == 1 and time.monotonic() - started < 30


def test_a_dropped_connection_is_retried(scripted):
    url, script = scripted
    script.answers = [DROP, DROP]
    with Client(url, retries=2, backoff=0.01) as vae:
        assert vae.models().default == "m"
    assert len(script.seen) == 3


def test_connection_refused_raises_network_error_after_the_retries():
    with Client(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.01) as vae:
        with pytest.raises(NetworkError) as raised:
            vae.models()
        assert raised.value.status is None and raised.value.__cause__ is not None
        assert vae.ready() is False


def test_a_timeout_is_not_retried(scripted):
    url, script = scripted
    script.answers = [SLOW]
    with Client(url, retries=3, timeout=0.3, backoff=0.01) as vae, pytest.raises(RequestTimeoutError):
        vae.models()
    assert len(script.seen) == 1


def test_a_body_that_is_not_the_services(scripted):
    url, script = scripted
    script.answers = [(502, {"content-type": "text/html"}, b"<html>bad gateway</html>")]
    with Client(url, retries=3, backoff=0.01) as vae, pytest.raises(ServerError) as raised:
        vae.models()
    assert raised.value.status == 502 and raised.value.field is None and "bad gateway" in raised.value.message
    assert len(script.seen) == 1


def test_without_an_openapi_document_the_limits_are_the_service_defaults(scripted):
    """The per-request limits come from /openapi.json, read once per client; a 404 there leaves the service's
    default (64 images per request): two images go in one request."""
    url, script = scripted
    result = {"index": 0, "mean": [0.5, 1.0], "logvar": [0.0, -1.0], "z": None, "conversion": {}, "levels": None}
    encoded = json.dumps({"model": "m", "latent_dim": 2, "seed": None,
                          "results": [result, {**result, "index": 1}]}).encode()
    script.answers = [(404, {}, error_body(404)), (200, {}, encoded), (200, {}, encoded)]
    with Client(url, retries=0) as vae:
        first = vae.encode([b"\x89PNG\r\n\x1a\none", b"\x89PNG\r\n\x1a\ntwo"])
        vae.encode([b"\x89PNG\r\n\x1a\nthree", b"\x89PNG\r\n\x1a\nfour"])
    assert [path for _, path, _ in script.seen] == ["/openapi.json", "/encode", "/encode"]
    assert first.mean.tolist() == [[0.5, 1.0], [0.5, 1.0]] and first.mean.dtype.name == "float32"
    assert "multipart/form-data" in script.seen[1][2]["Content-Type"]
