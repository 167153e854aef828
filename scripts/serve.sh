#!/usr/bin/env bash
# Serves models/ (the shipped default model) on http://127.0.0.1:8000; flags pass on (--host, --port, --model-dir).
# The first run creates .venv and installs the serving dependencies (pyproject.toml's base: FastAPI, uvicorn,
# onnxruntime, numpy, Pillow, pyspng, ...; no torch); later runs start at once unless pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.installed-serve
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e .
  echo "$want" > "$stamp"
fi
exec .venv/bin/python -m service "$@"
