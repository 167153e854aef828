"""`python -m service --workers N` (or VAE_WORKERS=N): N server processes sharing one port.

uvicorn's process supervisor (uvicorn.supervisors.Multiprocess) does the work: the parent binds the socket,
spawns N workers that accept on it, restarts a worker that dies, and on SIGTERM or SIGINT sends SIGTERM to every
worker and waits for them. Each worker is `python -m service`'s server in all but the process: the same app
(built by `worker_app`, which loads the models once per worker), the same protocol with the limits at the
connection (per worker: max_connections is per process), and uvicorn's graceful shutdown, bounded by
shutdown_timeout_s. SIGHUP replaces the workers one by one (a rolling restart); SIGTTIN / SIGTTOU add or
remove one.

Shared across workers (service/worker_group.py): /readyz and /v2/health/ready are ready only when all N workers
have loaded their models; /metrics sums every worker's values (prometheus_client's multiprocess mode,
service/metrics.py). Not shared: rate limits and /loglik's admission are per worker (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import ClassVar

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE
from uvicorn.server import ServerState
from uvicorn.supervisors import Multiprocess

from service.app import create_app
from service.core import Core
from service.server import Guard, GuardedProtocol, uvicorn_options
from service.settings import Settings
from service.worker_group import WorkerGroup

GROUP_DIR = "VAE_WORKER_GROUP_DIR"  # the shared folder, from the parent to its workers
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client when a worker imports it


class WorkerProtocol(GuardedProtocol):
    """The connection protocol of every worker; uvicorn imports it by name in the worker, then `worker_app` sets
    its limits (before the first connection: the app is built during uvicorn's start-up)."""

    state: ClassVar[ServerState | None] = None  # uvicorn's connections and tasks, for the gauges

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        WorkerProtocol.state = self.server_state
        super().connection_made(transport)


class Supervisor(Multiprocess):
    """uvicorn's supervisor, except that at SIGTERM the parent lets go of the listening socket as it signals the
    workers: each worker stops listening at once, and with the parent's copy closed too, new connections are
    refused (a balancer moves on) instead of waiting in the backlog of a socket nobody accepts on any more."""

    def terminate_all(self) -> None:
        super().terminate_all()
        for sock in self.sockets:
            sock.close()


def worker_app() -> FastAPI:
    """The app of one worker (uvicorn's factory), with settings from the VAE_* variables the parent set."""
    settings = worker_settings(Settings())
    app = create_app(settings)
    core: Core = app.state.core
    core.group = WorkerGroup(Path(os.environ[GROUP_DIR]), Path(os.environ[METRICS_DIR]), settings.workers)
    WorkerProtocol.guard = Guard(settings, core.metrics.rejected)
    state = lambda: WorkerProtocol.state  # noqa: E731
    core.metrics.sample(core.metrics.open_connections, lambda: len(s.connections) if (s := state()) else 0)
    core.metrics.sample(core.metrics.in_progress, lambda: len(s.tasks) if (s := state()) else 0)
    # A start-up that cannot serve (e.g. CUDA asked for but unavailable) would fail again in every restarted
    # worker: this exit status tells the supervisor to stop them all (python -m service then exits 1).
    # os._exit (documented in the os module, not private) ends the worker at once: sys.exit from the loading task
    # would unwind through asyncio and uvicorn with three tracebacks for one logged cause.
    app.state.on_fatal = functools.partial(os._exit, STARTUP_FAILURE)
    return app


def worker_settings(settings: Settings) -> Settings:
    """onnxruntime's intra-op threads default to every core in each process; N workers share them instead."""
    if settings.intra_op_threads or settings.workers == 1:
        return settings
    cores = len(os.sched_getaffinity(0))
    return settings.model_copy(update={"intra_op_threads": max(1, cores // settings.workers)})


def serve(settings: Settings) -> int:
    """Run `settings.workers` workers until SIGTERM or SIGINT; the exit status of python -m service."""
    folder = Path(tempfile.mkdtemp(prefix="vae-workers-"))
    (folder / "ready").mkdir()
    # An operator's PROMETHEUS_MULTIPROC_DIR (an empty folder) is kept, e.g. to read the files after a run.
    metrics_dir = Path(os.environ.get(METRICS_DIR) or folder / "metrics")
    metrics_dir.mkdir(exist_ok=True)
    # Workers are spawned (a fresh interpreter each) and read their settings from the environment: the flags'
    # values go there too.
    os.environ.update({GROUP_DIR: str(folder), METRICS_DIR: str(metrics_dir), "VAE_HOST": settings.host,
                       "VAE_PORT": str(settings.port), "VAE_MODEL_DIR": str(settings.model_dir),
                       "VAE_WORKERS": str(settings.workers)})
    config = uvicorn.Config("service.workers:worker_app", factory=True, http="service.workers:WorkerProtocol",
                            workers=settings.workers, **uvicorn_options(settings))
    sock = config.bind_socket()
    supervisor = Supervisor(config, sockets=[sock])
    try:
        supervisor.run()
    finally:
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)
    failed = any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes)
    return 1 if failed else 0
