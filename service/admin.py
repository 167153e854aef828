"""Operator routes under /admin: a thin surface over service/reload.py. Access to /admin/* (the admin role) is
the access middleware's concern, not these routes'.

No `from __future__ import annotations`: FastAPI reads the routes' annotations when they are defined.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from service.reload import Reloader
from service.vae_api import responses


class ReloadResponse(BaseModel):
    loaded: list[str] = Field(description="folders new or changed since the last load, now serving their new model")
    unchanged: list[str] = Field(description="folders unchanged: their model serves on, untouched")
    removed: list[str] = Field(description="folders gone from the model directory: their model no longer serves")
    failed: dict[str, str] = Field(description="folders that failed to load, and why; an earlier model of the "
                                   "folder keeps serving (also under GET /models `skipped`)")


async def get_reloader(request: Request) -> Reloader:
    reloader: Reloader = request.app.state.reloader
    return reloader


ReloaderDep = Annotated[Reloader, Depends(get_reloader)]
router = APIRouter(prefix="/admin", tags=["admin"])


@router.post("/reload", responses=responses(503))
async def reload(reloader: ReloaderDep) -> ReloadResponse:
    """Load new and changed model folders, stop serving removed ones, keep the rest; requests in flight finish on
    the model they started with."""
    outcome = await reloader.reload()
    return ReloadResponse(loaded=outcome.loaded, unchanged=outcome.unchanged, removed=outcome.removed,
                          failed=outcome.failed)
