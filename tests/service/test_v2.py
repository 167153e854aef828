"""The Open Inference Protocol v2 surface (/v2) of the real server (`python -m service`, uvicorn), driven by the
protocol's own clients: Triton's (tritonclient.http) and KServe's (kserve.InferenceRESTClient), and by raw HTTP
for the protocol's details and errors. Every answer is checked against the VAE API's for the same input."""

import asyncio
import json
from importlib.metadata import PackageNotFoundError, version

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from tests.service.conftest import DIGITS, TWO_LEVEL, running_server

MAX_IMAGES, MAX_K, MAX_BYTES = 16, 3000, 2_000_000
HEADER = "Inference-Header-Content-Length"
SHAPE = (1, 8, 8)  # the digits models' images
LATENTS = {DIGITS: [4], TWO_LEVEL: [4, 3]}


@pytest.fixture(scope="module")
def address(model_dir):
    """host:port of a real server on the test models, with small limits."""
    with running_server(model_dir, VAE_MAX_IMAGES=str(MAX_IMAGES), VAE_MAX_K=str(MAX_K),
                        VAE_MAX_REQUEST_BYTES=str(MAX_BYTES)) as address:
        yield address


@pytest.fixture(scope="module")
def http(address):
    with httpx.Client(base_url=f"http://{address}", timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def client(address):
    c = triton.InferenceServerClient(url=address)
    yield c
    c.close()


def images(n: int, seed: int = 0, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """Images of exact float32 values (multiples of 1/256, in [0, 1]): JSON carries them exactly both ways."""
    return (np.random.default_rng(seed).integers(0, 257, (n, *shape)) / 256).astype(np.float32)


def latents(n: int, d: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).integers(-512, 513, (n, d)) / 256).astype(np.float32)


def infer(client, model: str, name: str, array: np.ndarray, binary: bool, outputs: list[str] | None = None,
          **kwargs):
    """Triton's client: binary=True is its default (binary input, all outputs binary); False: JSON both ways."""
    tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array, binary_data=binary)
    if outputs is None and not binary:
        raise ValueError("JSON outputs must be asked for by name")
    requested = None if outputs is None else [triton.InferRequestedOutput(o, binary_data=binary) for o in outputs]
    return client.infer(model, [tensor], outputs=requested, **kwargs)


def check_carried(result, binary: bool) -> None:
    """Each output came back as asked: raw bytes after the JSON header, or JSON data."""
    for output in result.get_response()["outputs"]:
        assert ("binary_data_size" in (output.get("parameters") or {})) == binary, output
        assert ("data" in output) == (not binary), output


# --- the Triton client: health, metadata ---------------------------------------------------------------------


def test_health_and_server_metadata(client):
    assert client.is_server_live() is True
    assert client.is_server_ready() is True
    try:
        expected_version = version("vae-service")
    except PackageNotFoundError:
        expected_version = "unknown"
    assert client.get_server_metadata() == {"name": "vae-service", "version": expected_version,
                                            "extensions": ["binary_tensor_data", "parameters"]}
    for model in (DIGITS, TWO_LEVEL, "fashion-mnist"):
        for role in ("encoder", "decoder", "loglik"):
            assert client.is_model_ready(f"{model}.{role}") is True
    for unknown in ("nope.encoder", f"{DIGITS}.nope", DIGITS, f"{DIGITS}.encoder.encoder"):
        assert client.is_model_ready(unknown) is False


def tensors(*specs: tuple[str, str, list[int]]) -> list[dict]:
    return [{"name": n, "datatype": t, "shape": s} for n, t, s in specs]


@pytest.mark.parametrize("model, image, dims", [
    (DIGITS, [1, 8, 8], [4]),
    (TWO_LEVEL, [1, 8, 8], [4, 3]),
    ("fashion-mnist", [1, 28, 28], [32]),
])
def test_model_metadata(client, model, image, dims):
    def metadata(role: str) -> dict:
        m = client.get_model_metadata(f"{model}.{role}")
        assert (m["name"], m["versions"], m["platform"]) == (f"{model}.{role}", ["1"], "onnxruntime_onnx")
        return {"inputs": m["inputs"], "outputs": m["outputs"]}

    encoder_outputs = [("mu", "FP32", [-1, dims[0]]), ("logvar", "FP32", [-1, dims[0]])]
    if len(dims) == 2:
        encoder_outputs += [("mu2", "FP32", [-1, dims[1]]), ("logvar2", "FP32", [-1, dims[1]])]
    assert metadata("encoder") == {"inputs": tensors(("x", "FP32", [-1, *image])),
                                   "outputs": tensors(*encoder_outputs)}
    assert metadata("decoder") == {"inputs": tensors(("z", "FP32", [-1, dims[0]])),
                                   "outputs": tensors(("mean", "FP32", [-1, *image]))}
    assert metadata("loglik") == {"inputs": tensors(("x", "FP32", [-1, *image])), "outputs": tensors(
        ("log_likelihood", "FP64", [-1]), ("elbo", "FP64", [-1]), ("effective_sample_size", "FP64", [-1]),
            ("log_likelihood_stderr", "FP64", [-1]))}
    with pytest.raises(InferenceServerException) as exc:
        client.get_model_metadata(f"{model}.nope")
    assert exc.value.status() == "404" and "unknown model" in exc.value.message()


# --- the Triton client: inference agrees with the VAE API ----------------------------------------------------


def vae_encode(http, model: str, x: np.ndarray) -> dict[str, np.ndarray]:
    r = http.post("/encode", params={"model": model}, json={"arrays": x.tolist()})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    out = {"mu": np.array([e["mean"] for e in results], np.float32),
           "logvar": np.array([e["logvar"] for e in results], np.float32)}
    if results[0]["levels"] is not None:
        assert [level["name"] for level in results[0]["levels"]] == ["z1", "z2"]
        out["mu2"] = np.array([e["levels"][1]["mean"] for e in results], np.float32)
        out["logvar2"] = np.array([e["levels"][1]["logvar"] for e in results], np.float32)
    return out


def vae_loglik(http, model: str, x: np.ndarray, k: int, seed: int) -> dict[str, np.ndarray]:
    r = http.post("/loglik", params={"model": model, "k": k, "seed": seed}, json={"arrays": x.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["k"], body["seed"]) == (k, seed)
    return {name: np.array([e[name] for e in body["results"]], np.float64)
            for name in ("log_likelihood", "elbo", "effective_sample_size")}


def vae_decode(http, model: str, z: np.ndarray) -> np.ndarray:
    r = http.post("/decode", params={"model": model, "include_arrays": "true"}, json={"z": z.tolist()})
    assert r.status_code == 200, r.text
    return np.array(r.json()["arrays"], np.float64)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("model", [DIGITS, TWO_LEVEL])
def test_encoder_equals_encode(client, http, model, binary):
    x = images(3, seed=1)
    names = ["mu", "logvar", "mu2", "logvar2"][:2 * len(LATENTS[model])]
    result = infer(client, f"{model}.encoder", "x", x, binary, None if binary else names)
    check_carried(result, binary)
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == names
    assert response["model_name"] == f"{model}.encoder" and response["model_version"] == "1"
    expected = vae_encode(http, model, x)
    assert sorted(expected) == sorted(names)
    for name, dim in zip(names, [d for d in LATENTS[model] for _ in range(2)], strict=True):
        out = result.as_numpy(name)
        assert out.dtype == np.float32 and out.shape == (3, dim)
        np.testing.assert_array_equal(out, expected[name])


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("model", [DIGITS, TWO_LEVEL])
def test_decoder_equals_decode(client, http, model, binary):
    z = latents(4, LATENTS[model][0], seed=2)
    result = infer(client, f"{model}.decoder", "z", z, binary, None if binary else ["mean"])
    check_carried(result, binary)
    mean = result.as_numpy("mean")
    assert mean.dtype == np.float32 and mean.shape == (4, *SHAPE)
    expected = vae_decode(http, model, z)
    np.testing.assert_allclose(mean, expected, rtol=0, atol=1e-6)  # the VAE API rounds to 6 decimals
    assert np.ptp(mean) > 0.01  # images, not a constant


def test_decoder_json_and_binary_are_the_same_numbers(client):
    z = latents(2, 4, seed=3)
    json_mean = infer(client, f"{DIGITS}.decoder", "z", z, False, ["mean"]).as_numpy("mean")
    binary_mean = infer(client, f"{DIGITS}.decoder", "z", z, True).as_numpy("mean")
    np.testing.assert_array_equal(json_mean, binary_mean)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("model", [DIGITS, TWO_LEVEL])
def test_loglik_equals_loglik(client, http, model, binary):
    x = images(3, seed=4)
    names = ["log_likelihood", "elbo", "effective_sample_size"]
    result = infer(client, f"{model}.loglik", "x", x, binary, None if binary else names,
                   parameters={"k": 40, "seed": 11})
    check_carried(result, binary)
    assert result.get_response()["parameters"] == {"k": 40, "seed": 11}
    expected = vae_loglik(http, model, x, 40, 11)
    for name in names:
        out = result.as_numpy(name)
        assert out.dtype == np.float64 and out.shape == (3,)
        np.testing.assert_array_equal(out, expected[name])
    assert np.all(expected["log_likelihood"] >= expected["elbo"])
    assert np.all((expected["effective_sample_size"] >= 1) & (expected["effective_sample_size"] <= 40))


def test_loglik_without_a_seed_returns_the_seed_it_used(client):
    x = images(2, seed=5)
    first = infer(client, f"{DIGITS}.loglik", "x", x, True, parameters={"k": 20})
    params = first.get_response()["parameters"]
    assert params["k"] == 20 and isinstance(params["seed"], int) and 0 <= params["seed"] < 2**53
    again = infer(client, f"{DIGITS}.loglik", "x", x, True, parameters={"k": 20, "seed": params["seed"]})
    np.testing.assert_array_equal(again.as_numpy("log_likelihood"), first.as_numpy("log_likelihood"))
    default_k = infer(client, f"{DIGITS}.loglik", "x", x, True, parameters={"seed": 1})
    assert default_k.get_response()["parameters"] == {"k": 1000, "seed": 1}  # VAE_DEFAULT_K's default
    whole = infer(client, f"{DIGITS}.loglik", "x", x, True, parameters={"k": 20.0, "seed": params["seed"]})
    assert whole.get_response()["parameters"]["k"] == 20  # JSON Schema's integers include 20.0
    np.testing.assert_array_equal(whole.as_numpy("elbo"), first.as_numpy("elbo"))


def test_triton_request_id_and_outputs_subset(client, http):
    x = images(2, seed=19)
    result = infer(client, f"{TWO_LEVEL}.encoder", "x", x, True, ["logvar2", "mu"], request_id="triton-7")
    response = result.get_response()
    assert response["id"] == "triton-7"
    assert [o["name"] for o in response["outputs"]] == ["logvar2", "mu"]
    assert result.as_numpy("logvar") is None and result.as_numpy("mu2") is None
    expected = vae_encode(http, TWO_LEVEL, x)
    np.testing.assert_array_equal(result.as_numpy("logvar2"), expected["logvar2"])
    np.testing.assert_array_equal(result.as_numpy("mu"), expected["mu"])


def test_fashion_mnist_encoder_and_decoder(client, http):
    x = images(2, seed=6, shape=(1, 28, 28))
    result = infer(client, "fashion-mnist.encoder", "x", x, True)
    expected = vae_encode(http, "fashion-mnist", x)
    np.testing.assert_array_equal(result.as_numpy("mu"), expected["mu"])
    np.testing.assert_array_equal(result.as_numpy("logvar"), expected["logvar"])
    z = latents(2, 32, seed=7)
    mean = infer(client, "fashion-mnist.decoder", "z", z, True).as_numpy("mean")
    assert mean.shape == (2, 1, 28, 28)
    np.testing.assert_allclose(mean, vae_decode(http, "fashion-mnist", z), rtol=0, atol=1e-6)


# --- the KServe client ---------------------------------------------------------------------------------------


def test_kserve_rest_client(address, http):
    from kserve import InferenceRESTClient, InferInput, InferRequest
    from kserve.inference_client import RESTConfig
    from kserve.protocol.infer_type import RequestedOutput

    base = f"http://{address}"
    x, z = images(2, seed=8), latents(3, 4, seed=9)

    async def run():
        async with InferenceRESTClient(RESTConfig(protocol="v2", timeout=60)) as kc:
            health = (await kc.is_server_live(base), await kc.is_server_ready(base),
                      await kc.is_model_ready(base, f"{DIGITS}.encoder"), await kc.is_model_ready(base, "nope.x"))

            json_x = InferInput("x", list(x.shape), "FP32", data=x.ravel().tolist())
            encoded = await kc.infer(base, InferRequest(f"{DIGITS}.encoder", [json_x], request_id="kserve-1"),
                                     model_name=f"{DIGITS}.encoder")

            binary_z = InferInput("z", list(z.shape), "FP32")
            binary_z.set_data_from_numpy(z)  # binary_data=True: the binary tensor data extension
            decoded = await kc.infer(base, InferRequest(f"{DIGITS}.decoder", [binary_z], request_outputs=[
                RequestedOutput("mean", {"binary_data": True})]), model_name=f"{DIGITS}.decoder")

            binary_x = InferInput("x", list(x.shape), "FP32")
            binary_x.set_data_from_numpy(x)
            scored = await kc.infer(base, InferRequest(f"{DIGITS}.loglik", [binary_x], parameters={
                "k": 30, "seed": 3}, request_outputs=[RequestedOutput("elbo"), RequestedOutput("log_likelihood")]),
                model_name=f"{DIGITS}.loglik")
            return health, encoded, decoded, scored

    health, encoded, decoded, scored = asyncio.run(run())
    assert health == (True, True, True, False)

    assert encoded.id == "kserve-1" and encoded.model_name == f"{DIGITS}.encoder"
    expected = vae_encode(http, DIGITS, x)
    assert [o.name for o in encoded.outputs] == ["mu", "logvar"]
    for output in encoded.outputs:
        assert output.datatype == "FP32" and output.shape == [2, 4]
        np.testing.assert_array_equal(output.as_numpy(), expected[output.name])

    (mean,) = decoded.outputs
    assert mean.name == "mean" and mean.shape == [3, *SHAPE]
    np.testing.assert_allclose(mean.as_numpy(), vae_decode(http, DIGITS, z), rtol=0, atol=1e-6)

    assert scored.parameters == {"k": 30, "seed": 3}
    assert [o.name for o in scored.outputs] == ["elbo", "log_likelihood"]
    expected = vae_loglik(http, DIGITS, x, 30, 3)
    for output in scored.outputs:
        assert output.datatype == "FP64"
        np.testing.assert_array_equal(output.as_numpy(), expected[output.name])


# --- protocol details over raw HTTP --------------------------------------------------------------------------


def x_tensor(x: np.ndarray, **fields) -> dict:
    return {"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist(), **fields}


def post(http, model: str, body: dict | bytes, headers: dict | None = None) -> httpx.Response:
    if isinstance(body, dict):
        return http.post(f"/v2/models/{model}/infer", json=body, headers=headers)
    return http.post(f"/v2/models/{model}/infer", content=body, headers=headers)


def binary_body(request: dict, *arrays: np.ndarray) -> tuple[bytes, dict[str, str]]:
    header = json.dumps(request).encode()
    return header + b"".join(a.tobytes() for a in arrays), {HEADER: str(len(header))}


def test_id_echoed_and_outputs_subset_in_order(http):
    x = images(2, seed=10)
    expected = vae_encode(http, DIGITS, x)
    r = post(http, f"{DIGITS}.encoder", {"id": "req-42", "inputs": [x_tensor(x)],
                                         "outputs": [{"name": "logvar"}, {"name": "mu"}]})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json" and HEADER not in r.headers
    body = r.json()
    assert (body["id"], body["model_name"], body["model_version"]) == ("req-42", f"{DIGITS}.encoder", "1")
    assert [(o["name"], o["datatype"], o["shape"]) for o in body["outputs"]] == [("logvar", "FP32", [2, 4]),
                                                                                ("mu", "FP32", [2, 4])]
    for o in body["outputs"]:
        np.testing.assert_array_equal(np.array(o["data"], np.float32).reshape(2, 4), expected[o["name"]])
    only = post(http, f"{DIGITS}.encoder", {"inputs": [x_tensor(x)], "outputs": [{"name": "mu"}]}).json()
    assert "id" not in only and [o["name"] for o in only["outputs"]] == ["mu"]


def test_nested_json_data_and_mixed_binary_outputs(http):
    """Data may be nested as the shape; binary_data per output overrides binary_data_output."""
    x = images(2, seed=12)
    expected = vae_encode(http, DIGITS, x)
    r = post(http, f"{DIGITS}.encoder", {"inputs": [{"name": "x", "shape": [2, 1, 8, 8], "datatype": "FP32",
                                                     "data": x.tolist()}],
                                         "parameters": {"binary_data_output": True},
                                         "outputs": [{"name": "mu"}, {"name": "logvar",
                                                                      "parameters": {"binary_data": False}}]})
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    length = int(r.headers[HEADER])
    header = json.loads(r.content[:length])
    mu, logvar = header["outputs"]
    assert mu["parameters"] == {"binary_data_size": 2 * 4 * 4} and "data" not in mu
    assert "parameters" not in logvar or "binary_data_size" not in logvar["parameters"]
    np.testing.assert_array_equal(np.frombuffer(r.content[length:], "<f4").reshape(2, 4), expected["mu"])
    np.testing.assert_array_equal(np.array(logvar["data"], np.float32).reshape(2, 4), expected["logvar"])
    assert len(r.content) == length + 32


def test_raw_binary_inputs(http):
    x = images(3, seed=13)
    body, headers = binary_body({"inputs": [{"name": "x", "shape": [3, 1, 8, 8], "datatype": "FP32",
                                             "parameters": {"binary_data_size": x.nbytes}}]}, x)
    r = post(http, f"{DIGITS}.encoder", body, headers)
    assert r.status_code == 200, r.text
    mu = r.json()["outputs"][0]
    np.testing.assert_array_equal(np.array(mu["data"], np.float32).reshape(3, 4), vae_encode(http, DIGITS, x)["mu"])


def error(r: httpx.Response, status: int, *words: str) -> str:
    """The protocol's error: the status, {"error": message} as JSON, the message naming what was wrong."""
    try:
        sent = r.request.content[:300]  # for the failure message
    except httpx.RequestNotRead:
        sent = b"(streamed)"
    assert r.status_code == status, (r.status_code, r.text, sent)
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert list(body) == ["error"] and isinstance(body["error"], str), body
    for word in words:
        assert word in body["error"], (word, body["error"], sent)
    return body["error"]


def test_request_errors_are_400(http):
    enc, dec, ll = f"{DIGITS}.encoder", f"{DIGITS}.decoder", f"{DIGITS}.loglik"
    x = images(1, seed=14)
    nan, big = x.copy(), x.copy()
    nan[0, 0, 0, 0], big[0, 0, 3, 3] = np.nan, 1.5
    too_many = images(MAX_IMAGES + 1, seed=15)
    cases = [
        (enc, {"inputs": [x_tensor(x)], "outputs": [{"name": "sigma"}]}, "unknown outputs ['sigma']"),
        (enc, {"inputs": [{**x_tensor(x), "name": "image"}]}, "inputs ['x']"),
        (enc, {"inputs": [x_tensor(x), {**x_tensor(x), "name": "y"}]}, "inputs ['x']"),
        (enc, {"inputs": [x_tensor(x[:, :, :, :7])]}, "shape [1, 1, 8, 7]"),
        (enc, {"inputs": [x_tensor(x[0])]}, "shape [1, 8, 8]"),
        (enc, {"inputs": [x_tensor(x, shape=[1, 1, 8, 9])]}, "64 values for shape [1, 1, 8, 9]"),
        (enc, {"inputs": [x_tensor(x, datatype="FP64")]}, "FP32"),
        (enc, {"inputs": [x_tensor(x, datatype="INT32")]}, "'INT32': the models' inputs are FP32"),
        (enc, {"inputs": [x_tensor(x, data=[True] * 64)]}, "data[0]"),
        (enc, {"inputs": [x_tensor(x, data=["0.5"] * 64)]}, "data[0]"),
        (enc, {"inputs": [x_tensor(x, shape=[-1, 1, 8, 8])]}, "shape"),
        (enc, {"inputs": [{k: v for k, v in x_tensor(x).items() if k != "data"}]}, "no data"),
        (enc, {"inputs": []}, "inputs"),
        (enc, {"inputs": [x_tensor(x)], "id": 7}, "id"),
        (enc, {"inputs": [x_tensor(x)], "output": [{"name": "mu"}]}, "output"),
        (enc, {"inputs": [x_tensor(big)]}, "[0, 1]"),
        (enc, {"inputs": [x_tensor(-x - 1 / 256)]}, "[0, 1]"),
        (enc, {"inputs": [x_tensor(too_many)]}, "17 images, over the limit"),
        (ll, {"inputs": [x_tensor(x)], "parameters": {"k": MAX_K + 1}}, "parameters.k", str(MAX_K)),
        (ll, {"inputs": [x_tensor(x)], "parameters": {"k": True}}, "parameters.k"),
        (ll, {"inputs": [x_tensor(x)], "parameters": {"k": "10"}}, "parameters.k"),
        (ll, {"inputs": [x_tensor(x)], "parameters": {"k": 0}}, "parameters.k"),
        (ll, {"inputs": [x_tensor(x)], "parameters": {"k": 2.5}}, "parameters.k"),
        (ll, {"inputs": [x_tensor(x)], "parameters": {"seed": -1}}, "parameters.seed"),
        (enc, {"inputs": [x_tensor(x), x_tensor(x)]}, "inputs[1] (x)", "given before"),
        (enc, {"inputs": [x_tensor(x)], "model_name": f"{DIGITS}.decoder"}, "model_name", "the URL names"),
        (enc, {"inputs": [x_tensor(x)], "outputs": [{"name": "mu", "parameters": {"binary_data": "false"}}]},
         "outputs[0].parameters.binary_data: must be true or false"),
        (enc, {"inputs": [x_tensor(x)], "parameters": {"binary_data_output": 1}},
         "parameters.binary_data_output: must be true or false"),
        (dec, {"inputs": [{"name": "z", "shape": [1, 3], "datatype": "FP32", "data": [0.0] * 3}]}, "latent size is 4"),
        (dec, {"inputs": [{"name": "z", "shape": [4], "datatype": "FP32", "data": [0.0] * 4}]}, "z: has shape [4]"),
        (dec, {"inputs": [{"name": "z", "shape": [1, 4, 1], "datatype": "FP32", "data": [0.0] * 4}]},
         "has shape [1, 4, 1]"),
        (dec, {"inputs": [{"name": "z", "shape": [], "datatype": "FP32", "data": [0.0]}]}, "has shape []"),
        (dec, {"inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 1e3]}]}, "100"),
        (dec, {"inputs": [{"name": "z", "shape": [MAX_IMAGES + 1, 4], "datatype": "FP32",
                           "data": [0.0] * 4 * (MAX_IMAGES + 1)}]}, "over the limit"),
    ]
    for model, request, *words in cases:
        error(post(http, model, request), 400, *words)
    for array in (nan, np.where(x > 0.5, np.inf, x)):  # not JSON numbers: sent as binary tensor data
        body, headers = binary_body({"inputs": [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                                 "parameters": {"binary_data_size": 256}}]}, array)
        error(post(http, enc, body, headers), 400, "finite")
    assert http.get("/v2/health/ready").json() == {"ready": True}


@pytest.mark.parametrize("length, tail, words", [
    ("abc", 256, [HEADER, "'abc'"]),
    ("0", 256, [HEADER]),
    ("-5", 256, [HEADER]),
    ("100000", 256, [HEADER]),
    ("short", 256, ["invalid inference request"]),  # cuts the JSON header
    ("exact", 0, ["binary_data_size 256 does not fit the 0 bytes"]),
    ("exact", 4, ["binary_data_size 256 does not fit the 4 bytes"]),
    ("exact", 300, ["44 bytes after the JSON header belong to no input"]),
])
def test_binary_framing_errors_are_400(http, length, tail, words):
    header = json.dumps({"inputs": [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 256}}]}).encode()
    value = {"exact": str(len(header)), "short": str(len(header) - 3)}.get(length, length)
    error(post(http, f"{DIGITS}.encoder", header + b"\0" * tail, {HEADER: value}), 400, *words)


def test_not_found_method_and_body_limit(http, client):
    error(post(http, "nope.encoder", {"inputs": [x_tensor(images(1))]}), 404, "unknown model 'nope.encoder'",
          f"{DIGITS}.encoder")
    error(http.get("/v2/models/nope.decoder"), 404, "unknown model")
    error(http.get(f"/v2/models/{DIGITS}.sampler/ready"), 404, "unknown model")
    r = http.get(f"/v2/models/{DIGITS}.encoder/infer")
    error(r, 405)
    assert r.headers["allow"] == "POST"
    error(http.post("/v2/health/live"), 405)
    error(http.get("/v2/nothing/here"), 404)
    big = b"{" + b" " * MAX_BYTES + b"}"
    error(post(http, f"{DIGITS}.encoder", big), 413, "body", "over the limit")

    def chunks():  # no Content-Length: the limit counts the bytes as they arrive
        for _ in range(MAX_BYTES // 65536 + 2):
            yield b" " * 65536

    error(http.post(f"/v2/models/{DIGITS}.encoder/infer", content=chunks()), 413, "over the limit")
    error(post(http, f"{DIGITS}.encoder", b"not json"), 400, "invalid inference request")
    # after all that, the server still answers
    assert client.is_server_ready() and client.is_model_ready(f"{DIGITS}.loglik")
    result = infer(client, f"{DIGITS}.encoder", "x", images(1, seed=17), True)
    np.testing.assert_array_equal(result.as_numpy("mu"), vae_encode(http, DIGITS, images(1, seed=17))["mu"])


def test_triton_client_errors(client):
    x = images(1, seed=18)
    with pytest.raises(InferenceServerException) as exc:
        infer(client, f"{DIGITS}.loglik", "x", x, True, parameters={"k": MAX_K + 1})
    assert exc.value.status() == "400" and "parameters.k" in exc.value.message()
    with pytest.raises(InferenceServerException) as exc:
        infer(client, f"{DIGITS}.encoder", "x", x.astype(np.float64), True)
    assert exc.value.status() == "400"
    with pytest.raises(InferenceServerException) as exc:
        infer(client, f"{DIGITS}.encoder", "x", x, True, ["mu", "sigma"])
    assert exc.value.status() == "400" and "sigma" in exc.value.message()
    with pytest.raises(InferenceServerException) as exc:
        infer(client, "nope.encoder", "x", x, True)
    assert exc.value.status() == "404"


def test_version_1_is_served_under_its_versioned_paths(client, http):
    """Clients that name a version (Triton's model_version="1") reach the same models; another version is 404."""
    name = f"{DIGITS}.decoder"
    assert client.is_model_ready(name, model_version="1") and not client.is_model_ready(name, model_version="2")
    assert client.get_model_metadata(name, model_version="1") == client.get_model_metadata(name)
    z = np.full((2, 4), 0.25, np.float32)
    inputs = [triton.InferInput("z", list(z.shape), "FP32")]
    inputs[0].set_data_from_numpy(z)
    versioned = client.infer(name, inputs, model_version="1").as_numpy("mean")
    np.testing.assert_array_equal(versioned, client.infer(name, inputs).as_numpy("mean"))
    r = http.post(f"/v2/models/{name}/versions/2/infer", json={"inputs": []})
    assert r.status_code == 404 and "version" in r.json()["error"]
