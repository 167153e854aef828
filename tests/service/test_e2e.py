"""End to end: the real server (`python -m service`, uvicorn) in a subprocess on a free port, over HTTP."""

import base64
import io
import os
import subprocess
import sys

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.service.conftest import DIGITS, ROOT, TWO_LEVEL, free_port, running_server

EXAMPLE_PNG = (ROOT / "docs" / "example-ankle-boot.png").read_bytes()


@pytest.fixture(scope="module")
def server(model_dir):
    with running_server(model_dir, VAE_MAX_K="3000", VAE_MAX_IMAGES="16") as address, \
            httpx.Client(base_url=f"http://{address}", timeout=60) as client:
        yield client


def test_health_models_and_docs(server):
    assert server.get("/healthz").json() == {"status": "ok"}
    assert server.get("/readyz").json()["default"] == "fashion-mnist"
    models = server.get("/models").json()["models"]
    assert {m["name"] for m in models} == {"fashion-mnist", DIGITS, TWO_LEVEL}
    assert all(m["providers"] == ["CPUExecutionProvider"] for m in models)
    spec = server.get("/openapi.json").json()
    for path in ("/encode", "/decode", "/sample", "/loglik", "/reconstruct", "/models", "/metrics"):
        assert path in spec["paths"]
    assert "multipart/form-data" in spec["paths"]["/encode"]["post"]["requestBody"]["content"]
    k_param = next(p for p in spec["paths"]["/loglik"]["post"]["parameters"] if p["name"] == "k")
    assert k_param["schema"]["maximum"] == 3000  # the live limit, from VAE_MAX_K
    assert server.get("/docs").status_code == 200


def test_every_endpoint_over_http(server):
    files = {"images": ("boot.png", EXAMPLE_PNG, "image/png")}
    enc = server.post("/encode?samples=2&seed=1", files=files).json()
    mu = enc["results"][0]["mean"]
    assert len(mu) == 32 and len(enc["results"][0]["z"]) == 2
    dec = server.post("/decode?format=png", json={"z": [mu]})
    assert dec.headers["content-type"] == "image/png" and Image.open(io.BytesIO(dec.content)).size == (28, 28)
    rec = server.post("/reconstruct", json={"images": [base64.b64encode(EXAMPLE_PNG).decode()]}).json()
    assert base64.b64decode(rec["images"][0]) == dec.content  # decode(mean) is the reconstruction
    sample = server.get("/sample", params={"n": 8, "seed": 4, "temperature": 0.8, "noise": "true"}).json()
    assert len(sample["images"]) == 8 and sample["seed"] == 4
    ll = server.post("/loglik", params={"k": 2000, "seed": 9}, files=files).json()["results"][0]
    assert ll["k"] == 2000 and ll["log_likelihood"] > ll["elbo"] and ll["bits_per_dim"] > 0
    digits = server.post("/loglik", params={"model": DIGITS, "k": 10, "seed": 0},
                         json={"arrays": [np.full((8, 8), 0.3).tolist()]}).json()
    assert digits["model"] == DIGITS
    metrics = server.get("/metrics").text
    assert 'vae_requests_total{endpoint="/loglik",model="fashion-mnist",status="200"}' in metrics


def test_same_seed_same_answer_across_requests(server):
    a = server.get("/sample?n=3&seed=123").json()["images"]
    assert server.get("/sample?n=3&seed=123").json()["images"] == a
    files = {"images": ("boot.png", EXAMPLE_PNG, "image/png")}
    first = server.post("/loglik?k=300&seed=5", files=files).json()["results"][0]["log_likelihood"]
    assert server.post("/loglik?k=300&seed=5", files=files).json()["results"][0]["log_likelihood"] == first


def test_errors_over_http_and_the_server_keeps_serving(server):
    cases = [
        (server.post("/encode", files={"images": ("x.png", b"garbage", "image/png")}), 422, "images[0]"),
        (server.post("/encode", content=b"hi", headers={"content-type": "text/plain"}), 415, "content-type"),
        (server.get("/sample?n=100000"), 422, "query.n"),
        (server.post("/loglik?k=3001", files={"images": ("b.png", EXAMPLE_PNG, "image/png")}), 422, "query.k"),
        (server.post("/decode", json={"z": [[0.0]]}), 422, "body.z[0]"),
        (server.get("/sample?model=missing"), 404, "query.model"),
        (server.post("/encode", content=b"x" * (17 * 1024 * 1024), headers={"content-type": "application/json"}),
         413, "body"),
    ]
    for response, status, field in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"]["field"] == field
    assert server.get("/sample?n=1&seed=0").status_code == 200


def test_concurrent_requests_are_all_answered(server):
    """Inference runs off the event loop: slow /loglik calls and fast /healthz calls interleave."""
    import concurrent.futures

    files = {"images": ("boot.png", EXAMPLE_PNG, "image/png")}

    def slow(_):
        return server.post("/loglik?k=3000&seed=1", files=files).status_code

    def fast(_):
        return server.get("/healthz").status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        slow_jobs = [pool.submit(slow, i) for i in range(3)]
        fast_jobs = [pool.submit(fast, i) for i in range(20)]
        assert [j.result() for j in fast_jobs] == [200] * 20
        assert [j.result() for j in slow_jobs] == [200] * 3


@pytest.mark.parametrize("env, message", [
    ({"VAE_DEFAULT_MODEL": "nope"}, "VAE_DEFAULT_MODEL='nope'"),
    ({"VAE_PROVIDERS": "CUDAExecutionProvider"}, "onnxruntime-gpu"),
])
def test_startup_failures_exit_with_a_clear_message(model_dir, env, message):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in env.get("VAE_PROVIDERS", "") and "CUDAExecutionProvider" in \
            ort.get_available_providers():
        pytest.skip("this machine has CUDA: the refusal path cannot be shown here")
    done = subprocess.run([sys.executable, "-m", "service", "--port", str(free_port()), "--model-dir",
                           str(model_dir)], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 and message in done.stderr
