"""/resynthesize and /interpolate on a real exported model with attribute directions."""

import dataclasses
import json

import numpy as np
import pytest

from service.core import attribute_direction
from service.errors import InvalidInput
from tests.service.conftest import DIGITS


def _digit_arrays(n: int) -> list:
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, size=(n, 8, 8)).round(3).tolist()


def test_models_list_the_attributes(client, model_dir):
    spec = client.get(f"/models/{DIGITS}").json()["manifest"]["attributes"]
    assert spec["names"] == [str(d) for d in range(10)] and spec["directions"] == {"one-to-seven": ["1", "7"]}
    assert sum(spec["counts"]) == 600  # the training split of the fixture's run
    stored = json.loads((model_dir / DIGITS / "attributes.json").read_text())
    assert np.array(stored["means"]).shape == (10, 4)


def test_resynthesize_adds_the_class_mean_difference(client, model_dir):
    arrays = _digit_arrays(2)
    means = dict(zip(*(json.loads((model_dir / DIGITS / "attributes.json").read_text())[k]
                       for k in ("names", "means")), strict=True))
    enc = client.post(f"/encode?model={DIGITS}", json={"arrays": arrays}).json()
    mu = np.array([r["mean"] for r in enc["results"]])
    r = client.post(f"/resynthesize?model={DIGITS}&from=1&to=7&strength=0.5&include_arrays=true",
                    json={"arrays": arrays}).json()
    np.testing.assert_allclose(r["z"], mu + 0.5 * (np.array(means["7"]) - np.array(means["1"])), atol=1e-5)
    decoded = client.post(f"/decode?model={DIGITS}&include_arrays=true", json={"z": r["z"]}).json()
    np.testing.assert_allclose(r["arrays"], decoded["arrays"], atol=1e-5)
    named = client.post(f"/resynthesize?model={DIGITS}&direction=one-to-seven&strength=0.5",
                        json={"arrays": arrays}).json()
    np.testing.assert_allclose(named["z"], r["z"], atol=1e-6)
    in_body = client.post(f"/resynthesize?model={DIGITS}", json={"arrays": arrays, "from": "1", "to": "7",
                                                                  "strength": 0.5})  # deprecated: options in the body
    np.testing.assert_allclose(in_body.json()["z"], r["z"], atol=1e-6)
    assert in_body.headers["Deprecation"].startswith("@")
    zero = client.post(f"/resynthesize?model={DIGITS}&from=1&to=7&strength=0&include_arrays=true",
                       json={"arrays": arrays}).json()
    recon = client.post(f"/reconstruct?model={DIGITS}&include_arrays=true", json={"arrays": arrays}).json()
    np.testing.assert_allclose(zero["arrays"], recon["arrays"], atol=1e-6)


@pytest.mark.parametrize("query, status, field", [
    ("from=1&to=nine", 422, "query.to"),
    ("to=7", 422, "query.from"),
    ("direction=sideways", 422, "query.direction"),
    ("from=1&to=7&strength=11", 422, "query.strength"),
])
def test_resynthesize_errors(client, query, status, field):
    r = client.post(f"/resynthesize?model={DIGITS}&{query}", json={"arrays": _digit_arrays(1)})
    assert r.status_code == status and r.json()["error"]["field"] == field


def test_a_model_without_attributes_says_so(client):
    model = client.app.state.core.registry.models[DIGITS]
    bare = dataclasses.replace(model, attributes={},
                               manifest=model.manifest.model_copy(update={"attributes": None}))
    with pytest.raises(InvalidInput, match="no attributes"):
        attribute_direction(bare, "1", "7", None)


def test_interpolate_latents_linear_and_spherical(client):
    z0, z1 = np.zeros(4), np.ones(4)
    z0[0] = 2.0
    lin = client.post(f"/interpolate?model={DIGITS}&steps=5", json={"z": [z0.tolist(), z1.tolist()]}).json()
    path = np.array(lin["z"])
    assert path.shape == (5, 4) and len(lin["images"]) == 5
    np.testing.assert_allclose(path[0], z0, atol=1e-6)
    np.testing.assert_allclose(path[-1], z1, atol=1e-6)
    np.testing.assert_allclose(path[2], (z0 + z1) / 2, atol=1e-6)
    a, b = np.array([3.0, 0, 0, 0]), np.array([0, 3.0, 0, 0])
    sph = client.post(f"/interpolate?model={DIGITS}", json={"z": [a.tolist(), b.tolist()], "steps": 9,
                                                            "method": "slerp"}).json()
    norms = np.linalg.norm(np.array(sph["z"]), axis=1)
    np.testing.assert_allclose(norms, 3.0, atol=1e-5)  # the great circle keeps the norm; linear would not
    png = client.post(f"/interpolate?model={DIGITS}&steps=4&format=png", json={"z": [a.tolist(), b.tolist()]})
    assert png.headers["content-type"] == "image/png"


def test_interpolate_between_two_images(client):
    arrays = _digit_arrays(2)
    enc = client.post(f"/encode?model={DIGITS}", json={"arrays": arrays}).json()
    r = client.post(f"/interpolate?model={DIGITS}&steps=3", json={"arrays": arrays}).json()
    np.testing.assert_allclose(r["z"][0], enc["results"][0]["mean"], atol=1e-5)
    np.testing.assert_allclose(r["z"][-1], enc["results"][1]["mean"], atol=1e-5)
    wrong = client.post(f"/interpolate?model={DIGITS}", json={"arrays": _digit_arrays(3)})
    assert wrong.status_code == 422 and wrong.json()["error"]["limit"] == 2
    too_many = client.post(f"/interpolate?model={DIGITS}&steps=65", json={"z": [[0.0] * 4] * 2})
    assert too_many.status_code == 422 and too_many.json()["error"]["field"] == "query.steps"
    three = client.post(f"/interpolate?model={DIGITS}", json={"z": [[0.0] * 4] * 3})
    assert three.status_code == 422 and three.json()["error"]["field"] == "body.z"
