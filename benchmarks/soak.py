"""A soak test: mixed load against one server for a long time, to see that it keeps answering and that its
memory stays flat.

    python benchmarks/soak.py [--seconds 600] [--connections 64] [--url http://127.0.0.1:8000 --pid PID] [--out FILE]

Without --url it starts the service itself (`python -m service` on the shipped models/, its default settings, as
benchmarks/run.py does) and stops it at the end. `--connections` clients (asyncio, httpx.AsyncClient; raw sockets
for the disconnects) each send their next request as soon as the last one is answered, picking at random (seeded)
among: /encode (1 PNG), /decode, /sample, /loglik, v2 M.encoder, bad inputs (each must be answered with its 4xx),
and clients that go away mid-request (mid-headers, mid-body, or before reading the answer of a /loglik).

Reported as a markdown table on stdout (and --out): requests per kind, answers by status, errors (transport
errors, 5xx, and answers other than the one expected), 503s with Retry-After counted apart as shed load (the
service's overload answer, not an error), p50/p99 latency per kind; the server's resident memory (VmRSS from
/proc/<pid>/status) every --rss-every seconds; and the verdict "RSS flat within 10%", comparing the last sample
with the first one taken after --warmup seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.run import EXAMPLE, free_port, rss_mb, start  # noqa: E402

LATENT_DIM, SIDE = 32, 28  # the shipped default model, fashion-mnist
MULTIPART_BOUNDARY = "soakboundary"
FLAT_WITHIN = 0.10  # the verdict's tolerance on resident memory


def multipart_png() -> tuple[bytes, str]:
    body = (f"--{MULTIPART_BOUNDARY}\r\nContent-Disposition: form-data; name=\"images\"; filename=\"a.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + EXAMPLE + f"\r\n--{MULTIPART_BOUNDARY}--\r\n".encode()
    return body, f"multipart/form-data; boundary={MULTIPART_BOUNDARY}"


PNG_FORM, PNG_FORM_TYPE = multipart_png()
Z = json.dumps({"z": [np.random.default_rng(0).standard_normal(LATENT_DIM).round(4).tolist()]}).encode()
X = json.dumps({"inputs": [{"name": "x", "shape": [1, 1, SIDE, SIDE], "datatype": "FP32",
                            "data": [0.5] * SIDE * SIDE}]}).encode()
JSON = "application/json"


@dataclass(frozen=True)
class Work:
    """One kind of request: how to send it, and the status it must get (4xx: any 4xx)."""

    kind: str
    method: str
    path: str
    body: bytes = b""
    content_type: str | None = None
    expect: int = 200


GOOD = [
    (25, Work("encode", "POST", "/encode", PNG_FORM, PNG_FORM_TYPE)),
    (20, Work("decode", "POST", "/decode", Z, JSON)),
    (10, Work("sample", "GET", "/sample?n=4")),
    (5, Work("loglik", "POST", "/loglik?k=200", PNG_FORM, PNG_FORM_TYPE)),
    (10, Work("v2 encoder", "POST", "/v2/models/fashion-mnist.encoder/infer", X, JSON)),
]
BAD = [  # one kind, "bad input", sent in turn: each must be answered with a 4xx, and nothing else
    Work("bad input", "POST", "/encode", b'{"images": [', JSON, 422),
    Work("bad input", "POST", "/decode", b'{"z": [[1, 2]]}', JSON, 422),
    Work("bad input", "GET", "/sample?n=0", expect=422),
    Work("bad input", "POST", "/loglik?k=99999999", PNG_FORM, PNG_FORM_TYPE, 422),
    Work("bad input", "POST", "/encode", PNG_FORM.replace(EXAMPLE, EXAMPLE[:60]), PNG_FORM_TYPE, 422),
    Work("bad input", "POST", "/encode", b"hello", "text/plain", 415),
    Work("bad input", "GET", "/sample?model=nope", expect=404),
    Work("bad input", "POST", "/v2/models/fashion-mnist.encoder/infer", json.dumps({"inputs": [{
        "name": "x", "shape": [1, 1, SIDE, SIDE], "datatype": "FP32", "data": [[0.5]] * SIDE * SIDE}]}).encode(),
         JSON, 400),
    Work("bad input", "POST", "/v2/models/fashion-mnist.encoder/infer", b"\0" * 64, JSON, 400),
]
BAD_WEIGHT, DISCONNECT_WEIGHT = 15, 10


@dataclass
class Tally:
    """What one kind of request got: answers by status, errors by reason, latencies of the answered ones."""

    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    shed: int = 0  # 503 with Retry-After: the server refusing load it cannot take, as it should
    latencies: list[float] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


class Soak:
    def __init__(self, base_url: str, connections: int, seconds: float, seed: int):
        self.base_url, self.connections, self.seconds = base_url, connections, seconds
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.random = random.Random(seed)
        self.tallies: dict[str, Tally] = defaultdict(Tally)
        self.bad_turn = 0
        kinds: list[tuple[int, Callable[[httpx.AsyncClient], Awaitable[None]]]] = [
            (weight, self.sender(work)) for weight, work in GOOD]
        kinds += [(BAD_WEIGHT, self.send_bad), (DISCONNECT_WEIGHT, self.disconnect)]
        self.weights = [w for w, _ in kinds]
        self.actions = [a for _, a in kinds]

    def sender(self, work: Work) -> Callable[[httpx.AsyncClient], Awaitable[None]]:
        async def send(client: httpx.AsyncClient) -> None:
            await self.send(client, work)
        return send

    async def send_bad(self, client: httpx.AsyncClient) -> None:
        self.bad_turn += 1
        await self.send(client, BAD[self.bad_turn % len(BAD)])

    async def send(self, client: httpx.AsyncClient, work: Work) -> None:
        tally = self.tallies[work.kind]
        headers = {"content-type": work.content_type} if work.content_type else {}
        started = time.perf_counter()
        try:
            r = await client.request(work.method, work.path, content=work.body or None, headers=headers)
        except httpx.HTTPError as exc:
            tally.statuses["no answer"] += 1
            tally.errors[type(exc).__name__] += 1
            return
        tally.latencies.append(time.perf_counter() - started)
        tally.statuses[str(r.status_code)] += 1
        if r.status_code == 503 and "retry-after" in r.headers:
            tally.shed += 1
        elif r.status_code != work.expect:
            tally.errors[f"{r.status_code} (expected {work.expect})"] += 1

    async def disconnect(self, client: httpx.AsyncClient) -> None:
        """A client that goes away: mid-headers, mid-body, or after sending a whole /loglik without reading."""
        how = self.random.choice(["mid-headers", "mid-body", "before the answer"])
        tally = self.tallies[f"disconnect {how}"]
        if how == "mid-headers":
            data = b"POST /encode HTTP/1.1\r\nHost: soak\r\nContent-Ty"
        elif how == "mid-body":
            data = (f"POST /encode HTTP/1.1\r\nHost: soak\r\nContent-Type: {PNG_FORM_TYPE}\r\n"
                    f"Content-Length: {len(PNG_FORM)}\r\n\r\n").encode() + PNG_FORM[:len(PNG_FORM) // 2]
        else:
            data = (f"POST /loglik?k=1000 HTTP/1.1\r\nHost: soak\r\nContent-Type: {PNG_FORM_TYPE}\r\n"
                    f"Content-Length: {len(PNG_FORM)}\r\n\r\n").encode() + PNG_FORM
        try:
            _, writer = await asyncio.open_connection(self.host, self.port)
            writer.write(data)
            await writer.drain()
            writer.transport.abort()  # gone at once, without a FIN handshake
        except OSError as exc:
            tally.statuses["no answer"] += 1
            tally.errors[type(exc).__name__] += 1
            return
        tally.statuses["gone"] += 1

    async def client_loop(self, deadline: float) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=60) as client:
            while time.monotonic() < deadline:
                action = self.random.choices(self.actions, self.weights)[0]
                await action(client)

    async def run(self, pid: int | None, rss_every: float) -> list[tuple[float, float]]:
        """Run the load; return the RSS samples (seconds since the start, MB)."""
        started = time.monotonic()
        deadline = started + self.seconds
        samples: list[tuple[float, float]] = []

        async def sample_rss(pid: int) -> None:
            while time.monotonic() < deadline - 1:  # the last sample is taken after the load (below)
                samples.append((time.monotonic() - started, rss_mb(pid)))
                await asyncio.sleep(max(0.0, started + len(samples) * rss_every - time.monotonic()))

        sampler = asyncio.create_task(sample_rss(pid)) if pid is not None else None
        await asyncio.gather(*(self.client_loop(deadline) for _ in range(self.connections)))
        if sampler is not None and pid is not None:
            sampler.cancel()
            samples.append((time.monotonic() - started, rss_mb(pid)))
        return samples


def percentile_ms(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1000:.1f}" if values else "-"


def verdict(samples: list[tuple[float, float]], warmup: float) -> str:
    after = [s for s in samples if s[0] >= warmup]
    if len(after) < 2:
        return f"RSS not judged: fewer than two samples after the {warmup:g} s warm-up"
    (t0, first), (t1, last) = after[0], after[-1]
    change = last / first - 1
    flat = abs(change) <= FLAT_WITHIN
    return (f"RSS flat within {FLAT_WITHIN:.0%}: {'yes' if flat else 'NO'} ({last:.0f} MB at {t1:.0f} s vs "
            f"{first:.0f} MB at {t0:.0f} s, the first sample after the {warmup:g} s warm-up: {change:+.1%})")


def report(soak: Soak, samples: list[tuple[float, float]], warmup: float, seconds: float, healthy: str) -> str:
    tallies = soak.tallies
    total = sum(t.requests for t in tallies.values())
    errors = sum(sum(t.errors.values()) for t in tallies.values())
    shed = sum(t.shed for t in tallies.values())
    lines = [f"Soak: {soak.connections} connections for {seconds:.0f} s against {soak.base_url}: {total} requests "
             f"({total / seconds:.0f}/s), {errors} errors, {shed} shed (503 with Retry-After). {healthy}", "",
             "| kind | requests | answers by status | errors | shed | p50 ms | p99 ms |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for kind in sorted(tallies):
        t = tallies[kind]
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(t.statuses.items()))
        errs = ", ".join(f"{e}: {n}" for e, n in sorted(t.errors.items())) or "0"
        lines.append(f"| {kind} | {t.requests} | {statuses} | {errs} | {t.shed} | {percentile_ms(t.latencies, 50)} | "
                     f"{percentile_ms(t.latencies, 99)} |")
    if samples:
        lines += ["", "| seconds | RSS MB |", "| --- | --- |"]
        lines += [f"| {t:.0f} | {mb:.1f} |" for t, mb in samples]
        lines += ["", verdict(samples, warmup)]
    else:
        lines += ["", "RSS not measured: give --pid with --url"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600.0, help="how long the load runs")
    parser.add_argument("--connections", type=int, default=64, help="concurrent clients")
    parser.add_argument("--url", help="a running server (default: start the service on a free port)")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, for its resident memory")
    parser.add_argument("--rss-every", type=float, default=15.0, help="seconds between resident memory samples")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds before the reference RSS sample")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random choice of requests")
    parser.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args()

    server = None
    if args.url:
        base_url, pid = args.url.rstrip("/"), args.pid
    else:
        port = free_port()
        server, ready_s = start([sys.executable, "-m", "service", "--port", str(port)], port, "/readyz")
        base_url, pid = f"http://127.0.0.1:{port}", server.pid
        print(f"service started in {ready_s:.2f} s, pid {pid}, {os.cpu_count()} CPUs", file=sys.stderr)
    try:
        soak = Soak(base_url, args.connections, args.seconds, args.seed)
        started = time.monotonic()
        samples = asyncio.run(soak.run(pid, args.rss_every))
        elapsed = time.monotonic() - started
        try:  # the server must still answer once the load is over
            healthz = httpx.get(f"{base_url}/healthz", timeout=10).status_code
            healthy = f"/healthz after the load: {healthz}."
        except httpx.HTTPError as exc:
            healthy = f"/healthz after the load: no answer ({type(exc).__name__})."
        if server is not None and server.poll() is not None:
            healthy += f" The server exited with status {server.returncode}."
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    text = report(soak, samples, args.warmup, elapsed, healthy)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
