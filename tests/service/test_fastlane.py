"""The fast lane (service/fastlane.py): the inference routes answer exactly as through FastAPI's router,
errors and metrics included, and everything else still goes through FastAPI."""

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.fastlane import FastLane
from tests.service.conftest import ROOT, make_settings, wait_ready

EXAMPLE_PNG = (ROOT / "docs" / "example-ankle-boot.png").read_bytes()


@pytest.fixture(scope="module")
def both(model_dir):
    """Two apps on the same models: one with the fast lane, one whose lane matches nothing."""
    with_lane = create_app(make_settings(model_dir))
    around = create_app(make_settings(model_dir))
    around.user_middleware = [m for m in around.user_middleware if m.cls is not FastLane]
    with TestClient(with_lane) as a, TestClient(around) as b:
        wait_ready(a)
        wait_ready(b)
        yield a, b


REQUESTS = [
    ("POST", "/encode", {"files": {"images": ("a.png", EXAMPLE_PNG, "image/png")}}),
    ("POST", "/encode?seed=2&samples=3", {"files": {"images": ("a.png", EXAMPLE_PNG, "image/png")}}),
    ("POST", "/encode?samples=1000", {"files": {"images": ("a.png", EXAMPLE_PNG, "image/png")}}),  # 422 limit
    ("POST", "/encode?model=nope", {"files": {"images": ("a.png", EXAMPLE_PNG, "image/png")}}),  # 404
    ("POST", "/encode", {"content": b"x", "headers": {"content-type": "text/plain"}}),  # 415
    ("POST", "/decode?seed=1", {"json": {"z": [[0.5] * 32]}}),
    ("POST", "/decode", {"json": {"z": [[0.5] * 3]}}),  # 422 naming body.z[0]
    ("GET", "/sample?n=3&seed=4", {}),
    ("GET", "/sample?n=abc", {}),  # 422 from the query model
    ("POST", "/loglik?k=20&seed=5", {"files": {"images": ("a.png", EXAMPLE_PNG, "image/png")}}),
    ("GET", "/encode", {}),  # another method: FastAPI's 405
    ("POST", "/sample", {}),
    ("GET", "/sample/", {}),  # not an exact path: FastAPI's redirect or 404
]


@pytest.mark.parametrize(("method", "path", "kwargs"), REQUESTS, ids=[f"{m} {p}" for m, p, _ in REQUESTS])
def test_same_answer_through_the_lane_and_around_it(both, method, path, kwargs):
    lane, around = (c.request(method, path, follow_redirects=False, **kwargs) for c in both)
    assert lane.status_code == around.status_code
    assert lane.headers.get("content-type") == around.headers.get("content-type")
    assert lane.content == around.content


def test_lane_requests_are_counted_under_their_route(both):
    lane, _ = both
    assert lane.post("/encode?model=nope", files={"images": ("a.png", EXAMPLE_PNG, "image/png")}).status_code == 404
    assert lane.get("/sample?n=2&seed=0").status_code == 200
    text = lane.get("/metrics").text
    assert 'vae_requests_total{endpoint="/sample",model="fashion-mnist",status="200"}' in text
    assert 'vae_errors_total{endpoint="/encode",model="-",status="404"}' in text


def test_the_lane_serves_exactly_the_four_inference_routes(both):
    lane, _ = both
    stack = lane.app.middleware_stack
    while not isinstance(stack, FastLane):
        stack = stack.app
    assert sorted(stack.lanes) == [("GET", "/sample"), ("POST", "/decode"), ("POST", "/encode"),
                                   ("POST", "/loglik")]
    assert np.all([r.endpoint.__code__.co_argcount == 1 for r, _ in stack.lanes.values()])  # Request alone
