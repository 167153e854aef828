"""Export a trained model to the folder the service loads: encoder.onnx, decoder.onnx, manifest.json.

    python -m training export --checkpoint runs/fashion-mnist/checkpoint.pt --name fashion-mnist

Both graphs are run in onnxruntime against the PyTorch model on a random batch; if any output differs
by more than the tolerance (1e-4) nothing is written. The folder is assembled beside its destination
and renamed into place, so a failed export never leaves a half-written model.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from service.manifest import (
    ATTRIBUTES_FILE,
    DECODER_FILE,
    DECODER_INPUT,
    ENCODER_FILE,
    ENCODER_INPUT,
    LIKELIHOOD_OUTPUTS,
    MANIFEST_FILE,
    POSTERIOR_OUTPUTS,
    PRIOR_FILE,
    PRIOR_INPUT,
    PRIOR_OUTPUTS,
    AttributesSpec,
    FileSpec,
    GraphSpec,
    HierarchySpec,
    ImageSpec,
    LikelihoodSpec,
    Manifest,
    MetricsSpec,
    TrainingSpec,
    file_spec,
    likelihood_outputs,
)
from training.attributes import Attributes
from training.checkpoint import Checkpoint
from training.config import ModelConfig
from training.distributions import DiagonalGaussian
from training.evaluate import EvalReport
from training.latent import LatentModel

OPSET = 17
PARITY_TOLERANCE = 1e-4


class ExportParityError(RuntimeError):
    """onnxruntime and PyTorch disagree beyond the tolerance: the model is not written."""


class EncoderGraph(nn.Module):
    """x (N, C, H, W) in [0, 1] -> mu, logvar (N, D1) of q(z1|x), then mu2, logvar2 (N, D2) of q(z2|x) for a
    two-level model (log-variances clamped as in training)."""

    def __init__(self, model: LatentModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t for q in self.model.encode(x) for t in (q.mu, q.logvar))


class PriorGraph(nn.Module):
    """Two-level models: z2 (N, D2) -> prior_mu, prior_logvar (N, D1) of Pr(z1|z2)."""

    def __init__(self, model: LatentModel):
        super().__init__()
        self.model = model

    def forward(self, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.model.prior(0, z2)
        assert isinstance(p, DiagonalGaussian)  # a level below the top: conditional
        return p.mu, p.logvar


class DecoderGraph(nn.Module):
    """z (N, D1) -> the likelihood's parameters (service.manifest.LIKELIHOOD_OUTPUTS): for the chapter's Gaussian
    its mean f[z] (N, C, H, W) (Bernoulli: the probabilities)."""

    def __init__(self, model: LatentModel):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.decode(z).graph_outputs().values())


def export_graph(module: nn.Module, example: torch.Tensor, path: Path, input_name: str,
                 output_names: list[str]) -> None:
    """TorchScript-based exporter (deterministic, no extra dependencies), N as a dynamic axis."""
    axes = {name: {0: "N"} for name in [input_name, *output_names]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=output_names,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)


def parity_error(module: nn.Module, path: Path, example: torch.Tensor) -> float:
    """Max |onnxruntime - torch| over all outputs on `example`."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = module(example)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = session.run(None, {session.get_inputs()[0].name: example.numpy()})
    return max(float(np.max(np.abs(g - e.numpy()))) for g, e in zip(got, expected, strict=True))


def check_parity(module: nn.Module, path: Path, example: torch.Tensor, tol: float | None = None) -> float:
    tol = PARITY_TOLERANCE if tol is None else tol
    err = parity_error(module, path, example)
    if not err <= tol:  # also catches NaN
        raise ExportParityError(f"{path.name}: onnxruntime differs from PyTorch by {err:.3g} > {tol:g}")
    return err


def add_metadata(path: Path, items: dict[str, str]) -> None:
    """Key manifest items as ONNX metadata, so a bare .onnx file still says what it is."""
    graph = onnx.load(str(path))
    for key, value in items.items():
        prop = graph.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(graph, str(path))


def likelihood_spec(cfg: ModelConfig, model: LatentModel) -> LikelihoodSpec:
    return LikelihoodSpec(type=cfg.likelihood, sigma=model.likelihood.sigma,
                          learned_sigma=cfg.likelihood == "gaussian" and cfg.learn_sigma,
                          components=cfg.mixture_components if cfg.likelihood == "logistic-mixture" else None)


def metrics_spec(report: EvalReport) -> MetricsSpec:
    """The manifest's `metrics` block from an evaluation."""
    return MetricsSpec(
        num_images=report.num_images, elbo=report.elbo, elbo_per_dim=report.elbo_per_dim,
        log_likelihood=report.log_likelihood, log_likelihood_stderr=report.log_likelihood_stderr,
        log_likelihood_k=report.k, bits_per_dim=report.bits_per_dim, seed=report.seed,
        mean_effective_sample_size=report.mean_effective_sample_size,
        mean_sampling_stderr=report.mean_sampling_stderr,
    )


def build_manifest(ckpt: Checkpoint, model: LatentModel, name: str, files: dict[str, FileSpec],
                   report: EvalReport | None, description: str = "",
                   attributes: AttributesSpec | None = None) -> Manifest:
    cfg, info = ckpt.run_config, ckpt.data
    c, h, w = info.shape
    d = model.latent_dim
    (mu, logvar), (mu2, logvar2) = POSTERIOR_OUTPUTS
    prior_mu, prior_logvar = PRIOR_OUTPUTS
    hierarchy, level2 = None, {}
    if len(model.latent_dims) == 2:
        d2 = model.latent_dims[1]
        level2 = {mu2: ["N", d2], logvar2: ["N", d2]}
        hierarchy = HierarchySpec(latent_dims=[d, d2], prior=GraphSpec(
            file=PRIOR_FILE, inputs={PRIOR_INPUT: ["N", d2]}, outputs={prior_mu: ["N", d], prior_logvar: ["N", d]},
            opset=OPSET))
    metrics = None if report is None else metrics_spec(report)
    image = ImageSpec(channels=c, height=h, width=w, levels=info.levels, pixel_mode=info.pixel_mode)
    likelihood = likelihood_spec(cfg.model, model)
    return Manifest(
        name=name,
        description=description,
        created=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        image=image,
        latent_dim=d,
        likelihood=likelihood,
        encoder=GraphSpec(file=ENCODER_FILE, inputs={ENCODER_INPUT: ["N", c, h, w]},
                          outputs={mu: ["N", d], logvar: ["N", d], **level2}, opset=OPSET),
        decoder=GraphSpec(file=DECODER_FILE, inputs={DECODER_INPUT: ["N", d]},
                          outputs=dict(likelihood_outputs(likelihood, image)), opset=OPSET),
        training=TrainingSpec(
            dataset=info.dataset, num_train=info.num_train, num_test=info.num_test,
            class_names=list(info.class_names), seed=cfg.train.seed, epochs=ckpt.epoch, steps=ckpt.step,
            seconds=sum(row.get("epoch_seconds", 0.0) for row in ckpt.history) or None, config=cfg.to_dict(),
        ),
        metrics=metrics,
        attributes=attributes,
        hierarchy=hierarchy,
        files=files,
    )


def write_attributes(attributes: Attributes, directions: dict[str, tuple[str, str]], path: Path) -> AttributesSpec:
    """attributes.json (names, means, counts) and its manifest entry; named directions must name attributes."""
    for dname, (a, b) in directions.items():
        for attr in (a, b):
            if attr not in attributes.names:
                raise ValueError(f"direction {dname!r}: unknown attribute {attr!r}; known: {attributes.names}")
    path.write_text(json.dumps({"names": attributes.names, "means": attributes.means.tolist(),
                                "counts": attributes.counts}) + "\n")
    return AttributesSpec(names=attributes.names, counts=attributes.counts, source=attributes.source,
                          directions=directions)


def export_model(ckpt: Checkpoint, out_root: Path, name: str, report: EvalReport | None = None,
                 extra_files: list[Path] | None = None, description: str = "", seed: int = 0,
                 attributes: Attributes | None = None, directions: dict[str, tuple[str, str]] | None = None) -> Path:
    """Write `out_root/name/` (replacing it) after the parity check passes; returns the folder."""
    model = ckpt.build_model()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((7, *ckpt.data.shape), generator=gen)  # 7: not a size the export could special-case
    z = torch.randn((7, model.latent_dim), generator=gen)
    out_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out_root))
    try:
        two_level = len(model.latent_dims) == 2  # the manifest's format knows one or two levels
        levels = POSTERIOR_OUTPUTS[:len(model.latent_dims)]  # in EncoderGraph's output order
        posterior = [output for level in levels for output in level]
        graphs = [(EncoderGraph(model), x, ENCODER_FILE, ENCODER_INPUT, posterior),
                  (DecoderGraph(model), z, DECODER_FILE, DECODER_INPUT,
                   list(LIKELIHOOD_OUTPUTS[ckpt.run_config.model.likelihood]))]
        if two_level:
            z2 = torch.randn((7, model.latent_dims[1]), generator=gen)
            graphs.append((PriorGraph(model), z2, PRIOR_FILE, PRIOR_INPUT, list(PRIOR_OUTPUTS)))
        names = list(model.decode(z).graph_outputs())
        if names != list(LIKELIHOOD_OUTPUTS[ckpt.run_config.model.likelihood]):  # the manifest's names, in order
            raise ExportParityError(f"the decoder gives {names}, the manifest's likelihood names "
                                    f"{list(LIKELIHOOD_OUTPUTS[ckpt.run_config.model.likelihood])}")
        for module, example, file, input_name, outputs in graphs:
            module.eval()
            export_graph(module, example, staging / file, input_name, outputs)
            check_parity(module, staging / file, example)
        for path in extra_files or []:
            shutil.copy(path, staging / path.name)
        attributes_spec = None
        if attributes is not None:
            attributes_spec = write_attributes(attributes, directions or {}, staging / ATTRIBUTES_FILE)
        # Metadata first: the manifest's hashes are of the final files.
        draft = build_manifest(ckpt, model, name, {}, report, description)
        meta = {"vae.format_version": str(draft.format_version), "vae.name": name,
                "vae.latent_dim": str(draft.latent_dim), "vae.image": draft.image.model_dump_json(),
                "vae.likelihood": draft.likelihood.model_dump_json(), "vae.prior": "standard_normal"}
        for _, _, file, _, _ in graphs:
            add_metadata(staging / file, meta)
        files = {p.name: file_spec(p) for p in sorted(staging.iterdir()) if p.name != MANIFEST_FILE}
        manifest = build_manifest(ckpt, model, name, files, report, description, attributes_spec)
        (staging / MANIFEST_FILE).write_text(manifest.to_json())
        final = out_root / name
        if final.exists():
            shutil.rmtree(final)
        staging.chmod(0o755)  # mkdtemp made it private; the service may run as another user
        staging.rename(final)
        return final
    finally:
        if staging.exists():
            shutil.rmtree(staging)
