"""A closed-loop HTTP load generator: `concurrency` clients, each sending its next request as soon as the
last one is answered, for `duration` seconds; reports requests/s, images/s, p50/p90/p99 latency, errors.

Used by benchmarks/run.py; also runnable on its own:

    python benchmarks/loadgen.py --url http://127.0.0.1:8000/healthz --concurrency 32 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import numpy as np

# A request: (method, path, keyword arguments for httpx) - built once, sent many times.
Request = tuple[str, str, dict]


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    requests: int
    errors: int
    images_per_request: int
    latencies: np.ndarray  # seconds, successful requests

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def images_per_second(self) -> float:
        return self.requests * self.images_per_request / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000) if len(self.latencies) else float("nan")

    def row(self) -> dict[str, float]:
        return {"concurrency": self.concurrency, "req_s": self.requests_per_second, "img_s": self.images_per_second,
                "p50_ms": self.percentile(50), "p90_ms": self.percentile(90), "p99_ms": self.percentile(99),
                "errors": self.errors}


async def run_load(base_url: str, make_request: Callable[[], Request], concurrency: int, duration: float,
                   images_per_request: int = 1, warmup: float = 1.0) -> LoadResult:
    """Closed loop: each of `concurrency` workers sends, waits, sends again; the first `warmup` seconds
    are not counted."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    counting_from = start + warmup
    stop = counting_from + duration
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal errors
            while True:
                method, path, kwargs = make_request()
                sent = time.perf_counter()
                if sent >= stop:
                    return
                try:
                    response = await client.request(method, path, **kwargs)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                done = time.perf_counter()
                if sent >= counting_from:
                    if ok:
                        latencies.append(done - sent)
                    else:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(concurrency, duration, len(latencies), errors, images_per_request, np.array(latencies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="full URL of a GET endpoint")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    base, _, path = args.url.partition("//")[2].partition("/")
    result = asyncio.run(run_load(f"http://{base}", lambda: ("GET", "/" + path, {}), args.concurrency, args.duration))
    print(result.row())


if __name__ == "__main__":
    main()
