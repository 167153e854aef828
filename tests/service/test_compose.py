"""The container files, checked without a Docker engine: docker-compose.yml validates with `docker-compose config`,
the Dockerfiles build on a `BASE_IMAGE` argument and run as an unprivileged user, the serving image stays lean.
scripts/test-containers.sh builds and runs the serving image for real."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {"Dockerfile": "python:3.11-slim", "Dockerfile.train": "python:3.11-slim",
               "Dockerfile.gpu": "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04"}


def compose_config(*profiles: str) -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not on PATH: install it with `apt-get install docker-compose`")
    args = [exe, "-f", "docker-compose.yml"]
    for profile in profiles:
        args += ["--profile", profile]
    # The defaults, whatever the caller's environment sets.
    env = {k: v for k, v in os.environ.items() if k not in ("BASE_IMAGE", "GPU_BASE_IMAGE", "VAE_HTTP_PORT")}
    done = subprocess.run([*args, "config"], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def instructions(name: str) -> list[tuple[str, str]]:
    """A Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / name).read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines
            if line and not line.startswith("#")]


@pytest.mark.parametrize("profiles", [(), ("gpu", "train")])
def test_compose_file_is_valid(profiles):
    out = compose_config(*profiles)
    for service in ("vae:", "vae-gpu:", "train:"):
        assert f"\n  {service}" in out, service
    assert "published: 8000" in out or "8000:8000" in out
    assert "/app/models" in out
    assert "driver: nvidia" in out
    assert "CUDAExecutionProvider" in out


def test_compose_passes_the_base_images_as_build_args():
    out = compose_config("gpu", "train")
    assert out.count("BASE_IMAGE: python:3.11-slim") == 2, out  # vae and train
    assert f"BASE_IMAGE: {DOCKERFILES['Dockerfile.gpu']}" in out
    for image in ("image: vae-service:latest", "image: vae-service:gpu", "image: vae-train:latest"):
        assert image in out  # `up --no-build` runs what `build` tagged


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_builds_on_base_image_and_runs_unprivileged(name):
    steps = instructions(name)
    first_from = next(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    assert ("ARG", f"BASE_IMAGE={DOCKERFILES[name]}") in steps[:first_from], "ARG BASE_IMAGE before the first FROM"
    stages = [args.split()[0] for keyword, args in steps if keyword == "FROM"]
    assert all(stage == "${BASE_IMAGE}" for stage in stages), stages
    final = steps[max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM"):]
    users = [args for keyword, args in final if keyword == "USER"]
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith(("root:", "0:")), users
    assert any("--uid 10001" in args for keyword, args in steps if keyword == "RUN"), "the user vae is uid 10001"
    # A virtual environment on PATH: `python` (the healthcheck, CMD) exists on Debian's python3 too.
    assert any(keyword == "ENV" and "PATH=/opt/venv/bin:$PATH" in args for keyword, args in final), name


def test_serving_image_has_no_training_stack():
    steps = instructions("Dockerfile")
    text = "\n".join(f"{keyword} {args}" for keyword, args in steps)
    assert "torch" not in text.lower()
    assert "[train" not in text
    assert "training/" not in text
    assert any(keyword == "HEALTHCHECK" and "/readyz" in args for keyword, args in steps)
    assert steps[-1] == ("CMD", '["python", "-m", "service"]')


def test_build_context_leaves_out_the_bulk():
    patterns = (ROOT / ".dockerignore").read_text().split()
    for excluded in (".git", ".venv", "runs", "build/*", "tests", "docs"):
        assert excluded in patterns, excluded
    assert "!build/wheels" in patterns  # the serving dependencies, downloaded by scripts/test-containers.sh


@pytest.mark.parametrize("script", ["scripts/base-image.sh", "scripts/test-containers.sh"])
def test_container_scripts_parse(script):
    done = subprocess.run(["bash", "-n", script], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
