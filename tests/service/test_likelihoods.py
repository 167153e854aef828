"""The likelihoods beside the chapter's, served without torch: one tiny digits model per likelihood trained in
the session, exported, and loaded by the service. The service's numpy distributions against training's torch
ones on the same parameters, and every route that reads the likelihood against training on the same model."""

import math

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from service.app import create_app
from service.distributions import BernoulliLikelihood, GaussianLikelihood, likelihood_of
from service.manifest import BITS_PER_DIM_CONVENTION, LIKELIHOOD_OUTPUTS, LikelihoodSpec
from tests.conftest import NEW_LIKELIHOODS as NEW
from tests.service.conftest import make_settings, wait_ready

DIGIT_LEVELS = 17


@pytest.fixture(scope="session")
def likelihood_client(likelihood_models):
    _, root = likelihood_models
    with TestClient(create_app(make_settings(root))) as c:
        assert wait_ready(c)["status"] == "ready"
        yield c


def torch_distribution(name: str, params: list[np.ndarray], levels: int):
    from training import likelihoods as t

    tensors = [torch.from_numpy(p) for p in params]
    return {"pixel-gaussian": lambda: t.PixelGaussian(*tensors), "logistic": lambda: t.DiscretizedLogistic(
        *tensors, levels), "logistic-mixture": lambda: t.LogisticMixture(*tensors, levels)}[name]()


def test_moments_for_the_proposal_fit_agree_across_the_wings_and_with_their_definitions():
    """`moments` (what service/laplace.py fits the log-likelihood's proposal with): each likelihood's numpy version
    equals training's, and each is what its docstring says, a logistic's location clipped to [0, 1] and variance
    3 s^2 + 1 / (12 (L - 1)^2), a mixture's by the law of total variance."""
    from training import likelihoods as t

    rng = np.random.default_rng(2)
    shape, mix = (3, 1, 4, 4), (3, 2, 1, 4, 4)
    loc, log_scale, logits = rng.uniform(-0.2, 1.2, mix), rng.uniform(-5, -1, mix), rng.normal(size=mix)
    m, v = np.clip(loc, 0, 1), 3 * np.exp(2 * log_scale) + 1 / (12 * (DIGIT_LEVELS - 1) ** 2)
    pi = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    mix_mean = (pi * m).sum(1)
    h, logvar, p = rng.normal(size=shape), rng.uniform(-6, -2, shape), rng.uniform(0.01, 0.99, shape)
    cases = [  # (numpy likelihood, its params, torch distribution, expected mean, expected variance)
        (GaussianLikelihood(0.3), [1 / (1 + np.exp(-h))], t.SphericalGaussian(torch.from_numpy(h),
         torch.tensor(math.log(0.3), dtype=torch.float64)), 1 / (1 + np.exp(-h)), np.full(shape, 0.09)),
        (BernoulliLikelihood(), [p], t.Bernoulli(torch.from_numpy(np.log(p / (1 - p)))), p, p * (1 - p)),
        (likelihood_of(LikelihoodSpec(type="pixel-gaussian"), DIGIT_LEVELS), [h, logvar],
         torch_distribution("pixel-gaussian", [h, logvar], DIGIT_LEVELS), h, np.exp(logvar)),
        (likelihood_of(LikelihoodSpec(type="logistic"), DIGIT_LEVELS), [loc[:, 0], log_scale[:, 0]],
         torch_distribution("logistic", [loc[:, 0], log_scale[:, 0]], DIGIT_LEVELS), m[:, 0], v[:, 0]),
        (likelihood_of(LikelihoodSpec(type="logistic-mixture", components=2), DIGIT_LEVELS), [logits, loc, log_scale],
         torch_distribution("logistic-mixture", [logits, loc, log_scale], DIGIT_LEVELS), mix_mean,
         (pi * (v + m**2)).sum(1) - mix_mean**2),
    ]
    for ours, params, theirs, mean, variance in cases:
        got = ours.moments(params)
        for a, b, expected in zip(got, theirs.moments(), (mean, variance), strict=True):
            np.testing.assert_allclose(a, expected, rtol=1e-9)
            np.testing.assert_allclose(b.numpy(), expected, rtol=1e-9)
    assert np.all(cases[-1][0].moments(cases[-1][1])[1] > 0)


@pytest.mark.parametrize("name", NEW)
def test_numpy_distributions_equal_the_torch_ones(name):
    rng = np.random.default_rng(0)
    per_pixel = (4, 3, 1, 5, 5) if name == "logistic-mixture" else (4, 1, 5, 5)
    params = [rng.uniform(0, 1, per_pixel), rng.uniform(-4, -1, per_pixel)]
    if name == "logistic-mixture":
        params = [rng.normal(size=per_pixel), *params]
    x = rng.integers(0, DIGIT_LEVELS, (4, 1, 5, 5)) / (DIGIT_LEVELS - 1)
    ours = likelihood_of(LikelihoodSpec(type=name, components=3 if name == "logistic-mixture" else None),
                         DIGIT_LEVELS)
    theirs = torch_distribution(name, params, DIGIT_LEVELS)
    np.testing.assert_allclose(ours.log_prob(x, params), theirs.log_prob(torch.from_numpy(x)).numpy(), rtol=1e-10)
    np.testing.assert_allclose(ours.mean(params), theirs.mean().numpy(), rtol=1e-5, atol=1e-6)
    # what decides whether /decode computes the mean on the event loop (service/offload.py)
    assert ours.mean_work(params) == (0 if name == "pixel-gaussian" else params[-1].size * (DIGIT_LEVELS - 1))
    draws = ours.sample(params, np.random.default_rng(1))
    assert draws.shape == x.shape and draws.dtype == np.float32
    if name != "pixel-gaussian":  # on the levels grid
        grid = draws * (DIGIT_LEVELS - 1)
        np.testing.assert_allclose(grid, np.round(grid), atol=1e-4)


@pytest.mark.parametrize("name", NEW)
def test_loglik_equals_training_on_the_exported_model(likelihood_client, likelihood_models, name):
    from training.checkpoint import load_checkpoint
    from training.estimators import log_likelihood

    checkpoints, _ = likelihood_models
    model = load_checkpoint(checkpoints[name]).build_model()
    k = np.random.default_rng(3).integers(0, DIGIT_LEVELS, (3, 1, 8, 8))
    x = (k / (DIGIT_LEVELS - 1) if name != "pixel-gaussian" else (k + 0.5) / DIGIT_LEVELS).astype(np.float32)
    served = likelihood_client.post(f"/loglik?model={name}&k=300&seed=7", json={"arrays": x.tolist()})
    assert served.status_code == 200, served.text
    body = served.json()
    expected = log_likelihood(model, torch.from_numpy(x), 300, chunk=64, rng=np.random.default_rng(7))
    got = np.array([r["log_likelihood"] for r in body["results"]])
    np.testing.assert_allclose(got, expected.log_likelihood.numpy(), rtol=0, atol=1e-3)
    bpd = np.array([r["bits_per_dim"] for r in body["results"]])
    if name == "pixel-gaussian":  # a density on dequantized pixels: the bin volume's term
        np.testing.assert_allclose(bpd, -(got - 64 * math.log(DIGIT_LEVELS)) / (64 * math.log(2)), rtol=1e-9)
    else:  # a probability mass: no dequantization term, and at most 1
        assert np.all(got <= 0)
        np.testing.assert_allclose(bpd, -got / (64 * math.log(2)), rtol=1e-9)
    assert body["bits_per_dim_convention"] == BITS_PER_DIM_CONVENTION  # which names the discrete case


@pytest.mark.parametrize("name", NEW)
def test_decode_sample_and_v2_read_the_likelihood(likelihood_client, likelihood_models, name):
    from training.checkpoint import load_checkpoint

    checkpoints, _ = likelihood_models
    model = load_checkpoint(checkpoints[name]).build_model()
    z = np.random.default_rng(4).standard_normal((3, 4)).astype(np.float32)
    mean = likelihood_client.post(f"/decode?model={name}&include_arrays=true", json={"z": z.tolist()}).json()
    with torch.no_grad():
        expected = model.decode(torch.from_numpy(z)).mean().numpy()
    np.testing.assert_allclose(np.array(mean["arrays"]), expected, atol=1e-4)
    noisy = likelihood_client.get(f"/sample?model={name}&n=4&seed=2&noise=true&include_arrays=true").json()
    values = np.array(noisy["arrays"])
    assert values.shape == (4, 1, 8, 8) and np.all(np.isfinite(values))
    if name != "pixel-gaussian":
        np.testing.assert_allclose(values * 16, np.round(values * 16), atol=1e-4)  # draws on the 17 levels
    again = likelihood_client.get(f"/sample?model={name}&n=4&seed=2&noise=true&include_arrays=true").json()
    assert again["arrays"] == noisy["arrays"]
    v2 = likelihood_client.post(f"/v2/models/{name}.decoder/infer", json={"inputs": [
        {"name": "z", "shape": [3, 4], "datatype": "FP32", "data": z.ravel().tolist()}]}).json()
    assert [o["name"] for o in v2["outputs"]] == list(LIKELIHOOD_OUTPUTS[name])
    with torch.no_grad():
        params = model.decode(torch.from_numpy(z)).graph_outputs()
    for output in v2["outputs"]:
        expected_param = params[output["name"]].numpy()
        assert output["shape"] == list(expected_param.shape)
        np.testing.assert_allclose(np.array(output["data"]).reshape(output["shape"]), expected_param, atol=1e-4)
    metadata = likelihood_client.get(f"/v2/models/{name}.decoder").json()
    assert [o["name"] for o in metadata["outputs"]] == list(LIKELIHOOD_OUTPUTS[name])
    # /loglik's decoder passes shrink by this, so their outputs stay within VAE_LOGLIK_BATCH_ROWS images' worth
    served = likelihood_client.app.state.core.model(name)
    assert served.values_per_pixel == {"pixel-gaussian": 2, "logistic": 2, "logistic-mixture": 9}[name]


@pytest.mark.parametrize("name", ["logistic", "logistic-mixture"])
def test_a_discrete_model_takes_only_its_levels(likelihood_client, name):
    """v2 tensors are the model's input as sent: a value between two levels has no probability mass (422); JSON
    arrays on the VAE API are rounded to the levels, as the conversion says."""
    x = np.full((1, 1, 8, 8), 0.37, np.float32)  # 0.37 * 16 = 5.92: between levels 5 and 6
    r = likelihood_client.post(f"/v2/models/{name}.loglik/infer", json={"inputs": [
        {"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": x.ravel().tolist()}]})
    assert r.status_code == 400 and "levels k / 16" in r.json()["error"], r.text  # v2: 400 for an invalid input
    on_grid = likelihood_client.post(f"/v2/models/{name}.loglik/infer", json={"inputs": [
        {"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": (np.round(x * 16) / 16).ravel().tolist()}],
        "parameters": {"k": 50, "seed": 1}})
    assert on_grid.status_code == 200, on_grid.text
    arrays = likelihood_client.post(f"/loglik?model={name}&k=50&seed=1", json={"arrays": x[0].tolist()}).json()
    assert arrays["results"][0]["conversion"]["pixel_mapping"] == "x = round(value (L - 1)) / (L - 1), L = 17"
    v2_ll = next(o for o in on_grid.json()["outputs"] if o["name"] == "log_likelihood")["data"][0]
    assert arrays["results"][0]["log_likelihood"] == pytest.approx(v2_ll, abs=1e-9)


def test_large_draws_and_means_run_off_the_event_loop_with_the_same_numbers(likelihood_client):
    """Past INLINE_MAX_WORK, /decode's mean image and noise draws go to a worker thread: the same numbers."""
    import asyncio

    from service.offload import INLINE_MAX_WORK

    core = likelihood_client.app.state.core
    model = core.model("logistic-mixture")
    z = np.random.default_rng(6).standard_normal((INLINE_MAX_WORK // 100, 4)).astype(np.float32)
    params = model.decode(z)
    assert sum(p.size for p in params) > INLINE_MAX_WORK  # both go to the worker
    async def both():
        return await asyncio.wait_for(asyncio.gather(core.draw_images(model, params, 5),
                                                     core.mean_image(model, params)), 60)

    drawn, mean = asyncio.run(both())
    np.testing.assert_array_equal(drawn, model.likelihood.sample(params, np.random.default_rng(5)))
    np.testing.assert_array_equal(mean, model.likelihood.mean(params))
