"""The likelihoods beside the chapter's (training/likelihoods.py) against direct computations on small tensors:
each discretized one normalised over the L levels (edge bins included), its mean the probability-weighted
levels, its draws distributed as its masses; the per-pixel Gaussian against scipy."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from training.config import ModelConfig
from training.likelihoods import (
    DiscretizedLogistic,
    LogisticMixture,
    PixelGaussian,
    build_likelihood,
    discretized_logistic_log_mass,
)

LEVELS = 7  # few levels: the edge bins carry real mass


def logistic_cdf(t: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-t))


def direct_masses(loc: float, scale: float, levels: int) -> np.ndarray:
    """P(k) for k = 0 .. L - 1 from the logistic's CDF at the bin edges, -inf and +inf at the ends."""
    edges = np.concatenate([[-np.inf], (np.arange(1, levels) - 0.5) / (levels - 1), [np.inf]])
    cdf = np.where(np.isinf(edges), (edges > 0).astype(float), logistic_cdf((edges - loc) / scale))
    return np.diff(cdf)


@pytest.mark.parametrize("loc, log_scale", [(0.5, -2.0), (-0.3, -1.0), (1.4, -3.5), (0.02, -9.0), (0.5, 3.0)])
def test_discretized_logistic_masses_are_the_cdf_differences_and_sum_to_one(loc, log_scale):
    x = torch.arange(LEVELS, dtype=torch.float64) / (LEVELS - 1)
    log_p = discretized_logistic_log_mass(x, torch.tensor(loc, dtype=torch.float64),
                                          torch.tensor(log_scale, dtype=torch.float64), LEVELS).numpy()
    expected = direct_masses(loc, math.exp(log_scale), LEVELS)
    np.testing.assert_allclose(np.exp(log_p), expected, rtol=1e-9, atol=1e-15)  # the CDF differences round at 1e-16
    assert math.isclose(float(np.exp(log_p).sum()), 1.0, rel_tol=1e-12)
    assert np.all(np.isfinite(log_p)) and np.all(log_p <= 0)


def test_discretized_logistic_stays_finite_far_from_the_pixel():
    """A bin 40 scales from the location: the difference of two CDFs both 1 in float64 would give log 0."""
    x = torch.tensor([3 / 6], dtype=torch.float64)
    log_p = discretized_logistic_log_mass(x, torch.tensor([-20.0], dtype=torch.float64),
                                          torch.tensor([math.log(0.5)], dtype=torch.float64), LEVELS)
    a, b = (0.5 - 1 / 12 + 20) / 0.5, (0.5 + 1 / 12 + 20) / 0.5
    expected = -a + math.log1p(-math.exp(a - b))  # sigmoid(b) - sigmoid(a) ~ e^-a - e^-b for large a, b
    assert float(log_p) == pytest.approx(expected, rel=1e-6)


def test_logistic_image_log_prob_mean_and_samples():
    rng = np.random.default_rng(0)
    loc, log_scale = rng.uniform(-0.2, 1.2, (2, 1, 2, 2)), rng.uniform(-3, 0, (2, 1, 2, 2))
    dist = DiscretizedLogistic(torch.from_numpy(loc), torch.from_numpy(log_scale), LEVELS)
    k = rng.integers(0, LEVELS, (2, 1, 2, 2))
    got = dist.log_prob(torch.from_numpy(k / (LEVELS - 1))).numpy()
    for n in range(2):
        masses = [direct_masses(loc[n].flat[d], math.exp(log_scale[n].flat[d]), LEVELS) for d in range(4)]
        assert got[n] == pytest.approx(sum(math.log(m[k[n].flat[d]]) for d, m in enumerate(masses)), rel=1e-9)
        means = [float(np.dot(m, np.arange(LEVELS) / (LEVELS - 1))) for m in masses]
        np.testing.assert_allclose(dist.mean()[n].flatten().numpy(), means, rtol=1e-9)
    draws = DiscretizedLogistic(torch.full((40_000,), 0.4, dtype=torch.float64),
                                torch.full((40_000,), -1.5, dtype=torch.float64), LEVELS).sample(
        torch.Generator().manual_seed(0))
    counts = np.bincount(np.round(draws.numpy() * (LEVELS - 1)).astype(int), minlength=LEVELS)
    expected = direct_masses(0.4, math.exp(-1.5), LEVELS) * len(draws)
    assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_logistic_mixture_is_the_weighted_sum_of_its_components():
    rng = np.random.default_rng(1)
    shape = (3, 4, 1, 2, 2)  # N, K, C, H, W
    logits, loc, log_scale = rng.normal(size=shape), rng.uniform(0, 1, shape), rng.uniform(-3, -0.5, shape)
    dist = LogisticMixture(*(torch.from_numpy(a) for a in (logits, loc, log_scale)), levels=LEVELS)
    k = rng.integers(0, LEVELS, (3, 1, 2, 2))
    got = dist.log_prob(torch.from_numpy(k / (LEVELS - 1))).numpy()
    weights = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for n in range(3):
        total, mean = 0.0, []
        for d in range(4):
            c, i, j = np.unravel_index(d, (1, 2, 2))
            masses = sum(weights[n, m, c, i, j] * direct_masses(loc[n, m, c, i, j], math.exp(log_scale[n, m, c, i, j]),
                                                                   LEVELS) for m in range(4))
            assert masses.sum() == pytest.approx(1.0, rel=1e-12)
            total += math.log(masses[k[n, c, i, j]])
            mean.append(float(np.dot(masses, np.arange(LEVELS) / (LEVELS - 1))))
        assert got[n] == pytest.approx(total, rel=1e-9)
        np.testing.assert_allclose(dist.mean()[n].flatten().numpy(), mean, rtol=1e-9)
    one = LogisticMixture(torch.zeros(20_000, 2, 1, 1, 1, dtype=torch.float64),
                          torch.tensor([0.1, 0.8], dtype=torch.float64).view(1, 2, 1, 1, 1).expand(20_000, 2, 1, 1, 1),
                          torch.full((20_000, 2, 1, 1, 1), -2.5, dtype=torch.float64), LEVELS)
    draws = one.sample(torch.Generator().manual_seed(0)).flatten().numpy()
    counts = np.bincount(np.round(draws * (LEVELS - 1)).astype(int), minlength=LEVELS)
    expected = 0.5 * (direct_masses(0.1, math.exp(-2.5), LEVELS) + direct_masses(0.8, math.exp(-2.5), LEVELS))
    assert stats.chisquare(counts, expected * len(draws)).pvalue > 1e-3


def test_pixel_gaussian_matches_scipy_and_its_floor_holds():
    rng = np.random.default_rng(2)
    mean, logvar, x = rng.uniform(size=(2, 1, 2, 2)), rng.uniform(-4, 0, (2, 1, 2, 2)), rng.uniform(size=(2, 1, 2, 2))
    got = PixelGaussian(torch.from_numpy(mean), torch.from_numpy(logvar)).log_prob(torch.from_numpy(x)).numpy()
    expected = stats.norm(mean, np.exp(0.5 * logvar)).logpdf(x).reshape(2, -1).sum(1)
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    lik = build_likelihood(ModelConfig(likelihood="pixel-gaussian", pixel_logvar_min=-6.0))
    h = torch.cat([torch.zeros(1, 1, 2, 2), torch.tensor([-1e4, -6.0, 0.0, 3.0]).view(1, 1, 2, 2)], 1)
    logvar_out = lik(h).logvar.flatten()
    assert float(logvar_out.min()) >= -6.0 and float(logvar_out[0]) == pytest.approx(-6.0)
    assert float(logvar_out[3]) == pytest.approx(3.0, abs=0.01)  # far above the floor: the network's value


@pytest.mark.parametrize("name, params", [("pixel-gaussian", 2), ("logistic", 2), ("logistic-mixture", 15)])
def test_each_likelihood_reads_its_maps_from_the_decoder(name, params):
    lik = build_likelihood(ModelConfig(likelihood=name, mixture_components=5), levels=256)
    assert lik.params_per_channel == params
    h = torch.randn(3, params, 4, 4, generator=torch.Generator().manual_seed(0))
    dist = lik(h)
    x = torch.randint(0, 256, (3, 1, 4, 4), generator=torch.Generator().manual_seed(1)) / 255
    assert dist.log_prob(x.double()).shape == (3,) and dist.mean().shape == (3, 1, 4, 4)
    assert dist.sample(torch.Generator().manual_seed(2)).shape == (3, 1, 4, 4)
    if name != "pixel-gaussian":
        assert torch.all(dist.log_prob(x.double()) <= 0)  # a probability mass


@pytest.mark.parametrize("name", ["pixel-gaussian", "logistic", "logistic-mixture"])
def test_each_likelihood_trains_and_exports_its_parameters(likelihood_models, name):
    from service.manifest import LIKELIHOOD_OUTPUTS, load_manifest
    from training.checkpoint import load_checkpoint
    from training.data import load_dataset
    from training.evaluate import evaluate

    checkpoints, root = likelihood_models
    history = load_checkpoint(checkpoints[name]).history
    assert history[-1]["test_elbo"] > history[0]["test_elbo"] + 5  # it learns
    manifest = load_manifest(root / name)
    assert manifest.likelihood.type == name and list(manifest.decoder.outputs) == list(LIKELIHOOD_OUTPUTS[name])
    assert manifest.image.pixel_mode == ("dequantize" if name == "pixel-gaussian" else "discrete")
    if name == "logistic-mixture":
        assert manifest.likelihood.components == 3 and manifest.decoder.outputs["loc"] == ["N", 3, 1, 8, 8]
    ckpt = load_checkpoint(checkpoints[name])
    data = load_dataset(ckpt.run_config.data, "test").head(20)
    report = evaluate(ckpt.build_model(), data, ckpt.data.pixel_mode, k=50, progress=False)
    assert report.log_likelihood >= report.elbo
    if name == "pixel-gaussian":  # a density on dequantized pixels: the bin volume's term
        assert report.bits_per_dim == pytest.approx(-(report.log_likelihood - 64 * math.log(17)) / (64 * math.log(2)))
    else:  # a probability mass: its log is <= 0, bits/dim without the bin volume
        assert report.log_likelihood <= 0
        assert report.bits_per_dim == pytest.approx(-report.log_likelihood / (64 * math.log(2)))
