"""The networks (training/networks.py): the resnet arch's shapes and residual path, trained and exported with
a likelihood of several maps per pixel (parity with onnxruntime is checked by the export itself)."""

import numpy as np
import onnxruntime as ort
import torch

from service.manifest import load_manifest
from tests.conftest import digits_config
from training.config import ModelConfig
from training.networks import ResidualBlock, build_networks


def test_residual_block_is_the_identity_plus_its_branch():
    block = ResidualBlock(4)
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in block.parameters():
            p.zero_()
        assert torch.equal(block(x), x)  # a zero branch leaves the input


def test_resnet_networks_give_the_likelihood_maps():
    cfg = ModelConfig(arch="resnet", conv_channels=(8, 16), res_blocks=2, latent_dim=5)
    encoder, decoder = build_networks(cfg, (1, 8, 8), 10, 5, params_per_channel=6)
    assert sum(isinstance(m, ResidualBlock) for m in encoder.modules()) == 4
    assert encoder(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    assert decoder(torch.zeros(3, 5)).shape == (3, 6, 8, 8)


def test_a_resnet_logistic_mixture_trains_and_exports(tmp_path):
    from training.checkpoint import load_checkpoint
    from training.export import export_model
    from training.trainer import train

    cfg = digits_config(tmp_path / "run", epochs=1)
    cfg.model.arch, cfg.model.conv_channels, cfg.model.res_blocks = "resnet", (8, 16), 1
    cfg.model.likelihood, cfg.model.mixture_components = "logistic-mixture", 2
    ckpt = load_checkpoint(train(cfg))
    folder = export_model(ckpt, tmp_path / "models", "resnet-mixture")
    manifest = load_manifest(folder)
    assert manifest.decoder.outputs == {name: ["N", 2, 1, 8, 8] for name in ("logits", "loc", "log_scale")}
    session = ort.InferenceSession(str(folder / "decoder.onnx"), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    with torch.no_grad():
        expected = ckpt.build_model().decode(torch.from_numpy(z)).graph_outputs()
    for got, name in zip(session.run(None, {"z": z}), ("logits", "loc", "log_scale"), strict=True):
        np.testing.assert_allclose(got, expected[name].numpy(), atol=1e-4)
