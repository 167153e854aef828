"""Evaluate an exported model folder again and rewrite its manifest's metrics: for folders whose training run is
gone, after the estimator changed (`python -m training rescore models/fashion-mnist --k 5000`).

The PyTorch model is rebuilt from the folder itself: its architecture from the manifest's training config, its
weights from the ONNX graphs' initializers (the export names them after the module's parameters, under
`model.`), the learned sigma from the manifest. Before anything is evaluated, the rebuilt model's graphs must
give the folder's ONNX outputs (the export's parity check), so the figures are the shipped model's. Then
`training.evaluate.evaluate` runs as `python -m training evaluate` would, with the manifest's seed, and only
the `metrics` block of manifest.json changes (the graphs and their hashes do not).
"""

from __future__ import annotations

import math
from pathlib import Path

import onnx
import torch
from onnx import numpy_helper

from service.manifest import MANIFEST_FILE, Manifest, load_manifest
from training.config import RunConfig
from training.data import load_dataset
from training.evaluate import EvalReport, evaluate
from training.export import DecoderGraph, EncoderGraph, PriorGraph, check_parity, metrics_spec
from training.latent import LatentModel
from training.models import build_model

GRAPH_PREFIX = "model."  # EncoderGraph / DecoderGraph / PriorGraph hold the model as `self.model`


def rebuild(folder: Path, manifest: Manifest) -> LatentModel:
    """The PyTorch model of an exported folder, checked against its ONNX graphs."""
    cfg = RunConfig.from_dict(manifest.training.config)
    image = manifest.image
    model = build_model(cfg.model, (image.channels, image.height, image.width), image.levels)
    state = {}
    graphs = [manifest.encoder, manifest.decoder] + ([manifest.hierarchy.prior] if manifest.hierarchy else [])
    for graph in graphs:
        for tensor in onnx.load(folder / graph.file).graph.initializer:
            if tensor.name.startswith(GRAPH_PREFIX):
                state[tensor.name.removeprefix(GRAPH_PREFIX)] = torch.from_numpy(numpy_helper.to_array(tensor).copy())
    for name, value in model.state_dict().items():  # what the graphs do not hold: the likelihood's one sigma
        if name not in state and name.endswith("log_sigma") and manifest.likelihood.sigma is not None:
            state[name] = torch.full_like(value, math.log(manifest.likelihood.sigma))
    model.load_state_dict(state, strict=True)  # every parameter found, none left over
    model.eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((7, image.channels, image.height, image.width), generator=gen)
    check_parity(EncoderGraph(model), folder / manifest.encoder.file, x)
    check_parity(DecoderGraph(model), folder / manifest.decoder.file, torch.randn((7, model.latent_dim), generator=gen))
    if manifest.hierarchy:
        z2 = torch.randn((7, model.latent_dims[1]), generator=gen)
        check_parity(PriorGraph(model), folder / manifest.hierarchy.prior.file, z2)
    return model


def rescore(folder: Path, k: int, limit: int = 0, chunk: int = 250, seed: int | None = None, progress: bool = True
            ) -> EvalReport:
    """Evaluate the folder's model on its test set (the first `limit` images; 0 = all) with `seed` (None: the
    manifest's metrics' seed, else 0) and write the metrics."""
    manifest = load_manifest(folder)
    model = rebuild(folder, manifest)
    cfg = RunConfig.from_dict(manifest.training.config)
    data = load_dataset(cfg.data, "test").head(limit)
    if seed is None:
        seed = manifest.metrics.seed if manifest.metrics else 0
    report = evaluate(model, data, manifest.image.pixel_mode, k, seed, chunk=chunk, progress=progress)
    (folder / MANIFEST_FILE).write_text(manifest.model_copy(update={"metrics": metrics_spec(report)}).to_json())
    return report
