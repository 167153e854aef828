"""`python -m service --workers 2` (service/workers.py): two processes on one port behind uvicorn's supervisor.
Readiness waits for both, /metrics adds both up (whichever worker answers the scrape), requests reach both, and
SIGTERM drains every worker and ends the parent with status 0."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from service.core import Core
from service.errors import Unavailable
from service.settings import Settings
from service.worker_group import WorkerGroup
from tests.service.conftest import ROOT, free_port, server_process
from tests.service.test_shutdown import connect, loglik_request, read_replies, refused

EXAMPLE_PNG = (ROOT / "docs" / "example-ankle-boot.png").read_bytes()
REQUESTS = 64


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The shipped default model only: no training, a quick start."""
    root = tmp_path_factory.mktemp("worker_models")
    shutil.copytree(ROOT / "models" / "fashion-mnist", root / "fashion-mnist")
    return root


def per_process_requests(metrics_dir: Path, endpoint: str) -> dict[str, float]:
    """pid -> requests to `endpoint` that worker answered, from the multiprocess files (not added up)."""
    counts: dict[str, float] = {}
    for path in metrics_dir.glob("counter_*.db"):  # one file per process: counter_<pid>.db
        pid = path.stem.removeprefix("counter_")
        for metric in MultiProcessCollector.merge([str(path)]):
            for s in metric.samples:
                if s.name == "vae_requests_total" and s.labels["endpoint"] == endpoint:
                    counts[pid] = counts.get(pid, 0.0) + s.value
    return {pid: n for pid, n in counts.items() if n}


def total(text: str, endpoint: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vae_requests_total{") and f'endpoint="{endpoint}"' in line)


def encode(address: str) -> int:
    # A new connection each time, so the kernel hands connections to whichever worker accepts first.
    with httpx.Client(base_url=f"http://{address}", timeout=30) as c:
        reply = c.post("/encode", files={"images": ("a.png", EXAMPLE_PNG, "image/png")})
        assert reply.json()["latent_dim"] == 32, reply.text
        return reply.status_code


def test_two_workers_share_the_port_the_readiness_and_the_metrics(models, tmp_path):
    with server_process(models, VAE_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(tmp_path)) as (address, proc):
        ready = httpx.get(f"http://{address}/readyz").json()  # server_process waited for 200: both are ready
        assert ready["models"] == ["fashion-mnist"]
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(lambda _: encode(address), range(REQUESTS))) == [200] * REQUESTS
        answered = per_process_requests(tmp_path, "/encode")
        assert len(answered) == 2 and all(n > 0 for n in answered.values()), answered  # both workers served
        assert sum(answered.values()) == REQUESTS
        for _ in range(6):  # every scrape, whichever worker answers it, counts both workers' requests
            assert total(httpx.get(f"http://{address}/metrics").text, "/encode") == REQUESTS
        pids = {int(pid) for pid in answered}
        assert proc.pid not in pids  # the parent only supervises


def test_sigterm_drains_every_worker_and_the_parent_exits_0(models):
    with server_process(models, VAE_WORKERS="2", VAE_SHUTDOWN_TIMEOUT_S="20") as (address, proc):
        socks = [connect(address) for _ in range(4)]
        for sock in socks:  # four slow requests in progress, spread over the workers
            sock.sendall(loglik_request(images=2))
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        while not refused(address):
            assert time.monotonic() - signalled < 2.0, "still accepting connections 2 s after SIGTERM"
            time.sleep(0.02)
        for sock in socks:
            replies = read_replies(sock)
            assert [status for status, _ in replies] == [200], replies
            assert b'"log_likelihood"' in replies[0][1]
            sock.close()
        assert proc.wait(timeout=30) == 0


def test_readiness_waits_for_every_live_worker(tmp_path):
    (tmp_path / "ready").mkdir()
    group = WorkerGroup(tmp_path, tmp_path, size=2)
    group.mark_ready()
    (tmp_path / "ready" / "999999999").touch()  # a worker that died: its pid is gone
    assert group.ready_count() == 1
    core = Core(Settings(model_dir=tmp_path))
    core.registry, core.group = object(), group  # type: ignore[assignment]  # loaded here, but not everywhere
    with pytest.raises(Unavailable, match="1 of 2 ready"):
        core.ready_to_serve()
    group.size = 1
    assert core.ready_to_serve() is core.registry
    group.leave()
    assert group.ready_count() == 0
    core.registry = None
    core.close()


def test_a_start_up_that_cannot_serve_stops_every_worker(models):
    """Every restarted worker would fail the same way: the supervisor stops them all and the parent exits 1."""
    env = {**os.environ, "VAE_DEFAULT_MODEL": "nope", "VAE_PROVIDERS": "CPUExecutionProvider",
           "VAE_LOG_LEVEL": "warning"}
    done = subprocess.run([sys.executable, "-m", "service", "--workers", "2", "--port", str(free_port()),
                           "--model-dir", str(models)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "VAE_DEFAULT_MODEL='nope' is not among the loaded models" in done.stderr
    assert "Traceback" not in done.stderr
