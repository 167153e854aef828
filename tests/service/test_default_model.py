"""The shipped default model, models/fashion-mnist/, loads as the service will load it."""

from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.manifest import load_manifest
from service.model_card import model_cards
from service.settings import Settings

FOLDER = Path(__file__).resolve().parents[2] / "models" / "fashion-mnist"


def test_default_model_manifest_hashes_and_metrics():
    m = load_manifest(FOLDER)  # validates the schema and every file's sha256
    assert m.name == "fashion-mnist" and m.training.dataset == "fashion-mnist"
    assert (m.image.channels, m.image.height, m.image.width) == (1, 28, 28)
    assert m.training.num_train == 60_000 and m.metrics is not None
    assert m.metrics.num_images == 10_000 and m.metrics.log_likelihood_k == 5000
    assert m.metrics.log_likelihood > m.metrics.elbo
    assert 0 < m.metrics.bits_per_dim < 8


def test_default_model_runs_in_plain_onnxruntime():
    m = load_manifest(FOLDER, verify=False)
    enc = ort.InferenceSession(str(FOLDER / "encoder.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(FOLDER / "decoder.onnx"), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).standard_normal((16, m.latent_dim)).astype(np.float32)
    (images,) = dec.run(None, {"z": z})
    assert images.shape == (16, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    mu, logvar = enc.run(None, {"x": images})
    assert mu.shape == (16, m.latent_dim) and np.all(np.isfinite(logvar))
    # Encoding a decoded sample and decoding again stays close: the pair is a working autoencoder.
    (again,) = dec.run(None, {"z": mu})
    assert float(np.abs(again - images).mean()) < 0.1
    cards, errors = model_cards(Settings(model_dir=FOLDER.parent, providers="CPUExecutionProvider"))
    assert errors == [] and any(card.startswith("model fashion-mnist ") and "sha256 ok" in card for card in cards)
