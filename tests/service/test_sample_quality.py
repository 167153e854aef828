"""benchmarks/sample_quality.py measures the samples users get: its sampler gives what GET /sample gives for the
same n and seed (flat and two-level models)."""

import numpy as np

from benchmarks.sample_quality import served_samples
from service.metrics import Metrics
from service.model import load_model
from service.offload import Workers
from service.registry import load_options
from service.settings import Settings
from tests.service.conftest import DIGITS, TWO_LEVEL


def test_the_benchmark_samples_are_the_served_ones(client, model_dir):
    options = load_options(Settings(providers="CPUExecutionProvider", batching=False), Metrics(), Workers(1))
    for name in (DIGITS, TWO_LEVEL):
        ours = served_samples(load_model(model_dir / name, options), 6, seed=3)
        served = client.get(f"/sample?model={name}&n=6&seed=3&include_arrays=true").json()["arrays"]
        np.testing.assert_allclose(ours, np.clip(np.array(served), 0, 1), atol=1e-6)
