"""Model cards: what each exported model folder is, checked by loading it as the service does and running every
graph once. `python -m service --check` prints them; a folder that fails is reported and skipped.
"""

from __future__ import annotations

import numpy as np

from service.manifest import likelihood_outputs
from service.metrics import Metrics
from service.model import ServedModel
from service.offload import Workers
from service.registry import load_registry
from service.settings import Settings


def exercise(model: ServedModel) -> None:
    """Encode a grey image, take every level's prior at z = 0 and decode z = 0; shapes must match the manifest."""
    image = model.manifest.image
    x = np.full((1, *image.shape), 0.5, np.float32)
    dims = [q.mean.shape[1] for q in model.posterior(x)]
    if dims != model.latent_dims:
        raise ValueError(f"{model.name}: the encoder gave latent sizes {dims}, the manifest says {model.latent_dims}")
    z = [np.zeros((1, d), np.float32) for d in dims]
    priors = [p.mean.shape[1] for p in model.priors(z)]
    if priors != dims:
        raise ValueError(f"{model.name}: the priors gave latent sizes {priors}, the manifest says {dims}")
    outputs = [list(p.shape) for p in model.decode(z[0])]
    declared = [[1, *shape[1:]] for _, shape in likelihood_outputs(model.manifest.likelihood, image)]
    if outputs != declared:
        raise ValueError(f"{model.name}: the decoder gave {outputs}, the manifest's likelihood says {declared}")


def model_card(model: ServedModel) -> str:
    m = model.manifest
    img, lik = m.image, m.likelihood
    levels = " -> ".join(f"z{i + 1} ({d} dims)" for i, d in reversed(list(enumerate(model.latent_dims))))
    lines = [
        f"model {m.name}  ({model.folder.name}/)",
        f"  {m.description}" if m.description else "",
        f"  image     {img.channels}x{img.height}x{img.width}, values in [0, 1], {img.levels} levels, {img.pixel_mode}",
        f"  latent    {levels}, top prior Norm[0, I]" + (", learned Pr(z1|z2)" if model.prior_graphs else ""),
        f"  likelihood {lik.type}" + (f", sigma {lik.sigma:.4f}" + (" (learned)" if lik.learned_sigma else "")
                                      if lik.sigma is not None else ""),
        f"  trained   {m.training.dataset}: {m.training.num_train} images, {m.training.epochs} epochs, "
        f"seed {m.training.seed}" + (f", {m.training.seconds / 60:.1f} min" if m.training.seconds else ""),
    ]
    if m.metrics is not None:
        mt = m.metrics
        bpd = f", {mt.bits_per_dim:.3f} bits/dim" if mt.bits_per_dim is not None else ""
        lines.append(f"  test      ELBO {mt.elbo:.2f} nats, log-likelihood {mt.log_likelihood:.2f} "
                     f"nats (K={mt.log_likelihood_k}, {mt.num_images} images){bpd}")
    lines.append("  graphs    " + ", ".join(f"{g.spec.file} on {g.providers[0]}" for g in model.graphs))
    files = (f"{name} ({spec.bytes // 1024} KiB, sha256 ok)" for name, spec in m.files.items())
    lines.append("  files     " + ", ".join(files))
    return "\n".join(line for line in lines if line)


def model_cards(settings: Settings) -> tuple[list[str], list[str]]:
    """(cards, errors) for every folder under the settings' model directory, loaded as the service loads them."""
    workers = Workers(1)
    try:
        registry = load_registry(settings, Metrics(), workers)
        cards, errors = [], [f"skipped {name}: {why}" for name, why in registry.skipped.items()]
        for model in registry.models.values():
            try:
                exercise(model)
                cards.append(model_card(model))
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a graph that fails
                errors.append(f"skipped {model.folder.name}: {exc}")
        registry.close()
        return cards, errors
    finally:
        workers.close()
