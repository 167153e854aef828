"""Client fixtures: the real service (`python -m service`) in a subprocess on a free port, serving the digits
models and Fashion-MNIST (tests/service/conftest.py's `model_dir`), with API keys on and small per-request
limits, so that splitting, keys and limits are exercised with few images."""

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import DIGITS, ROOT, TWO_LEVEL, model_dir, running_server  # noqa: F401 - a fixture

API_KEY = "vae_client-test-key"
MAX_IMAGES, MAX_SAMPLES, MAX_K = 3, 5, 500
EXAMPLE = ROOT / "docs" / "example-ankle-boot.png"
TROUSER = ROOT / "docs" / "example-trouser.png"


@dataclass(frozen=True)
class Server:
    url: str
    raw: httpx.Client  # plain HTTP with the key: the answers the client's results are checked against


@pytest.fixture(scope="session")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    keys = tmp_path_factory.mktemp("keys") / "keys.json"
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    keys.write_text(json.dumps({"keys": [{"name": "client-tests", "sha256": digest, "role": "admin"}]}))
    env = {"VAE_MAX_IMAGES": str(MAX_IMAGES), "VAE_MAX_SAMPLES": str(MAX_SAMPLES), "VAE_MAX_K": str(MAX_K),
           "VAE_DEFAULT_K": "50", "VAE_API_KEYS_FILE": str(keys)}
    with running_server(model_dir, **env) as address, \
            httpx.Client(base_url=f"http://{address}", headers={"Authorization": f"Bearer {API_KEY}"},
                         timeout=60) as raw:
        yield Server(f"http://{address}", raw)

