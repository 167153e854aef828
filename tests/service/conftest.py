"""Service fixtures: a model folder holding a real exported digits model (trained in the session) and
the shipped default model, and a TestClient whose lifespan loads them."""

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DIGITS = "digits-tiny"
TWO_LEVEL = "digits-two-level"


@pytest.fixture(scope="session")
def model_dir(trained_digits, two_level_digits, tmp_path_factory) -> Path:
    from training.attributes import class_means
    from training.checkpoint import load_checkpoint
    from training.data import load_dataset
    from training.export import export_model

    root = tmp_path_factory.mktemp("served_models")
    ckpt = load_checkpoint(trained_digits)
    attributes = class_means(ckpt.build_model(), load_dataset(ckpt.run_config.data, "train"), "dequantize")
    export_model(ckpt, root, DIGITS, attributes=attributes, directions={"one-to-seven": ("1", "7")})
    export_model(load_checkpoint(two_level_digits), root, TWO_LEVEL)
    shutil.copytree(ROOT / "models" / "fashion-mnist", root / "fashion-mnist")
    return root


def make_settings(model_dir: Path, **overrides) -> Settings:
    base = dict(model_dir=model_dir, providers="CPUExecutionProvider", intra_op_threads=1, max_images=8,
                max_samples=64, max_k=2000, default_k=100, max_image_pixels=200_000,
                max_request_bytes=2_000_000)
    base.update(overrides)
    return Settings(**base)


def wait_ready(client: TestClient, timeout: float = 30.0) -> dict:
    """Models load in the background after start-up; poll /readyz until it says ready."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/readyz")
        if r.status_code == 200 or time.monotonic() > deadline:
            return r.json()
        time.sleep(0.05)


@pytest.fixture(scope="session")
def client(model_dir):
    with TestClient(create_app(make_settings(model_dir))) as c:
        assert wait_ready(c)["status"] == "ready"
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(model_dir: Path, **env: str) -> Iterator[str]:
    """The real server (`python -m service`, uvicorn) on a free port, ready; yields host:port, stops it after.
    `env`: VAE_* settings beyond the test defaults (CPU provider, one intra-op thread, warnings only)."""
    with server_process(model_dir, **env) as (address, _):
        yield address


@contextmanager
def server_process(model_dir: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """As running_server, yielding the process too (its output, stdout and stderr together, is a pipe: read it
    once the block is left, e.g. `proc.stdout.read()`)."""
    port = free_port()
    settings = {"VAE_PROVIDERS": "CPUExecutionProvider", "VAE_INTRA_OP_THREADS": "1", "VAE_LOG_LEVEL": "warning",
                **env}
    proc = subprocess.Popen([sys.executable, "-m", "service", "--port", str(port), "--model-dir", str(model_dir)],
                            cwd=ROOT, env={**os.environ, **settings}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
            try:
                if httpx.get(f"http://{address}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("server not ready within 60 s")
            time.sleep(0.1)
        yield address, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
