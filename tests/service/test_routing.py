"""The inference routes' route class (service/routing.py): the lean handler answers exactly as FastAPI's own,
and nothing added through FastAPI's dependency system is skipped."""

import base64
import io

import numpy as np
import pytest
from fastapi import Depends, HTTPException, Request
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.routing import CallRoute
from tests.service.conftest import DIGITS, ROOT, make_settings, wait_ready

EXAMPLE_PNG = (ROOT / "docs" / "example-ankle-boot.png").read_bytes()
FILES = {"files": {"images": ("a.png", EXAMPLE_PNG, "image/png")}}
INFERENCE_PATHS = {"/encode", "/decode", "/sample", "/loglik", "/reconstruct", "/resynthesize", "/interpolate"}


@pytest.fixture(scope="module")
def both(model_dir):
    """The same models served with the lean handler and with FastAPI's handler for every route."""
    with TestClient(create_app(make_settings(model_dir))) as lean, \
            TestClient(create_app(make_settings(model_dir, lean_routes=False))) as fastapi:
        wait_ready(lean)
        wait_ready(fastapi)
        yield lean, fastapi


def inference_routes(client: TestClient) -> list:
    return [r for r in client.app.routes if getattr(r, "path", None) in INFERENCE_PATHS]


REQUESTS = [
    ("POST", "/encode", FILES),
    ("POST", "/encode?seed=2&samples=3&resize=true", FILES),
    ("POST", "/encode?samples=1000", FILES),  # 422 naming query.samples and the limit
    ("POST", "/encode?samples=true", FILES),  # a boolean is not a number
    ("POST", "/encode?model=nope", FILES),  # 404
    ("POST", "/encode?model=..", FILES),  # 422: not a model name
    ("POST", "/encode", {"content": b"x", "headers": {"content-type": "text/plain"}}),  # 415
    ("POST", "/encode", {"json": {"arrays": [[[0.5, 2.0]]]}}),  # 422 naming the element
    ("POST", "/encode", {"json": {"arrays": [np.full((8, 8), 0.25).tolist()], "seed": 4, "samples": 2}}),  # in body
    ("POST", f"/encode?model={DIGITS}&seed=9", {"json": {"arrays": [np.full((8, 8), 0.25).tolist()], "seed": 4,
                                                         "samples": 2}}),  # the query wins
    ("POST", "/decode?seed=1&noise=true", {"json": {"z": [[0.5] * 32]}}),
    ("POST", "/decode?format=png", {"json": {"z": [[0.5] * 32, [0.0] * 32]}}),
    ("POST", "/decode", {"json": {"z": [[0.5] * 3]}}),  # 422 naming body.z[0]
    ("GET", "/sample?n=3&seed=4", {}),
    ("GET", "/sample?n=3&seed=4&n=2", {}),  # a repeated option: the last value, as FastAPI takes it
    ("GET", "/sample?n=abc&temperature=-1", {}),  # two errors, listed
    ("GET", "/sample?seed=7&format=png&unknown=1", {}),  # unknown options are ignored
    ("POST", "/loglik?k=20&seed=5", FILES),
    ("POST", "/reconstruct?format=png", FILES),
    ("POST", "/resynthesize?direction=sneakers-to-boots&strength=-1", FILES),
    ("POST", "/resynthesize?from=nope&to=dress", FILES),  # 422 naming query.from
    ("POST", "/interpolate?steps=3&method=slerp", {"json": {"z": [[0.0] * 32, [1.0] * 32]}}),
    ("GET", "/encode", {}),  # 405 with Allow
    ("HEAD", "/sample?n=1&seed=3", {}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), REQUESTS, ids=[f"{m} {p}" for m, p, _ in REQUESTS])
def test_the_lean_handler_answers_as_fastapi_does(both, method, path, kwargs):
    lean, fastapi = (c.request(method, path, follow_redirects=False, **kwargs) for c in both)
    assert lean.status_code == fastapi.status_code
    for header in ("content-type", "x-seed", "deprecation", "allow"):
        assert lean.headers.get(header) == fastapi.headers.get(header), header
    assert lean.content == fastapi.content


def test_inference_routes_take_the_lean_handler_only_when_asked(both):
    lean, fastapi = both
    assert {r.path for r in inference_routes(lean) if isinstance(r, CallRoute) and r.lean} == INFERENCE_PATHS
    assert not any(isinstance(r, CallRoute) for r in inference_routes(fastapi))


def test_an_app_dependency_applies_to_the_inference_routes(model_dir):
    """A dependency added to the app (as authentication would be) runs for every inference request: those routes
    fall back to FastAPI's handler, whatever the route class."""
    async def key_required(request: Request) -> None:
        if request.headers.get("x-key") != "secret":
            raise HTTPException(401, "a key is required")

    with TestClient(create_app(make_settings(model_dir), dependencies=[Depends(key_required)])) as c:
        assert c.get("/healthz").status_code == 401
        c.headers["x-key"] = "secret"
        wait_ready(c)
        assert not any(getattr(r, "lean", False) for r in inference_routes(c))
        del c.headers["x-key"]
        for path in ("/sample?n=1", "/encode"):
            r = c.request("GET" if path.startswith("/sample") else "POST", path, **({} if "sample" in path else FILES))
            assert r.status_code == 401 and r.json()["error"]["message"] == "a key is required"
        assert c.get("/sample?n=2&seed=1", headers={"x-key": "secret"}).status_code == 200


def pixels(png_base64: str) -> list:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png_base64)))).tolist()


def test_dependency_overrides_are_honoured(model_dir):
    """With an override, the route's dependency is FastAPI's to resolve (tests replace readers this way)."""
    with TestClient(create_app(make_settings(model_dir))) as c:
        wait_ready(c)
        sample = c.app.state.api.sample
        real = c.get("/sample?n=3&seed=1").json()
        assert len(real["images"]) == 3

        async def one_image(request: Request):
            call = await sample(request=request, query=sample.query(n=1, seed=1))
            return call

        c.app.dependency_overrides[sample] = one_image
        overridden = c.get("/sample?n=3&seed=1").json()
        assert len(overridden["images"]) == 1 and pixels(overridden["images"][0]) == pixels(real["images"][0])
        c.app.dependency_overrides.clear()
        assert len(c.get("/sample?n=3&seed=1").json()["images"]) == 3
