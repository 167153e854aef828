"""Hand-written, kept for speed: +29% req/s on 1-PNG /encode over FastAPI's request handler (docs/performance.md).

The inference routes' route class. FastAPI's request handler solves a route's dependency graph in general on
every request: for each node it scans four kinds of parameters, checks for generators and fills a cache, and
it extracts a query-parameter model field by field with type introspection. The inference routes always have
the same graph: the endpoint takes one `Call`, from one `Reader` dependency taking the Request and the route's
query model. For exactly that graph, `CallRoute` validates the query with the same model and awaits the same
reader, raising the same errors to the same handlers; the route is still matched by the app's router and
documented by FastAPI from the same declarations.

Nothing added through FastAPI's dependency system is skipped: a route with any other dependency (the app's,
its router's or its own: authentication, rate limits) is built with FastAPI's own handler, and requests while
the app has dependency overrides (tests) go through FastAPI's handler too. Inference routes are added to the
app's own router (`service/vae_api.py`), so the app's dependencies are part of the route's graph here.
tests/service/test_routing.py sends the same requests through both handlers and compares the bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from service.vae_requests import Reader

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class CallRoute(APIRoute):
    lean: bool  # whether requests take the lean handler (False: FastAPI's, for this route's dependency graph)

    def get_route_handler(self) -> Handler:
        default = super().get_route_handler()
        reader = call_reader(self.dependant)
        self.lean = reader is not None
        return default if reader is None else lean_handler(self.dependant, reader, default)


def call_reader(dependant: Dependant) -> Reader[Any] | None:
    """The route's Reader, if its graph is exactly endpoint(call) <- Reader(request, query); else None."""
    if (len(dependant.dependencies) != 1 or dependant.query_params or dependant.path_params or
            dependant.header_params or dependant.cookie_params or dependant.body_params or
            dependant.request_param_name or dependant.response_param_name or
            dependant.background_tasks_param_name or dependant.security_scopes_param_name):
        return None
    sub = dependant.dependencies[0]
    if not isinstance(sub.call, Reader) or sub.dependencies or sub.name is None or len(sub.query_params) != 1:
        return None
    return sub.call


def lean_handler(dependant: Dependant, reader: Reader[Any], default: Handler) -> Handler:
    endpoint, name = dependant.call, dependant.dependencies[0].name
    assert endpoint is not None and name is not None

    async def handle(request: Request) -> Response:
        if request.app.dependency_overrides:  # overridden dependencies are FastAPI's to resolve
            return await default(request)
        try:
            query = reader.query.model_validate(dict(request.query_params))
        except ValidationError as exc:  # located as FastAPI locates a query model's errors
            raise RequestValidationError([{**e, "loc": ("query", *e["loc"])} for e in exc.errors()]) from exc
        response: Response = await endpoint(**{name: await reader(request=request, query=query)})
        return response

    return handle
