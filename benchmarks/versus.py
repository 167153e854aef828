"""This tree's service against an earlier commit's and the plain server, alternated in one run.

    python benchmarks/versus.py --commit aa94e8f [--rounds 9] [--duration 5] [--path /encode|/healthz]

What a change costs or gains, measured where it matters (over HTTP, under the load of benchmarks/run.py's
target row: one PNG per /encode at 32 clients, or GET /healthz): the commit's service is checked out in a
temporary git worktree and started beside this tree's and the plain server (benchmarks/plain_server.py), each
on the shipped models with its defaults; the three are driven one after another, round after round, so the
machine's drift hits all alike. Prints each round, the medians and the ratios (this tree / the commit, and
each / the plain server). Needs wrk, like benchmarks/run.py.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.loadgen import Request, require_wrk, run_load  # noqa: E402
from benchmarks.run import ROOT, free_port, multipart, start  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commit", required=True, help="the earlier commit to compare with")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per server and round")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--path", choices=["/encode", "/healthz"], default="/encode")
    args = parser.parse_args()
    require_wrk()
    request = multipart("/encode", 1) if args.path == "/encode" else Request("GET", "/healthz")
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "earlier"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.commit], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            rates = compare(worktree, request, args)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=False)
    report(rates, args)


def compare(worktree: Path, request: Request, args: argparse.Namespace) -> dict[str, list[float]]:
    """req/s per server and round."""
    python, models = sys.executable, str(ROOT / "models")
    commands = {
        "this tree": ([python, "-m", "service", "--model-dir", models], ROOT, "/readyz"),
        args.commit: ([python, "-m", "service", "--model-dir", models], worktree, "/readyz"),  # its own service/
        "plain": ([python, "-m", "uvicorn", "benchmarks.plain_server:app", "--log-level", "warning",
                   "--no-access-log"], ROOT, "/healthz"),
    }
    servers, rates = {}, {name: [] for name in commands}
    try:
        for name, (command, cwd, ready) in commands.items():
            port = free_port()
            servers[name] = (start([*command, "--port", str(port)], port, ready, cwd=cwd)[0], port)
        for _ in range(args.rounds):
            for name, (_, port) in servers.items():
                rates[name].append(run_load(f"http://127.0.0.1:{port}", request, args.concurrency, args.duration)
                                   .requests_per_second)
            print({name: round(r[-1]) for name, r in rates.items()}, flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
    return rates


def report(rates: dict[str, list[float]], args: argparse.Namespace) -> None:
    this, earlier, plain = (statistics.median(r) for r in rates.values())
    print(f"\n`python benchmarks/versus.py --commit {args.commit} --rounds {args.rounds} --duration {args.duration:g} "
          f"--path {args.path}`: {args.path}, {args.concurrency} clients, medians of {args.rounds} rounds\n")
    print("| server | req/s (median) | / plain | rounds |\n|---|---|---|---|")
    for name, median in zip(rates, (this, earlier, plain), strict=True):
        print(f"| {name} | {median:.0f} | {median / plain:.2f}x | {', '.join(f'{r:.0f}' for r in rates[name])} |")
    print(f"\nthis tree / {args.commit}: {this / earlier:.3f}")


if __name__ == "__main__":
    main()
