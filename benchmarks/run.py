"""The service benchmark: the same work against the service, a plain hand-written FastAPI server
(benchmarks/plain_server.py) and the bare onnxruntime session in-process, in one run.

    python benchmarks/run.py [--duration 5] [--concurrency 1 8 32 64] [--out benchmarks/results]

Starts both servers itself on free ports (the service with its defaults, batching on), measures the
service's start-up time to ready and its resident memory after start-up and after the load, and writes
results.md (the table) and results.json. The load generator shares the machine with the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.loadgen import run_load  # noqa: E402
from service.estimators import log_likelihood  # noqa: E402
from service.images import png_base64  # noqa: E402
from service.manifest import load_manifest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "fashion-mnist"
EXAMPLE = (ROOT / "docs" / "example-ankle-boot.png").read_bytes()


@dataclass
class Scenario:
    name: str
    method: str
    path: str
    images: int  # images per request
    files: int = 0  # PNG uploads per request
    json: dict | None = None


def scenarios(latent_dim: int) -> list[Scenario]:
    z = np.random.default_rng(0).standard_normal(latent_dim).round(4).tolist()
    return [
        Scenario("healthz", "GET", "/healthz", 1),
        Scenario("encode 1 PNG", "POST", "/encode", 1, files=1),
        Scenario("encode 64 PNG", "POST", "/encode", 64, files=64),
        Scenario("decode 1", "POST", "/decode", 1, json={"z": [z]}),
        Scenario("sample n=64", "GET", "/sample?n=64&seed=0", 64),
        Scenario("loglik k=1000", "POST", "/loglik?k=1000&seed=0", 1, files=1),
    ]


def request_of(s: Scenario):
    kwargs: dict = {}
    if s.files:
        kwargs["files"] = [("images", (f"{i}.png", EXAMPLE, "image/png")) for i in range(s.files)]
    if s.json is not None:
        kwargs["json"] = s.json
    return lambda: (s.method, s.path, kwargs)


def bare(s: Scenario, encoder: ort.InferenceSession, decoder: ort.InferenceSession, sigma_spec, seconds: float
         ) -> float:
    """Images/s of the same work done in-process on the bare sessions (PNG decode/encode included),
    batched at 64 where the request carries one image: the ceiling of what the model alone can do."""
    def decode_png() -> np.ndarray:
        return (np.asarray(Image.open(io.BytesIO(EXAMPLE)), dtype=np.float32) + 0.5) / 256

    def work() -> int:
        if s.name == "healthz":
            return 0
        if s.name.startswith("encode"):
            x = np.stack([decode_png() for _ in range(64)])[:, None]
            encoder.run(None, {"x": x})
            return 64
        if s.name.startswith("decode") or s.name.startswith("sample"):
            z = np.random.default_rng(0).standard_normal((64, sigma_spec[1])).astype(np.float32)
            (mean,) = decoder.run(None, {"z": z})
            [png_base64(m) for m in mean]
            return 64
        x = decode_png()[None, None]
        mu, logvar = encoder.run(None, {"x": x})
        log_likelihood(x, mu, logvar, lambda zz: decoder.run(None, {"z": zz})[0], sigma_spec[0], 1000, 0, 1000)
        return 1

    if s.name == "healthz":
        return float("nan")
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += work()
    return done / (time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(cmd: list[str], port: int, ready_path: str) -> tuple[subprocess.Popen, float]:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "VAE_LOG_LEVEL": "warning"})
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=1).status_code == 200:
                return proc, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.perf_counter() - started > 60:
            raise RuntimeError(f"{cmd} did not start")
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per row")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--only", nargs="+", help="run only the scenarios whose names start with these")
    args = parser.parse_args()
    manifest = load_manifest(MODEL)
    opts = ort.SessionOptions()
    encoder = ort.InferenceSession(str(MODEL / "encoder.onnx"), opts, providers=["CPUExecutionProvider"])
    decoder = ort.InferenceSession(str(MODEL / "decoder.onnx"), opts, providers=["CPUExecutionProvider"])

    service_port, plain_port = free_port(), free_port()
    service, ready_s = start([sys.executable, "-m", "service", "--port", str(service_port)], service_port, "/readyz")
    rss_start = rss_mb(service.pid)
    plain, _ = start([sys.executable, "-m", "uvicorn", "benchmarks.plain_server:app", "--port", str(plain_port),
                      "--log-level", "warning"], plain_port, "/healthz")
    rows = []
    try:
        for s in scenarios(manifest.latent_dim):
            if args.only and not any(s.name.startswith(prefix) for prefix in args.only):
                continue
            ceiling = bare(s, encoder, decoder, (manifest.likelihood, manifest.latent_dim), min(args.duration, 3))
            for c in args.concurrency:
                svc = asyncio.run(run_load(f"http://127.0.0.1:{service_port}", request_of(s), c, args.duration,
                                           s.images))
                base = asyncio.run(run_load(f"http://127.0.0.1:{plain_port}", request_of(s), c, args.duration,
                                            s.images))
                row = {"scenario": s.name, **svc.row(), "plain_req_s": base.requests_per_second,
                       "plain_img_s": base.images_per_second, "plain_p99_ms": base.percentile(99),
                       "plain_errors": base.errors, "bare_img_s": ceiling}
                rows.append(row)
                print(json.dumps(row), flush=True)
        rss_end = rss_mb(service.pid)
    finally:
        service.terminate()
        plain.terminate()
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"ready_seconds": ready_s, "rss_mb_after_start": rss_start, "rss_mb_after_load": rss_end,
               "duration": args.duration, "cpus": os.cpu_count(), "rows": rows}
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "results.md").write_text(to_markdown(summary))
    print(to_markdown(summary))


def to_markdown(summary: dict) -> str:
    head = (f"Service ready in {summary['ready_seconds']:.2f} s; resident memory {summary['rss_mb_after_start']:.0f}"
            f" MB after start-up, {summary['rss_mb_after_load']:.0f} MB after the load; {summary['cpus']} CPUs; "
            f"{summary['duration']:g} s per row.")
    lines = [head, "",
             "| work | clients | service req/s | service img/s | p50 ms | p99 ms | errors | plain req/s | "
             "service / plain | bare img/s | service img/s / bare |",
             "|" + " --- |" * 11]
    for r in summary["rows"]:
        ratio_plain = r["req_s"] / r["plain_req_s"] if r["plain_req_s"] else float("nan")
        ratio_bare = r["img_s"] / r["bare_img_s"] if r["bare_img_s"] == r["bare_img_s"] else float("nan")
        lines.append(f"| {r['scenario']} | {r['concurrency']} | {r['req_s']:.1f} | {r['img_s']:.1f} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {r['plain_req_s']:.1f} | "
                     f"{ratio_plain:.2f} | {r['bare_img_s']:.1f} | {ratio_bare:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
