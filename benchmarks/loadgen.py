"""Closed-loop HTTP load from wrk (Debian package `wrk`): `concurrency` connections, each sending its next
request as soon as the last one is answered, for `duration` seconds after a warm-up; reports requests/s,
images/s, p50/p90/p99 latency and errors (transport errors and non-2xx answers).

Why wrk: it is C on one thread, so on this 2-core machine it takes a few percent of a core where a
Python client (httpx) saturated a core at about 800 requests/s and measured itself, not the server.

    python benchmarks/loadgen.py --url http://127.0.0.1:8000/healthz --concurrency 32 --duration 10
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# wrk calls done() once at the end; latencies are in microseconds.
REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\\n{"requests": %d, "duration_us": %d, "errors": %d, "non_2xx": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d}\\n', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with the query string
    body: bytes = b""
    content_type: str | None = None


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    requests: int
    errors: int
    images_per_request: int
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def images_per_second(self) -> float:
        return self.requests_per_second * self.images_per_request

    def row(self) -> dict[str, float]:
        return {"concurrency": self.concurrency, "req_s": self.requests_per_second, "img_s": self.images_per_second,
                "p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "p99_ms": self.p99_ms, "errors": self.errors}


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian/Ubuntu), then run again")
    return path


def run_load(base_url: str, request: Request, concurrency: int, duration: float, images_per_request: int = 1,
             warmup: float = 1.0) -> LoadResult:
    """wrk with one thread and `concurrency` keep-alive connections; the warm-up run is discarded."""
    wrk = require_wrk()
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "body"
        body_file.write_bytes(request.body)
        lua = [f'wrk.method = "{request.method}"',
               f'local f = assert(io.open("{body_file}", "rb")); wrk.body = f:read("*a"); f:close()']
        if request.content_type:
            lua.append(f'wrk.headers["Content-Type"] = "{request.content_type}"')
        script = Path(tmp) / "load.lua"
        script.write_text("\n".join(lua) + "\n" + REPORT_LUA)

        def wrk_run(seconds: float) -> dict:
            out = subprocess.run([wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
                                  "-s", str(script), base_url + request.path],
                                 capture_output=True, text=True, check=True).stdout
            return json.loads(out.strip().splitlines()[-1])

        if warmup > 0:
            wrk_run(warmup)
        r = wrk_run(duration)
    seconds = r["duration_us"] / 1e6
    ok = r["requests"] - r["non_2xx"]  # wrk counts answered requests; non-2xx ones are errors, not throughput
    return LoadResult(concurrency, seconds, ok, r["errors"], images_per_request,
                      r["p50_us"] / 1000, r["p90_us"] / 1000, r["p99_us"] / 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="full URL of a GET endpoint")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    base, _, path = args.url.partition("//")[2].partition("/")
    print(run_load(f"http://{base}", Request("GET", "/" + path), args.concurrency, args.duration).row())


if __name__ == "__main__":
    main()
