#!/usr/bin/env bash
# Serves models/ on Ray Serve (deploy/ray/config.yaml: autoscaling replicas, http://127.0.0.1:8000) with a local
# Ray instance; `make serve-ray`. The first run creates .venv and installs the project with the `ray` extra
# (ray[serve]; no torch); later runs start at once unless pyproject.toml changed. Ctrl-C stops Ray too.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.installed-ray
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[ray]'
  echo "$want" > "$stamp"
fi
exec .venv/bin/serve run deploy/ray/config.yaml "$@"
