"""The synchronous client against the real service: every method, its numbers against the raw HTTP answers for
the same request, each input form, splitting past the per-request limits, and the errors."""

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from tests.client.conftest import API_KEY, DIGITS, EXAMPLE, MAX_IMAGES, MAX_K, MAX_SAMPLES, TROUSER, TWO_LEVEL, Server
from vae_client import (
    AuthenticationError,
    BadRequestError,
    Client,
    InvalidInputError,
    NotFoundError,
    VAEClientError,
)


def files(*blobs: bytes) -> list:
    return [("images", (f"{i}.png", b, "image/png")) for i, b in enumerate(blobs)]


def f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def digits(n: int) -> np.ndarray:
    """n of scikit-learn's 8x8 digits as values in [0, 1], [n, 8, 8] float64."""
    from sklearn.datasets import load_digits

    return load_digits().images[:n] / 16.0


def requests_to(server: Server, endpoint: str, model: str) -> float:
    """vae_requests_total{endpoint, model, status=200} from /metrics (the test key is an admin's)."""
    text = server.raw.get("/metrics").text
    pattern = rf'^vae_requests_total{{endpoint="{re.escape(endpoint)}",model="{model}",status="200"}} (\S+)$'
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.fixture(scope="module")
def vae(server: Server):
    with Client(server.url, api_key=API_KEY, retries=2, backoff=0.05) as client:
        yield client


def test_ready_models_and_model_info(vae: Client, server: Server):
    assert vae.ready() is True
    listed = vae.models()
    raw = server.raw.get("/models").json()
    assert listed.names == [m["name"] for m in raw["models"]] == sorted([DIGITS, TWO_LEVEL, "fashion-mnist"])
    assert listed.default == "fashion-mnist" and listed.skipped == {}
    assert listed["fashion-mnist"].manifest == {m["name"]: m["manifest"] for m in raw["models"]}["fashion-mnist"]
    digits_model = vae.model(DIGITS)
    assert (digits_model.latent_dim, digits_model.image_shape, digits_model.value_range) == (4, (1, 8, 8), (0.0, 1.0))
    assert digits_model.directions == {"one-to-seven": ("1", "7")} and digits_model.attributes[:2] == ["0", "1"]
    assert vae.model(TWO_LEVEL).latent_dims == [4, 3]
    default = vae.model()
    assert default.name == "fashion-mnist" and default.default and default.latent_dim == 32
    assert default.providers == ["CPUExecutionProvider"]


def test_encode_of_a_png_path_equals_the_raw_answer(vae: Client, server: Server):
    result = vae.encode(EXAMPLE, samples=2, seed=1)
    raw = server.raw.post("/encode", params={"samples": 2, "seed": 1}, files=files(EXAMPLE.read_bytes())).json()
    item = raw["results"][0]
    assert result.mean.dtype == np.float32 and result.mean.shape == (1, 32) and result.samples is not None
    assert np.array_equal(result.mean[0], f32(item["mean"])) and np.array_equal(result.logvar[0], f32(item["logvar"]))
    assert result.samples.shape == (1, 2, 32) and np.array_equal(result.samples[0], f32(item["z"]))
    assert (result.seed, result.model, result.latent_dim, result.levels) == (1, "fashion-mnist", 32, None)
    assert result.conversions == [item["conversion"]]
    plain = vae.encode(EXAMPLE)
    assert plain.samples is None and plain.seed is None and np.array_equal(plain.mean, result.mean)


def test_every_image_form_gives_the_numbers_of_the_uploaded_file(vae: Client):
    """A path, the file's bytes, a PIL image, its uint8 levels (uploaded as PNG) and the values the service maps
    the file's levels to, x = (k + 0.5) / 256, sent as a float array: the same model input, the same encoding."""
    levels = np.asarray(Image.open(EXAMPLE))
    assert levels.dtype == np.uint8 and levels.shape == (28, 28)
    by_path = vae.encode(EXAMPLE)
    forms = {"bytes": EXAMPLE.read_bytes(), "str path": str(EXAMPLE), "PIL": Image.open(EXAMPLE),
             "uint8 [H, W]": levels, "uint8 [N, C, H, W]": levels[None, None],
             "float32 (k + 0.5) / 256": ((levels.astype(np.float32) + 0.5) / 256)[None]}
    for name, form in forms.items():
        result = vae.encode(form)
        assert np.array_equal(result.mean, by_path.mean), name
        assert np.array_equal(result.logvar, by_path.logvar), name
    assert vae.encode(forms["float32 (k + 0.5) / 256"]).conversions[0]["format"] == "array"
    assert vae.encode(levels).conversions[0]["pixel_mapping"] == "x = (k + 0.5) / 256"
    # k / 255 as floats is another input (the model's mapping is not applied to arrays): a different encoding
    assert not np.array_equal(vae.encode(levels / 255.0).mean, by_path.mean)


def test_decode_reconstruct_and_sample_equal_the_raw_answers(vae: Client, server: Server, tmp_path):
    mean = vae.encode(EXAMPLE).mean
    decoded = vae.decode(mean)
    raw = server.raw.post("/decode", params={"include_arrays": "true"}, json={"z": mean.astype(float).tolist()}).json()
    assert decoded.arrays.dtype == np.float32 and decoded.arrays.shape == (1, 1, 28, 28)
    assert np.array_equal(decoded.arrays, f32(raw["arrays"])) and decoded.seed is None and decoded.z is None
    assert decoded.png[0] == base64.b64decode(raw["images"][0])
    assert vae.decode(mean[0]).png == decoded.png  # one vector, [D]
    reconstruction = vae.reconstruct(EXAMPLE)
    assert reconstruction.png == decoded.png and np.array_equal(reconstruction.arrays, decoded.arrays)
    assert reconstruction.conversions is not None and reconstruction.conversions[0]["format"] == "PNG"

    noisy = vae.decode(mean, noise=True, seed=3)
    assert noisy.seed == 3 and not np.array_equal(noisy.arrays, decoded.arrays)
    assert np.array_equal(vae.decode(mean, noise=True, seed=3).arrays, noisy.arrays)

    sample = vae.sample(3, seed=4, temperature=0.8, noise=True)
    raw = server.raw.get("/sample", params={"n": 3, "seed": 4, "temperature": 0.8, "noise": "true",
                                            "include_arrays": "true"}).json()
    assert sample.seed == 4 and len(sample) == 3 and sample.arrays.shape == (3, 1, 28, 28)
    assert sample.png == [base64.b64decode(s) for s in raw["images"]]
    assert np.array_equal(sample.arrays, f32(raw["arrays"]))
    unseeded = vae.sample(2)
    assert unseeded.seed is not None and vae.sample(2, seed=unseeded.seed).png == unseeded.png  # reproducible

    paths = sample.save(tmp_path / "out", prefix="s")
    assert [p.name for p in paths] == ["s-0000.png", "s-0001.png", "s-0002.png"]
    pictures = sample.to_pil()
    for path, picture, values in zip(paths, pictures, sample.arrays, strict=True):
        assert np.array_equal(np.asarray(Image.open(path)), np.asarray(picture))
        assert picture.size == (28, 28) and picture.mode == "L"
        expected = (np.clip(values[0], 0, 1) * 255 + 0.5).astype(np.uint8)  # the service's PNG levels
        assert np.abs(np.asarray(picture).astype(int) - expected).max() <= 1  # arrays are rounded to 6 decimals


def test_loglik_equals_the_raw_answer(vae: Client, server: Server):
    result = vae.loglik([EXAMPLE, TROUSER], k=200, seed=9)
    raw = server.raw.post("/loglik", params={"k": 200, "seed": 9},
                          files=files(EXAMPLE.read_bytes(), TROUSER.read_bytes())).json()
    assert (result.k, result.seed, result.model, len(result)) == (200, 9, "fashion-mnist", 2)
    for name, column in [("log_likelihood", result.log_likelihood), ("elbo", result.elbo),
                         ("bits_per_dim", result.bits_per_dim), ("log_likelihood_stderr", result.stderr),
                         ("effective_sample_size", result.effective_sample_size)]:
        assert column.dtype == np.float64 and column.tolist() == [r[name] for r in raw["results"]], name
    assert result.log_likelihood_stderr is result.stderr
    assert result.warnings == [r["warning"] for r in raw["results"]]
    assert result.bits_per_dim_convention == raw["bits_per_dim_convention"]
    assert np.all(result.log_likelihood >= result.elbo - 1.0) and np.all(result.stderr > 0)
    assert vae.loglik(EXAMPLE, k=None, seed=1).k == 50  # the service's VAE_DEFAULT_K


def test_two_level_model_gives_every_level(vae: Client, server: Server):
    x = digits(2)
    result = vae.encode(x, model=TWO_LEVEL)
    raw = server.raw.post("/encode", params={"model": TWO_LEVEL}, json={"arrays": x.tolist()}).json()
    assert result.levels is not None and [level.name for level in result.levels] == ["z1", "z2"]
    assert [level.mean.shape for level in result.levels] == [(2, 4), (2, 3)]
    assert np.array_equal(result.levels[0].mean, result.mean)
    for i, item in enumerate(raw["results"]):
        for level, raw_level in zip(result.levels, item["levels"], strict=True):
            assert np.array_equal(level.mean[i], f32(raw_level["mean"]))
            assert np.array_equal(level.logvar[i], f32(raw_level["logvar"]))
    assert vae.decode(result.mean, model=TWO_LEVEL).arrays.shape == (2, 1, 8, 8)
    assert vae.sample(2, model=TWO_LEVEL, seed=0).model == TWO_LEVEL


def test_resynthesize_and_interpolate(vae: Client, server: Server):
    x = digits(2)
    edited = vae.resynthesize(x, model=DIGITS, direction="one-to-seven", strength=0.5)
    raw = server.raw.post("/resynthesize", params={"model": DIGITS, "direction": "one-to-seven", "strength": 0.5,
                                                   "include_arrays": "true"}, json={"arrays": x.tolist()}).json()
    assert edited.z is not None and edited.z.shape == (2, 4) and np.array_equal(edited.z, f32(raw["z"]))
    assert np.array_equal(edited.arrays, f32(raw["arrays"]))
    by_names = vae.resynthesize(x, model=DIGITS, from_="1", to="7", strength=0.5)
    assert np.array_equal(by_names.arrays, edited.arrays)
    mean = vae.encode(x, model=DIGITS).mean
    full = vae.resynthesize(x, model=DIGITS, direction="one-to-seven")  # z = mean + strength * direction
    assert full.z is not None and np.allclose(full.z - mean, 2 * (edited.z - mean), atol=1e-4)
    assert not np.allclose(full.z, mean, atol=1e-3)

    path = vae.interpolate(x, model=DIGITS, steps=4, method="slerp")
    raw = server.raw.post("/interpolate", params={"model": DIGITS, "steps": 4, "method": "slerp",
                                                  "include_arrays": "true"}, json={"arrays": x.tolist()}).json()
    assert path.z is not None and path.z.shape == (4, 4) and np.array_equal(path.z, f32(raw["z"]))
    assert np.array_equal(path.arrays, f32(raw["arrays"]))
    assert np.allclose(path.z[[0, -1]], mean, atol=1e-5)  # the ends are the posterior means
    by_z = vae.interpolate(z=mean, model=DIGITS, steps=4, method="slerp")
    assert np.array_equal(by_z.z, path.z) and np.array_equal(by_z.arrays, path.arrays)
    files_path = vae.interpolate([EXAMPLE, TROUSER], steps=3)
    assert len(files_path) == 3 and files_path.conversions is not None and len(files_path.conversions) == 2
    with pytest.raises(ValueError, match="one form"):
        vae.interpolate([EXAMPLE, x[0]], model=DIGITS)


def test_calls_past_the_per_request_limit_are_split_and_joined_in_order(vae: Client, server: Server):
    n = 2 * MAX_IMAGES + 1
    x = digits(n)
    before = requests_to(server, "/encode", DIGITS)
    together = vae.encode(x, model=DIGITS)
    assert requests_to(server, "/encode", DIGITS) - before == 3  # 3 + 3 + 1
    alone = [vae.encode(x[i], model=DIGITS) for i in range(n)]
    assert together.mean.shape == (n, 4)
    assert np.array_equal(together.mean, np.concatenate([a.mean for a in alone]))
    assert np.array_equal(together.logvar, np.concatenate([a.logvar for a in alone]))

    scores = vae.loglik(x, model=DIGITS, k=100, seed=3)
    one_by_one = [vae.loglik(x[i], model=DIGITS, k=100, seed=3) for i in range(n)]
    assert scores.seed == 3 and len(scores) == n
    assert np.allclose(scores.log_likelihood, [s.log_likelihood[0] for s in one_by_one], rtol=0, atol=1e-9)
    assert np.allclose(scores.effective_sample_size, [s.effective_sample_size[0] for s in one_by_one], atol=1e-6)

    reconstructed = vae.reconstruct(x, model=DIGITS)
    assert np.array_equal(reconstructed.arrays, np.concatenate([vae.reconstruct(x[i], model=DIGITS).arrays
                                                                for i in range(n)]))
    decoded = vae.decode(together.mean, model=DIGITS)
    assert np.array_equal(decoded.arrays, reconstructed.arrays)  # decode(mu(x)) is the reconstruction

    # a list mixing forms, in order: files go in one request, float arrays in another
    mixed = vae.encode([EXAMPLE, digits(1)[0], TROUSER])
    assert [c["format"] for c in mixed.conversions] == ["PNG", "array", "PNG"]
    assert np.array_equal(mixed.mean[[0, 2]], vae.encode([EXAMPLE, TROUSER]).mean)

    many = vae.sample(2 * MAX_SAMPLES + 2, model=DIGITS, seed=5)
    assert len(many) == 12 and many.seed == 5 and len(set(many.png)) > MAX_SAMPLES + 1  # no chunk repeats another
    assert many.png[:MAX_SAMPLES] == vae.sample(MAX_SAMPLES, model=DIGITS, seed=5).png
    assert many.png == vae.sample(2 * MAX_SAMPLES + 2, model=DIGITS, seed=5).png
    drawn = vae.encode(x, model=DIGITS, samples=2, seed=7)
    assert drawn.seed == 7 and drawn.samples is not None and drawn.samples.shape == (n, 2, 4)
    assert np.array_equal(drawn.samples[:MAX_IMAGES], vae.encode(x[:MAX_IMAGES], model=DIGITS, samples=2,
                                                                 seed=7).samples)
    unseeded = vae.sample(MAX_SAMPLES + 1, model=DIGITS)
    assert unseeded.seed is not None and vae.sample(MAX_SAMPLES + 1, model=DIGITS, seed=unseeded.seed).png == \
        unseeded.png


def test_errors_carry_status_field_and_limit(vae: Client, server: Server):
    with pytest.raises(InvalidInputError) as bad_k:
        vae.loglik(EXAMPLE, k=MAX_K + 1)
    assert (bad_k.value.status, bad_k.value.field, bad_k.value.limit) == (422, "query.k", MAX_K)
    assert "less than or equal" in bad_k.value.message and bad_k.value.errors[0]["field"] == "query.k"
    assert isinstance(bad_k.value, BadRequestError) and isinstance(bad_k.value, VAEClientError)

    with pytest.raises(NotFoundError) as unknown:
        vae.sample(2, model="nope")
    assert (unknown.value.status, unknown.value.field) == (404, "query.model")
    assert sorted(unknown.value.limit) == sorted([DIGITS, TWO_LEVEL, "fashion-mnist"])
    with pytest.raises(NotFoundError) as unknown_name:
        vae.model("nope")
    assert unknown_name.value.field == "path.name"

    with pytest.raises(InvalidInputError) as out_of_range:
        vae.encode(np.full((8, 8), 2.0), model=DIGITS)
    assert out_of_range.value.field.startswith("body.arrays[0]") and out_of_range.value.limit == 1

    # an undecodable file as the caller's 5th image: the second request's images[1], named as the caller's images[4]
    png = EXAMPLE.read_bytes()
    with pytest.raises(InvalidInputError) as broken:
        vae.encode([png] * 4 + [b"not an image"])
    assert broken.value.field == "images[4]" and "cannot decode" in broken.value.message
    assert broken.value.request_id

    with pytest.raises(InvalidInputError) as wrong_size:
        vae.decode(np.zeros(5), model=DIGITS)
    assert wrong_size.value.field == "body.z[0]" and wrong_size.value.limit == 4

    with Client(server.url, retries=0) as anonymous:
        assert anonymous.ready()  # the health checks are open
        with pytest.raises(AuthenticationError) as no_key:
            anonymous.models()
        assert no_key.value.status == 401 and "API key" in no_key.value.message
    with Client(server.url, api_key="wrong", retries=0) as wrong, pytest.raises(AuthenticationError):
        wrong.sample(1)

    assert vae.sample(1, seed=0).arrays.shape == (1, 1, 28, 28)  # still serving


def test_pil_inputs_of_other_modes_and_image_bytes(vae: Client):
    rgb = Image.open(EXAMPLE).convert("RGB")  # the service converts it to grey as it does an uploaded RGB file
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG")
    assert np.array_equal(vae.encode(rgb).mean, vae.encode(buffer.getvalue()).mean)
    assert vae.encode(rgb).conversions[0]["source_mode"] == "RGB"
    jpeg = io.BytesIO()
    Image.open(EXAMPLE).save(jpeg, format="JPEG", quality=95)
    assert vae.encode(jpeg.getvalue()).conversions[0]["format"] == "JPEG"
