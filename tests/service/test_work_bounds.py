"""Work and memory bounds, through a real server: abandoned work stops, overload is refused at once.

One server for the module (its limits set small by VAE_* variables), its log read at the end; the metrics
are read before and after each test, so the tests compare differences.
"""

import json
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tests.service.conftest import server_process

ENV = {"VAE_LOG_LEVEL": "info", "VAE_MAX_K": "400000", "VAE_LOGLIK_BATCH_ROWS": "512", "VAE_LOGLIK_MAX_ROWS": "4000",
       "VAE_LOGLIK_CONCURRENCY": "1", "VAE_MAX_QUEUED_ROWS": "64", "VAE_MAX_SAMPLES": "64"}
IMAGE = {"arrays": [np.random.default_rng(0).uniform(size=(28, 28)).round(3).tolist()]}  # one Fashion-MNIST-sized


@pytest.fixture(scope="module")
def server(model_dir):
    with server_process(model_dir, **ENV) as (address, proc):
        yield address, proc


def metric(address: str, name: str, **labels: str) -> float:
    """The value of one sample of /metrics (0 when absent)."""
    text = httpx.get(f"http://{address}/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.compile(rf"^{re.escape(name)}\{{{re.escape(want)}\}} (\S+)$", re.M) if labels else \
        re.compile(rf"^{re.escape(name)} (\S+)$", re.M)
    match = pattern.search(text)
    return float(match.group(1)) if match else 0.0


def decoder_runs(address: str) -> float:
    return metric(address, "vae_inference_seconds_count", graph="decoder", model="fashion-mnist")


def raw_request(address: str, head: str, body: bytes) -> socket.socket:
    host, port = address.split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(head.encode() + body)
    return sock


def post_head(path: str, length: int) -> str:
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n")


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_loglik_stops_when_its_client_goes_away(server):
    """k = 400,000 in chunks of 512 draws: about 780 decoder runs if it ran to the end. The client leaves after
    half a second; the estimate stops within a chunk or two, and the request counts as cancelled (499)."""
    address, _ = server
    runs_before, cancelled_before = decoder_runs(address), metric(address, "vae_cancelled_requests_total",
                                                                  endpoint="/loglik", model="fashion-mnist")
    body = json.dumps(IMAGE).encode()
    sock = raw_request(address, post_head("/loglik?k=400000&model=fashion-mnist&seed=1", len(body)), body)
    wait_for(lambda: decoder_runs(address) > runs_before + 5)  # it is computing
    sock.close()
    wait_for(lambda: metric(address, "vae_cancelled_requests_total", endpoint="/loglik",
                            model="fashion-mnist") == cancelled_before + 1)
    stopped_at = decoder_runs(address)
    time.sleep(1.0)
    assert decoder_runs(address) == stopped_at  # no more chunks
    assert stopped_at - runs_before < 400  # far from the 782 of the whole estimate
    assert metric(address, "vae_requests_total", endpoint="/loglik", model="fashion-mnist", status="499") >= 1
    assert metric(address, "vae_requests_total", endpoint="/loglik", model="fashion-mnist", status="500") == 0


def test_a_client_that_leaves_mid_body_is_cancelled_not_a_server_error(server):
    address, _ = server
    labels = {"endpoint": "/encode", "model": "fashion-mnist"}  # the default model, resolved before the body
    before = metric(address, "vae_cancelled_requests_total", **labels)
    sock = raw_request(address, post_head("/encode", 100_000), b'{"arrays": [[[0.5')
    time.sleep(0.2)
    sock.close()
    wait_for(lambda: metric(address, "vae_cancelled_requests_total", **labels) == before + 1)
    assert metric(address, "vae_errors_total", **labels, status="500") == 0


def test_loglik_past_its_rows_is_refused_at_once(server):
    """4,000 rows admitted, one estimate at a time: of six k=2000 requests sent together two are admitted (one
    runs, one waits), the others get 503 with Retry-After before the admitted ones finish."""
    address, _ = server
    refused_before = metric(address, "vae_rejected_total", reason="loglik_busy")

    def loglik(_):
        started = time.perf_counter()
        r = httpx.post(f"http://{address}/loglik?k=2000&model=fashion-mnist&seed=0", json=IMAGE, timeout=60)
        return r, time.perf_counter() - started

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(loglik, range(6)))
    ok = [t for r, t in answers if r.status_code == 200]
    refused = [(r, t) for r, t in answers if r.status_code == 503]
    assert len(ok) + len(refused) == 6 and len(ok) >= 2 and refused
    for r, seconds in refused:
        assert r.headers["retry-after"] == "1"
        error = r.json()["error"]
        assert error["status"] == 503 and error["limit"] == 4000 and "busy" in error["message"]
        assert seconds < max(ok)  # answered without waiting for the work before it
    assert metric(address, "vae_rejected_total", reason="loglik_busy") == refused_before + len(refused)
    lls = {r.json()["results"][0]["log_likelihood"] for r, _ in answers if r.status_code == 200}
    assert len(lls) == 1  # the admitted ones computed the same seeded estimate


def test_a_full_batch_queue_is_refused_with_503(server):
    """64 rows may wait for the decoder: of many concurrent /sample?n=64, those that find the queue full get 503."""
    address, _ = server
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda s: httpx.get(f"http://{address}/sample?n=64&seed={s}&model=fashion-mnist",
                                                    timeout=60), range(48)))
    statuses = sorted({r.status_code for r in answers})
    assert set(statuses) <= {200, 503} and 200 in statuses
    for r in answers:
        if r.status_code == 503:
            assert r.json()["error"]["limit"] == 64 and r.headers["retry-after"] == "1"
    refused = sum(r.status_code == 503 for r in answers)
    assert metric(address, "vae_rejected_total", reason="queue_full") >= refused


def test_bodies_in_flight_are_bounded(model_dir):
    """With 2 KiB of bodies allowed in flight, a request holding 1,500 bytes (its body still coming) leaves no
    room for another of 1,500: that one gets 503 by its Content-Length, before its body is read."""
    with server_process(model_dir, VAE_MAX_BODY_BYTES_IN_FLIGHT="2048") as (address, _):
        slow = raw_request(address, post_head("/encode", 1500), b'{"arrays": ')
        time.sleep(0.2)
        r = httpx.post(f"http://{address}/encode", content=b"x" * 1500, headers={"content-type": "application/json"})
        assert r.status_code == 503 and r.json()["error"]["limit"] == 2048 and r.headers["retry-after"] == "1"
        slow.close()
        time.sleep(0.2)
        r = httpx.post(f"http://{address}/encode?model=fashion-mnist", json=IMAGE)  # room again
        assert r.status_code == 200
        assert metric(address, "vae_rejected_total", reason="body_bytes") == 1


def test_the_log_has_one_info_line_per_cancelled_request_and_no_traceback(server):
    """Runs last in the module (pytest keeps file order): the server is stopped to read its log."""
    address, proc = server
    proc.terminate()
    output = proc.communicate(timeout=30)[0]
    gone = [line for line in output.splitlines() if "client went away" in line]
    assert len(gone) == 2 and all(" INFO " in line for line in gone)
    assert "Traceback" not in output and " ERROR " not in output
