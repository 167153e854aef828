"""Resident memory under the largest requests: the maximum request of every endpoint, from many clients at once.

    python benchmarks/memory.py [--clients 16] [--seconds 30] [--env VAE_LOGLIK_CONCURRENCY=4 ...]

Starts the service (its defaults, plus --env) on a free port and, for --seconds, keeps --clients clients busy
on each of these at the same time (so 7 x clients requests in flight):
  encode        64 PNGs, samples=64
  encode-json   a 13 MB JSON body of 64 arrays (160 x 160, resized)
  decode        64 latent vectors, noise=true, format=png
  sample        n=256
  loglik        64 PNGs, k=5000
  reconstruct   64 PNGs, format=png
  interpolate   steps=64
It samples the server's VmRSS every 0.5 s and prints, as markdown, the peak, the RSS after start-up and after
the load, and the answers by status (503s are the service refusing work past its bounds: expected). The
default budget of docs/operations.md ("Memory") is sized from this run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.run import EXAMPLE, free_port, rss_mb, start  # noqa: E402

IMAGES = {"images": [base64.b64encode(EXAMPLE).decode()] * 64}


def workloads(latent_dim: int) -> dict[str, tuple[str, str, bytes]]:
    """name -> (method, path, JSON body): the largest request of each endpoint under the default limits."""
    rng = np.random.default_rng(0)
    arrays = [rng.uniform(size=(160, 160)).round(4).tolist() for _ in range(64)]
    z = rng.standard_normal((64, latent_dim)).round(4).tolist()
    return {
        "encode": ("POST", "/encode?samples=64", json.dumps(IMAGES).encode()),
        "encode-json": ("POST", "/encode?resize=true", json.dumps({"arrays": arrays}).encode()),
        "decode": ("POST", "/decode?noise=true&format=png", json.dumps({"z": z}).encode()),
        "sample": ("GET", "/sample?n=256", b""),
        "loglik": ("POST", "/loglik?k=5000", json.dumps(IMAGES).encode()),
        "reconstruct": ("POST", "/reconstruct?format=png", json.dumps(IMAGES).encode()),
        "interpolate": ("POST", "/interpolate?steps=64", json.dumps({"z": z[:2]}).encode()),
    }


async def client(http: httpx.AsyncClient, method: str, path: str, body: bytes, until: float,
                 statuses: Counter[str], name: str) -> None:
    headers = {"content-type": "application/json"} if body else {}
    while time.monotonic() < until:
        try:
            r = await http.request(method, path, content=body or None, headers=headers)
            statuses[f"{name} {r.status_code}"] += 1
            if r.status_code == 503:
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))
        except httpx.HTTPError as exc:
            statuses[f"{name} {type(exc).__name__}"] += 1


async def load(base: str, pid: int, clients: int, seconds: float) -> tuple[list[float], Counter[str]]:
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=httpx.Limits(max_connections=None)) as http:
        latent_dim = (await http.get("/models")).json()["models"][0]["manifest"]["latent_dim"]
        statuses: Counter[str] = Counter()
        until = time.monotonic() + seconds
        tasks = [asyncio.create_task(client(http, m, p, b, until, statuses, name))
                 for name, (m, p, b) in workloads(latent_dim).items() for _ in range(clients)]
        samples = []
        while not all(t.done() for t in tasks):
            samples.append(rss_mb(pid))
            await asyncio.sleep(0.5)
        await asyncio.gather(*tasks)
    return samples, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16, help="clients per endpoint")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--env", nargs="*", default=[], help="VAE_NAME=value settings for the service")
    args = parser.parse_args()
    os.environ.update(dict(e.split("=", 1) for e in args.env))
    port = free_port()
    server, _ = start([sys.executable, "-m", "service", "--port", str(port)], port, "/readyz")
    try:
        after_start = rss_mb(server.pid)
        samples, statuses = asyncio.run(load(f"http://127.0.0.1:{port}", server.pid, args.clients, args.seconds))
        time.sleep(2)
        after = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    print(f"`python benchmarks/memory.py --clients {args.clients} --seconds {args.seconds:g}"
          + (f" --env {' '.join(args.env)}" if args.env else "") + "`\n")
    print("| RSS after start-up | peak under load | after the load |\n|---|---|---|")
    print(f"| {after_start:.0f} MB | {max(samples):.0f} MB | {after:.0f} MB |\n")
    print("| endpoint status | answers |\n|---|---|")
    for key, count in sorted(statuses.items()):
        print(f"| {key} | {count} |")


if __name__ == "__main__":
    main()
