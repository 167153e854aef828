"""Client errors as JSON: every 4xx body names the field, says what is wrong and, where one applies,
the limit. Shape: {"error": {"status": 422, "field": "query.k", "message": "...", "limit": 5000}}.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

LIMIT_KEYS = ("le", "lt", "ge", "gt", "max_length", "min_length")


class ApiError(Exception):
    def __init__(self, status: int, field: str | None, message: str, limit: Any = None):
        super().__init__(message)
        self.status, self.field, self.message, self.limit = status, field, message, limit


def error_body(status: int, field: str | None, message: str, limit: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status, "field": field, "message": message}
    if limit is not None:
        body["limit"] = limit
    return {"error": body}


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    """('query', 'k') -> 'query.k'; ('body', 'z', 0, 3) -> 'body.z[0][3]'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_error_response(exc: RequestValidationError) -> JSONResponse:
    errors: list[dict[str, Any]] = list(exc.errors())
    first: dict[str, Any] = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    ctx = first.get("ctx") or {}
    limit = next((ctx[k] for k in LIMIT_KEYS if k in ctx), None)
    body = error_body(422, _field_name(first.get("loc", ())), str(first.get("msg")), limit)
    body["error"]["errors"] = [{"field": _field_name(e.get("loc", ())), "message": str(e.get("msg"))} for e in errors]
    return JSONResponse(body, status_code=422)


def api_error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc.status, exc.field, exc.message, exc.limit), status_code=exc.status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return api_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return http_error_response(exc)


def http_error_response(exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(error_body(exc.status_code, None, str(exc.detail)), status_code=exc.status_code)
