"""Model loading, once at start-up: every folder under the model directory becomes a ServedModel
(validated manifest, checked hashes, one encoder and one decoder onnxruntime session, shared by all
requests). A broken folder is logged and skipped; the others serve.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.manifest import Manifest, load_manifest
from service.settings import Settings

log = logging.getLogger("service.registry")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEFAULT_MODEL_NAME = "fashion-mnist"


class StartupError(RuntimeError):
    """The service cannot start as configured (e.g. CUDA asked for but unavailable)."""


@dataclass
class ServedModel:
    name: str
    folder: Path
    manifest: Manifest
    encoder: ort.InferenceSession
    decoder: ort.InferenceSession
    # Resynthesis: attribute name -> mean posterior latent (D,), from attributes.json.
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    prior: ort.InferenceSession | None = None  # two-level models: z2 -> Pr(z1|z2)

    @property
    def providers(self) -> list[str]:
        return list(self.decoder.get_providers())


@dataclass
class Registry:
    models: dict[str, ServedModel] = field(default_factory=dict)
    default: str | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # folder name -> why

    def get(self, name: str | None) -> ServedModel | None:
        return self.models.get(name or self.default or "")


def resolve_providers(settings: Settings) -> list[str]:
    """The provider list sessions are created with; explicit requests that cannot be met raise."""
    available = ort.get_available_providers()
    wanted = settings.provider_list()
    if wanted is None:
        return [CUDA, CPU] if CUDA in available else [CPU]
    missing = [p for p in wanted if p not in available]
    if missing:
        raise StartupError(f"VAE_PROVIDERS asks for {missing}, but this onnxruntime offers only {available}"
                           + (" (install onnxruntime-gpu, not onnxruntime, for CUDA)" if CUDA in missing else ""))
    return wanted


def session_options(settings: Settings) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = settings.intra_op_threads
    opts.inter_op_num_threads = settings.inter_op_threads
    if not settings.ort_spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


def load_model(folder: Path, providers: list[str], settings: Settings) -> ServedModel:
    manifest = load_manifest(folder)  # schema and sha256 of every file
    opts = session_options(settings)
    graphs = [manifest.encoder, manifest.decoder] + ([manifest.hierarchy.prior] if manifest.hierarchy else [])
    sessions = [ort.InferenceSession(str(folder / g.file), sess_options=opts, providers=providers) for g in graphs]
    if CUDA in providers and settings.provider_list() is not None:
        for s in sessions:
            if CUDA not in s.get_providers():  # onnxruntime falls back to CPU silently when CUDA fails
                raise StartupError(f"{folder}: CUDA was asked for but the session runs on {s.get_providers()}")
    for graph, s in zip(graphs, sessions, strict=True):
        names = ([i.name for i in s.get_inputs()], [o.name for o in s.get_outputs()])
        if names != (list(graph.inputs), list(graph.outputs)):
            raise ValueError(f"{folder / graph.file}: graph has inputs/outputs {names}, manifest says "
                             f"{list(graph.inputs)}/{list(graph.outputs)}")
    return ServedModel(manifest.name, folder, manifest, sessions[0], sessions[1], load_attributes(folder, manifest),
                       sessions[2] if manifest.hierarchy else None)


def load_attributes(folder: Path, manifest: Manifest) -> dict[str, np.ndarray]:
    if manifest.attributes is None:
        return {}
    raw = json.loads((folder / manifest.attributes.file).read_text())
    means = np.asarray(raw["means"], dtype=np.float64)
    if raw["names"] != manifest.attributes.names or means.shape != (len(raw["names"]), manifest.latent_dim):
        raise ValueError(f"{folder}: {manifest.attributes.file} does not match the manifest's attributes")
    return dict(zip(raw["names"], means, strict=True))


def check_configuration(settings: Settings) -> None:
    """The checks that need no model: providers on offer, the model directory there."""
    resolve_providers(settings)
    if not settings.model_dir.is_dir():
        raise StartupError(f"model directory {settings.model_dir} does not exist (VAE_MODEL_DIR / --model-dir)")


def load_registry(settings: Settings) -> Registry:
    """Load every model folder; raises StartupError only for configuration errors."""
    check_configuration(settings)
    providers = resolve_providers(settings)
    registry = Registry()
    root = settings.model_dir
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            model = load_model(folder, providers, settings)
        except StartupError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken folder is reported and skipped, whatever broke
            registry.skipped[folder.name] = str(exc)
            log.error("skipped model folder %s: %s", folder, exc)
            continue
        if model.name in registry.models:
            registry.skipped[folder.name] = f"duplicate model name {model.name!r}"
            log.error("skipped model folder %s: duplicate model name %r", folder, model.name)
            continue
        registry.models[model.name] = model
        log.info("loaded model %s from %s on %s", model.name, folder, model.providers)
    if settings.default_model is not None:
        if settings.default_model not in registry.models:
            raise StartupError(f"VAE_DEFAULT_MODEL={settings.default_model!r} is not among the loaded models "
                               f"{sorted(registry.models)}")
        registry.default = settings.default_model
    elif registry.models:
        registry.default = DEFAULT_MODEL_NAME if DEFAULT_MODEL_NAME in registry.models else min(registry.models)
    return registry
