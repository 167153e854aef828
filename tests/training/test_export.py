"""Export: the folder loads in a plain onnxruntime session, agrees with PyTorch, and its manifest
round-trips; a parity failure writes nothing."""

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import training.export as export
from service.manifest import Manifest, ManifestError, load_manifest
from training.checkpoint import load_checkpoint
from training.data import load_dataset, to_unit
from training.evaluate import evaluate


@pytest.fixture(scope="module")
def exported(trained_digits, tmp_path_factory):
    ckpt = load_checkpoint(trained_digits)
    data = load_dataset(ckpt.run_config.data, "test").head(20)
    report = evaluate(ckpt.build_model(), data, ckpt.data.pixel_mode, k=50, progress=False)
    root = tmp_path_factory.mktemp("models")
    folder = export.export_model(ckpt, root, "digits-tiny", report, [trained_digits.parent / "loss_curve.png"])
    return ckpt, folder, report


def test_exported_graphs_match_pytorch_for_any_batch_size(exported):
    ckpt, folder, _ = exported
    model = ckpt.build_model()
    encoder = ort.InferenceSession(str(folder / "encoder.onnx"), providers=["CPUExecutionProvider"])
    decoder = ort.InferenceSession(str(folder / "decoder.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in encoder.get_inputs()] == ["x"]
    assert [o.name for o in encoder.get_outputs()] == ["mu", "logvar"]
    assert [i.name for i in decoder.get_inputs()] == ["z"] and [o.name for o in decoder.get_outputs()] == ["mean"]
    data = load_dataset(ckpt.run_config.data, "test")
    for n in (1, 13):
        x = to_unit(data.images[:n], data.levels, "dequantize", torch.Generator().manual_seed(n))
        mu, logvar = encoder.run(None, {"x": x.numpy()})
        with torch.no_grad():
            q = model.encode(x)[0]
            mean = model.decode(q.mu).mean()
        assert mu.shape == (n, 4) and logvar.shape == (n, 4)
        np.testing.assert_allclose(mu, q.mu.numpy(), atol=1e-5)
        np.testing.assert_allclose(logvar, q.logvar.numpy(), atol=1e-5)
        (got,) = decoder.run(None, {"z": q.mu.numpy()})
        assert got.shape == (n, 1, 8, 8)
        np.testing.assert_allclose(got, mean.numpy(), atol=1e-5)
        assert got.min() >= 0 and got.max() <= 1


def test_manifest_round_trips_and_describes_the_model(exported):
    ckpt, folder, report = exported
    manifest = load_manifest(folder)
    assert Manifest.model_validate_json(manifest.to_json()) == manifest
    assert manifest.name == "digits-tiny" and manifest.latent_dim == 4 and manifest.format_version == 1
    assert (manifest.image.channels, manifest.image.height, manifest.image.width) == (1, 8, 8)
    assert manifest.image.levels == 17 and manifest.image.pixel_mode == "dequantize"
    assert manifest.likelihood.type == "gaussian" and manifest.likelihood.learned_sigma
    assert manifest.likelihood.sigma == pytest.approx(ckpt.build_model().likelihood.sigma)
    assert manifest.training.dataset == "digits" and manifest.training.seed == 0 and manifest.training.epochs == 4
    assert manifest.training.config["model"]["latent_dim"] == 4
    assert manifest.metrics.log_likelihood == pytest.approx(report.log_likelihood)
    assert manifest.metrics.log_likelihood_k == 50
    assert manifest.metrics.mean_effective_sample_size == pytest.approx(report.mean_effective_sample_size)
    assert manifest.metrics.mean_sampling_stderr == pytest.approx(report.mean_sampling_stderr)
    bpd = -(report.log_likelihood - 64 * math.log(17)) / (64 * math.log(2))
    assert manifest.metrics.bits_per_dim == pytest.approx(bpd)
    assert set(manifest.files) == {"encoder.onnx", "decoder.onnx", "loss_curve.png"}
    assert manifest.encoder.inputs == {"x": ["N", 1, 8, 8]} and manifest.decoder.outputs == {"mean": ["N", 1, 8, 8]}
    meta = {p.key: p.value for p in onnx.load(str(folder / "decoder.onnx")).metadata_props}
    assert meta["vae.name"] == "digits-tiny" and meta["vae.latent_dim"] == "4"
    assert json.loads(meta["vae.likelihood"])["type"] == "gaussian"


def test_tampered_or_invalid_folder_is_rejected(exported, tmp_path):
    _, folder, _ = exported
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    with open(copy / "decoder.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ManifestError, match="sha256"):
        load_manifest(copy)
    raw = json.loads((folder / "manifest.json").read_text())
    raw["latent_dim"] = 0
    (copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="latent_dim"):
        load_manifest(copy, verify=False)
    raw["latent_dim"], raw["surprise"] = 4, 1
    (copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="surprise"):
        load_manifest(copy, verify=False)


def test_parity_failure_writes_nothing(trained_digits, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "PARITY_TOLERANCE", -1.0)  # any real difference (even 0) now fails
    with pytest.raises(export.ExportParityError, match="encoder.onnx"):
        export.export_model(load_checkpoint(trained_digits), tmp_path, "refused")
    assert list(tmp_path.iterdir()) == []


def test_parity_check_catches_a_model_that_differs(exported, trained_digits):
    ckpt, folder, _ = exported
    model = ckpt.build_model()
    with torch.no_grad():
        model.decoder.net[-1].bias += 1e-3
    z = torch.randn(5, 4)
    with pytest.raises(export.ExportParityError, match="differs"):
        export.check_parity(export.DecoderGraph(model), folder / "decoder.onnx", z)


def test_attribute_directions_are_class_means_and_ship_with_the_model(trained_digits, tmp_path):
    from training.attributes import class_means

    ckpt = load_checkpoint(trained_digits)
    model = ckpt.build_model()
    data = load_dataset(ckpt.run_config.data, "train")
    attrs = class_means(model, data, "plain")
    x = to_unit(data.images[data.labels == 3], data.levels, "plain")
    with torch.no_grad():
        expected = model.encode(x)[0].mu.mean(0)
    torch.testing.assert_close(attrs.means[attrs.names.index("3")], expected, atol=1e-5, rtol=0)
    assert attrs.counts[attrs.names.index("3")] == int((data.labels == 3).sum())
    folder = export.export_model(ckpt, tmp_path, "with-attrs", attributes=attrs, directions={"up": ("1", "7")})
    manifest = load_manifest(folder)
    assert manifest.attributes.names == attrs.names and manifest.attributes.directions == {"up": ("1", "7")}
    assert "attributes.json" in manifest.files
    with pytest.raises(ValueError, match="unknown attribute"):
        export.export_model(ckpt, tmp_path, "bad", attributes=attrs, directions={"up": ("1", "eleven")})
    assert not (tmp_path / "bad").exists()
