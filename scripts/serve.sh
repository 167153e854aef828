#!/usr/bin/env bash
# Installs the serving dependencies (no torch) into .venv and starts the service on models/.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e .
exec .venv/bin/python -m service "$@"
