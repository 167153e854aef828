"""The published contract: what the OpenAPI document says holds, and the code keeps to public APIs.
(schemathesis checks the document against the running server more broadly: test_openapi_contract.py.)"""

import ast
import inspect
import io
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from PIL import Image

from service.core import MAX_SEED
from tests.service.conftest import DIGITS, ROOT

EXAMPLE_PNG = (ROOT / "docs" / "example-ankle-boot.png").read_bytes()
PATH_VALUES = {"name": DIGITS}


def operations(client):
    spec = client.app.openapi()
    for path, methods in spec["paths"].items():
        concrete = path.replace("{name}", PATH_VALUES["name"]).replace("{version}", "1")
        if path.startswith("/v2/models/"):
            concrete = path.replace("{name}", f"{DIGITS}.encoder").replace("{version}", "1")
        for method, operation in methods.items():
            yield path, concrete, method.upper(), operation


def test_head_answers_as_get_without_a_body(client):
    gets = [(p, c) for p, c, m, _ in operations(client) if m == "GET"]
    assert len(gets) >= 10
    for _, concrete in gets:
        get, head = client.get(concrete), client.head(concrete)
        assert head.status_code == get.status_code == 200, concrete
        assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]


def test_405_answers_carry_allow(client):
    for path, concrete, _, _ in operations(client):
        declared = {m.upper() for m in client.app.openapi()["paths"][path]}
        undeclared = next(m for m in ("DELETE", "PUT", "PATCH") if m not in declared)
        r = client.request(undeclared, concrete)
        assert r.status_code == 405 and set(r.headers["allow"].split(", ")) >= declared - {"HEAD"}, concrete
        assert "error" in r.json()


def test_png_answers_carry_the_seed_that_reproduces_them(client):
    first = client.get("/sample?n=4&format=png")
    seed = int(first.headers["x-seed"])
    assert 0 <= seed <= MAX_SEED and first.headers["content-type"] == "image/png"
    assert client.get(f"/sample?n=4&format=png&seed={seed}").content == first.content
    noisy = client.post("/decode?noise=true&format=png", json={"z": [[0.0] * 32]})
    again = client.post(f"/decode?noise=true&format=png&seed={noisy.headers['x-seed']}", json={"z": [[0.0] * 32]})
    assert noisy.content == again.content
    assert "x-seed" not in client.post("/decode?format=png", json={"z": [[0.0] * 32]}).headers  # no randomness
    image = Image.open(io.BytesIO(first.content))
    assert image.size == (2 * 30 + 2, 2 * 30 + 2)


def test_fresh_seeds_are_safe_integers_in_json(client):
    seeds = [client.get("/sample?n=1").json()["seed"] for _ in range(50)]
    assert all(isinstance(s, int) and 0 <= s <= MAX_SEED for s in seeds) and len(set(seeds)) == 50


def test_every_example_in_the_schema_is_accepted(client):
    """Each body example, sent with the examples of the operation's parameters (the shipped default model's)."""
    checked = 0
    for path, _, method, operation in operations(client):
        examples = {p["in"] + p["name"]: p["schema"]["examples"][0] for p in operation.get("parameters", [])
                    if "examples" in p.get("schema", {})}
        params = {key[5:]: value for key, value in examples.items() if key.startswith("query")}
        url = path.replace("{name}", examples.get("pathname", "fashion-mnist")).replace("{version}", "1")
        content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        for example in content.get("schema", {}).get("examples", []):
            r = client.request(method, url, params=params, json=example)
            assert r.status_code == 200, (url, params, example, r.text)
            checked += 1
    assert checked == 12  # the JSON body examples of the VAE API's 6 routes with bodies, and of both infer routes


@pytest.mark.parametrize("method, template, path, kwargs", [
    ("POST", "/encode", "/encode", {"content": b"--b\r\nbad", "headers": {"content-type":
                                                                        "multipart/form-data; boundary=b"}}),
    ("POST", "/encode", "/encode?model=nope", {"json": {"arrays": [[[0.5]]]}}),
    ("POST", "/encode", "/encode", {"content": b"x" * 3_000_000, "headers": {"content-type": "application/json"}}),
    ("POST", "/encode", "/encode", {"content": b"x", "headers": {"content-type": "text/plain"}}),
    ("POST", "/loglik", "/loglik?k=0", {"json": {"arrays": [[[0.5]]]}}),
    ("POST", "/decode", "/decode", {"json": {"z": [[1.0]]}}),
    ("GET", "/sample", "/sample?n=0", {}),
    ("GET", "/models/{name}", "/models/nope", {}),
    ("POST", "/v2/models/{name}/infer", "/v2/models/nope.encoder/infer", {"json": {"inputs": []}}),
    ("POST", "/v2/models/{name}/infer", f"/v2/models/{DIGITS}.encoder/infer",
     {"json": {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0.5]}]}}),
])
def test_every_status_answered_is_documented_with_its_error_model(client, method, template, path, kwargs):
    r = client.request(method, path, **kwargs)
    assert 400 <= r.status_code < 500
    documented = client.app.openapi()["paths"][template][method.lower()]["responses"]
    entry = documented.get(str(r.status_code)) or documented.get("4XX")
    assert entry is not None, (path, r.status_code, list(documented))
    ref = entry["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert ref == ("V2Error" if path.startswith("/v2") else "ErrorResponse")
    assert ("error" in r.json()) and (isinstance(r.json()["error"], str) == path.startswith("/v2"))


def imports_of(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def test_no_private_names_of_other_packages_are_imported():
    offenders = []
    for folder in ("service", "training"):
        for path in (ROOT / folder).rglob("*.py"):
            for name in imports_of(path):
                parts = name.split(".")
                if parts[0] not in ("service", "training") and any(p.startswith("_") and not p.startswith("__")
                                                                   for p in parts):
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_route_functions_are_adapters(client):
    """Parse, call one use case, render: no route function is over 15 lines."""
    from service import v2, vae_api

    routes = [*client.app.routes, *vae_api.router.routes, *v2.router.routes]
    endpoints = [r.endpoint for r in routes if isinstance(r, APIRoute)]
    assert len(endpoints) == 21
    for endpoint in endpoints:
        lines = inspect.getsource(endpoint).strip().splitlines()
        body = lines[next(i for i, line in enumerate(lines) if line.lstrip().startswith("async def")):]
        assert len(body) <= 15, (endpoint.__name__, len(body))
