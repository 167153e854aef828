"""The dependency the routes share, as a named Annotated alias: the core (settings, models, workers).

The inference routes' single dependency is their Reader (service/vae_requests.py), which reaches the core and
resolves the requested model itself: each dependency FastAPI solves costs every request (docs/performance.md).
"""

from typing import Annotated

from fastapi import Depends, Request

from service.core import Core


async def get_core(request: Request) -> Core:
    core: Core = request.app.state.core
    return core


CoreDep = Annotated[Core, Depends(get_core)]
