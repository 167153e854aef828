"""Per-replica figures behind deploy/k8s's resources and capacity note: resident memory and CPU of one
`python -m service` process with the default models, idle and under load.

    .venv/bin/python benchmarks/sizing.py [--port 8123] [--seconds 20]

Starts the service on --port, then for each window prints one JSON line: the server's CPU in cores
((utime + stime) of all its threads / wall time, from /proc/PID/stat), its VmRSS sampled every 0.2 s,
its VmHWM (the peak resident set so far) and, for the load windows, wrk's requests/s and latencies
(benchmarks/loadgen.py, Debian's wrk; the requests of benchmarks/run.py) and the requests/s per core of server
CPU, from which the HPA's target gives a replica's rate. The client shares the machine with the server. The peak
under the largest requests of every endpoint is benchmarks/memory.py's. docs/deploy.md, "Sizing", has the results.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.loadgen import Request, run_load  # noqa: E402
from benchmarks.run import scenarios, start  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
LOADS = {"encode 1 PNG": 32, "encode 64 PNG": 8, "loglik k=1000": 8, "v2 encoder 1 (JSON)": 32}  # -> connections


def memory_mb(pid: int) -> dict[str, float]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {line.split(":")[0]: int(line.split()[1]) / 1024 for line in lines
            if line.startswith(("VmRSS:", "VmHWM:"))}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime of every thread


def window(pid: int, label: str, work: Callable[[], dict | None]) -> None:
    """Run `work`, print the server's CPU cores and memory over it."""
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    peak, done = [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], memory_mb(pid)["VmRSS"])
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    result = work()
    done.set()
    sampler.join()
    wall = time.perf_counter() - t0
    cores = (cpu_seconds(pid) - cpu0) / wall
    per_core = {"req_s_per_core": round(result["req_s"] / cores, 1)} if result and "req_s" in result else {}
    print(json.dumps({"window": label, "seconds": round(wall, 1), "server_cpu_cores": round(cores, 2), **per_core,
                      "rss_peak_sampled_mb": round(peak[0]),
                      **{k: round(v) for k, v in memory_mb(pid).items()}, "load": result}), flush=True)


def idle() -> None:
    time.sleep(10)


def load(base: str, request: Request, connections: int, seconds: float, images: int) -> dict:
    return run_load(base, request, connections, seconds, images).row()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each load window")
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    proc, ready_s = start([sys.executable, "-m", "service", "--port", str(args.port)], args.port, "/readyz")
    try:
        pid = proc.pid
        print(json.dumps({"ready_s": round(ready_s, 2), "cpus": os.cpu_count(), **memory_mb(pid)}), flush=True)
        requests = {s.name: s for s in scenarios(32)}  # the default model's 32 latents
        window(pid, "idle", idle)
        for name, connections in LOADS.items():
            window(pid, f"{name}, {connections} connections", functools.partial(
                load, base, requests[name].request, connections, args.seconds, requests[name].images))
        encode, loglik = requests["encode 1 PNG"].request, requests["loglik k=1000"].request

        def mixed() -> dict:
            rows: dict[str, object] = {}
            other = threading.Thread(target=lambda: rows.update(loglik=run_load(base, loglik, 4, args.seconds).row()))
            other.start()
            rows["encode"] = run_load(base, encode, 16, args.seconds).row()
            other.join()
            return rows

        window(pid, "encode 1 PNG 16 + loglik k=1000 4 connections", mixed)
        window(pid, "idle after the load", idle)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
