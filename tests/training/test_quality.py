"""Sample-quality measures (training/quality.py) against closed forms and constructed cases, and the project's
classifier (training/classifier.py) on the digits."""

import numpy as np
import pytest
from scipy import linalg

from training.quality import confident_share, frechet_distance, precision_recall


def test_frechet_distance_matches_the_closed_form_on_the_sample_moments():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 5)) @ rng.normal(size=(5, 5))
    b = rng.normal(size=(1500, 5)) @ rng.normal(size=(5, 5)) + 0.7
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca) + np.trace(cb)
                - 2 * np.trace(linalg.sqrtm(ca @ cb)).real)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # one dimension: (m_a - m_b)^2 + (s_a - s_b)^2
    x, y = rng.normal(1.0, 2.0, (4000, 1)), rng.normal(-0.5, 0.5, (4000, 1))
    closed = (x.mean() - y.mean()) ** 2 + (x.std(ddof=1) - y.std(ddof=1)) ** 2
    assert frechet_distance(x, y) == pytest.approx(closed, rel=1e-9)


def test_precision_and_recall_see_realism_and_coverage_apart():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(1500, 2))
    assert precision_recall(real, real.copy()) == (1.0, 1.0)
    far = rng.normal(size=(500, 2)) + 50.0
    assert precision_recall(real, far) == (0.0, 0.0)
    one_mode = real[real[:, 0] > 1.0][:200] * 0.9  # realistic, but only one corner of the data
    precision, recall = precision_recall(real, one_mode)
    assert precision > 0.95 and recall < 0.4


def test_confident_share_counts_rows_above_the_threshold():
    p = np.array([[0.95, 0.05], [0.5, 0.5], [0.1, 0.9], [0.02, 0.98]])
    assert confident_share(p) == 0.5 and confident_share(p, 0.4) == 1.0


def test_the_classifier_learns_the_digits():
    from training.classifier import Classifier, predict, train_classifier
    from training.config import DataConfig

    trained = train_classifier(epochs=6, data=DataConfig(dataset="digits"), batch_size=64, lr=3e-3)
    assert isinstance(trained.model, Classifier) and trained.test_accuracy > 0.85
    import torch

    features, probabilities = predict(trained.model, torch.rand(5, 1, 8, 8))
    assert features.shape == (5, 128) and torch.allclose(probabilities.sum(1), torch.ones(5))
