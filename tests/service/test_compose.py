"""The container files: docker-compose.yml validates with `docker-compose config`; the serving image stays lean."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def compose_config(*profiles: str) -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not on PATH: install it with `apt-get install docker-compose`")
    args = [exe, "-f", "docker-compose.yml"]
    for profile in profiles:
        args += ["--profile", profile]
    done = subprocess.run([*args, "config"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("profiles", [(), ("gpu", "train")])
def test_compose_file_is_valid(profiles):
    out = compose_config(*profiles)
    for service in ("vae:", "vae-gpu:", "train:"):
        assert f"\n  {service}" in out, service
    assert "published: 8000" in out or "8000:8000" in out
    assert "/app/models" in out
    assert "driver: nvidia" in out
    assert "CUDAExecutionProvider" in out


def test_serving_image_has_no_training_stack():
    text = (ROOT / "Dockerfile").read_text()
    assert "torch" not in text.lower()
    assert "[train" not in text
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), users
    assert "\nHEALTHCHECK " in text
    assert "/readyz" in text
