"""Every endpoint and input form through the app with its lifespan running (real onnxruntime sessions
on real exported models)."""

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from tests.service.conftest import DIGITS, ROOT, TWO_LEVEL

EXAMPLE_PNG = (ROOT / "docs" / "example-ankle-boot.png").read_bytes()


def png(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def test_health_ready_and_models(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["default"] == "fashion-mnist"
    assert set(ready["models"]) == {"fashion-mnist", DIGITS, TWO_LEVEL}
    models = client.get("/models").json()
    assert models["default"] == "fashion-mnist" and models["skipped"] == {}
    by_name = {m["name"]: m for m in models["models"]}
    assert by_name[DIGITS]["providers"] == ["CPUExecutionProvider"]
    assert by_name[DIGITS]["manifest"]["latent_dim"] == 4
    one = client.get(f"/models/{DIGITS}").json()
    assert one["manifest"]["image"] == by_name[DIGITS]["manifest"]["image"] and one["default"] is False
    missing = client.get("/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "path.name"


def test_small_requests_decoded_inline_match_large_ones_decoded_in_the_pool(client):
    """A lone small PNG is decoded on the event loop, one over INLINE_MAX_BYTES in a worker thread (offload.py):
    same pixels, same code."""
    from PIL import PngImagePlugin

    from service.offload import INLINE_MAX_BYTES

    info = PngImagePlugin.PngInfo()
    info.add_text("padding", "x" * INLINE_MAX_BYTES)  # same pixels, a larger file
    buf = io.BytesIO()
    Image.open(io.BytesIO(EXAMPLE_PNG)).save(buf, format="PNG", pnginfo=info)
    assert len(EXAMPLE_PNG) < INLINE_MAX_BYTES < len(buf.getvalue())
    small, large = (client.post("/encode", files={"images": ("a.png", data, "image/png")}).json()
                    for data in (EXAMPLE_PNG, buf.getvalue()))
    assert small["results"][0]["mean"] == large["results"][0]["mean"]
    assert small["results"][0]["conversion"] == large["results"][0]["conversion"]


def test_encode_every_input_form_gives_the_same_code(client):
    b64 = base64.b64encode(EXAMPLE_PNG).decode()
    multipart = client.post("/encode", files=[("images", ("a.png", EXAMPLE_PNG, "image/png"))] * 2).json()
    as_json = client.post("/encode", json={"images": [b64]}).json()
    k = np.asarray(Image.open(io.BytesIO(EXAMPLE_PNG)), dtype=np.float64)
    as_array = client.post("/encode", json={"arrays": [((k + 0.5) / 256).tolist()]}).json()
    assert len(multipart["results"]) == 2 and multipart["latent_dim"] == 32
    mu = np.array(multipart["results"][0]["mean"])
    assert mu.shape == (32,) and np.array(multipart["results"][0]["logvar"]).shape == (32,)
    np.testing.assert_allclose(as_json["results"][0]["mean"], mu, atol=1e-6)
    np.testing.assert_allclose(as_array["results"][0]["mean"], mu, atol=1e-4)
    conv = multipart["results"][0]["conversion"]
    assert conv["format"] == "PNG" and conv["resized"] is False and conv["pixel_mapping"] == "x = (k + 0.5) / 256"


def test_encode_converts_size_and_channels_unless_told_not_to(client):
    rgb = png(np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8), "JPEG")
    r = client.post("/encode", files={"images": ("a.jpg", rgb, "image/jpeg")})
    conv = r.json()["results"][0]["conversion"]
    assert r.status_code == 200 and conv["resized"] and conv["source_size"] == [40, 30] and conv["mode"] == "L"
    refused = client.post("/encode?resize=false", files={"images": ("a.jpg", rgb, "image/jpeg")})
    err = refused.json()["error"]
    assert refused.status_code == 422 and err["field"] == "images[0]" and err["limit"] == [28, 28]
    chw = client.post(f"/encode?model={DIGITS}", json={"arrays": [np.full((3, 8, 8), 0.5).tolist()]}).json()
    assert chw["results"][0]["conversion"]["channels_converted"] == "3 -> 1"


def test_encode_draws_are_reproducible_by_seed(client):
    files = {"images": ("a.png", EXAMPLE_PNG, "image/png")}
    a = client.post("/encode?samples=3&seed=7", files=files).json()
    b = client.post("/encode?samples=3&seed=7", files=files).json()
    c = client.post("/encode", json={"images": [base64.b64encode(EXAMPLE_PNG).decode()], "samples": 3,
                                     "seed": 8}).json()
    z = np.array(a["results"][0]["z"])
    assert z.shape == (3, 32) and a["seed"] == 7
    assert a["results"][0]["z"] == b["results"][0]["z"] and c["results"][0]["z"] != a["results"][0]["z"]
    mu, std = np.array(a["results"][0]["mean"]), np.exp(0.5 * np.array(a["results"][0]["logvar"]))
    assert np.all(np.abs(z - mu) < 8 * std)


def test_decode_json_png_and_noise(client):
    z = np.random.default_rng(0).standard_normal((3, 32)).round(4).tolist()
    r = client.post("/decode?include_arrays=true", json={"z": z}).json()
    assert r["shape"] == [1, 28, 28] and len(r["images"]) == 3 and r["seed"] is None
    arrays = np.array(r["arrays"])
    assert arrays.shape == (3, 1, 28, 28) and 0 <= arrays.min() and arrays.max() <= 1
    first = Image.open(io.BytesIO(base64.b64decode(r["images"][0])))
    assert first.size == (28, 28) and np.abs(np.asarray(first) / 255 - arrays[0, 0]).max() < 0.003
    grid = client.post("/decode?format=png", json={"z": z})
    assert grid.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(grid.content)).size == (2 * 30 + 2, 2 * 30 + 2)  # 2x2 tiles, 2 px padding
    noisy = client.post("/decode?noise=true&seed=5&include_arrays=true", json={"z": z}).json()
    again = client.post("/decode", json={"z": z, "noise": True, "seed": 5, "include_arrays": True}).json()
    assert noisy["arrays"] == again["arrays"] and noisy["seed"] == 5
    sigma = client.get("/models/fashion-mnist").json()["manifest"]["likelihood"]["sigma"]
    residual = np.array(noisy["arrays"]) - arrays
    assert residual.std() == pytest.approx(sigma, rel=0.1)  # x = f[z] + sigma * eps


def test_sample_same_seed_same_images(client):
    a = client.get("/sample?n=4&seed=11&include_arrays=true").json()
    b = client.get("/sample?n=4&seed=11&include_arrays=true").json()
    c = client.get("/sample?n=4&seed=12&include_arrays=true").json()
    assert a["images"] == b["images"] and a["images"] != c["images"] and a["seed"] == 11
    assert np.array(a["arrays"]).shape == (4, 1, 28, 28)
    cold = np.array(client.get("/sample?n=4&seed=11&temperature=0.01&include_arrays=true").json()["arrays"])
    zero = client.post("/decode?include_arrays=true", json={"z": [[0.0] * 32]}).json()["arrays"][0]
    assert np.abs(cold - np.array(zero)).max() < 0.05  # temperature -> 0 decodes the prior's mode
    png_grid = client.get("/sample?n=9&seed=1&format=png")
    assert Image.open(io.BytesIO(png_grid.content)).size == (3 * 30 + 2, 3 * 30 + 2)
    assert client.get("/sample?n=3&seed=11&noise=true").json()["images"] != a["images"][:3]
    unseeded = client.get("/sample?n=1").json()
    assert isinstance(unseeded["seed"], int)


def test_reconstruct(client):
    r = client.post("/reconstruct?include_arrays=true", files={"images": ("a.png", EXAMPLE_PNG, "image/png")}).json()
    x = np.asarray(Image.open(io.BytesIO(EXAMPLE_PNG)), dtype=np.float64) / 255
    recon = np.array(r["arrays"])[0, 0]
    assert recon.shape == (28, 28) and np.abs(recon - x).mean() < 0.1  # an ankle boot comes back
    assert r["conversions"][0]["format"] == "PNG"


def test_loglik_agrees_with_the_training_evaluator(client, trained_digits):
    """Same images, K and seed: the service's numpy estimator on ONNX vs training's torch estimator."""
    from training.checkpoint import load_checkpoint
    from training.estimators import log_likelihood

    rng = np.random.default_rng(0)
    x = rng.uniform(0.02, 0.98, size=(3, 1, 8, 8)).astype(np.float32)
    served = client.post(f"/loglik?model={DIGITS}&k=500&seed=42", json={"arrays": x.tolist()}).json()
    model = load_checkpoint(trained_digits).build_model()
    expected = log_likelihood(model, torch.from_numpy(x), 500, chunk=64, rng=np.random.default_rng(42))
    got = np.array([r["log_likelihood"] for r in served["results"]])
    np.testing.assert_allclose(got, expected.log_likelihood.numpy(), atol=2e-3)
    np.testing.assert_allclose([r["effective_sample_size"] for r in served["results"]],
                               expected.effective_sample_size.numpy(), rtol=1e-3)
    np.testing.assert_allclose([r["log_likelihood_stderr"] for r in served["results"]],
                               expected.stderr.numpy(), rtol=1e-3, atol=1e-6)
    elbo = expected.elbo.numpy()  # the mean log-weight of the first round, drawn from q
    np.testing.assert_allclose([r["elbo"] for r in served["results"]], elbo, atol=2e-3)
    bpd = -(got - 64 * np.log(17)) / (64 * np.log(2))
    np.testing.assert_allclose([r["bits_per_dim"] for r in served["results"]], bpd, rtol=1e-9)
    assert served["k"] == 500 and served["seed"] == 42 and all(r["k"] == 500 for r in served["results"])


def test_loglik_defaults_and_reproducibility(client):
    files = {"images": ("a.png", EXAMPLE_PNG, "image/png")}
    a = client.post("/loglik?seed=3", files=files).json()
    b = client.post("/loglik?seed=3", files=files).json()
    assert a["k"] == 100 and a["results"] == b["results"]  # default k from the settings
    r = a["results"][0]
    assert r["log_likelihood"] >= r["elbo"] and 1 <= r["effective_sample_size"] <= 100
    ess = r["effective_sample_size"]
    assert r["log_likelihood_stderr"] == pytest.approx(np.sqrt(1 / ess - 1 / 100), rel=1e-9)
    # the warning follows VAE_LOGLIK_MIN_ESS (10)
    assert (r["warning"] is None) == (ess >= 10), r
    if r["warning"] is not None:
        assert "effective sample size" in r["warning"] and "raise k" in r["warning"]
    body = client.post("/loglik", json={"images": [base64.b64encode(EXAMPLE_PNG).decode()], "k": 50,
                                        "seed": 3}).json()
    assert body["k"] == 50 and body["seed"] == 3


def test_metrics_count_requests_and_images(client):
    client.get("/sample?n=5&seed=1")
    text = client.get("/metrics").text
    assert 'vae_requests_total{endpoint="/sample",model="fashion-mnist",status="200"}' in text
    assert 'vae_images_processed_total{model="fashion-mnist",use_case="sample"}' in text
    assert 'vae_inference_seconds_count{graph="decoder",model="fashion-mnist"}' in text
    assert "vae_request_latency_seconds_bucket" in text


def test_openapi_lists_every_query_option_with_the_live_limits(client):
    """The inference routes validate their query models themselves (service/query.py); /docs must still
    show each option with the limits of the running settings (the test client's, not the defaults)."""
    spec = client.get("/openapi.json").json()

    def params(path: str, method: str) -> dict:
        return {p["name"]: p for p in spec["paths"][path][method]["parameters"]}

    def maximum(param: dict) -> float | None:
        variants = param["schema"].get("anyOf", [param["schema"]])
        return next((v["maximum"] for v in variants if "maximum" in v), None)

    loglik, sample, encode = params("/loglik", "post"), params("/sample", "get"), params("/encode", "post")
    assert set(loglik) == {"model", "resize", "seed", "k"} and maximum(loglik["k"]) == 2000
    assert maximum(sample["n"]) == 64 and maximum(sample["temperature"]) == 10.0
    assert set(encode) == {"model", "resize", "seed", "samples"} and maximum(encode["samples"]) == 64
    assert set(params("/decode", "post")) == {"model", "seed", "noise", "format", "include_arrays"}
    assert all(p["in"] == "query" and p["description"] for p in loglik.values())


def test_low_ess_warning_names_the_value_and_the_floor():
    from service.vae_responses import low_ess_warning

    assert low_ess_warning(10.0, 10.0) is None and low_ess_warning(400.0, 10.0) is None
    warning = low_ess_warning(2.5, 10.0)
    assert warning is not None and "2.5" in warning and "below 10" in warning
