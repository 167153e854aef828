"""The dependencies every route shares, as named Annotated aliases: the core, the settings, the model."""

from typing import Annotated

from fastapi import Depends, Query, Request

from service.core import Core
from service.manifest import NAME_PATTERN
from service.model import ServedModel
from service.settings import Settings


async def get_core(request: Request) -> Core:
    core: Core = request.app.state.core
    return core


CoreDep = Annotated[Core, Depends(get_core)]


async def get_settings(core: CoreDep) -> Settings:
    return core.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_model(request: Request, core: CoreDep,
                    model: Annotated[str | None, Query(pattern=NAME_PATTERN, description="model name (default: the "
                                                       "service's default model)")] = None) -> ServedModel:
    served = core.model(model)
    request.scope["vae_model"] = served.name  # the model label of the request's metrics
    return served


ModelDep = Annotated[ServedModel, Depends(get_model)]
