"""What each hand-written part of the service is worth: the service against itself with that part replaced by
the library it stands in for, in the same run. A hand-written part stays only where it is worth more than 20%
of an endpoint's throughput (docs/performance.md lists the figures this writes).

    python benchmarks/ablation.py [--rounds 5] [--duration 4] [--out benchmarks/results]

Parts and their library: the inference routes' route class (service/routing.py) vs FastAPI's request handler
(VAE_LEAN_ROUTES=false); the multipart parser (service/multipart.py) vs python-multipart's; the PNG encoder
(service/png.py) vs Pillow's. Each variant is a service process (benchmarks/ablation_server.py); wrk drives
each in turn, alternating over the rounds so that the machine's drift hits all alike, and the medians are
compared. Needs wrk.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.loadgen import Request, require_wrk, run_load  # noqa: E402
from benchmarks.run import free_port, multipart  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Part:
    name: str
    module: str
    library: str
    env: dict[str, str]  # the variant with the library instead
    scenarios: tuple[str, ...]


PARTS = [
    Part("route class", "service/routing.py", "FastAPI's request handler", {"VAE_LEAN_ROUTES": "false"},
         ("encode 1 PNG", "sample n=1")),
    Part("multipart parser", "service/multipart.py", "python-multipart", {"ABLATE": "multipart"},
         ("encode 1 PNG", "encode 64 PNG")),
    Part("PNG encoder", "service/png.py", "Pillow", {"ABLATE": "png"}, ("sample n=64", "sample n=8")),
]
SCENARIOS = {  # name -> (request, connections)
    "encode 1 PNG": (multipart("/encode", 1), 32),
    "encode 64 PNG": (multipart("/encode", 64), 8),
    "sample n=1": (Request("GET", "/sample?n=1&seed=0"), 32),
    "sample n=64": (Request("GET", "/sample?n=64&seed=0"), 8),
    "sample n=8": (Request("GET", "/sample?n=8&seed=0"), 32),
    "decode 1": (Request("POST", "/decode", json.dumps({"z": [[0.1] * 32]}).encode(), "application/json"), 32),
}


def start(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "ablation_server.py"), "--port", str(port)],
                            cwd=ROOT, env={**os.environ, "VAE_LOG_LEVEL": "warning", **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the service with {env} did not start")


def measure(rounds: int, duration: float, parts: list[Part]) -> list[dict]:
    variants = {"service": {}} | {part.name: part.env for part in parts}
    wanted = {scenario for part in parts for scenario in part.scenarios}
    servers = {name: start(env) for name, env in variants.items()}
    runs: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(rounds):
            for scenario, (request, connections) in SCENARIOS.items():
                if scenario not in wanted:
                    continue
                for name, (_, url) in servers.items():
                    if name != "service" and not any(p.name == name and scenario in p.scenarios for p in parts):
                        continue
                    run_load(url, request, connections, 1, 1)  # warm-up
                    result = run_load(url, request, connections, duration, 1)
                    runs.setdefault((name, scenario), []).append(result.requests_per_second)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
    rows = []
    for part in parts:
        for scenario in part.scenarios:
            ours, library = runs[("service", scenario)], runs[(part.name, scenario)]
            gain = statistics.median(ours) / statistics.median(library) - 1
            rows.append({"part": part.name, "module": part.module, "library": part.library, "scenario": scenario,
                         "connections": SCENARIOS[scenario][1], "service_req_s": statistics.median(ours),
                         "library_req_s": statistics.median(library), "gain": gain, "service_runs": ours,
                         "library_runs": library})
    return rows


def to_markdown(rows: list[dict], rounds: int, duration: float) -> str:
    lines = [f"Medians of {rounds} alternating rounds of {duration:g} s (wrk, after 1 s of warm-up) per variant.", "",
             "| hand-written part | instead of | work | connections | service req/s | with the library | worth |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['part']} (`{r['module']}`) | {r['library']} | {r['scenario']} | {r['connections']} | "
              f"{r['service_req_s']:.0f} | {r['library_req_s']:.0f} | {r['gain']:+.0%} |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of load per variant and round")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--parts", nargs="+", choices=[p.name for p in PARTS], help="only these parts; the other "
                        "parts' rows of an earlier run are kept")
    args = parser.parse_args()
    require_wrk()
    parts = [p for p in PARTS if args.parts is None or p.name in args.parts]
    rows = measure(args.rounds, args.duration, parts)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "ablation.json"
    kept = [r for r in json.loads(path.read_text())["rows"] if r["part"] not in {p.name for p in parts}] \
        if path.exists() and args.parts else []
    rows = sorted(kept + rows, key=lambda r: [p.name for p in PARTS].index(r["part"]))
    path.write_text(json.dumps({"rounds": args.rounds, "duration": args.duration, "cpus": os.cpu_count(),
                                "rows": rows}, indent=2) + "\n")
    text = to_markdown(rows, args.rounds, args.duration)
    (args.out / "ablation.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
