"""The pages a browser opens: the web console (/console, static files in service/console/), `GET /` redirecting to
it, and the API documentation (/docs Swagger UI, /redoc ReDoc) with their scripts and styles served from the
installed `fastapi-offline` package instead of a CDN, so every page works offline (ReDoc's script with the one
CDN address it holds, Redocly's logo, replaced: `redoc_script`).

The files under /console and /docs-assets are static and hold no data: service/access.py lets them through without
a key (PUBLIC_PREFIXES); the console's own calls to the API send the key the user typed into the page.
"""

from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

CONSOLE_DIR = Path(__file__).resolve().parent / "console"
ASSETS = "/docs-assets"  # fastapi-offline's static folder: swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js
router = APIRouter(include_in_schema=False)
# ReDoc's menu always shows Redocly's logo from their CDN; served here with an empty inline image in its place.
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
NO_LOGO = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='1' height='1'/%3E"


def docs_assets_dir() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


@cache
def redoc_script() -> bytes:
    return (docs_assets_dir() / "redoc.standalone.js").read_bytes().replace(REDOC_LOGO, NO_LOGO)


@router.get(f"{ASSETS}/redoc.standalone.js")  # before the mount of ASSETS: the router tries routes in order
async def redoc_js() -> Response:
    return Response(redoc_script(), media_type="text/javascript; charset=utf-8")


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307)


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="VAE service - Swagger UI",
                               swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{ASSETS}/swagger-ui.css",
                               swagger_favicon_url=f"{ASSETS}/favicon.png",
                               swagger_ui_parameters={"validatorUrl": None})  # no call to validator.swagger.io


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    return get_redoc_html(openapi_url="/openapi.json", title="VAE service - ReDoc",
                          redoc_js_url=f"{ASSETS}/redoc.standalone.js", redoc_favicon_url=f"{ASSETS}/favicon.png",
                          with_google_fonts=False)


def add_pages(app: FastAPI) -> None:
    """The routes above and the two static folders; create the app with docs_url=None, redoc_url=None."""
    app.include_router(router)
    app.mount("/console", StaticFiles(directory=CONSOLE_DIR, html=True), name="console")
    app.mount(ASSETS, StaticFiles(directory=docs_assets_dir()), name="docs-assets")
