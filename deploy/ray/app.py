"""The service on Ray Serve: the same FastAPI app (service/app.py) behind Ray's HTTP proxy, on replicas that Ray
starts, balances and scales.

    serve run deploy/ray/config.yaml          (or: make serve-ray)     -> http://127.0.0.1:8000

Each replica builds its own app (`build_app`, run on the replica), so it loads the model folder once; its start-up
ends only once the models are in, so Ray routes nothing to a replica that could only answer 503. Settings come
from VAE_* variables as for `python -m service` (config.yaml's runtime_env sets them); VAE_MODEL_DIR defaults to
this repository's models/. What Ray does instead of service/server.py: its proxy accepts the connections (the
header and body timeouts and connection caps of service/server.py do not apply; the app's body limit, admission,
keys and rate limits do, per replica), and autoscaling adds replicas when each has more than
`target_ongoing_requests` in flight. docs/deploy.md has the commands and the measured figures.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from fastapi import FastAPI
from ray import serve
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.app import create_app
from service.settings import Settings

MODELS = Path(__file__).resolve().parents[2] / "models"


class ReplicaHeader:
    """Adds `X-Replica: host:pid` to every answer: which replica served it (for operators, and the test that sees
    both replicas serve)."""

    def __init__(self, app: ASGIApp):
        self.app, self.name = app, f"{socket.gethostname()}:{os.getpid()}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-replica", self.name)]
            await send(message)

        await self.app(scope, receive, send_named)


def build_app() -> FastAPI:
    """The app of one replica (Ray calls this on the replica, not on the driver)."""
    settings = Settings() if "VAE_MODEL_DIR" in os.environ else Settings(model_dir=MODELS)
    app = create_app(settings, wait_for_models=True)
    app.add_middleware(ReplicaHeader)
    return app


@serve.deployment(name="vae", ray_actor_options={"num_cpus": 1})
@serve.ingress(build_app)
class VAEService:
    """No code of its own: the routes are the app's."""


app = VAEService.bind()
