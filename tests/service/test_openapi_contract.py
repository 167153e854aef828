"""schemathesis over the service's OpenAPI document, against a real server serving the shipped models: every
check (`--checks all`: no server error; status codes, content types, headers and bodies as documented; valid
data accepted, invalid data rejected; 405 with Allow for undeclared methods; ...) and no warning, "mostly
rejected generated data" (validation_mismatch) among them. Bounded: 15 examples per operation and phase, a
fixed seed (a run takes about 15 s); `st run` by hand with another seed explores further.

The rules no JSON Schema can state (decodable image bytes, rectangular arrays, a latent vector's length,
a model's attribute names and tensors) are applied to valid cases by tests/service/openapi_hooks.py.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.conftest import ROOT, running_server

HOOKS = Path(__file__).with_name("openapi_hooks.py")
# Small limits keep every generated request cheap; the document publishes them, so schemathesis respects them.
LIMITS = {"VAE_MAX_K": "50", "VAE_DEFAULT_K": "20", "VAE_MAX_IMAGES": "4", "VAE_MAX_SAMPLES": "8",
          "VAE_MAX_ENCODE_SAMPLES": "4", "VAE_MAX_STEPS": "8"}
CONFIG = f"""
hooks = "{HOOKS}"
warnings = {{ fail-on = true }}
seed = 0

[phases.examples]
fill-missing = false  # the document's own examples, which must be accepted as they are

[generation]
max-examples = 15

[parameters]
"query.model" = "fashion-mnist"

[[operations]]
include-path = "/models/{{name}}"
parameters = {{ "path.name" = "fashion-mnist" }}

[[operations]]
include-path-regex = "^/v2/models/"
parameters = {{ "path.name" = "fashion-mnist.decoder", "path.version" = "1" }}
"""


@pytest.fixture(scope="module")
def base_url():
    with running_server(ROOT / "models", **LIMITS) as address:
        yield f"http://{address}"


def test_schemathesis_finds_no_failure_and_no_warning(base_url, tmp_path):
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    done = subprocess.run([str(Path(sys.executable).with_name("st")), "--config-file", str(config), "run",
                           f"{base_url}/openapi.json", "--checks", "all", "--no-color"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert "Tested: 22" in done.stdout and " passed" in done.stdout and "failure" not in done.stdout.lower(), report
