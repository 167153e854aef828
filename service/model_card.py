"""Model cards: what each exported model folder is, checked by loading its graphs in onnxruntime.

Until the HTTP service lands, `python -m service` prints these cards for every folder under the model
directory; a broken folder is reported and skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.manifest import Manifest, ManifestError, load_manifest


def check_graphs(folder: Path, manifest: Manifest) -> tuple[float, float]:
    """Encode a grey image and decode z = 0 in plain onnxruntime sessions; shapes must match the manifest.
    Returns the mean of the decoded image and of the encoded mu."""
    img = manifest.image
    encoder = ort.InferenceSession(str(folder / manifest.encoder.file), providers=["CPUExecutionProvider"])
    decoder = ort.InferenceSession(str(folder / manifest.decoder.file), providers=["CPUExecutionProvider"])
    x = np.full((1, img.channels, img.height, img.width), 0.5, np.float32)
    mu, logvar = encoder.run(["mu", "logvar"], {"x": x})
    (mean,) = decoder.run(["mean"], {"z": np.zeros((1, manifest.latent_dim), np.float32)})
    if mu.shape != (1, manifest.latent_dim) or logvar.shape != mu.shape:
        raise ManifestError(f"{folder}: encoder gave {mu.shape}, manifest says latent_dim {manifest.latent_dim}")
    if mean.shape != x.shape:
        raise ManifestError(f"{folder}: decoder gave {mean.shape}, manifest says {x.shape}")
    return float(mean.mean()), float(mu.mean())


def model_card(folder: Path) -> str:
    m = load_manifest(folder)
    check_graphs(folder, m)
    img, lik = m.image, m.likelihood
    lines = [
        f"model {m.name}  ({folder})",
        f"  {m.description}" if m.description else "",
        f"  image     {img.channels}x{img.height}x{img.width}, values in [0, 1], {img.levels} levels, {img.pixel_mode}",
        (f"  latent    two levels: z2 ({m.hierarchy.latent_dims[1]} dims) ~ Norm[0, I], z1 ({m.latent_dim} dims) ~ "
         "learned Pr(z1|z2)" if m.hierarchy else f"  latent    {m.latent_dim} dims, prior Norm[0, I]"),
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
    files = (f"{name} ({spec.bytes // 1024} KiB, sha256 ok)" for name, spec in m.files.items())
    lines.append("  files     " + ", ".join(files))
    return "\n".join(line for line in lines if line)


def model_cards(model_dir: Path) -> tuple[list[str], list[str]]:
    """(cards, errors) for every sub-folder holding a manifest.json."""
    cards, errors = [], []
    for folder in sorted(p for p in model_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            cards.append(model_card(folder))
        except Exception as exc:  # noqa: BLE001 - any broken folder is reported and skipped (onnxruntime
            # raises its own exception types, e.g. InvalidProtobuf)
            errors.append(f"skipped {folder}: {exc}")
    return cards, errors
