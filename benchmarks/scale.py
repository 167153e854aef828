"""Requests/s of the ways to run more than one copy of the service, on the same load in the same run: one process,
`python -m service --workers N`, and Ray Serve with 2 replicas (deploy/ray/config.yaml, when Ray is installed).

    python benchmarks/scale.py [--workers 1 2] [--ray] [--concurrency 32] [--duration 5] [--rounds 2]

Each round starts each set-up in turn (one at a time: they share the machine with wrk) and runs every scenario
against it; the table gives the median over rounds, so drift hits all alike. Writes benchmarks/results/scale.json
and scale.md, and prints the markdown table (docs/deploy.md and docs/performance.md quote it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.loadgen import require_wrk, run_load  # noqa: E402
from benchmarks.run import ROOT, free_port, rss_mb, scenarios, start  # noqa: E402
from service.manifest import load_manifest  # noqa: E402

SCENARIOS = ("healthz", "encode 1 PNG", "encode 64 PNG", "sample n=64", "loglik k=1000")


def children_rss_mb(pid: int) -> float:
    """Resident memory of a supervisor's workers (its children), added up."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sum(rss_mb(int(child)) for child in children)


def load(label: str, port: int, args: argparse.Namespace) -> dict:
    rates = {}
    for s in scenarios(load_manifest(ROOT / "models" / "fashion-mnist").latent_dim):
        if s.name in SCENARIOS:
            result = run_load(f"http://127.0.0.1:{port}", s.request, args.concurrency, args.duration, s.images)
            rates[s.name] = {"req_s": result.requests_per_second, "p99_ms": result.p99_ms, "errors": result.errors}
            print(json.dumps({"setup": label, "scenario": s.name, **rates[s.name]}), flush=True)
    return rates


def measure_workers(workers: int, args: argparse.Namespace) -> dict:
    port = free_port()
    proc, ready_s = start([sys.executable, "-m", "service", "--port", str(port), "--workers", str(workers)], port,
                          "/readyz")
    try:
        rates = load(f"{workers} worker{'s' * (workers > 1)}", port, args)
        rss = children_rss_mb(proc.pid) if workers > 1 else rss_mb(proc.pid)
        return {"ready_s": ready_s, "rss_mb": rss, "rates": rates}
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def measure_ray(args: argparse.Namespace) -> dict:
    """`serve run deploy/ray/config.yaml` (port 8000, 2 initial replicas), timed to its first ready answer."""
    started = time.perf_counter()
    serve = Path(sys.executable).with_name("serve")
    proc = subprocess.Popen([str(serve), "run", "deploy/ray/config.yaml"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while True:
            try:
                if httpx.get("http://127.0.0.1:8000/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.perf_counter() - started > 180:
                raise RuntimeError("serve run deploy/ray/config.yaml did not start")
            time.sleep(0.2)
        ready_s = time.perf_counter() - started
        return {"ready_s": ready_s, "rss_mb": float("nan"), "rates": load("ray serve", 8000, args)}
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # serve run shuts its application and the local Ray instance down
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run([str(serve.with_name("ray")), "stop", "--force"], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--ray", action="store_true", help="also Ray Serve with 2 replicas (needs .[ray])")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per row (after 1 s warm-up)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    require_wrk()
    setups = [f"{n} worker{'s' * (n > 1)}" for n in args.workers] + ["ray serve, 2 replicas"] * args.ray
    runs: dict[str, list[dict]] = {name: [] for name in setups}
    for _ in range(args.rounds):
        for n in args.workers:
            runs[setups[args.workers.index(n)]].append(measure_workers(n, args))
        if args.ray:
            runs[setups[-1]].append(measure_ray(args))
    summary = {"cpus": os.cpu_count(), "concurrency": args.concurrency, "duration": args.duration,
               "rounds": args.rounds, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "scale.md").write_text(to_markdown(summary) + "\n")
    print(to_markdown(summary))


def to_markdown(summary: dict) -> str:
    counts = list(summary["runs"])
    lines = [f"{summary['concurrency']} clients, wrk, {summary['duration']:g} s per row, median of "
             f"{summary['rounds']} rounds; {summary['cpus']} CPUs.", "",
             "| work | " + " | ".join(f"{name} req/s" for name in counts) + " | errors |",
             "|" + " --- |" * (len(counts) + 2)]
    for name in SCENARIOS:
        cells, errors = [], 0
        for n in counts:
            rounds = [run["rates"][name] for run in summary["runs"][n] if name in run["rates"]]
            cells.append(f"{statistics.median(r['req_s'] for r in rounds):.0f}" if rounds else "-")
            errors += sum(r["errors"] for r in rounds)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {errors} |")
    ready = ", ".join(f"{n}: {statistics.median(run['ready_s'] for run in summary['runs'][n]):.1f} s" for n in counts)
    rss = ", ".join(f"{n}: {statistics.median(run['rss_mb'] for run in summary['runs'][n]):.0f} MB"
                    for n in counts if "ray" not in n)
    lines += ["", f"Ready after: {ready}. Resident memory after the load (all workers together): {rss}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
