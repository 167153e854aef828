"""One validator per option: an option is accepted or refused the same way in the query (its place) and in a
JSON body (deprecated for one release), with the same message and limit; JSON types are strict."""

import numpy as np
import pytest

from tests.service.conftest import DIGITS

ARRAYS = [np.full((8, 8), 0.25).tolist()]
Z4 = [[0.1, -0.2, 0.3, 0.0]]
PAYLOADS = {"/encode": {"arrays": ARRAYS}, "/loglik": {"arrays": ARRAYS}, "/reconstruct": {"arrays": ARRAYS},
            "/resynthesize": {"arrays": ARRAYS}, "/decode": {"z": Z4}, "/interpolate": {"z": Z4 * 2}}
# (route, option, value) with whether it is valid; the test client's settings: max_k 2000, max_images 8, ...
CASES = [
    ("/loglik", "k", 5, True), ("/loglik", "k", 0, False), ("/loglik", "k", 2001, False), ("/loglik", "k", 2.5, False),
    ("/loglik", "seed", 2**53 - 1, True), ("/loglik", "seed", 2**53, False), ("/loglik", "seed", -1, False),
    ("/encode", "samples", 2, True), ("/encode", "samples", 65, False), ("/encode", "resize", False, True),
    ("/decode", "noise", True, True), ("/decode", "format", "png", True), ("/decode", "format", "bmp", False),
    ("/decode", "include_arrays", True, True),
    ("/reconstruct", "format", "gif", False),
    ("/resynthesize", "strength", 10, True), ("/resynthesize", "strength", -10.5, False),
    ("/resynthesize", "from", "", False),
    ("/interpolate", "steps", 2, True), ("/interpolate", "steps", 1, False), ("/interpolate", "steps", 65, False),
    ("/interpolate", "method", "slerp", True), ("/interpolate", "method", "cubic", False),
]


def as_query(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def options_for(route: str, option: str) -> dict:
    """The other options a route needs for this one to be the only possible problem."""
    return {"from": "1", "to": "7"} if route == "/resynthesize" and option not in ("from", "to") else {}


@pytest.mark.parametrize("route, option, value, valid", CASES, ids=[f"{r} {o}={v!r}" for r, o, v, _ in CASES])
def test_an_option_is_validated_the_same_in_the_query_and_in_the_body(client, route, option, value, valid):
    others = options_for(route, option)
    query = {"model": DIGITS, option: as_query(value), **others}
    in_query = client.post(route, params=query, json=PAYLOADS[route])
    in_body = client.post(route, params={"model": DIGITS, **others}, json={**PAYLOADS[route], option: value})
    assert (in_query.status_code, in_body.status_code) == ((200, 200) if valid else (422, 422)), in_body.text
    if valid:
        assert "Deprecation" not in in_query.headers and in_body.headers["Deprecation"].startswith("@")
    else:
        q, b = in_query.json()["error"], in_body.json()["error"]
        assert (q["field"], b["field"]) == (f"query.{option}", f"body.{option}")
        # the same check refused both; a query's text may add how it failed to parse ("..., unable to parse string")
        assert q["message"].startswith(b["message"]) and q.get("limit") == b.get("limit")


@pytest.mark.parametrize("route, option, value", [
    ("/loglik", "k", True), ("/loglik", "k", "5"), ("/encode", "resize", "false"), ("/encode", "resize", 0),
    ("/decode", "noise", "true"), ("/decode", "noise", 1), ("/decode", "seed", 1.5), ("/decode", "seed", None)])
def test_json_types_are_strict(client, route, option, value):
    """In JSON a boolean is not a number, a number is not a boolean, a string is neither, and null is no value."""
    r = client.post(route, params={"model": DIGITS}, json={**PAYLOADS[route], option: value})
    assert r.status_code == 422 and r.json()["error"]["field"] in (f"body.{option}", "body")


def test_integral_numbers_are_integers(client):
    """JSON Schema counts 5.0 as an integer: so does every integer option."""
    a = client.post("/encode", params={"model": DIGITS}, json={"arrays": ARRAYS, "samples": 2.0, "seed": 3.0})
    b = client.post("/encode", params={"model": DIGITS, "samples": 2, "seed": 3}, json={"arrays": ARRAYS})
    assert a.status_code == b.status_code == 200 and a.json()["results"] == b.json()["results"]


@pytest.mark.parametrize("text", ["1", "yes", "True", "on", ""])
def test_query_booleans_are_exactly_true_or_false(client, text):
    r = client.post("/decode", params={"model": DIGITS, "noise": text}, json={"z": Z4})
    assert r.status_code == 422 and r.json()["error"]["field"] == "query.noise"


def test_the_query_wins_over_the_body(client):
    body = {"arrays": ARRAYS, "samples": 1, "seed": 1}
    both = client.post("/encode", params={"model": DIGITS, "samples": 2}, json=body).json()
    assert len(both["results"][0]["z"]) == 2 and both["seed"] == 1  # samples from the query, seed from the body


def test_an_option_of_another_route_is_refused(client):
    r = client.post("/encode", params={"model": DIGITS}, json={"arrays": ARRAYS, "k": 5})
    assert r.status_code == 422 and r.json()["error"]["field"] == "body.k"
