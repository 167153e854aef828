"""`python -m service [--host H] [--port P] [--model-dir DIR] [--workers N]` (or `vae-service`): serve the models.

Every setting also comes from VAE_* environment variables (service/settings.py); flags win.
`--check` loads every model folder, prints its model card and exits (0 if at least one loads).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from service.registry import StartupError, check_configuration
from service.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", help="interface to listen on (VAE_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (VAE_PORT, default 8000)")
    parser.add_argument("--model-dir", type=Path, help="folder of model folders (VAE_MODEL_DIR, default models)")
    parser.add_argument("--workers", type=int, help="server processes sharing the port (VAE_WORKERS, default 1)")
    parser.add_argument("--check", action="store_true", help="print the model cards and exit")
    args = parser.parse_args(argv)
    flags = {"host": args.host, "port": args.port, "model_dir": args.model_dir, "workers": args.workers}
    overrides = {k: v for k, v in flags.items() if v is not None}
    try:
        settings = Settings(**overrides)
        check_configuration(settings)  # a model directory that exists, providers on offer
    except ValidationError as exc:
        print(f"error: invalid settings (VAE_* variables, flags): {exc}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if args.check else 1
    if args.check:
        return check(settings)

    if settings.workers > 1:
        from service.workers import serve

        return serve(settings)  # uvicorn's supervisor and N copies of the server below

    from service.server import create_server

    try:
        server = create_server(settings)  # the limits at the connection and the shutdown: service/server.py
    except StartupError as exc:  # e.g. an unreadable or invalid VAE_API_KEYS_FILE
        print(f"error: {exc}", file=sys.stderr)
        return 1
    server.run()
    if server.core.startup_error is not None:
        print(f"error: {server.core.startup_error}", file=sys.stderr)
        return 1
    return 0 if server.started else 3


def check(settings: Settings) -> int:
    from service.model_card import model_cards

    try:
        cards, errors = model_cards(settings)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in errors:
        print(line, file=sys.stderr)
    print("\n\n".join(cards) if cards else f"no loadable model under {settings.model_dir}")
    return 0 if cards else 1


if __name__ == "__main__":
    sys.exit(main())
