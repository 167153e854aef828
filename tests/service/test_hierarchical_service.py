"""A two-level model served by the same endpoints: /sample draws through both levels, /encode returns every
level, /loglik scores with the hierarchical prior and agrees with the training evaluator."""

import numpy as np
import torch

from tests.service.conftest import TWO_LEVEL


def test_models_describe_the_hierarchy(client):
    m = client.get(f"/models/{TWO_LEVEL}").json()["manifest"]
    assert m["hierarchy"]["latent_dims"] == [4, 3] and m["hierarchy"]["prior"]["file"] == "prior.onnx"


def test_encode_returns_every_level(client):
    x = np.random.default_rng(0).uniform(size=(2, 8, 8)).tolist()
    r = client.post(f"/encode?model={TWO_LEVEL}", json={"arrays": x}).json()["results"][0]
    assert [lvl["name"] for lvl in r["levels"]] == ["z1", "z2"]
    assert len(r["levels"][0]["mean"]) == 4 and len(r["levels"][1]["mean"]) == 3
    assert r["levels"][0]["mean"] == r["mean"]


def test_sample_goes_through_both_levels(client, two_level_digits):
    """Same seed, same images; the images equal decode(z1) with z1 drawn from the served prior graph."""
    from training.checkpoint import load_checkpoint

    a = client.get(f"/sample?model={TWO_LEVEL}&n=5&seed=3&include_arrays=true").json()
    assert a["arrays"] == client.get(f"/sample?model={TWO_LEVEL}&n=5&seed=3&include_arrays=true").json()["arrays"]
    model = load_checkpoint(two_level_digits).build_model()
    rng = np.random.default_rng(3)
    z2 = torch.from_numpy(rng.standard_normal((5, 3)).astype(np.float32))
    with torch.no_grad():
        p = model.prior(0, z2)
        z1 = p.mu + p.std * torch.from_numpy(rng.standard_normal((5, 4))).float()
        expected = model.decode(z1).mean().numpy()
    np.testing.assert_allclose(np.array(a["arrays"]), expected, atol=1e-4)


def test_loglik_agrees_with_the_training_evaluator(client, two_level_digits):
    from training.checkpoint import load_checkpoint
    from training.estimators import log_likelihood

    x = np.random.default_rng(1).uniform(0.02, 0.98, size=(2, 1, 8, 8)).astype(np.float32)
    served = client.post(f"/loglik?model={TWO_LEVEL}&k=400&seed=8", json={"arrays": x.tolist()}).json()
    model = load_checkpoint(two_level_digits).build_model()
    expected = log_likelihood(model, torch.from_numpy(x), 400, chunk=100, rng=np.random.default_rng(8))
    np.testing.assert_allclose([r["log_likelihood"] for r in served["results"]],
                               expected.log_likelihood.numpy(), atol=2e-3)
    np.testing.assert_allclose([r["elbo"] for r in served["results"]], expected.elbo.numpy(),
                               atol=2e-3)
