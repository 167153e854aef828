"""Bad input: a 4xx JSON body naming the field (and the limit), never a 500, and the service keeps serving."""

import base64
import io
import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.registry import StartupError
from tests.service.conftest import DIGITS, TWO_LEVEL, make_settings, wait_ready


def png(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


GREY = png(np.zeros((28, 28), np.uint8))
Z32 = [[0.0] * 32]


def _post_files(client, path, *blobs):
    return client.post(path, files=[("images", (f"{i}.bin", b, "application/octet-stream"))
                                    for i, b in enumerate(blobs)])


CASES = [
    # (name, request, status, field, limit)
    ("undecodable image", lambda c: _post_files(c, "/encode", b"not an image"), 422, "images[0]", None),
    ("truncated png", lambda c: _post_files(c, "/encode", GREY[:40]), 422, "images[0]", None),
    ("gif", lambda c: _post_files(c, "/encode", png(np.zeros((28, 28), np.uint8), "GIF")), 415, "images[0]",
     ["JPEG", "PNG"]),
    ("too many pixels", lambda c: _post_files(c, "/encode", png(np.zeros((600, 600), np.uint8))), 413, "images[0]",
     200_000),
    ("too many images", lambda c: _post_files(c, "/loglik", *[GREY] * 9), 422, "images", 8),
    ("no images", lambda c: c.post("/encode", json={"images": []}), 422, "body.images", 1),
    ("malformed multipart", lambda c: c.post("/encode", content=b"--b\r\nbad\r\n",
                                             headers={"content-type": "multipart/form-data; boundary=b"}), 400,
     "images", None),
    ("too many parts", lambda c: _post_files(c, "/encode", *[GREY] * 30), 422, "images", 8),
    ("images field not a file", lambda c: c.post("/encode", data={"images": "abc"}, files=[("x", ("a", b"x"))]),
     422, "images", None),
    ("multipart without images", lambda c: c.post("/encode", files=[("pictures", ("a.png", GREY))]), 422, "images",
     None),
    ("both forms", lambda c: c.post("/encode", json={"images": ["aGk="], "arrays": [[[0.5]]]}), 422, "body", None),
    ("neither form", lambda c: c.post("/encode", json={}), 422, "body", None),
    ("bad base64", lambda c: c.post("/encode", json={"images": ["***"]}), 422, "images[0]", None),
    ("unknown json field", lambda c: c.post("/encode", json={"imgs": []}), 422, "body.imgs", None),
    ("invalid json", lambda c: c.post("/encode", content=b"{", headers={"content-type": "application/json"}), 422,
     "body", None),
    ("array out of range", lambda c: c.post("/encode", json={"arrays": [[[2.0]]]}), 422, "body.arrays[0][0][0]", 1),
    ("array wrong rank", lambda c: c.post("/encode", json={"arrays": [[1, 2, 3]]}), 422, "body.arrays[0][0]", None),
    ("array of 2 channels", lambda c: c.post("/encode", json={"arrays": [[[[0.5]], [[0.5]]]]}), 422, "body.arrays[0]",
     None),
    ("boolean in an array", lambda c: c.post("/encode", json={"arrays": [[[0.5, True]]]}), 422, "body.arrays[0][0][1]",
     None),
    ("huge integer in an array", lambda c: c.post("/loglik", content=b'{"arrays": [[[1' + b"0" * 400 + b', 0.5]]]}',
                                                 headers={"content-type": "application/json"}), 422,
     "body.arrays[0][0][0]", None),  # refused as not finite, never converted
    ("string in an array", lambda c: c.post("/encode", json={"arrays": [[["0.5"]]]}), 422, "body.arrays[0][0][0]",
     None),
    ("array too large", lambda c: c.post("/encode", json={"arrays": [np.zeros((500, 500)).tolist()]}), 413,
     "arrays[0]", 200_000),
    ("ragged array", lambda c: c.post("/encode", json={"arrays": [[[0.1], [0.1, 0.2]]]}), 422, "arrays[0]", None),
    ("text body", lambda c: c.post("/encode", content=b"hello", headers={"content-type": "text/plain"}), 415,
     "content-type", ["multipart/form-data", "application/json"]),
    ("decode text body", lambda c: c.post("/decode", content=b"z", headers={"content-type": "text/plain"}), 415,
     "content-type", ["application/json"]),
    ("unknown model", lambda c: c.get("/sample?model=nope"), 404, "query.model", [DIGITS, TWO_LEVEL, "fashion-mnist"]),
    ("n too large", lambda c: c.get("/sample?n=65"), 422, "query.n", 64),
    ("n zero", lambda c: c.get("/sample?n=0"), 422, "query.n", 1),
    ("n not a number", lambda c: c.get("/sample?n=many"), 422, "query.n", None),
    ("temperature too high", lambda c: c.get("/sample?temperature=11"), 422, "query.temperature", 10.0),
    ("negative seed", lambda c: c.get("/sample?seed=-1"), 422, "query.seed", 0),
    ("bad format", lambda c: c.get("/sample?format=gif"), 422, "query.format", None),
    ("k too large", lambda c: _post_files(c, "/loglik?k=2001", GREY), 422, "query.k", 2000),
    ("k in body too large", lambda c: c.post("/loglik", json={"arrays": [np.zeros((28, 28)).tolist()], "k": 9999}),
     422, "body.k", 2000),
    ("k in body a boolean", lambda c: c.post("/loglik", json={"arrays": [np.zeros((8, 8)).tolist()], "k": True}),
     422, "body.k", None),
    ("noise in body a string", lambda c: c.post("/decode", json={"z": Z32, "noise": "true"}), 422, "body.noise", None),
    ("k in the query a boolean", lambda c: _post_files(c, "/loglik?k=true", GREY), 422, "query.k", None),
    ("samples in the query a boolean", lambda c: _post_files(c, "/encode?samples=true", GREY), 422, "query.samples",
     None),
    ("resize in the query a word", lambda c: _post_files(c, "/encode?resize=yes", GREY), 422, "query.resize", None),
    ("another route's option", lambda c: c.post("/encode", json={"arrays": [[[0.5]]], "steps": 3}), 422,
     "body.steps", None),
    ("seed beyond 2^53 - 1", lambda c: c.get(f"/sample?seed={2**53}"), 422, "query.seed", 2**53 - 1),
    ("null option in the body", lambda c: c.post("/decode", json={"z": Z32, "seed": None}), 422, "body", None),
    ("infinite temperature", lambda c: c.get("/sample?temperature=inf"), 422, "query.temperature", None),
    ("model name not a name", lambda c: c.get("/sample?model=../etc"), 422, "query.model", None),
    ("no content type", lambda c: c.post("/encode", content=b"{}"), 415, "content-type",
     ["multipart/form-data", "application/json"]),
    ("decode from multipart", lambda c: _post_files(c, "/decode", GREY), 415, "content-type", ["application/json"]),
    ("samples too large", lambda c: _post_files(c, "/encode?samples=65", GREY), 422, "query.samples", 64),
    ("wrong latent length", lambda c: c.post("/decode", json={"z": [[0.0] * 3]}), 422, "body.z[0]", 32),
    ("latent too large", lambda c: c.post("/decode", json={"z": [[1e6] * 32]}), 422, "body.z[0][0]", 100.0),
    ("nan latent", lambda c: c.post("/decode", content=b'{"z": [[NaN' + b", 0" * 31 + b"]]}",
                                    headers={"content-type": "application/json"}), 422, "body.z[0][0]", None),
    ("no latents", lambda c: c.post("/decode", json={"z": []}), 422, "body.z", None),
    ("too many latents", lambda c: c.post("/decode", json={"z": Z32 * 9}), 422, "body.z", 8),
    ("body format", lambda c: c.post("/decode", json={"z": Z32, "format": "bmp"}), 422, "body.format", None),
    ("body too large", lambda c: c.post("/encode", content=b"x" * 2_000_001,
                                        headers={"content-type": "application/json"}), 413, "body", 2_000_000),
]


@pytest.mark.parametrize("name, request_fn, status, field, limit", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_clear_4xx_and_the_service_keeps_serving(client, name, request_fn, status, field, limit):
    r = request_fn(client)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["status"] == status and error["field"] == field and error["message"]
    if limit is not None:
        assert error["limit"] == limit
    assert client.get("/sample?n=1&seed=0").status_code == 200


def test_decompression_bomb_is_refused_before_decoding(client):
    """A PNG whose header claims 30000 x 30000 pixels is rejected from its header alone."""
    big = Image.new("1", (30000, 30000))
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    assert len(buf.getvalue()) < 200_000  # tiny on the wire, 900 megapixels when decoded
    r = client.post("/encode", files={"images": ("bomb.png", buf.getvalue(), "image/png")})
    assert r.status_code == 413 and r.json()["error"]["limit"] == 200_000


def test_streamed_body_over_the_limit_is_413(client):
    def chunks():
        for _ in range(30):
            yield b"x" * 100_000

    r = client.post("/encode", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["field"] == "body"


def test_broken_model_folder_is_skipped_and_the_others_serve(model_dir, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(model_dir / DIGITS, root / DIGITS)
    shutil.copytree(model_dir / DIGITS, root / "broken")
    manifest = json.loads((root / "broken" / "manifest.json").read_text())
    manifest["name"] = "broken"
    (root / "broken" / "manifest.json").write_text(json.dumps(manifest))
    (root / "broken" / "decoder.onnx").write_bytes(b"garbage")  # fails its sha256
    (root / "empty").mkdir()
    with TestClient(create_app(make_settings(root))) as c:
        wait_ready(c)
        models = c.get("/models").json()
        assert [m["name"] for m in models["models"]] == [DIGITS] and models["default"] == DIGITS
        assert "sha256" in models["skipped"]["broken"] and "manifest.json" in models["skipped"]["empty"]
        assert c.get("/sample?n=2&seed=0").status_code == 200


def test_readyz_is_503_until_models_are_loaded(model_dir):
    app = create_app(make_settings(model_dir))
    c = TestClient(app)  # no `with`: the lifespan (model loading) has not run
    assert c.get("/healthz").status_code == 200
    r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["error"]["message"] == "models are still loading"
    assert c.get("/sample").status_code == 503


def test_explicit_cuda_that_cannot_be_had_fails_startup(model_dir):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA: the refusal path cannot be shown here")
    app = create_app(make_settings(model_dir, providers="CUDAExecutionProvider,CPUExecutionProvider"))
    with pytest.raises(StartupError, match="onnxruntime-gpu"):
        with TestClient(app):
            pass


def test_unknown_default_model_fails_startup(model_dir):
    with TestClient(create_app(make_settings(model_dir, default_model="nope"))) as c:
        error = wait_ready(c)["error"]
        assert error["status"] == 503 and "VAE_DEFAULT_MODEL='nope'" in error["message"]
        assert c.get("/sample").status_code == 503 and c.get("/healthz").status_code == 200


def test_missing_model_dir_fails_startup(tmp_path):
    with pytest.raises(StartupError, match="does not exist"):
        with TestClient(create_app(make_settings(tmp_path / "none"))):
            pass


def test_base64_jpeg_with_resize_false_and_matching_size(client):
    jpeg = png(np.full((28, 28), 128, np.uint8), "JPEG")
    r = client.post("/encode?resize=false", json={"images": [base64.b64encode(jpeg).decode()]})
    assert r.status_code == 200 and r.json()["results"][0]["conversion"]["format"] == "JPEG"
