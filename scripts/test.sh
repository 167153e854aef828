#!/usr/bin/env bash
# Sets up everything the tests need on a fresh Debian machine, then lints and runs them.
# Used by `make test` and by CI (.ci/run). Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: Fashion-MNIST (four IDX files under /usr/share/datasets/fashion-mnist); chromium (the web
# console's browser test drives /usr/bin/chromium through Playwright, whose own download is not needed);
# docker-compose without its recommended Docker engine (the tests check docker-compose.yml with
# `docker-compose config`; `make test-containers` installs the engine when it builds and runs the images).
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || ! command -v docker-compose >/dev/null \
   || [ ! -x /usr/bin/chromium ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist chromium
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose
fi

# One virtual environment; torch first and pinned, so pip takes the CPU build and not a CUDA one. Reinstalled
# only when pyproject.toml changes.
stamp=.venv/.installed-test
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  # TORCH_INDEX_URL (e.g. https://download.pytorch.org/whl/cpu) where pip's own index would give the CUDA build.
  .venv/bin/python -m pip install -q torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  .venv/bin/python -m pip install -q -e '.[train,dev,ray]'
  echo "$want" > "$stamp"
fi

.venv/bin/python -m ruff check training service vae_client tests scripts benchmarks deploy
.venv/bin/python -m mypy service training vae_client
.venv/bin/python -m pytest -q "$@"
