"""The Ray Serve application (deploy/ray/): a local Ray instance (CPU only) runs it on 2 replicas; its answers to
/encode, /sample, /loglik and v2 inference equal the single-process service's for the same inputs and seeds, and
requests reach both replicas. Ray is the optional extra `.[ray]`, which `make test` installs."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from PIL import Image

ray = pytest.importorskip("ray", reason="Ray Serve is the optional extra: pip install -e '.[ray]' (make test does)")
serve = pytest.importorskip("ray.serve")

from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.service.conftest import free_port, wait_ready  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "ray" / "config.yaml"
PNG = (ROOT / "docs" / "example-trouser.png").read_bytes()
ENV = {"VAE_PROVIDERS": "CPUExecutionProvider", "VAE_INTRA_OP_THREADS": "1", "VAE_LOG_LEVEL": "warning",
       "VAE_MODEL_DIR": str(ROOT / "models")}
V2_INPUT = {"inputs": [{"name": "x", "shape": [2, 1, 28, 28], "datatype": "FP32",
                        "data": np.linspace(0, 1, 2 * 784).round(6).tolist()}]}


@pytest.fixture(scope="module")
def ray_url():
    from deploy.ray.app import VAEService

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": ENV}, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(VAEService.options(num_replicas=2).bind(), name="vae", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def local():
    """The same app in this process: what one `python -m service` answers."""
    settings = Settings(**{k.removeprefix("VAE_").lower(): v for k, v in ENV.items()})
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        yield client


def ask(method: str, path: str, ray_url: str, local: TestClient, **kwargs) -> tuple[dict, dict]:
    theirs = httpx.request(method, ray_url + path, timeout=60, **kwargs)
    ours = local.request(method, path, **kwargs)
    assert theirs.status_code == ours.status_code == 200, (theirs.text, ours.text)
    return theirs.json(), ours.json()


def pixels(images: list[str]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(png))), dtype=int) for png in images])


def close(a, b) -> None:
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-5, atol=1e-5)


def test_config_is_a_valid_serve_config():
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(yaml.safe_load(CONFIG.read_text()))
    (application,) = config.applications
    assert application.import_path == "deploy.ray.app:app" and application.route_prefix == "/"
    (deployment,) = application.deployments
    scaling = deployment.autoscaling_config
    assert deployment.name == "vae" and scaling["min_replicas"] >= 1 and scaling["max_replicas"] > 1
    assert config.http_options.port == 8000


def test_answers_equal_the_single_process_service(ray_url, local):
    files = {"images": ("t.png", PNG, "image/png")}
    theirs, ours = ask("POST", "/encode", ray_url, local, files=files)
    close(theirs["results"][0]["mean"], ours["results"][0]["mean"])
    theirs, ours = ask("GET", "/sample?n=4&seed=7&format=json", ray_url, local)
    assert len(theirs["images"]) == 4
    # 8-bit PNGs of the same draws: equal up to a float rounding that moves a pixel by one level at most.
    assert np.abs(pixels(theirs["images"]) - pixels(ours["images"])).max() <= 1
    theirs, ours = ask("POST", "/loglik?k=500&seed=3", ray_url, local, files=files)
    for key in ("log_likelihood", "elbo", "effective_sample_size"):
        assert theirs["results"][0][key] == pytest.approx(ours["results"][0][key], rel=1e-6), key
    theirs, ours = ask("POST", "/v2/models/fashion-mnist.encoder/infer", ray_url, local,
                       content=json.dumps(V2_INPUT), headers={"content-type": "application/json"})
    assert [o["name"] for o in theirs["outputs"]] == [o["name"] for o in ours["outputs"]]
    for a, b in zip(theirs["outputs"], ours["outputs"], strict=True):
        assert a["shape"] == b["shape"]
        close(a["data"], b["data"])


def test_requests_reach_both_replicas(ray_url):
    replicas = set()
    with httpx.Client(base_url=ray_url, timeout=60) as client:
        for seed in range(40):
            reply = client.get(f"/sample?n=1&seed={seed}")
            assert reply.status_code == 200
            replicas.add(reply.headers["x-replica"])
            if len(replicas) == 2:
                break
    assert len(replicas) == 2, replicas
    assert os.getpid() not in {int(r.rsplit(":", 1)[1]) for r in replicas}  # replicas are Ray's processes
