"""The fast lane: the inference routes' requests go straight to their endpoint, past FastAPI's router.

Why: FastAPI spends about 90 us of the event loop's time on every request before and after the endpoint
(matching a dozen routes one by one, the exit-stack and exception wrappers, solving dependencies),
more than decoding a PNG and answering it. The inference routes take only the Request and validate their
own options (service/query.py), so for an exact method and path match this middleware builds the
Request and awaits the route's own endpoint function: the same code, the same responses, the same
client errors (answered by the app's own handlers in service/errors.py). Anything else
(another method, a trailing slash, the other routes, /docs) goes through FastAPI as before. It sits
inside the body-limit and metrics middlewares, which see these requests like any other, and sets the
scope's route so metrics label them with the route's path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette._utils import get_route_path  # the path FastAPI's own router matches (it imports it too)
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ApiError, api_error_response, http_error_response, validation_error_response

Endpoint = Callable[[Request], Awaitable[Response]]


class FastLane:
    def __init__(self, app: ASGIApp, routes: list[APIRoute]):
        self.app = app
        # (method, path) -> (route, endpoint): only routes whose endpoint takes the Request alone
        self.lanes: dict[tuple[str, str], tuple[APIRoute, Endpoint]] = {
            (method, route.path): (route, route.endpoint) for route in routes for method in route.methods or ()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.lanes.get((scope["method"], get_route_path(scope))) if scope["type"] == "http" else None
        if lane is None:
            await self.app(scope, receive, send)
            return
        route, endpoint = lane
        scope["route"] = route
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except ApiError as exc:
            response = api_error_response(exc)
        except RequestValidationError as exc:
            response = validation_error_response(exc)
        except HTTPException as exc:
            response = http_error_response(exc)
        await response(scope, receive, send)
